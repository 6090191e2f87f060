"""The verifier's limits, in one place (the kernel's tunables).

Defaults follow the rules they mirror: a TX buffer is at most one page
(AF_XDP: a descriptor may not cross its chunk; a page is the largest
chunk), a packet is at most 18 descriptors (AF_XDP multi-buffer:
MAX_SKB_FRAGS + 1) and at most a 9014-byte jumbo frame (the 8254x allows
16288, the kernel's MTU policy is smaller), a packet left open at the tail
waits for its EOP at most 8 doorbells (a bound, so a tenant cannot park
descriptors forever), and an RX buffer is checked
over the whole receive buffer size the NIC was programmed with (RCTL.BSIZE),
because the device writes up to that many bytes whatever the descriptor says.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_SUPPORTED
from ring.memory import PAGE_SIZE

JUMBO_FRAME = 9014
#: The largest packet the 8254x transmits (8254x manual 3.3.3: 16288 bytes) and, with RCTL.LPE, receives.
E1000_MAX_FRAME = 16288


@dataclass(frozen=True)
class Policy:
    max_buffer: int = PAGE_SIZE
    max_frame: int = JUMBO_FRAME
    max_fragments: int = 18
    rx_buffer_size: int = 2048
    tx_cmd_allowed: int = TXD_CMD_SUPPORTED
    #: an open packet (no EOP yet) waits at most this many doorbells, then goes as PKT_UNTERMINATED
    max_held_doorbells: int = 8

    @cached_property
    def tx_fast_path(self) -> tuple[np.uint8, np.uint8, np.uint16] | None:
        """Constants of the TX fast path (cmd mask, expected cmd, buffer limit), or None if it cannot apply.

        The fast path judges each descriptor alone, which is exact only when a
        single buffer can never break a packet rule (max_buffer <= max_frame)
        and touches at most two frames (max_buffer <= PAGE_SIZE).
        """
        if self.max_buffer > min(PAGE_SIZE, self.max_frame):
            return None
        mask = (~self.tx_cmd_allowed & 0xFF) | TXD_CMD_IC | TXD_CMD_EOP
        return np.uint8(mask), np.uint8(TXD_CMD_EOP), np.uint16(self.max_buffer)


#: The kernel's documented configurations (docs/verifier.md, "Policy limits"), by name.  ``jumbo`` follows the
#: 8254x's own limits rather than AF_XDP's: a TX buffer or frame up to 16288 bytes (3.3.3) and 8192-byte receive
#: buffers (RCTL.BSIZE 10 with BSEX, table 13-66; LPE on): a buffer then spans three or more frames, which only
#: the full range rule judges (the compiled path and numpy's two-frame fast path step aside).
POLICIES: dict[str, Policy] = {
    "default": Policy(),
    "jumbo": Policy(max_buffer=E1000_MAX_FRAME, max_frame=E1000_MAX_FRAME, rx_buffer_size=8192),
}
