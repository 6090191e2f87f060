"""Protection mode ``verifier``: snapshot, check, post to a kernel shadow ring, write back completions.

Invariant 3, snapshot before check: the device reads descriptors only from
a ring in kernel memory.  At each doorbell the kernel copies the new user
descriptors ``[tail, new_tail)`` out of the user ring exactly once, checks
that copy as one numpy batch, and writes only accepted descriptors into the
shadow ring before it rings the device.  Whatever the tenant writes into its
ring afterwards, the device never sees it (the TOCTOU race of
``unsafe-inplace`` has nothing to race against).  Rejected descriptors are
completed back at once with an error status and audited, one record each.

When the device finishes shadow descriptors (its head moves; the interrupt
tells the kernel), the kernel writes DD (TX) or the
received length and status (RX) into the matching user slots and drops the
in-flight pin references, which may finish a deferred unpin.

TX and RX run one doorbell and one reap (``ShadowQueue``); a direction
supplies only what differs: its compiled fast path, how it judges a
snapshot, how a refusal is marked in the user ring, and how a completion is
written back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ring import indices
from ring.descriptors import (
    DESC_SIZE,
    RX_DESC,
    RXD_ERR_REFUSED,
    RXD_STAT_DD,
    TX_DESC,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from ring.memory import OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from verifier.audit.rejections import record_descriptors
from verifier.modes.base import QueueHandler, QueueRequest
from verifier.modes.protection import Protection
from verifier.modes.trapping import TrappingMode
from verifier.nic_control import program_ring
from verifier.pins import Access
from verifier.queue_state import QueueState
from verifier.rules import fastpath
from verifier.rules import reasons as R
from verifier.rules.checks import Verdicts, check_rx, check_tx
from verifier.rules.classify import Classifier
from verifier.rules.fastpath import FP_REFUSE

I64 = npt.NDArray[np.int64]


def frame_runs(addr: npt.NDArray[np.uint64], length: I64) -> tuple[I64, I64]:
    """First frame and frame count of each (non-empty, in-memory) buffer."""
    first = (addr >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    last = ((addr + (length - 1).astype(np.uint64)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    return first, last - first + 1


@dataclass
class ShadowQueue:
    """The kernel-owned copy of one queue's ring, and the map back to user slots."""

    desc: ClassVar[np.dtype[np.void]]  # the direction's descriptor format
    #: Arrays a machine reset (world/reset.py) leaves as they are and does not compare: ``quick_rings`` holds only
    #: the addresses of this queue's own arrays, written once when the queue opens.  A reset restores those arrays
    #: in place, so the addresses stay right; two machines built alike differ there as their addresses do, like
    #: the cffi pointers the queue holds.
    RESET_SCRATCH: ClassVar[tuple[str, ...]] = ("quick_rings",)

    state: QueueState
    shadow: npt.NDArray[np.void]  # view of kernel memory the device reads
    buffer_len: int = 0  # RX: every buffer is this long; TX: 0, lengths come from the descriptors
    tail: int = 0
    head: int = 0
    to_user: I64 = field(init=False)
    #: TX: fragments of a packet still open at the last doorbell, a copy (RX never holds one: always empty)
    held: npt.NDArray[np.void] = field(init=False)
    #: the compiled doorbell's and reap's view of this queue, a ``struct fp_queue`` (None: not compiled)
    quick: Any = field(init=False, default=None)
    #: the compiled classification of refused batches (None: not compiled; checks.py judges them)
    classifier: Classifier | None = field(init=False, default=None)
    #: the compiled reap that reads the device's head word itself (``_quick_queue``; None: the head is read through
    #: the bus), and that word
    c_reap_mapped: Callable[..., int] | None = field(init=False, default=None)
    head_word: npt.NDArray[np.uint32] | None = field(init=False, default=None)

    #: The trapped event's two entry points, one copy of each per direction (``__init_subclass__``).
    HOT_PATHS: ClassVar[tuple[str, ...]] = ("doorbell", "reap")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each direction its own copy of the doorbell's and the reap's code (the same bytecode).

        CPython 3.11's specialising interpreter (PEP 659) keeps, in each code object, inline caches that
        specialise an attribute load or store for one type (its version tag).  TX and RX queues run the same
        two functions alternately, a batch at a time, so every load on ``self`` missed its cache for one of
        the two classes and took the generic lookup (``_PyType_Lookup`` and a dict probe: about 0.8 us a
        batch of 256 under ``perf``).  ``code.replace()`` makes a code object with caches of its own.
        """
        super().__init_subclass__(**kwargs)
        for name in ShadowQueue.HOT_PATHS:
            if name in cls.__dict__:
                continue  # a direction that defines its own needs no copy
            shared = getattr(ShadowQueue, name)
            own = FunctionType(shared.__code__.replace(), shared.__globals__, name, shared.__defaults__,
                               shared.__closure__)  # fmt: skip
            own.__qualname__, own.__doc__, own.__module__ = shared.__qualname__, shared.__doc__, shared.__module__
            setattr(cls, name, own)

    def __post_init__(self) -> None:
        st = self.state
        self.to_user = np.full(st.size, -1, dtype=np.int64)
        self.held = np.zeros(0, dtype=self.desc)
        # The numpy path moves descriptors as rows of two 64-bit words (one slice copy per snapshot, post or
        # write-back: a descriptor is 16 plain bytes, and numpy copies structured records field by field).
        self.user_words = st.user.view.view(np.uint64).reshape(st.size, 2)
        self.shadow_words = self.shadow.view(np.uint64).reshape(st.size, 2)
        self.user_status = st.ring["status"]
        #: every slot number, in order: a doorbell's user slots are a slice of it when they do not wrap
        self.all_slots = np.arange(st.size, dtype=np.int64)
        st.pins.sources.append(self.in_flight)
        self.fast = fastpath.enabled() if st.accelerators else None
        self.snap = np.zeros(st.size * DESC_SIZE, dtype=np.uint8)  # where the compiled path takes its snapshot
        #: the direction's compiled doorbell and reap (fastpath.h), set with ``quick``
        self.c_doorbell: Callable[..., int]
        self.c_reap: Callable[..., int]
        if self.fast is not None:  # pointers into arrays that live as long as the queue
            need = Access.READ if st.origin.kind == "tx" else Access.WRITE
            self.c_user = self.fast.ptr(st.user.view)
            self.c_shadow = self.fast.ptr(self.shadow)
            self.c_snap = self.fast.ptr(self.snap)
            self.c_to_user = self.fast.i64(self.to_user)
            self.c_frame_ok = self.fast.ptr(st.pins.frame_ok[int(need)])
            self.quick = self._quick_queue()
            #: the compiled classification of a refused batch (verifier/rules/classify.py)
            self.classifier = Classifier(self.fast, st.pins, st.owners, st.memory_size)

    @property
    def fast(self) -> fastpath.FastPath | None:
        """The compiled accelerator this queue uses (None: the numpy path alone)."""
        return self._fast

    @fast.setter
    def fast(self, fast: fastpath.FastPath | None) -> None:
        # ``quick`` was made for the accelerator the queue opened with: another one (or None) is used through the
        # step-by-step doorbell and its own entry points (``_compiled``, ``_write_back``), never a stale struct.
        self._fast = fast
        self.quick = None

    def _quick_queue(self) -> Any:
        """The ``struct fp_queue`` of the compiled doorbell and reap, or None when this queue's policy needs numpy."""
        assert self.fast is not None
        st = self.state
        ffi = self.fast.ffi
        # numbers only, in an array the queue owns (a machine reset compares and restores it like any state)
        self.quick_bytes = np.zeros(ffi.sizeof("struct fp_queue"), dtype=np.uint8)
        q = ffi.cast("struct fp_queue *", self.quick_bytes.ctypes.data)
        q.nframes, q.size = st.pins.frames, st.size
        #: the rings as the compiled doorbell takes them: user, shadow, snapshot, shadow-to-user map, pin row
        self.c_rings = (self.c_user, self.c_shadow, self.c_snap, self.c_to_user, self.c_frame_ok)
        # ... and the same pointers with the struct in one ``struct fp_rings`` (fastpath.h), so that a trapped
        # doorbell or an interrupt passes one pointer and the positions (``RESET_SCRATCH`` says why it is no state)
        self.quick_rings = np.zeros(ffi.sizeof("struct fp_rings"), dtype=np.uint8)
        self.c_queue = ffi.cast("struct fp_rings *", self.quick_rings.ctypes.data)
        self.c_queue.q = q
        self.c_queue.user, self.c_queue.shadow, self.c_queue.snap, self.c_queue.to_user, self.c_queue.frame_ok = (
            self.c_rings
        )
        if not self._quick_policy(q):
            return None
        # The interrupt's head read: where the bus maps the head register word (an emulated e1000's
        # ``mapped_word``; a bus without one, e.g. QEMU's, is read through ``read32``), the compiled reap reads it
        # itself, so an interrupt is one call with no register access from Python.  The view is the bus's own
        # register file, written in place for the device's life, so the pointer stays right (a machine reset too).
        mapped = getattr(st.bus, "mapped_word", None)
        self.head_word = None if mapped is None else mapped(st.head_reg)
        if self.head_word is not None:
            self.c_queue.head_reg = ffi.cast("uint32_t *", self.head_word.ctypes.data)
            kind = st.origin.kind
            self.c_reap_mapped = self.fast.lib.tx_reap_mapped if kind == "tx" else self.fast.lib.rx_reap_mapped
        return q

    def _quick_policy(self, q: Any) -> bool:
        """Put the direction's limits and compiled calls in place; False when the compiled check cannot judge
        this policy (the step-by-step doorbell then runs)."""
        return False

    def completed(self, first: int, n: int) -> None:
        """Hand ``n`` finished shadow slots from ``first`` back to the tenant's ring bookkeeping."""
        st = self.state
        size = st.size
        if not st.done_run(int(self.to_user[first]), int(self.to_user[(first + n - 1) % size]), n):
            st.mark_done(indices.read_window(self.to_user, first, n))
        st.pins.settle()

    def post(self, words: npt.NDArray[np.uint64], user_slots: I64) -> None:
        """Append accepted descriptors (rows of two 64-bit words) to the shadow ring; in flight until the device
        is done."""
        start, n, size = self.tail, words.shape[0], self.state.size
        if start + n <= size:  # no wrap: one row copy of the words, one of the map
            self.shadow_words[start : start + n] = words
            self.to_user[start : start + n] = user_slots
        else:
            indices.write_window(self.shadow_words, start, words)
            indices.write_window(self.to_user, start, user_slots)
        self.tail = indices.advance(start, n, size)

    def snapshot(self, k: int) -> npt.NDArray[np.uint64]:
        """Copy the ``k`` user descriptors from the kernel's ``tail`` once (one slice, two when the ring wraps), as
        rows of two 64-bit words (``descriptors`` views them as the direction's format)."""
        st = self.state
        start, end = st.tail, st.tail + k
        words = self.user_words
        return words[start:end].copy() if end <= st.size else np.concatenate((words[start:], words[: end - st.size]))

    def descriptors(self, words: npt.NDArray[np.uint64]) -> npt.NDArray[np.void]:
        """Rows of two 64-bit words as descriptors of this direction (a view)."""
        if words.flags.c_contiguous:  # the buffer protocol: no structured view's safety walk (numpy's Python)
            return np.ndarray((words.shape[0],), self.desc, buffer=words)
        return words.view(self.desc).reshape(words.shape[0])

    def slots(self, k: int) -> I64:
        """The user slots of the ``k`` descriptors from the kernel's ``tail`` (a view of ``all_slots`` when they do
        not wrap: nobody writes into it)."""
        st = self.state
        start = st.tail
        return self.all_slots[start : start + k] if start + k <= st.size else indices.slots(start, k, st.size)

    def users(self, first: int, n: int) -> I64:
        """The user slots of the ``n`` shadow slots from ``first`` (a view when they do not wrap)."""
        end = first + n
        return self.to_user[first:end] if end <= self.state.size else indices.read_window(self.to_user, first, n)

    def user_run(self, first: int, n: int) -> slice | I64:
        """``users(first, n)`` as a slice when they are ``n`` consecutive slots (the common completion), else the
        slots.  Shadow slots are posted in the user ring's order, so first and last ``n - 1`` apart is a run
        (``QueueState.done_run`` relies on the same)."""
        users = self.users(first, n)
        start = int(users[0])
        return slice(start, start + n) if start >= 0 and int(users[-1]) - start == n - 1 else users

    def finished(self) -> tuple[int, int]:
        """Shadow slots the device completed since the last call (its head moved): (first, count)."""
        state = self.state
        return self._finished_at(state.bus.read32(state.head_reg))

    def _finished_at(self, device_head: int) -> tuple[int, int]:
        """``finished`` with the device's head already read."""
        first = self.head
        n = indices.used(first, device_head, self.state.size)
        self.head = device_head
        return first, n

    def in_flight(self) -> tuple[I64, I64]:
        """Frame runs of every descriptor the device has not finished (a pin source; asked rarely)."""
        busy = indices.read_window(self.shadow, self.head, indices.used(self.head, self.tail, self.state.size))
        length = busy["length"].astype(np.int64) if self.buffer_len == 0 else np.full(busy.size, self.buffer_len)
        keep = length > 0
        return frame_runs(busy["addr"][keep], length[keep])

    # -- the doorbell: judge the tail, snapshot once, check, refuse, post, ring ------------------
    def doorbell(self, new_tail: int) -> None:
        st = self.state
        # acquire/release, not ``with``: the trap takes this lock twice a batch and the interrupt twice more, and a
        # ``with`` costs about twice the two calls here (CPython 3.11 looks up ``__enter__``/``__exit__`` each time)
        lock = st.lock
        lock.acquire()
        try:
            quick = self.quick
            if quick is not None and 0 <= new_tail < st.size and not st.before_read and not self.held.size:
                # One compiled call judges the tail, snapshots, checks and posts a clean batch (DPDK and ixy
                # write one tail per batch: the fixed cost of a doorbell is what a small batch pays).
                # loaded, then called: a call of a callable an instance attribute holds (``self.c_doorbell(...)``)
                # is never specialised on CPython 3.11 and takes the generic method lookup each time
                c_doorbell, tail = self.c_doorbell, self.tail
                posted = c_doorbell(self.c_queue, new_tail, st.tail, st.done, tail)
                if posted > 0:
                    st.user_reads += posted
                    st.tail = new_tail
                    self.tail = tail = (tail + posted) % st.size
                    if st.after_check:
                        st.run_after_check()
                    st.bus.write32(st.tail_reg, tail)  # completions come back through the interrupt
                    st.audit.commit()
                    return
                if posted == 0:
                    return
                self._doorbell_slow(new_tail, posted == FP_REFUSE)
            else:
                self._doorbell_slow(new_tail, False)
        finally:
            lock.release()

    def _doorbell_slow(self, new_tail: int, taken: bool) -> None:
        """The step-by-step doorbell (the compiled call declined, found something to refuse, or is off), under the
        queue's lock; ``taken``: the compiled call took the snapshot already (into ``snap``)."""
        st = self.state
        # No reap here: completions reach the user ring only through ``reap`` (the interrupt),
        # so the tenant cannot have reused a slot that ``st.done`` does not yet count as free.
        k = st.judge_new(new_tail)
        if k is None:
            return
        st.user_reads += k  # the one read of these user descriptors, by either path
        compiled = False if taken else self._compiled(k)
        if compiled:
            self._hand_over(new_tail, k)
            return
        # compiled False: the compiled path found something to refuse, so judge the copy it took, once
        snapshot = (
            self.snapshot(k) if compiled is None else self.snap[: k * DESC_SIZE].view(np.uint64).reshape(k, 2).copy()
        )
        slots = self.slots(k)
        st.tail = new_tail
        good, good_slots = self._judge(snapshot, slots)
        if good.size:
            self.post(good, good_slots)
        if st.after_check:
            st.run_after_check()
        if good.size:
            self.ring_device()  # completions come back through the interrupt
        st.audit.commit()

    def _compiled(self, k: int) -> bool | None:
        """The compiled snapshot-check-post of ``k`` descriptors: True posted all, False refused some, None not run."""
        return None

    def _judge(self, snapshot: npt.NDArray[np.uint64], slots: I64) -> tuple[npt.NDArray[np.uint64], I64]:
        """Check a doorbell's snapshot (rows of two 64-bit words), refuse what fails; the descriptors to post (as
        words) and their user slots."""
        raise NotImplementedError

    def _refuse(self, batch: npt.NDArray[np.void], slots: I64, verdicts: Verdicts) -> None:
        """Complete the rejected descriptors back to the tenant at once, marked refused, one record each."""
        st = self.state
        rejected = verdicts.rejected
        if not bool(rejected.any()):
            return
        bad = slots[rejected]
        self._mark_refused(st.ring, bad)
        record_descriptors(st.audit, st.origin, slots, batch, verdicts, rejected, self._audit_extra())
        st.mark_done(bad)

    def _mark_refused(self, ring: npt.NDArray[np.void], slots: I64) -> None:
        """Write the refusal mark into the user slots (DD last: it hands a slot back)."""
        raise NotImplementedError

    def _audit_extra(self) -> dict[str, int] | None:
        """Detail every refusal record of this queue carries."""
        return None

    def _hand_over(self, new_tail: int, k: int) -> None:
        """The compiled path posted ``k`` descriptors: move the tails, let the race hooks run, ring the device."""
        st = self.state
        st.tail = new_tail
        self.tail = indices.advance(self.tail, k, st.size)
        st.run_after_check()
        self.ring_device()
        st.audit.commit()

    def ring_device(self) -> None:
        self.state.bus.write32(self.state.tail_reg, self.tail)

    # -- the interrupt: write finished descriptors back -----------------------------------------
    def reap(self) -> None:
        st = self.state
        lock = st.lock
        lock.acquire()  # not ``with``: see ``doorbell``
        try:
            if self.quick is not None and not st.flagged:
                # one compiled call writes back the finished slots when they are the next user slots in order
                reap_mapped = self.c_reap_mapped
                if reap_mapped is not None:  # ... and reads the device's head word itself
                    n = reap_mapped(self.c_queue, self.head, st.done)
                    device_head = (self.head + n) % st.size if n >= 0 else self.c_queue.seen_head
                else:
                    device_head = st.bus.read32(st.head_reg)
                    n = self.c_reap(self.c_queue, self.head, device_head, st.done)
                if n >= 0:
                    if n:
                        self.head = device_head
                        st.done = (st.done + n) % st.size
                        if st.pins.releasing:
                            st.pins.settle()
                    return
                first, n = self._finished_at(device_head)
            else:
                first, n = self.finished()
            if n == 0:
                return
            self._write_back(first, n)
            self.completed(first, n)
        finally:
            lock.release()

    def _write_back(self, first: int, n: int) -> None:
        """Show the tenant the ``n`` shadow slots from ``first`` the device finished."""
        raise NotImplementedError


