"""Which reason a refusal names when two rules are broken at once (docs/verifier.md, "Priority").

The fuzzer's arena (64 MiB, the default Policy) cannot reach this one: a TX buffer is at most 4096 bytes, so
a range that wraps 2**64 ends below 4096, never past the end of a memory of at least two frames.  Under a
jumbo policy (the 8254x takes buffers up to 16288 bytes) on a small machine it can: the rule is still that
ADDR_WRAP outranks ADDR_BEYOND_MEMORY.
"""

from __future__ import annotations

import numpy as np

from ring.descriptors import TX_DESC
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SIZE
from verifier.pins import PinTable
from verifier.rules import reasons as R
from verifier.rules.checks import check_tx
from verifier.rules.policy import Policy

JUMBO = Policy(max_buffer=16288, max_frame=16288)


def test_a_wrapping_buffer_is_addr_wrap_even_when_its_wrapped_end_lies_past_memory() -> None:
    frames = 2  # an 8 KiB machine: one kernel frame, one free
    owners = np.array([OWNER_KERNEL, OWNER_FREE], dtype=np.int32)
    descs = np.zeros(2, dtype=TX_DESC)
    descs["cmd"] = 0x0B  # EOP | IFCS | RS
    descs["addr"] = [2**64 - 16, 2**64 - 16]
    descs["length"] = [16000, 1000]  # wraps to an end of 15984 (past 8192), and of 984 (inside)
    v = check_tx(descs, PinTable(1, frames), owners, frames * PAGE_SIZE, JUMBO)
    assert v is not None
    assert [R.name(int(code)) for code in v.reason] == ["ADDR_WRAP", "ADDR_WRAP"]
