"""The independent oracle: judges what the device actually did, from ground truth alone.

It never imports the verifier: an oracle that shares code with what it
judges cannot see that code's bugs.  It knows only what the hardware and the
memory controller know: every DMA batch (through the DMA engine's observer
hook, invariant 1), the true owner of every frame (``PhysicalMemory.owner``),
the kernel's secret canaries, and the frames on every wire.

An *escape* is any of:
* a data DMA (``tx-data``/``rx-data``) that touched a frame not owned by the
  tenant that owns the queue;
* a descriptor DMA that touched the kernel's secret region or another tenant's frame;
* a kernel canary, or a registered secret, inside a frame on a wire;
* a watched region (kernel memory, another tenant's buffer) whose bytes changed;
* (when a pin reference is kept for the queue's owner, ``grant``/``revoke``) a data
  DMA into a frame of the owner's own that the owner never pinned with that access
  (TX reads need device-read, RX writes device-write): kind ``"pin"``.

The pin reference is the fuzzer's own account of the pins it asked for, kept
as one access byte per frame: it is deliberately not the kernel's pin table,
so a bug in the kernel's bookkeeping shows up as a difference.

Two further checks judge the machine's answers rather than its accesses:
liveness (``bounded_step``: bounded device work per step, no hang, no
exception) and audit completeness (``AuditWatch``: every refusal mallory sees
in her own ring has exactly one audit record, counters equal records, a
file-backed log's chain verifies; the log's verifier is passed in).

``on_dma`` is vectorised over a batch (the fuzzer's throughput depends on it):
only the accesses found bad are turned into ``Escape`` records one by one.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fuzz.oracle_reasons import (
    ACCESS_BITS,
    EVENT_PREDICATES,
    RELEASED,
    UNPIN_ASKED,
    WITHOUT_PINS,
    Reference,
    Rows,
    judge,
)
from ring.descriptors import DESC_SIZE, RXD_ERR_REFUSED, RXD_STAT_DD, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.frames import FrameBatch
from ring.memory import CANARY_SIZE, CANARY_TAG, OWNER_KERNEL, PAGE_SHIFT, PhysicalMemory, owner_name
from ring.regs import RDT, TDT, queue_reg


class DmaBatchLike(Protocol):
    """The fields of driver.dma.DmaBatch the oracle reads (duck-typed: no import of the judged code)."""

    @property
    def device(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def lengths(self) -> npt.NDArray[np.int64]: ...
    @property
    def phys(self) -> npt.NDArray[np.uint64]: ...
    @property
    def allowed(self) -> npt.NDArray[np.bool_]: ...


@dataclass(frozen=True)
class Escape:
    kind: str  # "dma", "pin", "leak", "integrity", "crash", "liveness", "audit"
    what: str  # a one-line account
    device: str = ""
    address: int = -1
    length: int = 0
    owner: str = ""
    evidence: bytes = b""


@dataclass
class Oracle:
    memory: PhysicalMemory
    queue_owner: dict[str, int]  # NIC name -> tenant id that owns its queues
    secrets: dict[bytes, str] = field(default_factory=dict)  # marker -> whose secret
    names: dict[int, str] = field(default_factory=dict)  # tenant id -> name, for reports
    escapes: list[Escape] = field(default_factory=list)
    _watched: dict[str, tuple[int, int, bytes]] = field(default_factory=dict)
    accesses: int = 0

    #: tenant id -> access bits (1 device read, 2 device write) per frame, from ``grant``/``revoke``
    pinned: dict[int, npt.NDArray[np.uint8]] = field(default_factory=dict)
    #: frames written by allowed DMA since the last ``check_written`` (first, last) pairs
    _dirty: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = field(default_factory=list)
    #: guarded regions for ``check_written``: name -> (phys, copy of the bytes)
    _guarded: dict[str, tuple[int, npt.NDArray[np.uint8]]] = field(default_factory=dict)
    #: at most this many ``Escape`` records per DMA batch or wire burst (None: all); the rest are only counted
    detail_limit: int | None = None
    #: escapes counted but not recorded because of ``detail_limit``
    suppressed: int = 0
    #: liveness: work the devices did since ``begin_step`` (DMA batches, bytes, the largest descriptor fetch)
    work: Work = field(default_factory=lambda: Work())
    #: audit completeness, checked after each ``bounded_step`` when set (``AuditWatch.watch``)
    audit: AuditWatch | None = None

    #: tenant -> device page -> (frame, access): where the tenant's pins sit in device addresses
    #: (bus = physical, except in ``iommu`` mode where a tenant maps IOVA = its virtual address)
    bus_pins: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    #: the audit record count, when an ``AuditWatch`` judges reasons: changes to the pin reference are then
    #: remembered with it (``_history``), so each record is judged against the reference of its moment
    clock: Callable[[], int] | None = None
    _history: list[tuple[int, int, npt.NDArray[np.uint8], dict[int, tuple[int, int]]]] = field(default_factory=list)
    _current: dict[int | None, Reference] = field(default_factory=dict)

    # -- the pin reference -------------------------------------------------------------
    def grant(self, tenant: int, phys: int, length: int, access: int, bus: int | None = None) -> None:
        """The fuzzer pinned ``[phys, phys + length)`` for ``tenant`` with ``access`` (1 read, 2 write).

        ``bus``: the device address of ``phys`` (default: the same).
        """
        table = self._before_change(tenant)
        part = slice(phys >> PAGE_SHIFT, ((phys + length - 1) >> PAGE_SHIFT) + 1)
        table[part] = (table[part] & np.uint8(ACCESS_BITS)) | np.uint8(access)
        pages = self.bus_pins.setdefault(tenant, {})
        first = (phys if bus is None else bus) >> PAGE_SHIFT
        for k, frame in enumerate(range(part.start, part.stop)):
            pages[first + k] = (frame, int(table[frame]) & ACCESS_BITS)

    def revoke(self, tenant: int, phys: int, length: int, bus: int | None = None) -> None:
        """The fuzzer released a pin: the device may no longer touch those frames for ``tenant``."""
        if tenant not in self.pinned:
            return
        table = self._before_change(tenant)
        part = slice(phys >> PAGE_SHIFT, ((phys + length - 1) >> PAGE_SHIFT) + 1)
        table[part] = np.uint8(RELEASED)
        pages = self.bus_pins.get(tenant, {})
        first = (phys if bus is None else bus) >> PAGE_SHIFT
        for k in range(part.stop - part.start):
            pages.pop(first + k, None)

    def release_pending(self, tenant: int, phys: int, length: int) -> None:
        """The owner asked to unpin while DMA is in flight: the kernel lets go once the device is done.

        For DMA the frames still count as pinned (the in-flight work may
        finish); a refusal may call them pinned or released, both true.
        """
        if tenant in self.pinned:
            table = self._before_change(tenant)
            table[phys >> PAGE_SHIFT : ((phys + length - 1) >> PAGE_SHIFT) + 1] |= np.uint8(UNPIN_ASKED)

    def _before_change(self, tenant: int) -> npt.NDArray[np.uint8]:
        """``tenant``'s table, about to change: its state so far goes to ``_history`` when reasons are judged."""
        table = self.pinned.setdefault(tenant, np.zeros(self.memory.frames, dtype=np.uint8))
        self._current.pop(tenant, None)
        if self.clock is not None:
            self._history.append((self.clock(), tenant, table.copy(), dict(self.bus_pins.get(tenant, {}))))
        return table

    def references(self, tenant: int | None, first: int, stop: int) -> list[tuple[int, int, Reference]]:
        """The pin reference of ``tenant`` for records ``first..stop-1``: ``(lo, hi, reference)`` runs.

        A record made when the audit count was ``s`` saw the state before
        the first change remembered at a count above ``s`` (the current state if none).
        """
        current = self._current.get(tenant)
        if current is None:  # kept until the tenant's pins change: its look-up tables are built once
            empty = np.zeros(self.memory.frames, dtype=np.uint8)
            current = self._current[tenant] = Reference(
                self.pinned.get(tenant, empty) if tenant is not None else empty,
                dict(self.bus_pins.get(tenant, {})) if tenant is not None else {},
                self.memory.size,
            )
        runs, lo = [], first
        for count, whose, table, pages in self._history:
            if whose != tenant or count <= lo:
                continue
            hi = min(count, stop)
            runs.append((lo, hi, Reference(table, pages, self.memory.size)))
            lo = hi
            if lo >= stop:
                break
        if lo < stop:
            runs.append((lo, stop, current))
        return runs

    def forget_history(self) -> None:
        """The records up to now are judged: the reference's past is no longer needed."""
        self._history.clear()

    # -- DMA -------------------------------------------------------------------------
    def _bad(self, frames: npt.NDArray[np.int64], owner: int | None, data: bool, need: int) -> npt.NDArray[np.bool_]:
        """Which of ``frames`` the access may not touch (vectorised)."""
        owners = self.memory.owner[frames]
        if data:
            bad = owners != (owner if owner is not None else -99)
            table = self.pinned.get(owner) if owner is not None else None
            if table is not None:
                bad = bad | ((table[frames] & np.uint8(need)) == 0)
            return bad
        # descriptor rings: the owner's own, or kernel frames outside the secret region (shadow rings)
        secret = frames < self.memory.kernel_frames.count
        return ~((owners == owner) | ((owners == OWNER_KERNEL) & ~secret))

    def on_dma(self, batch: DmaBatchLike) -> None:
        """Observer hook for DmaEngine.observers: check every allowed access against ground truth."""
        self.accesses += int(batch.allowed.size)
        self.work.count(batch)
        live = batch.allowed & (batch.lengths > 0)
        if not bool(live.any()):
            return
        which = np.flatnonzero(live)
        start = batch.phys[which].astype(np.int64)  # allowed: inside memory, so no wrap
        last = (start + batch.lengths[which] - 1) >> PAGE_SHIFT
        first = start >> PAGE_SHIFT
        if batch.direction == "write":
            self._dirty.append((first, last))
        owner = self.queue_owner.get(batch.device)
        data = batch.purpose.endswith("-data")
        need = 2 if batch.direction == "write" else 1
        bad = self._bad(first, owner, data, need) | self._bad(last, owner, data, need)
        for i in np.flatnonzero(~bad & (last - first > 1)).tolist():  # long accesses: the frames in between
            bad[i] = bool(self._bad(np.arange(first[i] + 1, last[i]), owner, data, need).any())
        culprits = np.flatnonzero(bad)
        if self.detail_limit is not None and culprits.size > self.detail_limit:
            self.suppressed += int(culprits.size) - self.detail_limit
            culprits = culprits[: self.detail_limit]
        for i in culprits.tolist():
            self._report(batch, owner, data, need, int(start[i]), int(batch.lengths[which[i]]))

    def _report(self, batch: DmaBatchLike, owner: int | None, data: bool, need: int, start: int, length: int) -> None:
        frames = np.arange(start >> PAGE_SHIFT, ((start + length - 1) >> PAGE_SHIFT) + 1)
        bad = self._bad(frames, owner, data, need)
        frame = int(frames[np.argmax(bad)])
        code = int(self.memory.owner[frame])
        who = self.names.get(code, owner_name(code))
        if data and owner is not None and code == owner:
            access = "device write" if need == 2 else "device read"
            kind, what = "pin", f"frame {frame} of {who}'s own, never pinned for {access}"
        else:
            kind, what = "dma", f"frame {frame} owned by {who}"
        self.escapes.append(
            Escape(
                kind,
                f"{batch.device} {batch.purpose} {batch.direction} of {length} bytes at {start:#x} touched {what}",
                batch.device,
                start,
                length,
                who,
            )
        )

    # -- the wire ----------------------------------------------------------------------
    def on_wire(self, source: str, frames: FrameBatch, _stamps: npt.NDArray[np.int64]) -> None:
        """Cable tap: any kernel canary or registered secret in a frame is a leak (one search over the burst)."""
        if len(frames) == 0:
            return
        data = frames.data.tobytes()
        ends = np.cumsum(frames.lengths).tolist()
        canaries = self.memory.canaries
        leaks = [
            (frame, "kernel")
            for frame in _frames_with(data, ends, CANARY_TAG, lambda at: data[at : at + CANARY_SIZE] in canaries)
        ]
        for marker, whose in self.secrets.items():
            leaks += [(frame, whose) for frame in _frames_with(data, ends, marker, lambda _at: True)]
        if self.detail_limit is not None and len(leaks) > self.detail_limit:
            self.suppressed += len(leaks) - self.detail_limit
            leaks = leaks[: self.detail_limit]
        for frame, whose in leaks:
            raw = data[(ends[frame - 1] if frame else 0) : ends[frame]]
            what = f"kernel canary sent by {source}" if whose == "kernel" else f"{whose}'s secret sent by {source}"
            self.escapes.append(Escape("leak", what, source, evidence=raw))

    # -- integrity ---------------------------------------------------------------------
    def watch(self, name: str, phys: int, length: int) -> None:
        """Remember a region's hash; ``check_integrity`` reports it if it changed."""
        self._watched[name] = (phys, length, self._digest(phys, length))

    def check_integrity(self) -> None:
        for name, (phys, length, digest) in self._watched.items():
            if self._digest(phys, length) != digest:
                self.escapes.append(Escape("integrity", f"{name} was overwritten", address=phys, length=length))
                self._watched[name] = (phys, length, self._digest(phys, length))

    def guard(self, name: str, phys: int, length: int) -> None:
        """Keep a copy of a region; ``check_written`` compares only the frames DMA wrote since the last call."""
        self._guarded[name] = (phys, self.memory.data[phys : phys + length].copy())

    def check_written(self) -> None:
        """Integrity at batch speed: compare the guarded bytes of every frame the device wrote, then forget them.

        ``check_integrity`` (a full hash of each watched region) stays the
        backstop for writes that would bypass the DMA engine.
        """
        if not self._dirty:
            return
        firsts = np.concatenate([f for f, _ in self._dirty])
        lasts = np.concatenate([last for _, last in self._dirty])
        self._dirty.clear()
        for name, (phys, copy) in self._guarded.items():
            lo, hi = phys >> PAGE_SHIFT, (phys + copy.size - 1) >> PAGE_SHIFT
            hit = (firsts <= hi) & (lasts >= lo)
            if not bool(hit.any()):
                continue
            now = self.memory.data[phys : phys + copy.size]
            changed = np.flatnonzero(now != copy)
            if changed.size:
                at = phys + int(changed[0])
                self.escapes.append(
                    Escape("integrity", f"{name} was overwritten at {at:#x}", address=at, length=int(changed.size))
                )
                copy[:] = now

    def _digest(self, phys: int, length: int) -> bytes:
        # hashed in place (the buffer protocol), not through a copy of a region that may be megabytes
        return hashlib.sha256(np.ascontiguousarray(self.memory.data[phys : phys + length]).data).digest()


