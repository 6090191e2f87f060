"""Accepted => every rule holds: the oracle judges what the device was allowed to process, from its own ground truth.

The mirror of fuzz/oracle/reasons.py (is each *refusal* true?): here every
descriptor the kernel let through -- what the device fetches from the ring
it was given, seen on the DMA observer hook as a descriptor read, the bytes
read from memory at that moment -- must satisfy every documented rule of
docs/verifier.md.  A verifier that accepts an over-long descriptor, lets the
good fragments of a doomed packet through, or checks an RX buffer for fewer
bytes than the device may write moves no byte outside the tenant's pins, so
the DMA check alone sees nothing; this check names the rule that should have
refused it (finding kind ``"rule"``).

The limits are stated here, each with its source, not imported from
verifier/ (an oracle sharing the verifier's numbers cannot see a wrong
number): ``RuleBook``.  The RX buffer size is the device's own, read from
its RCTL register by whoever builds the oracle (``Oracle.rx_buffer``): it is
what the hardware may write, whatever the descriptor says.

Packets span fetches: the open packet of each device queue (fragments so
far, bytes, the first fragment's checksum fields) is carried to the next
fetch, as the device's own assembler carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ring import regs
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_SUPPORTED, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.memory import PAGE_SIZE

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RuleBook:
    """The documented limits (docs/verifier.md, "Reason codes" and "Policy limits"), each with its source."""

    #: LEN_TOO_LONG: an AF_XDP descriptor may not exceed its chunk, and a page is the largest chunk
    #: (xp_unaligned_validate_desc, net/xdp/xsk_queue.h).
    max_buffer: int = PAGE_SIZE
    #: PKT_TOO_LONG: a 9000-byte MTU plus the 14-byte Ethernet header (the 8254x itself allows 16288, 3.3.3).
    max_frame: int = 9014
    #: PKT_TOO_MANY_FRAGS: AF_XDP multi-buffer, MAX_SKB_FRAGS + 1 with MAX_SKB_FRAGS = 17 (commit cf24f5a5feea).
    max_fragments: int = 18
    #: CMD_UNSUPPORTED: the legacy command bits the emulated 8254x implements (ring/descriptors.py).
    cmd_supported: int = TXD_CMD_SUPPORTED
    #: PKT_UNTERMINATED: a packet left open at a doorbell's tail waits for its EOP at most this many doorbells
    #: (docs/verifier.md, "Policy limits": so a tenant cannot park descriptors in the kernel forever; AF_XDP
    #: drops a partial packet whole, ``xsk_drop_skb``).  The sandbox's own bound, documented, so judged.
    max_held_doorbells: int = 8


DEFAULT_RULES = RuleBook()
#: The ``jumbo`` configuration (docs/verifier.md, "Policy limits"): the 8254x's own limits, a TX buffer and a
#: frame up to 16288 bytes (8254x manual 3.3.3); the RX buffer size is the device's RCTL, read as ever.
JUMBO_RULES = RuleBook(max_buffer=16288, max_frame=16288)
#: The rule book of each documented kernel configuration, by the configuration's name.
RULE_BOOKS: dict[str, RuleBook] = {"default": DEFAULT_RULES, "jumbo": JUMBO_RULES}


@dataclass
class OpenPacket:
    """A packet the device has fetched fragments of, without its EOP yet (carried to the next fetch)."""

    fragments: int = 0
    length: int = 0
    cmd: int = 0  # the first fragment's
    cso: int = 0
    css: int = 0


@dataclass
class PacketCarry:
    """Open packets per (device, queue)."""

    open: dict[tuple[str, int], OpenPacket] = field(default_factory=dict)

    def reset(self) -> None:
        self.open.clear()


def descriptor_rules(rules: RuleBook, length: I64, cmd: npt.NDArray[np.uint8]) -> list[tuple[Mask, str]]:
    """Per-descriptor TX rules, in the verifier's priority order: (broken?, reason name) per rule."""
    return [
        ((cmd & np.uint8(~rules.cmd_supported & 0xFF)) != 0, "CMD_UNSUPPORTED"),
        (length == 0, "LEN_ZERO"),
        (length > rules.max_buffer, "LEN_TOO_LONG"),
    ]