class TxShadow(ShadowQueue):
    """TX in verifier mode: a packet still open at the end of a doorbell is held for the next one."""

    desc: ClassVar[np.dtype[np.void]] = TX_DESC
    held_slots: I64
    held_age: int = 0  # doorbells the open packet at the head of ``held`` has waited

    def __post_init__(self) -> None:
        super().__post_init__()
        self.held = np.zeros(0, dtype=TX_DESC)
        self.held_slots = np.zeros(0, dtype=np.int64)

    def _quick_policy(self, q: Any) -> bool:
        consts = self.state.policy.tx_fast_path
        if consts is None:
            return False
        q.cmd_mask, q.cmd_expect, q.max_len = (int(c) for c in consts)
        q.done_status = TXD_STAT_DD  # DD for every finished descriptor (as _write_back)
        assert self.fast is not None
        self.c_doorbell, self.c_reap = self.fast.lib.tx_doorbell_rings, self.fast.lib.tx_reap_rings
        return True

    def _compiled(self, k: int) -> bool | None:
        st = self.state
        consts = st.policy.tx_fast_path
        if self.fast is None or consts is None or self.held.size:
            return None
        mask, expect, limit = consts
        return bool(
            self.fast.lib.tx_snapshot_check_post(
                self.c_user, st.size, st.tail, k, self.c_snap, self.c_frame_ok, st.pins.frames,
                int(mask), int(expect), int(limit), self.c_shadow, self.tail, self.c_to_user,
            )
        )  # fmt: skip

    def _judge(self, snapshot: npt.NDArray[np.uint64], slots: I64) -> tuple[npt.NDArray[np.uint64], I64]:
        held = self.held.size
        batch = np.concatenate((self.held, self.descriptors(snapshot))) if held else self.descriptors(snapshot)
        slots = np.concatenate((self.held_slots, slots)) if held else slots
        verdicts = self._check(batch)
        if verdicts is None:
            if held:
                self.held, self.held_slots = batch[:0], slots[:0]
                return batch.view(np.uint64).reshape(-1, 2), slots
            return snapshot, slots
        self._expire_held(verdicts)
        accepted = verdicts.accepted
        self.held, self.held_slots = batch[verdicts.held], slots[verdicts.held]
        self._refuse(batch, slots, verdicts)
        # the status byte is the device's to write: whatever the tenant left there is moot
        return batch[accepted].view(np.uint64).reshape(-1, 2), slots[accepted]

    def _check(self, batch: npt.NDArray[np.void]) -> Verdicts | None:
        """``check_tx`` of the batch: compiled when this queue runs the compiled path and the C can judge it."""
        st = self.state
        c = self.classifier
        if c is not None and self._fast is not None and c.takes_tx(st.policy):
            return c.check_tx(batch, st.policy)
        return check_tx(batch, st.pins, st.owners, st.memory_size, st.policy)

    def _expire_held(self, verdicts: Verdicts) -> None:
        """Bound how long an open packet may wait for its EOP: ``policy.max_held_doorbells`` doorbells."""
        if not bool(verdicts.held.any()):
            self.held_age = 0
            return
        carried = self.held.size > 0 and bool(verdicts.held[0])  # the same open packet as before
        self.held_age = self.held_age + 1 if carried else 1
        if self.held_age > self.state.policy.max_held_doorbells:
            verdicts.reason[verdicts.held] = R.PKT_UNTERMINATED
            verdicts.held[:] = False
            self.held_age = 0

    def _mark_refused(self, ring: npt.NDArray[np.void], slots: I64) -> None:
        ring["status"][slots] = TXD_STAT_DD | TXD_STAT_REFUSED

    def _write_back(self, first: int, n: int) -> None:
        # DD for every finished descriptor: a tenant that did not ask (no RS) just does not look
        st = self.state
        if self.fast is not None:
            self.fast.lib.tx_complete(self.c_user, st.size, self.c_to_user, first, n, TXD_STAT_DD)
        else:
            self.user_status[self.user_run(first, n)] = TXD_STAT_DD