def _frames_with(data: bytes, ends: list[int], needle: bytes, confirm: Callable[[int], bool]) -> list[int]:
    """Frames (by index; ``ends`` are their cumulative ends) holding ``needle`` whole, where ``confirm`` agrees."""
    found = []
    at = data.find(needle)
    while at >= 0:
        frame = bisect.bisect_right(ends, at)
        end = ends[frame]
        if at + len(needle) <= end and confirm(at):
            found.append(frame)
            at = data.find(needle, end)  # one report per frame: go on with the next frame
        else:
            at = data.find(needle, at + 1)
    return found


# ==== Liveness and audit completeness (judged from the hardware and the attacker's own ring) ====

#: TDLEN/RDLEN keep bits 19:7, so no e1000 ring holds more descriptors than this.
HW_MAX_RING = 0x000F_FF80 // DESC_SIZE


@dataclass
class Work:
    """Device work since the last ``reset``, counted on the DMA observer hook."""

    batches: int = 0
    nbytes: int = 0
    #: descriptors in the largest single descriptor fetch (a kick fetches its whole window in one batch)
    max_fetch: int = 0

    def count(self, batch: DmaBatchLike) -> None:
        self.batches += 1
        n = int(batch.lengths.sum())
        self.nbytes += n
        if batch.purpose.endswith("-desc") and n // DESC_SIZE > self.max_fetch:
            self.max_fetch = n // DESC_SIZE

    def reset(self) -> None:
        self.batches = self.nbytes = self.max_fetch = 0