def packet_rules(
    rules: RuleBook, carry: OpenPacket, length: I64, cmd: npt.NDArray[np.uint8], cso: I64, css: I64
) -> tuple[list[tuple[int, int, str, str]], OpenPacket]:
    """Packet rules over fetched descriptors that continue ``carry``: ``(first, last, reason, fact)`` per broken
    packet (descriptor indices of this fetch; ``first`` -1 when the packet began in an earlier fetch), and the
    packet left open at the end.

    Vectorised: packets are numbered by EOP (``cumsum``), summed and counted with ``bincount``.
    """
    n = length.size
    eop = (cmd & np.uint8(TXD_CMD_EOP)) != 0
    pkt = np.cumsum(eop) - eop
    npkt = int(np.count_nonzero(eop)) + 1
    frags = np.bincount(pkt, minlength=npkt).astype(np.int64)
    total = np.bincount(pkt, weights=length, minlength=npkt).astype(np.int64)
    frags[0] += carry.fragments
    total[0] += carry.length
    first = np.minimum(np.searchsorted(pkt, np.arange(npkt)), max(n - 1, 0))
    first_cmd = cmd[first].astype(np.int64)
    first_cso, first_css = cso[first], css[first]
    if carry.fragments:
        first_cmd[0], first_cso[0], first_css[0] = carry.cmd, carry.cso, carry.css
    complete = np.arange(npkt) < npkt - 1
    too_many = frags > rules.max_fragments
    too_long = total > rules.max_frame
    wants_ic = (first_cmd & TXD_CMD_IC) != 0
    bad_csum = complete & wants_ic & ((first_cso + 2 > total) | (first_css >= total))
    found: list[tuple[int, int, str, str]] = []
    for p in (too_many | too_long | bad_csum).nonzero()[0].tolist():
        lo = -1 if p == 0 and carry.fragments else int(first[p])
        hi = int(eop.nonzero()[0][p]) if complete[p] else n - 1
        if too_many[p]:
            found.append((lo, hi, "PKT_TOO_MANY_FRAGS", f"{int(frags[p])} fragments > {rules.max_fragments}"))
        elif too_long[p]:
            found.append((lo, hi, "PKT_TOO_LONG", f"{int(total[p])} bytes > {rules.max_frame}"))
        else:
            found.append(
                (
                    lo,
                    hi,
                    "CSUM_OFFSET",
                    f"CSO {int(first_cso[p])} / CSS {int(first_css[p])} outside {int(total[p])} bytes",
                )
            )
    last = npkt - 1
    left = OpenPacket()
    if int(frags[last]):
        left = OpenPacket(
            int(frags[last]), int(total[last]), int(first_cmd[last]), int(first_cso[last]), int(first_css[last])
        )
    return found, left


def packet_atomicity(eop: Mask, refused: I64, sent: I64, size: int) -> list[tuple[int, int]]:
    """Slots of a tenant's TX ring where a packet was split: ``(sent, refused)`` pairs, a fragment the device
    completed without EOP (as the tenant wrote it) whose next slot the kernel refused in the same step.

    The rule (PKT_BAD_FRAGMENT): a packet goes whole or not at all (AF_XDP drops a partial packet whole,
    net/xdp/xsk.c ``xsk_drop_skb``).  A sent fragment without EOP means its packet was accepted, so the
    fragment after it (next slot, over the ring's end too) was accepted with it.  The other order -- a
    refused fragment, then sent ones -- is not judged here: a packet left open at a doorbell's tail and
    refused there is followed by a new packet, and the ring does not show where a doorbell ended.
    """
    if refused.size == 0 or sent.size == 0:
        return []
    more = sent[~eop[sent]]
    after = (more + 1) % size
    split = np.isin(after, refused)
    return list(zip(more[split].tolist(), after[split].tolist(), strict=True))


def window_atomicity(ring: npt.NDArray[np.void], window: I64) -> tuple[int, int] | None:
    """The first packet of one doorbell's consumed TX slots (``window``, in ring order) that has a slot refused
    (DD|REFUSED) and a slot sent (DD without REFUSED), as ``(first slot, last slot)``; None when there is none.

    Read right after the doorbell (inline engine: what it posted is sent within it).  Within one doorbell the
    packets are exact: numbered by the EOP bits in the order the kernel read the slots, the open packet at the
    end being the last.  (A held fragment waits unmarked: it is neither.)
    """
    if window.size == 0:
        return None
    status = ring["status"][window]
    dd = (status & np.uint8(TXD_STAT_DD)) != 0
    refused = dd & ((status & np.uint8(TXD_STAT_REFUSED)) != 0)
    sent = dd & ~refused
    if not (bool(refused.any()) and bool(sent.any())):
        return None
    eop = (ring["cmd"][window] & np.uint8(TXD_CMD_EOP)) != 0
    pkt = np.cumsum(eop) - eop
    npkt = int(pkt[-1]) + 1
    both = (np.bincount(pkt, weights=refused, minlength=npkt) > 0) & (
        np.bincount(pkt, weights=sent, minlength=npkt) > 0
    )
    if not bool(both.any()):
        return None
    p = int(np.argmax(both))
    members = window[pkt == p]
    return int(members[0]), int(members[-1])


def rx_buffer_bytes(rctl: int) -> int:
    """The receive buffer size an RCTL value programs (RCTL.BSIZE with BSEX, 8254x table 13-66)."""
    code = (rctl & regs.RCTL_BSIZE_MASK) >> regs.RCTL_BSIZE_SHIFT
    return regs.RCTL_BSIZE_BYTES.get((code, bool(rctl & regs.RCTL_BSEX)), max(regs.RCTL_BSIZE_BYTES.values()))
