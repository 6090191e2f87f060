"""What the kernel knows about one tenant queue: ring positions and which slots are done.

The tenant's ring is split in three by two indices the kernel keeps:
``done`` (the oldest slot not yet completed back to the tenant) and
``tail`` (the next slot the kernel will read).  Slots ``[done, tail)`` are
the kernel's and the device's; the tenant may only fill ``[tail, done - 1)``.
A doorbell names a new tail; the rules below reject indices that would
make the kernel read slots the tenant does not own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ring import indices
from ring.descriptors import RX_DESC, TX_DESC
from ring.syscalls import DmaRegion, RegisterBus
from verifier.audit.read import RANGES
from verifier.audit.rejections import AuditSink, Origin, record_event
from verifier.pins import PinTable
from verifier.rules import reasons as R
from verifier.rules.policy import Policy

#: Called with the queue after the kernel has checked a batch and before the device may see it:
#: the race injection point of the fuzzer (a deterministic "attacker writes here" interleaving).
AfterCheckHook = Callable[["QueueState"], None]
#: Called with the queue after a doorbell's tail was judged and just before the kernel copies the new user
#: descriptors ``[tail, new_tail)`` (every copy path -- ``take_new``, the shadow ring's Python snapshot and
#: its compiled snapshot -- goes through ``judge_new`` first): the fuzzer's "attacker writes before the
#: read" injection point.  A write here must be judged like any other descriptor.
BeforeReadHook = Callable[["QueueState"], None]


def judge_tail(new_tail: int, tail: int, done: int, size: int) -> int:
    """Reason code for a doorbell's new tail (``reasons.OK`` if it may be taken).

    An index cannot say whether the tenant moved back or wrapped forward too
    far; the kernel assumes the shorter move: a tail a few slots behind is
    RING_TAIL_BACKWARDS, one that claims more new slots than are free is RING_OVERRUN.
    """
    if not 0 <= new_tail < size:
        return R.RING_TAIL_BEYOND
    forward = (new_tail - tail) % size
    free = indices.free(done, tail, size)
    if forward <= free:
        return R.OK
    return R.RING_TAIL_BACKWARDS if size - forward < forward else R.RING_OVERRUN


@dataclass
class QueueState:
    """Kernel bookkeeping of one queue of one tenant."""

    origin: Origin
    user: DmaRegion  # the tenant's ring (kernel reads it by physical address)
    user_phys: int
    size: int
    bus: RegisterBus
    tail_reg: int  # the device's TDT/RDT
    head_reg: int  # the device's TDH/RDH
    pins: PinTable
    owners: npt.NDArray[np.int32]
    memory_size: int
    policy: Policy
    audit: AuditSink
    accelerators: bool = True  # False: the compiled fast path is not used for this queue (Kernel.accelerators)
    tail: int = 0
    done: int = 0
    user_reads: int = 0  # descriptors the kernel has read from the user ring (invariant 3)
    flagged: bool = False  # some slot completed out of order waits in done_flag
    after_check: list[AfterCheckHook] = field(default_factory=list)
    before_read: list[BeforeReadHook] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    done_flag: npt.NDArray[np.bool_] = field(init=False)
    ring: npt.NDArray[np.void] = field(init=False)

    def __post_init__(self) -> None:
        self.done_flag = np.zeros(self.size, dtype=bool)
        #: the tenant's ring as descriptors (the kernel's mapping of it, made once)
        self.ring = self.user.view.view(TX_DESC if self.origin.kind == "tx" else RX_DESC)

    def mark_done(self, slots: npt.NDArray[np.int64]) -> None:
        """Slots completed back to the tenant; ``done`` advances over the leading run."""
        n = slots.size
        if n and not self.flagged and int(slots[0]) == self.done and int(slots[-1]) == (self.done + n - 1) % self.size:
            # the common case: exactly the next slots, in order, nothing completed out of order before
            self.done = indices.advance(self.done, n, self.size)
            return
        self.flagged = True
        self.done_flag[slots] = True
        pending = indices.used(self.done, self.tail, self.size)
        if pending == 0:
            return
        window = indices.read_window(self.done_flag, self.done, pending)
        k = pending if bool(window.all()) else int(np.argmin(window))
        if k:
            indices.write_window(self.done_flag, self.done, np.zeros(k, dtype=bool))
            self.done = indices.advance(self.done, k, self.size)
        self.flagged = bool(self.done_flag.any())

    def judge_new(self, new_tail: int) -> int | None:
        """How many new descriptors a doorbell's tail brings, or None (none, or a refused tail: audited)."""
        reason = judge_tail(new_tail, self.tail, self.done, self.size)
        if reason != R.OK:
            detail = {"new_tail": new_tail, "tail": self.tail, "done": self.done, "size": self.size}
            # the record names the tail as written; one no 32-bit register holds (the window passes a store on as
            # given: -1, 2**32) is outside the record's ring_index field, so only the detail names it
            low, high = RANGES["ring_index"]
            index = new_tail if low <= new_tail <= high else None
            record_event(self.audit, self.origin, self.origin.kind, reason, detail, ring_index=index)
            self.audit.commit()
            return None
        k = indices.used(self.tail, new_tail, self.size)
        if k and self.before_read:
            self.run_before_read()  # the last moment before every caller reads the k new user descriptors
        return k or None

    def take_new(self, new_tail: int) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int64]] | None:
        """Judge a doorbell's tail, then read the new user descriptors ``[tail, new_tail)`` once."""
        k = self.judge_new(new_tail)
        if k is None:
            return None
        copy = indices.read_window(self.ring, self.tail, k)  # the one read of these user descriptors
        self.user_reads += k
        return copy, indices.slots(self.tail, k, self.size)

    def done_run(self, first_user: int, last_user: int, n: int) -> bool:
        """Fast form of ``mark_done`` for ``n`` completions in order; False if the general form is needed."""
        if self.flagged or first_user != self.done or last_user != (self.done + n - 1) % self.size:
            return False
        self.done = indices.advance(self.done, n, self.size)
        return True

    def run_before_read(self) -> None:
        for hook in list(self.before_read):
            hook(self)

    def run_after_check(self) -> None:
        for hook in list(self.after_check):
            hook(self)