@dataclass(frozen=True)
class Budget:
    """Bounded work for one step: what a device and the kernel may spend answering one operation."""

    ring: int = HW_MAX_RING  # descriptors one kick may fetch: never more than a ring
    dma_batches: int = 256  # DMA batches in one step
    dma_bytes: int = 64 << 20  # bytes the devices tried to move in one step
    seconds: float = 5.0  # wall clock; a step still running then is interrupted (main thread) and reported

    def judge(self, work: Work, elapsed: float) -> list[Escape]:
        found = []
        if work.max_fetch > self.ring:
            found.append(Escape("liveness", f"one kick fetched {work.max_fetch} descriptors (ring {self.ring})"))
        if work.batches > self.dma_batches:
            found.append(Escape("liveness", f"{work.batches} DMA batches in one step (budget {self.dma_batches})"))
        if work.nbytes > self.dma_bytes:
            found.append(Escape("liveness", f"{work.nbytes} DMA bytes in one step (budget {self.dma_bytes})"))
        if elapsed > self.seconds:
            found.append(Escape("liveness", f"step took {elapsed:.3f} s (budget {self.seconds:g} s)"))
        return found


DEFAULT_BUDGET = Budget()


class StepOverrun(BaseException):
    """Raised inside a step that outlived its budget (a BaseException: ``except Exception`` cannot eat it)."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with ``StepOverrun`` (main thread, interval timer free; else no-op)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return
    armed = [True]

    def fire(_signum: int, _frame: object) -> None:
        if armed[0]:
            raise StepOverrun

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def bounded_step(oracle: Oracle, step: Callable[[], object], budget: Budget = DEFAULT_BUDGET) -> list[Escape]:
    """Run one step under ``budget``; the findings (``liveness``, ``crash``, ``audit``) go to ``oracle.escapes``.

    An exception from the kernel or the device is a ``crash``; a step still
    running after ``budget.seconds`` is interrupted and reported.  With an
    ``AuditWatch`` attached (``oracle.audit``), its per-step check runs too.
    Returns the findings of this call.
    """
    oracle.work.reset()
    found: list[Escape] = []
    start = time.perf_counter()
    try:
        with _deadline(budget.seconds):
            step()
    except StepOverrun:
        found.append(Escape("liveness", f"step still running after {budget.seconds:g} s: interrupted"))
    except Exception as err:  # the machine must answer hostile input with a verdict, never by crashing
        found.append(Escape("crash", f"{type(err).__name__}: {err}"))
    found += budget.judge(oracle.work, time.perf_counter() - start)
    if oracle.audit is not None:
        found += oracle.audit.after_step()
    oracle.escapes.extend(found)
    return found


class ArenaLike(Protocol):
    """What ``AuditWatch.watch`` reads of fuzz.arena.Arena (duck-typed: fuzz.arena imports this module)."""

    @property
    def oracle(self) -> Oracle: ...
    @property
    def tx_ring(self) -> npt.NDArray[np.void]: ...
    @property
    def rx_ring(self) -> npt.NDArray[np.void]: ...


QueueKey = tuple[str, str, int]  # (nic, "tx" | "rx", queue)
#: ``AuditWatch`` counts the refusal marks of so many steps at once (``_fold``).
FOLD_STEPS = 1024


class RecordSpanLike(Protocol):
    """Consecutive records of one queue as columns (verifier.lazy_records.RecordSpan; data only).

    Declared here, not imported (as ``DmaBatchLike``): the verifier's ``RecordRows`` has the same
    properties, but this module imports nothing of verifier/.

    Record ``seq + i`` has reason ``names[reason[i]]`` and names ring slot
    ``ring_index[i]`` (``ring_index`` None: the records name no descriptor).
    """

    @property
    def seq(self) -> int: ...
    @property
    def nic(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def queue(self) -> int | None: ...
    @property
    def ring_index(self) -> npt.NDArray[np.int64] | None: ...
    @property
    def reason(self) -> npt.NDArray[np.uint8]: ...
    @property
    def names(self) -> Mapping[int, str]: ...

    def __len__(self) -> int: ...


def refusal_marks(kind: str, ring: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
    """Slots of a tenant's ring that carry the kernel's refusal mark, as the tenant reads them.

    TX: DD and REFUSED in the status byte.  RX: DD with RXE and length 0
    (the device never completes a buffer it wrote with length 0).
    """
    status = ring["status"]
    if kind == "tx":
        want = np.uint8(TXD_STAT_DD | TXD_STAT_REFUSED)
        return np.flatnonzero((status & want) == want)
    return np.flatnonzero(
        ((status & np.uint8(RXD_STAT_DD)) != 0)
        & ((ring["errors"] & np.uint8(RXD_ERR_REFUSED)) != 0)
        & (ring["length"] == 0)
    )


def _acknowledge(kind: str, ring: npt.NDArray[np.void], slots: npt.NDArray[np.int64]) -> None:
    """The tenant reaps the refusals it saw, as a driver clears a descriptor's status after reading DD."""
    ring["status"][slots] = 0
    if kind == "rx":
        ring["errors"][slots] = 0


