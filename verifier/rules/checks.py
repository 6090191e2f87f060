"""The descriptor checks, vectorised over a whole doorbell batch (invariants 4 and 8).

Every function here takes numpy arrays and returns one verdict per
descriptor, computed with array operations only: a batch of 256
descriptors costs a few dozen numpy calls, not 256 Python iterations.
The common case (every descriptor a whole, valid, one-page packet) takes a
short fast path; any failure falls through to the full classification that
finds, for each rejected descriptor, its reason and its first offending byte.

Whole range, right access: a buffer passes only if every byte of
``[addr, addr + len)`` lies inside physical memory, without 64-bit wrap, in
frames that the queue's owner pinned with the access the device needs
(read for TX, write for RX).  RX is checked over the full receive buffer
size, since the device writes up to that many bytes whatever the
descriptor's length field says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC
from ring.memory import OWNER_FREE, PAGE_SHIFT, PAGE_SIZE
from verifier.pins import Access, PinTable
from verifier.rules import reasons as R
from verifier.rules.policy import Policy

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

_SHIFT = np.uint64(PAGE_SHIFT)
_ONE16 = np.uint16(1)
_READ = Access.READ

#: ``Verdicts.owner`` for a frame that belongs to the queue's owner but is not pinned.
OWNER_SELF_UNPINNED = -3
NO_OWNER = -4  # the verdict has no offending frame


@dataclass
class Verdicts:
    """One verdict per descriptor of a batch."""

    reason: U8  # reasons.OK or a rejection code
    bad_byte: I64  # first offending byte address, -1 when not an address problem
    owner: npt.NDArray[np.int32]  # ground-truth owner of the offending frame (or OWNER_SELF_UNPINNED / NO_OWNER)
    held: npt.NDArray[np.bool_]  # TX: part of a packet still open at the tail, not judged yet

    @property
    def accepted(self) -> npt.NDArray[np.bool_]:
        return (self.reason == R.OK) & ~self.held

    @property
    def rejected(self) -> npt.NDArray[np.bool_]:
        return self.reason != R.OK

    @classmethod
    def empty(cls, n: int) -> Verdicts:
        return cls(
            np.zeros(n, dtype=np.uint8),
            np.full(n, -1, dtype=np.int64),
            np.full(n, NO_OWNER, dtype=np.int32),
            np.zeros(n, dtype=bool),
        )


def frame_span(first_byte: U64, last_byte: U64) -> tuple[U64, U64]:
    """First and last frame of ranges ``[first_byte, last_byte]``: the pin rule needs both and every frame between.

    The one step where the range rule turns bytes into frames (VFIO and
    ibv_reg_mr pin whole pages): a buffer that starts in a pinned frame and
    runs into the next one is judged on both.
    """
    return first_byte >> _SHIFT, last_byte >> _SHIFT


def check_ranges(
    addr: U64, length: I64, pins: PinTable, owners: npt.NDArray[np.int32], memory_size: int, need: Access
) -> Verdicts | None:
    """Address and access rules for ranges ``[addr, addr + length)``; length 0 passes here.

    Returns None when every range passes (the fast path allocates no verdict arrays).
    """
    n = addr.size
    if n == 0:
        return None
    addr = addr.astype(np.uint64, copy=False)
    span = (length - 1).astype(np.uint64)
    if bool(((span < np.uint64(PAGE_SIZE)) & pinned_mask(addr, span, pins, need)).all()):
        return None
    v = Verdicts.empty(n)
    end = addr + length.astype(np.uint64)
    wrap = end < addr
    beyond = ~wrap & (end > np.uint64(memory_size))
    v.reason[wrap] = R.ADDR_WRAP
    v.reason[beyond] = R.ADDR_BEYOND_MEMORY
    v.bad_byte[beyond] = np.maximum(addr[beyond], np.uint64(memory_size)).astype(np.int64)
    inside = ~wrap & ~beyond & (length > 0)
    first_i = np.zeros(n, dtype=np.int64)
    last_i = np.zeros(n, dtype=np.int64)
    first_frame, last_frame = frame_span(addr[inside], end[inside] - np.uint64(1))
    first_i[inside] = first_frame.astype(np.int64)
    last_i[inside] = last_frame.astype(np.int64)
    ok = ~inside | pins.covers(first_i, last_i, need)
    bad = np.flatnonzero(~ok)
    if bad.size:
        _classify(v, bad, addr, first_i, last_i, pins, owners, need)
    return v


def pinned_mask(
    addr: U64, span: npt.NDArray[np.unsignedinteger] | np.unsignedinteger, pins: PinTable, need: Access
) -> npt.NDArray[np.bool_]:
    """Fast path of the range rule for ranges ``[addr, addr + span]`` with span < PAGE_SIZE.

    A range of at most one page touches at most two frames, its first and
    its last, so two table lookups decide it.  Frame numbers beyond memory
    are clipped onto the table's final False entry.  A wrapped end can land
    on a small, pinned frame, but only a start beyond memory can wrap, and
    that start's first frame is already the False sentinel.  True means
    accepted; False means "look closer", not "rejected".
    """
    ok_frame = pins.frame_ok[int(need)]
    top = pins.sentinel
    first_frame, last_frame = frame_span(addr, addr + span)
    first = np.minimum(first_frame, top).view(np.int64)
    last = np.minimum(last_frame, top).view(np.int64)
    ok = ok_frame[first]
    ok &= ok_frame[last]
    return ok


def _classify(
    v: Verdicts, bad: I64, addr: U64, first: I64, last: I64, pins: PinTable, owners: npt.NDArray[np.int32], need: Access
) -> None:
    """For each uncovered range find its first uncovered frame and say why it is uncovered."""
    span = int((last[bad] - first[bad]).max()) + 1
    frames = first[bad][:, None] + np.arange(span)[None, :]
    in_range = frames <= last[bad][:, None]
    frames = np.where(in_range, frames, first[bad][:, None])
    good = ((pins.access[frames] & need) != 0) | ~in_range
    frame = frames[np.arange(bad.size), np.argmin(good, axis=1)]
    pinned_other_access = pins.access[frame] != 0
    owner = owners[frame]
    mine = owner == pins.tenant
    released = pins.released[frame] & mine
    reason = np.where(
        pinned_other_access,
        R.ACCESS_NO_READ if need is Access.READ else R.ACCESS_NO_WRITE,
        np.where(released, R.PIN_RELEASED, R.ADDR_NOT_PINNED),
    )
    v.reason[bad] = reason
    v.bad_byte[bad] = np.maximum(addr[bad].astype(np.int64), frame << PAGE_SHIFT)
    v.owner[bad] = np.where(mine & ~pinned_other_access & ~released, OWNER_SELF_UNPINNED, owner)


def check_tx(descs: npt.NDArray[np.void], pins: PinTable, owners: npt.NDArray[np.int32], memory_size: int,
             policy: Policy) -> Verdicts | None:  # fmt: skip
    """All TX rules for a batch of legacy TX descriptors, in ring order; None when all pass.

    The batch may start with the held fragments of a packet left open by an
    earlier doorbell; a packet still open at the end is marked ``held``
    unless it already breaks a rule.  A packet with any bad fragment is
    rejected whole: its other fragments get PKT_BAD_FRAGMENT.
    """
    n = descs.size
    if n == 0:
        return None
    cmd = descs["cmd"]
    # Fast path: every descriptor a whole packet, no offload, no unknown bit, 1..max bytes, pinned.
    raw_length = descs["length"]
    fast = policy.tx_fast_path
    if fast is not None:
        mask, expected, limit = fast
        ok = (cmd & mask) == expected
        span = raw_length - _ONE16  # a zero length wraps to 65535 and fails the next test
        ok &= span < limit
        ok &= pinned_mask(descs["addr"], span, pins, _READ)
        if bool(ok.all()):
            return None
    length = raw_length.astype(np.int64)
    ranges = check_ranges(descs["addr"], length, pins, owners, memory_size, Access.READ)
    v = ranges if ranges is not None else Verdicts.empty(n)
    own = v.reason
    # descriptor-level rules, in priority order (the first rule broken is the reason)
    unsupported = (cmd & np.uint8(~policy.tx_cmd_allowed & 0xFF)) != 0
    too_long = length > policy.max_buffer
    zero = length == 0
    desc_level = unsupported | too_long | zero
    if bool(desc_level.any()):
        own[:] = np.where(
            unsupported, R.CMD_UNSUPPORTED, np.where(zero, R.LEN_ZERO, np.where(too_long, R.LEN_TOO_LONG, own))
        )
        v.bad_byte[desc_level] = -1
        v.owner[desc_level] = NO_OWNER
    eop = (cmd & TXD_CMD_EOP) != 0
    pkt = np.cumsum(eop) - eop
    complete = int(np.count_nonzero(eop))
    npkt = complete + 1
    pkt_len = np.bincount(pkt, weights=length, minlength=npkt).astype(np.int64)
    frags = np.bincount(pkt, minlength=npkt)
    pkt_reason = np.zeros(npkt, dtype=np.uint8)
    pkt_reason[pkt_len > policy.max_frame] = R.PKT_TOO_LONG
    pkt_reason[frags > policy.max_fragments] = R.PKT_TOO_MANY_FRAGS
    first_desc = np.minimum(np.searchsorted(pkt, np.arange(npkt)), n - 1)
    wants_ic = (cmd[first_desc] & TXD_CMD_IC) != 0
    cso = descs["cso"][first_desc].astype(np.int64)
    css = descs["css"][first_desc].astype(np.int64)
    bad_csum = wants_ic & ((cso + 2 > pkt_len) | (css >= pkt_len)) & (np.arange(npkt) < complete)
    csum_first = first_desc[bad_csum]  # checksum offsets are the first descriptor's own fault
    own[csum_first] = np.where(own[csum_first] == R.OK, R.CSUM_OFFSET, own[csum_first])
    has_bad = np.bincount(pkt, weights=own != R.OK, minlength=npkt) > 0
    collateral = np.where(pkt_reason[pkt] != R.OK, pkt_reason[pkt], R.PKT_BAD_FRAGMENT)
    doomed = (has_bad | (pkt_reason != R.OK))[pkt]
    own[:] = np.where((own == R.OK) & doomed, collateral, own)
    # the packet still open at the tail waits for its EOP, unless it is already doomed
    v.held = (pkt == complete) & ~doomed
    return v


def check_rx(
    addr: U64, pins: PinTable, owners: npt.NDArray[np.int32], memory_size: int, policy: Policy
) -> Verdicts | None:
    """RX rule: the whole receive buffer (RCTL.BSIZE bytes) writable and pinned by the owner."""
    if policy.rx_buffer_size <= PAGE_SIZE and bool(
        pinned_mask(addr, np.uint64(policy.rx_buffer_size - 1), pins, Access.WRITE).all()
    ):
        return None
    length = np.full(addr.size, policy.rx_buffer_size, dtype=np.int64)
    return check_ranges(addr, length, pins, owners, memory_size, Access.WRITE)


def owner_label(owner: int, tenant: int) -> str:
    """The audit log's name for whose frame it was."""
    if owner == OWNER_SELF_UNPINNED:
        return "own-unpinned"
    if owner == NO_OWNER:
        return "none"
    if owner == OWNER_FREE:
        return "free"
    if owner == tenant:
        return "own"
    return "kernel" if owner < 0 else f"tenant{owner}"