class RxShadow(ShadowQueue):
    """RX in verifier mode: buffers checked over the whole receive buffer size."""

    desc: ClassVar[np.dtype[np.void]] = RX_DESC

    def _quick_policy(self, q: Any) -> bool:
        if self.state.policy.rx_buffer_size > PAGE_SIZE:
            return False
        q.buffer_size = self.state.policy.rx_buffer_size
        assert self.fast is not None
        self.c_doorbell, self.c_reap = self.fast.lib.rx_doorbell_rings, self.fast.lib.rx_reap_rings
        return True

    def _compiled(self, k: int) -> bool | None:
        st = self.state
        if self.fast is None or st.policy.rx_buffer_size > PAGE_SIZE:
            return None
        return bool(
            self.fast.lib.rx_snapshot_check_post(
                self.c_user, st.size, st.tail, k, self.c_snap, self.c_frame_ok, st.pins.frames,
                st.policy.rx_buffer_size, self.c_shadow, self.tail, self.c_to_user,
            )
        )  # fmt: skip

    def _judge(self, words: npt.NDArray[np.uint64], slots: I64) -> tuple[npt.NDArray[np.uint64], I64]:
        snapshot = self.descriptors(words)
        verdicts = self._check(snapshot)
        if verdicts is None:
            good, good_slots = words, slots
        else:
            accepted = verdicts.accepted
            good, good_slots = words[accepted], slots[accepted]
            self._refuse(snapshot, slots, verdicts)
        if good.size:
            good[:, 1] = 0  # keep addr, clear length..special (the snapshot is the kernel's own copy)
        return good, good_slots

    def _check(self, snapshot: npt.NDArray[np.void]) -> Verdicts | None:
        """``check_rx`` of the snapshot: compiled when this queue runs the compiled path and the C can judge it."""
        st = self.state
        c = self.classifier
        if c is not None and self._fast is not None and c.takes_rx(st.policy):
            return c.check_rx(snapshot, st.policy)
        verdicts = check_rx(snapshot["addr"], st.pins, st.owners, st.memory_size, st.policy)
        return verdicts

    def _mark_refused(self, ring: npt.NDArray[np.void], slots: I64) -> None:
        ring["length"][slots] = 0
        ring["errors"][slots] = RXD_ERR_REFUSED
        ring["status"][slots] = RXD_STAT_DD  # last: DD hands the slot back

    def _audit_extra(self) -> dict[str, int] | None:
        return {"checked_bytes": self.state.policy.rx_buffer_size}

    def _write_back(self, first: int, n: int) -> None:
        # Copied as 64-bit words: length, checksum, status, errors and special share one word, so a
        # reader never sees DD without the length and errors that go with it.  (addr is the user's
        # own: it was copied from there.)
        st = self.state
        if self.fast is not None:
            self.fast.lib.rx_complete(self.c_user, st.size, self.c_shadow, self.c_to_user, first, n)
        else:
            end = first + n
            done = self.shadow_words[first:end] if end <= st.size else indices.read_window(self.shadow_words, first, n)
            self.user_words[self.user_run(first, n)] = done


class VerifierMode(TrappingMode):
    """Mode ``verifier``: each queue's device ring is a shadow in kernel memory, filled only with checked copies."""

    protection: ClassVar[Protection] = Protection.VERIFIER

    def open_queue(self, request: QueueRequest) -> QueueHandler | None:
        r = request
        shadow = r.memory.alloc(r.size * DESC_SIZE, OWNER_KERNEL)
        program_ring(r.nic.bus, r.tx, r.index, shadow.phys, r.size)
        view = r.memory.view(shadow.phys, r.size * DESC_SIZE).view(TX_DESC if r.tx else RX_DESC)
        state = r.state()
        return TxShadow(state, view) if r.tx else RxShadow(state, view, r.policy.rx_buffer_size)