@dataclass
class AuditWatch:
    """Audit completeness without trusting the verifier.

    What was refused is read where the attacker reads it: the refusal marks
    in her own rings (``refusal_marks``), after each step.  Each mark must
    have exactly one descriptor record (``desc_hex`` set) of that queue, at
    that ring index, with a reason, and no descriptor record may lack a mark.
    Records that name no descriptor (a refused tail: the ring shows nothing)
    are only required to have a reason.  Per step, the sink's counters
    (``statistics``) must have grown by at least the marks; the slot-by-slot
    match runs per step when the sink keeps its records in memory
    (MemoryAudit) and in ``finish`` for a file-backed log.  Per step, the
    step's records must also be held one per seq (a full bounded store drops
    only its oldest), so a lost record is found even when the counters add up.
    ``finish`` checks that counters equal records and, for a file-backed
    AuditLog, that the chain verifies and that the file holds one descriptor
    record per mark seen, in one pass: ``verify`` (verifier/audit_read.py,
    passed in, so this module still imports nothing of verifier/) walks the
    chain and hands each verified record to a tally (``_LogTally``) that keeps
    only counts.
    """

    sink: Any
    #: verifier.audit_read.verify: called as ``verify(files, on_record=...)``, returns an object with .ok, .problem
    verify: Callable[..., Any] | None = None
    doorbells: int = 1  # doorbells per step, per queue
    rings: dict[QueueKey, npt.NDArray[np.void]] = field(default_factory=dict)
    #: every refusal mark seen so far: (nic, kind, queue, slot) -> times (read it through ``marks``)
    _marks: Counter[tuple[str, str, int, int]] = field(default_factory=Counter)
    #: marks of recent steps not yet counted into ``_marks``: counted in bulk when ``marks`` is read
    _unmarked: list[tuple[QueueKey, npt.NDArray[np.int64]]] = field(default_factory=list)
    _counts: dict[QueueKey, int] = field(default_factory=dict)
    _seq: int = 0
    #: the current arena's oracle: its pin reference judges whether each record's reason is true
    oracle: Oracle | None = None
    _start: int = 0
    _start_counters: Counter[tuple[Any, ...]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if getattr(self.sink, "path", None) is not None and self.verify is None:
            raise ValueError("a file-backed audit log needs verify (verifier.audit_read.verify)")
        self._start = self._seq = audit_count(self.sink)
        self._start_counters = Counter(dict(getattr(self.sink, "counters", {})))

    @property
    def marks(self) -> Counter[tuple[str, str, int, int]]:
        """Every refusal mark seen so far: (nic, kind, queue, slot) -> times."""
        self._fold()
        return self._marks

    def _fold(self) -> None:
        """Count the pending steps' marks into ``_marks``: one ``np.unique`` per queue, not an update per slot."""
        by_key: dict[QueueKey, list[npt.NDArray[np.int64]]] = {}
        for key, slots in self._unmarked:
            by_key.setdefault(key, []).append(slots)
        self._unmarked.clear()
        for key, parts in by_key.items():
            slots, times = np.unique(np.concatenate(parts), return_counts=True)
            self._marks.update({(*key, s): n for s, n in zip(slots.tolist(), times.tolist(), strict=True)})

    def watch(self, arena: ArenaLike, nic: str = "nic2", queue: int = 0) -> None:
        """Judge this arena's rings from now on (a campaign calls it for every new arena)."""
        self.attach({(nic, "tx", queue): arena.tx_ring, (nic, "rx", queue): arena.rx_ring})
        arena.oracle.audit = self
        self.oracle = arena.oracle
        arena.oracle.clock = lambda: audit_count(self.sink)

    def attach(self, rings: dict[QueueKey, npt.NDArray[np.void]]) -> None:
        self.rings = dict(rings)
        for key in self.rings:
            self._counts[key] = self._count(key)
        self._seq = audit_count(self.sink)

    def _count(self, key: QueueKey) -> int:
        nic, kind, queue = key
        stats = getattr(self.sink, "statistics", None)
        return sum(stats(nic, queue, kind).values()) if stats is not None else 0

    def after_step(self) -> list[Escape]:
        found: list[Escape] = []
        seen: dict[QueueKey, npt.NDArray[np.int64]] = {}
        for key, ring in self.rings.items():
            slots = refusal_marks(key[1], ring)
            _acknowledge(key[1], ring, slots)
            seen[key] = slots
            if slots.size:
                self._unmarked.append((key, slots))
                if len(self._unmarked) >= FOLD_STEPS:  # bounded memory: a long campaign runs millions of steps
                    self._fold()
            now = self._count(key)
            added, self._counts[key] = now - self._counts[key], now
            if added < slots.size:
                found.append(
                    Escape(
                        "audit",
                        f"{key[0]} {key[1]} queue {key[2]}: {slots.size} descriptors refused in the ring, "
                        f"{added} records added",
                        key[0],
                    )
                )
        found += self._match_records(seen)
        if self.oracle is not None:
            self.oracle.forget_history()
        return found

    def _match_records(self, seen: dict[QueueKey, npt.NDArray[np.int64]]) -> list[Escape]:
        """Slot by slot, for a sink that keeps its records in memory (``since`` or ``records`` with ``seq``)."""
        end = audit_count(self.sink)
        start, self._seq = self._seq, end
        if end == start:
            return []
        since = getattr(self.sink, "since", None)
        records = getattr(self.sink, "records", None)
        if since is not None:
            items: list[dict[str, Any] | RecordSpanLike] = since(start)
        elif records is not None:
            items = [r for r in _tail(records, end - start) if int(r.get("seq", -1)) >= start]
        else:
            return []
        run = _run(items, end)
        if run is not None and run[1] > end:
            return []  # recorded while this was read (another thread): the counts above still hold
        if run is None or run[1] < end or (run[0] > start and not _evicted(records, end - run[0])):
            held = sum(_width(r) for r in items)
            return [Escape("audit", f"records {start}..{end - 1}: {held} held, not one per seq (lost or doubled)")]
        if run[0] > start:
            return []  # the oldest evicted already (a small ``keep``): the counts above still hold
        wrong = self._judge_reasons(items)
        # one pass over the new records: the ring indices each queue's descriptor records name
        named: dict[tuple[Any, Any, Any], list[npt.NDArray[np.int64]]] = {}
        singles: dict[tuple[Any, Any, Any], list[int]] = {}
        blank: list[Escape] = []
        for r in items:
            if isinstance(r, dict):
                if r.get("desc_hex") is not None:
                    singles.setdefault((r.get("nic"), r.get("kind"), r.get("queue")), []).append(r["ring_index"])
                if not r.get("reason"):
                    blank.append(Escape("audit", f"record {r.get('seq')} has no reason", str(r.get("nic") or "")))
                continue
            if r.ring_index is not None:  # descriptor records (an IOMMU fault names none)
                named.setdefault((r.nic, r.kind, r.queue), []).append(r.ring_index)
            codes = np.unique(r.reason).tolist()
            for code in codes:
                if not r.names.get(code):
                    seq = r.seq + int(np.argmax(r.reason == code))
                    blank.append(Escape("audit", f"record {seq} has no reason", str(r.nic or "")))
        found = []
        for key, slots in seen.items():
            parts = named.get(key, [])
            if key in singles:
                parts = [*parts, np.array(singles[key], dtype=np.int64)]
            described = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else slots[:0]
            if described.size == slots.size and np.array_equal(np.sort(described), np.sort(slots)):
                continue
            nic, kind, queue = key
            counted = Counter(described.tolist())
            marked = set(slots.tolist())
            missing = sorted(marked - set(counted))[:4]
            doubled = sorted(s for s, n in counted.items() if n > 1)[:4]
            stray = sorted(set(counted) - marked)[:4]
            found.append(
                Escape(
                    "audit",
                    f"{nic} {kind} queue {queue}: refused slots without a record {missing}, "
                    f"with several {doubled}, records for slots not refused {stray}",
                    nic,
                )
            )
        return found + blank + wrong

    def _judge_reasons(self, items: list[dict[str, Any] | RecordSpanLike]) -> list[Escape]:
        """Each record's reason must be true of what it refused (fuzz/oracle_reasons.py), judged per batch."""
        oracle = self.oracle
        if oracle is None:
            return []
        found: list[Escape] = []
        for item in items:
            names: Mapping[int, str]
            if isinstance(item, dict):
                rows, names, codes = self._dict_rows(oracle, item), {0: str(item.get("reason") or "")}, _ZERO
            else:
                rows, names, codes = self._span_rows(oracle, item), item.names, item.reason
            for lo, hi, ref in oracle.references(rows.tenant, rows.seq, rows.seq + int(codes.size)):
                part = rows if (lo, hi) == (rows.seq, rows.seq + codes.size) else _slice(rows, lo - rows.seq, hi - lo)
                for line in judge(part, names, codes[lo - rows.seq : hi - rows.seq], ref):
                    found.append(Escape("audit", f"wrong reason: {line}", rows.nic))
        return found

    def _context(self, oracle: Oracle, nic: str, kind: str, queue: int | None) -> dict[str, Any]:
        tenant = oracle.queue_owner.get(nic)
        ring = self.rings.get((nic, kind, queue if queue is not None else -1))
        tails = frozenset(
            queue_reg(TDT if k == "tx" else RDT, q) for (n, k, q) in self.rings if n == nic and k in ("tx", "rx")
        )
        return {"tenant": tenant, "ring_size": None if ring is None else len(ring), "tails": tails}

    def _span_rows(self, oracle: Oracle, span: RecordSpanLike) -> Rows:
        rows = Rows(span.seq, span.nic, span.kind, **self._context(oracle, span.nic, span.kind, span.queue))
        descs = getattr(span, "descs", None)
        if descs is not None and descs.dtype.names is not None and "addr" in descs.dtype.names:
            rows.addr = descs["addr"].astype(np.uint64)
            extra = getattr(span, "extra", None) or {}
            rows.detail = extra
            if span.kind == "rx":
                rows.length = np.full(descs.size, int(extra.get("checked_bytes", -1)), dtype=np.int64)
            else:
                rows.length = descs["length"].astype(np.int64)
                rows.cmd = descs["cmd"]
            rows.bad_byte = getattr(span, "bad_byte", None)
        elif getattr(span, "iova", None) is not None:
            rows.addr = span.iova.astype(np.uint64)  # type: ignore[attr-defined]
            rows.length = span.length.astype(np.int64)  # type: ignore[attr-defined]
            rows.write = bool(span.write)  # type: ignore[attr-defined]
        return rows

    def _dict_rows(self, oracle: Oracle, record: dict[str, Any]) -> Rows:
        nic, kind = str(record.get("nic") or ""), str(record.get("kind") or "")
        rows = Rows(int(record["seq"]), nic, kind, **self._context(oracle, nic, kind, record.get("queue")))
        detail = record.get("detail") or {}
        desc = record.get("desc")
        rows.detail, rows.record_tenant = detail, record.get("tenant")
        if desc and "addr" in desc:
            rows.addr = np.array([int(desc["addr"])], dtype=np.uint64)
            if kind == "rx":
                rows.length = np.array([int(detail.get("checked_bytes", -1))], dtype=np.int64)
            else:
                rows.length = np.array([int(desc.get("length", 0))], dtype=np.int64)
                rows.cmd = np.array([int(desc.get("cmd", 0))], dtype=np.uint8)
            rows.bad_byte = np.array([_signed_bad_byte(detail)], dtype=np.int64)
        elif kind == "iommu" and "iova" in detail:
            rows.addr = np.array([int(str(detail["iova"]), 0)], dtype=np.uint64)
            rows.length = np.array([int(detail.get("length", 0))], dtype=np.int64)
            rows.write = detail.get("access") == "write"
        return rows

    def finish(self) -> list[Escape]:
        """End of a campaign: counters equal records; a file-backed log's chain verifies and matches the marks."""
        found: list[Escape] = []
        counters = Counter(dict(getattr(self.sink, "counters", {})))
        counters.subtract(self._start_counters)
        counted = +counters
        end = audit_count(self.sink)
        path = getattr(self.sink, "path", None)
        if path is not None and self.verify is not None:
            files = [Path(path), *sorted(Path(path).parent.glob(Path(path).name + ".*"))]
            files = [f for f in files if f.exists() and (f == Path(path) or f.suffix[1:].isdigit())]
            tally = _LogTally(self, self._start)
            result = self.verify(files, on_record=tally.take)
            if not result.ok:
                return [Escape("audit", f"audit chain does not verify: {result.problem}")]
            tally.flush()
            found += tally.wrong[:LOGGED_WRONG_LIMIT]
            written, held, described = tally.written, tally.records, tally.described
        else:
            store: Any = getattr(self.sink, "records", [])
            records = [r for r in store if int(r.get("seq", -1)) >= self._start]
            full = getattr(store, "maxlen", None) is not None and len(store) >= store.maxlen
            if full and len(records) != end - self._start:  # evicted by a bounded deque: compare the totals
                if sum(counted.values()) != end - self._start:
                    found.append(
                        Escape("audit", f"counters sum to {sum(counted.values())}, {end - self._start} records")
                    )
                return found
            written = Counter((r["nic"], r["queue"], r["reason"]) for r in records)
            held = len(records)
            described = Counter(
                (r["nic"], r["kind"], r["queue"], r["ring_index"])
                for r in records
                if r["desc_hex"] is not None and (r["nic"], r["kind"], r["queue"]) in self.rings
            )
        if written != counted or held != end - self._start:
            diff = sorted(set(written.items()) ^ set(counted.items()), key=str)[:4]
            found.append(Escape("audit", f"counters do not equal records ({held} records): {diff}"))
        marks = self.marks
        if described != marks:
            lost = sum((marks - described).values())
            extra = sum((described - marks).values())
            found.append(Escape("audit", f"{lost} refused descriptors without a record, {extra} records without one"))
        return found


#: Wrong reasons reported from a file-backed log at the end (the first few; one is already an escape).
LOGGED_WRONG_LIMIT = 8
#: Consecutive descriptor records judged in one ``judge`` call at most.
LOGGED_RUN = 4096


class _LogTally:
    """What ``AuditWatch.finish`` needs of a file-backed log, taken record by record as ``verify`` walks the chain.

    Counts per (nic, queue, reason) and per described ring slot, and judges
    the reasons that need no pin reference (``WITHOUT_PINS``): consecutive
    descriptor records of one queue as one run of columns (one ``judge`` call
    per run, as ``_judge_reasons`` judges a span), event records one by one.
    Keeps no record, so a long campaign's log is checked in bounded memory.
    """

    def __init__(self, watch: AuditWatch, start: int) -> None:
        self.watch = watch
        self.start = start
        self.oracle = watch.oracle
        memory = None if self.oracle is None else self.oracle.memory
        self.ref = None if memory is None else Reference(np.zeros(memory.frames, dtype=np.uint8), {}, memory.size)
        self.written: Counter[tuple[Any, Any, Any]] = Counter()
        self.described: Counter[tuple[Any, Any, Any, Any]] = Counter()
        self.records = 0
        self.wrong: list[Escape] = []
        self._run: list[dict[str, Any]] = []
        self._key: tuple[Any, Any, Any] | None = None

    def take(self, r: dict[str, Any]) -> None:
        """One verified record (``verify``'s ``on_record``)."""
        if r["seq"] < self.start:
            return
        self.records += 1
        nic, kind, queue, reason = r["nic"], r["kind"], r["queue"], r["reason"]
        self.written[(nic, queue, reason)] += 1
        if r["desc_hex"] is not None and (nic, kind, queue) in self.watch.rings:
            self.described[(nic, kind, queue, r["ring_index"])] += 1
        if reason not in WITHOUT_PINS or self.oracle is None or self.ref is None:
            return
        if len(self.wrong) >= LOGGED_WRONG_LIMIT:
            return
        desc = r["desc"]
        if not (desc and "addr" in desc) or reason in EVENT_PREDICATES:  # an event: judged on its own detail
            rows = self.watch._dict_rows(self.oracle, r)
            lines = judge(rows, {0: str(reason)}, _ZERO, self.ref, only=WITHOUT_PINS)
            self.wrong += [Escape("audit", f"wrong reason: {line}", str(nic or "")) for line in lines]
            return
        key = (nic, kind, queue)
        run = self._run
        if run and (key != self._key or r["seq"] != run[-1]["seq"] + 1 or len(run) >= LOGGED_RUN):
            self.flush()
        self._key = key
        self._run.append(r)

    def flush(self) -> None:
        """Judge the pending run of consecutive descriptor records of one queue."""
        run, self._run = self._run, []
        if not run or self.oracle is None or self.ref is None:
            return
        first = run[0]
        nic, kind = str(first["nic"] or ""), str(first["kind"] or "")
        rows = Rows(int(first["seq"]), nic, kind, **self.watch._context(self.oracle, nic, kind, first["queue"]))
        descs = [r["desc"] for r in run]
        details = [r["detail"] or {} for r in run]
        rows.addr = np.array([int(d["addr"]) for d in descs], dtype=np.uint64)
        if kind == "rx":
            rows.length = np.array([int(d.get("checked_bytes", -1)) for d in details], dtype=np.int64)
        else:
            rows.length = np.array([int(d.get("length", 0)) for d in descs], dtype=np.int64)
            rows.cmd = np.array([int(d.get("cmd", 0)) for d in descs], dtype=np.uint8)
        rows.bad_byte = np.array([_signed_bad_byte(d) for d in details], dtype=np.int64)
        codes_of: dict[str, int] = {}
        codes = np.array([codes_of.setdefault(str(r["reason"]), len(codes_of)) for r in run], dtype=np.uint8)
        names = {code: name for name, code in codes_of.items()}
        for line in judge(rows, names, codes, self.ref, only=WITHOUT_PINS):
            self.wrong.append(Escape("audit", f"wrong reason: {line}", nic))


def _signed_bad_byte(detail: Mapping[str, Any]) -> int:
    """A record's ``first_bad_byte`` (hex text) as the int64 the reason predicates read; -1 when none."""
    bad = int(str(detail["first_bad_byte"]), 0) if "first_bad_byte" in detail else -1
    return bad - (1 << 64) if bad >= 1 << 63 else bad


_ZERO = np.zeros(1, dtype=np.uint8)


def _slice(rows: Rows, lo: int, n: int) -> Rows:
    """Records ``lo..lo+n-1`` of ``rows`` (the pin reference changed in between)."""
    part = slice(lo, lo + n)
    cut = {k: getattr(rows, k)[part] for k in ("addr", "length", "cmd", "bad_byte") if getattr(rows, k) is not None}
    return dataclasses.replace(rows, seq=rows.seq + lo, **cut)


def audit_complete(watch: AuditWatch) -> list[Escape]:
    """The end-of-campaign audit check (``AuditWatch.finish``), for fuzz/campaign.py."""
    return watch.finish()


def audit_count(sink: Any) -> int:
    """Records an audit sink has taken so far (AuditLog.next_seq, MemoryAudit.seq)."""
    value = getattr(sink, "next_seq", None)
    if value is None:
        value = getattr(sink, "seq", 0)
    return int(value or 0)


def _width(item: dict[str, Any] | RecordSpanLike) -> int:
    return 1 if isinstance(item, dict) else len(item)


def _run(items: list[dict[str, Any] | RecordSpanLike], end: int) -> tuple[int, int] | None:
    """``(first, stop)`` when ``items`` hold records ``first..stop-1``, one each, in order (None: a gap or a repeat).

    No items hold nothing: ``(end, end)``.
    """
    first, stop = end, None
    for r in items:
        seq = int(r.get("seq", -1)) if isinstance(r, dict) else r.seq
        if stop is None:
            first = seq
        elif seq != stop:
            return None
        stop = seq + _width(r)
    return first, end if stop is None else stop


def _evicted(records: Any, held: int) -> bool:
    """Whether a store holding ``held`` records from some seq on holds nothing older: it is full and evicts.

    A bounded in-memory store (``maxlen``) drops its oldest records only; a record missing anywhere else,
    or while the store has room, was lost.
    """
    maxlen = getattr(records, "maxlen", None)
    return maxlen is not None and held >= maxlen


def _tail(records: Any, n: int) -> list[dict[str, Any]]:
    """The last ``n`` records of a deque or list (fewer if it holds fewer)."""
    size = len(records)
    return [records[i] for i in range(max(0, size - n), size)]
