"""The oracle's audit completeness: every refusal mallory sees has exactly one record, with a true reason.

Judged from the attacker's own ring (the refusal marks the kernel writes
back into it) and the audit records, read as data: counters equal records,
one held record per seq, each judged reason true of its descriptor
(fuzz/oracle/reasons.py), and a file-backed log's chain verifies (the log's
verifier is passed in: this module imports nothing of verifier/).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from fuzz.oracle import ring_marks
from fuzz.oracle.escape import Escape
from fuzz.oracle.logged import LoggedSpan
from fuzz.oracle.reasons import (
    EVENT_PREDICATES,
    PACKET_PREDICATES,
    WITHOUT_PINS,
    Reference,
    Rows,
    judge,
)
from fuzz.oracle.ring_marks import RingPass
from fuzz.oracle.rules import packet_atomicity, window_atomicity
from ring import indices
from ring.descriptors import (
    RX_DESC,
    RXD_ERR_REFUSED,
    RXD_STAT_DD,
    TX_DESC,
    TXD_CMD_EOP,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from ring.regs import RDT, TDT, queue_reg

if TYPE_CHECKING:
    from fuzz.oracle.judge import Oracle


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
    """Consecutive records of one queue as columns (verifier.audit.lazy_records.RecordSpan; data only).

    Declared here, not imported (as ``DmaBatchLike``): the verifier's ``RecordRows`` has the same
    properties, but this module imports nothing of verifier/.

    Record ``seq + i`` has reason ``names[reason[i]]`` and names ring slot
    ``ring_index[i]`` (``ring_index`` None: the records name no descriptor).
    The other columns say what each refusal was about, None when not of
    that kind: ``descs``, ``bad_byte``, ``owner`` and the shared ``extra`` of refused
    descriptors; ``iova``, ``length`` and ``write`` of IOMMU faults.
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
    @property
    def descs(self) -> npt.NDArray[np.void] | None: ...
    @property
    def bad_byte(self) -> npt.NDArray[np.int64] | None: ...
    @property
    def extra(self) -> Mapping[str, Any] | None: ...
    @property
    def iova(self) -> npt.NDArray[np.uint64] | None: ...
    @property
    def length(self) -> npt.NDArray[np.int64] | None: ...
    @property
    def write(self) -> bool | None: ...
    @property
    def owner(self) -> npt.NDArray[np.str_] | None: ...

    def __len__(self) -> int: ...


class AuditSinkLike(Protocol):
    """What the oracle reads of an audit sink (verifier.audit.rejections.AuditSink), as data.

    Declared here, not imported, as ``RecordSpanLike``: this module imports nothing of verifier/.
    """

    @property
    def next_seq(self) -> int: ...
    @property
    def counters(self) -> Mapping[Any, int]: ...
    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]: ...
    def records_of(self, nic: str | None, queue: int | None, kind: str) -> int:
        """``sum(statistics(nic, queue, kind).values())``, read from a count the sink keeps: ``after_step`` reads
        every watched queue's after every step, and building the per-reason dict for a sum cost more than the rest
        of the count."""
        ...

    @property
    def capacity(self) -> int | None:
        """How many of the newest records ``since`` can show (None: all, 0: none, they are in the file ``path``)."""

    def since(self, seq: int) -> Sequence[dict[str, Any] | RecordSpanLike]: ...
    @property
    def path(self) -> Path | None: ...


def _word_test(dtype: np.dtype[Any], fields: Mapping[str, tuple[int, int]]) -> tuple[np.uint64, np.uint64]:
    """``(mask, value)`` over a 16-byte descriptor's second little-endian 64-bit word such that
    ``word & mask == value`` exactly when ``field & m == v`` for every ``name: (m, v)`` of ``fields``."""
    mask = value = 0
    for name, (m, v) in fields.items():
        field_type, offset = dtype.fields[name][:2] if dtype.fields else (None, -1)
        assert field_type is not None and offset >= 8 and offset + field_type.itemsize <= 16
        mask |= m << (8 * (offset - 8))
        value |= v << (8 * (offset - 8))
    return np.uint64(mask), np.uint64(value)


#: The refusal mark as one test of each descriptor's second word: TX DD and REFUSED; RX DD, RXE, length 0.
#: (DD and REFUSED are single bits, so "bit set" is "field & bit == bit": tests/fuzz/test_oracle_fast_paths.py.)
_MARKS = {
    "tx": _word_test(TX_DESC, {"status": (TXD_STAT_DD | TXD_STAT_REFUSED, TXD_STAT_DD | TXD_STAT_REFUSED)}),
    "rx": _word_test(RX_DESC, {"status": (RXD_STAT_DD, RXD_STAT_DD), "errors": (RXD_ERR_REFUSED, RXD_ERR_REFUSED),
                               "length": (0xFFFF, 0)}),
}  # fmt: skip
#: A TX slot the device completed (DD without REFUSED), as the same one test of the second word (``_whole_packets``).
_SENT = _word_test(TX_DESC, {"status": (TXD_STAT_DD | TXD_STAT_REFUSED, TXD_STAT_DD)})
#: The compiled pass's masks over the same word (``RingPass``): a TX slot's EOP bit (``_whole_packets`` reads
#: ``cmd``), and the bytes a reaped slot loses (``_acknowledge``: the status, an RX slot's errors too).
_EOP = _word_test(TX_DESC, {"cmd": (TXD_CMD_EOP, TXD_CMD_EOP)})[0]
_REAPED = {
    "tx": _word_test(TX_DESC, {"status": (0xFF, 0)})[0],
    "rx": _word_test(RX_DESC, {"status": (0xFF, 0), "errors": (0xFF, 0)})[0],
}


#: A TX slot the device or the kernel is done with (DD), as the same one test (``held.judge_doorbell``).
_DONE = _word_test(TX_DESC, {"status": (TXD_STAT_DD, TXD_STAT_DD)})


def _ints(test: tuple[np.uint64, np.uint64]) -> tuple[int, int]:
    return int(test[0]), int(test[1])


_MARK_INTS = {kind: _ints(test) for kind, test in _MARKS.items()}
_SENT_INTS, _DONE_INTS, _EOP_INT = _ints(_SENT), _ints(_DONE), int(_EOP)


def marked_in(kind: str, ring: npt.NDArray[np.void], start: int, count: int, size: int) -> int:
    """How many of the ``count`` slots from ``start`` on (a ring of ``size`` slots) carry the refusal mark:
    ``refusal_marks`` of those slots, counted in one compiled call where the ring is the 16-byte format."""
    if size == len(ring) and ring.dtype == (TX_DESC if kind == "tx" else RX_DESC):
        fast = ring_marks.count_marked(ring, start, count, _MARK_INTS[kind])
        if fast is not None:
            return fast
    return int(refusal_marks(kind, ring, indices.slots(start, count, size)).size)


def held_window(ring: npt.NDArray[np.void], start: int, count: int, size: int) -> tuple[int, int, int, bool] | None:
    """``held.judge_doorbell``'s facts of a TX window read in one compiled call (``ring_marks.held``): None where
    the numpy path reads them (not loaded, or the ring is not the 16-byte format of ``size`` slots)."""
    if size != len(ring) or ring.dtype != TX_DESC:
        return None
    return ring_marks.held(ring, start, count, _DONE_INTS, _SENT_INTS, _EOP_INT)


def atomic_window(ring: npt.NDArray[np.void], start: int, count: int, size: int) -> tuple[int, int] | None:
    """``rules.window_atomicity`` of the ``count`` TX slots from ``start`` on, in one compiled call where the ring
    is the 16-byte format of ``size`` slots (the refusal mark and ``_SENT`` are its refused and sent slots)."""
    if size == len(ring) and ring.dtype == TX_DESC:
        fast = ring_marks.atomic(ring, start, count, _MARK_INTS["tx"], _SENT_INTS, _EOP_INT)
        if fast is not None:
            return None if fast[0] < 0 else fast
    return window_atomicity(ring, indices.slots(start, count, size))


def _ring_pass(kind: str, ring: npt.NDArray[np.void]) -> RingPass | None:
    """The compiled reading of a ring of the 16-byte format (None: not loaded, or the ring is read field by field),
    with ``_MARKS``, ``_SENT``, ``_EOP`` and ``_REAPED``'s masks: the tests ``refusal_marks``, ``_whole_packets``
    and ``_acknowledge`` make."""
    if _mark_test(kind, ring) is None:
        return None
    return RingPass.of(
        ring,
        mark=_MARK_INTS[kind],
        sent=_SENT_INTS,
        eop=_EOP_INT,
        clear_mark=int(_REAPED[kind]),
        clear_sent=int(_REAPED["tx"]),
    )


def _mark_test(kind: str, ring: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.uint64], np.uint64, np.uint64] | None:
    """``refusal_marks``' one masked test: the ring's second words (a view) and ``_MARKS``' mask and value, where the
    ring is the contiguous 16-byte format (None: read field by field)."""
    if ring.dtype == (TX_DESC if kind == "tx" else RX_DESC) and ring.flags.c_contiguous:
        mask, value = _MARKS["tx" if kind == "tx" else "rx"]
        return ring.view("<u8")[1::2], mask, value
    return None


def refusal_marks(
    kind: str, ring: npt.NDArray[np.void], slots: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.int64]:
    """Slots of a tenant's ring that carry the kernel's refusal mark, as the tenant reads them.

    TX: DD and REFUSED in the status byte.  RX: DD with RXE and length 0
    (the device never completes a buffer it wrote with length 0).
    ``slots``: look at these slots only (positions into ``slots`` are returned).  The fields are read as one
    masked test of each descriptor's second 64-bit word where the ring is the 16-byte format (``_MARKS``).
    """
    test = _mark_test(kind, ring)
    if test is not None:
        words, mask, value = test
        if slots is not None:
            words = words[slots]
        return ((words & mask) == value).nonzero()[0]
    status = ring["status"] if slots is None else ring["status"][slots]
    if kind == "tx":
        want = np.uint8(TXD_STAT_DD | TXD_STAT_REFUSED)
        return ((status & want) == want).nonzero()[0]
    errors = ring["errors"] if slots is None else ring["errors"][slots]
    length = ring["length"] if slots is None else ring["length"][slots]
    return (
        ((status & np.uint8(RXD_STAT_DD)) != 0) & ((errors & np.uint8(RXD_ERR_REFUSED)) != 0) & (length == 0)
    ).nonzero()[0]


def _whole_packets(
    key: QueueKey,
    ring: npt.NDArray[np.void],
    refused: npt.NDArray[np.int64],
    words: npt.NDArray[np.uint64] | None = None,
) -> list[Escape]:
    """PKT_BAD_FRAGMENT from the tenant's side: no packet of her TX ring (by the EOP bits she wrote) may have a
    slot refused and another completed by the device (DD without REFUSED) in one step (``packet_atomicity``).
    The completions are reaped here (status cleared, as a driver takes a completed slot back): each step sees
    its own.  ``words``: the ring's second 64-bit words (``_mark_test``), read as one masked test (``_SENT``)."""
    status = ring["status"]
    if words is not None:
        sent = ((words & _SENT[0]) == _SENT[1]).nonzero()[0]
    else:
        sent = ((status & np.uint8(TXD_STAT_DD | TXD_STAT_REFUSED)) == np.uint8(TXD_STAT_DD)).nonzero()[0]
    found = []
    split = []
    if refused.size and sent.size:  # a split needs both (``packet_atomicity``): the EOP bits are read only then
        eop = (ring["cmd"] & np.uint8(TXD_CMD_EOP)) != 0
        split = packet_atomicity(eop, refused, sent, len(ring))
    if split:
        found.append(_split(key, len(split), *split[0]))
    if sent.size:
        status[sent] = 0
    return found


def _split(key: QueueKey, splits: int, sent: int, refused: int) -> Escape:
    """``_whole_packets``' finding: ``splits`` packets split, the first at ``sent`` (no EOP) and ``refused``."""
    return Escape(
        "rule",
        f"{key[0]} {key[1]} queue {key[2]}: slot {sent} (no EOP) was sent and slot {refused} "
        f"of its packet refused ({splits} such), which breaks PKT_BAD_FRAGMENT "
        "(a packet goes whole or not at all)",
        key[0],
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
    (``records_of``) must have grown by at least the marks; the slot-by-slot
    match runs per step when the sink keeps its records in memory
    (MemoryAudit) and in ``finish`` for a file-backed log.  Per step, the
    step's records must also be held one per seq (a full bounded store drops
    only its oldest), so a lost record is found even when the counters add up.
    ``finish`` checks that counters equal records and, for a file-backed
    AuditLog, that the chain verifies and that the file holds one descriptor
    record per mark seen, in one pass: ``verify`` (verifier/audit/read.py,
    passed in, so this module still imports nothing of verifier/) walks the
    chain and hands each verified record to a tally (``_LogTally``) that keeps
    only counts.  A log followed step by step (``follow`` and ``holds``, as a
    campaign wires them) is not walked again: ``_finish_followed`` verifies the
    chain, proves the files hold the bytes followed, and compares the counts
    taken as the records were followed.
    """

    sink: AuditSinkLike
    #: verifier.audit.read.verify: called as ``verify(files, on_record=...)``, returns an object with .ok, .problem
    #: and .first_seq (where the kept chain starts when the log's disk budget pruned older records)
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
    #: for a file-backed log (``capacity`` 0): returns the records written to the file since its last call, as
    #: dicts or runs of columns (fuzz/log_follow.py, passed in: this module reads no file format of verifier/), so
    #: the on-disk log is matched slot by slot and its reasons judged after every step, not only at the end
    follow: Callable[[], Sequence[dict[str, Any] | RecordSpanLike]] | None = None
    #: with ``follow``: whether the log's files hold, from where following began, exactly the bytes followed
    #: (``LogFollower.holds``); then ``finish`` takes the records it already matched and judged step by step
    #: instead of re-reading them one by one (it still verifies the chain)
    holds: Callable[[Sequence[Path]], bool] | None = None
    #: with ``follow``: the last seq the log's disk budget deleted, -1 when none (``LogFollower.pruned_through``):
    #: records deleted before they were followed are not lost by the kernel, as a full in-memory store's are not
    pruned: Callable[[], int] | None = None
    #: what the followed records added up to (``_Followed``), for ``finish``
    _followed: _Followed | None = None
    #: ``_context`` per (oracle, nic, kind, queue), for the rings attached now
    _contexts: dict[tuple[int, str, str, int | None], dict[str, Any]] = field(default_factory=dict)
    #: ``_mark_test`` per attached ring
    _mark_tests: dict[QueueKey, tuple[npt.NDArray[np.uint64], np.uint64, np.uint64] | None] = field(
        default_factory=dict
    )
    #: the compiled reading of each attached ring (``_ring_pass``; absent: the numpy path reads it)
    _passes: dict[QueueKey, RingPass] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sink.path is not None and self.verify is None:
            raise ValueError("a file-backed audit log needs verify (verifier.audit.read.verify)")
        self._start = self._seq = audit_count(self.sink)
        self._start_counters = Counter(dict(self.sink.counters))
        self._followed = _Followed(self._start)

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
        """Judge this arena's rings from now on (a campaign calls it for every new arena).  An empty ring is not
        attached: the virtio machine has none (its refusals are judged by fuzz/oracle/virtq.py)."""
        rings = {(nic, "tx", queue): arena.tx_ring, (nic, "rx", queue): arena.rx_ring}
        self.attach({key: ring for key, ring in rings.items() if ring.size})
        arena.oracle.audit = self
        self.oracle = arena.oracle
        arena.oracle.clock = lambda: audit_count(self.sink)

    def attach(self, rings: dict[QueueKey, npt.NDArray[np.void]]) -> None:
        self.rings = dict(rings)
        # each ring's refusal-mark test, made once: after_step reads the marks of every ring after every step
        self._mark_tests = {key: _mark_test(key[1], ring) for key, ring in self.rings.items()}
        passes = {key: _ring_pass(key[1], ring) for key, ring in self.rings.items()}
        self._passes = {key: p for key, p in passes.items() if p is not None}
        self._contexts.clear()
        for key in self.rings:
            self._counts[key] = self._count(key)
        self._seq = audit_count(self.sink)

    def _count(self, key: QueueKey) -> int:
        nic, kind, queue = key
        return self.sink.records_of(nic, queue, kind)

    def after_step(self) -> list[Escape]:
        found: list[Escape] = []
        seen: dict[QueueKey, npt.NDArray[np.int64]] = {}
        tests, passes = self._mark_tests, self._passes
        rules = self.oracle is not None and self.oracle.rules is not None
        for key, ring in self.rings.items():
            ring_pass = passes.get(key)
            if ring_pass is not None:  # the same reading and reaping in one compiled call (fuzz/oracle/ring_marks.py)
                slots, split = ring_pass.step(completions=rules and key[1] == "tx")
                if split[0]:
                    found.append(_split(key, *split))
            else:
                test = tests.get(key)
                words = None
                if test is not None:
                    words, mask, value = test
                    slots = ((words & mask) == value).nonzero()[0]
                else:
                    slots = refusal_marks(key[1], ring)
                if key[1] == "tx" and rules:
                    found += _whole_packets(key, ring, slots, words)
                if slots.size:
                    _acknowledge(key[1], ring, slots)  # (no mark, nothing to reap)
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
        """Slot by slot, for a sink that keeps its records in memory (``capacity`` not 0)."""
        end = audit_count(self.sink)
        start, self._seq = self._seq, end
        capacity = self.sink.capacity
        following = capacity == 0 and self.follow is not None
        if following:
            commit = getattr(self.sink, "commit", None)
            if callable(commit):
                commit()  # what the sink buffers reaches the file (a doorbell commits its own already)
            items: list[dict[str, Any] | RecordSpanLike] = list(self.follow()) if self.follow is not None else []
            capacity = None  # the file holds every record
            if self._followed is not None:
                self._followed.add(items)
        elif end == start or capacity == 0:
            return []
        else:
            items = list(self.sink.since(start))
        if end == start and not items:
            return []
        run = _run(items, end)
        if run is not None and run[1] > end:
            return []  # recorded while this was read (another thread): the counts above still hold
        if following and (run is None or run[0] > start) and self.pruned is not None and self.pruned() >= start:
            return []  # the budget deleted files of this step before they were read: the end check verifies the rest
        if run is None or run[1] < end or (run[0] > start and not _evicted(capacity, end - run[0])):
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
            if r.reason.size and _named(r.names)[r.reason].all():
                continue  # every code has a name (one lookup; the codes are walked only to name a blank one)
            codes = np.bincount(r.reason, minlength=1).nonzero()[0].tolist()
            for code in codes:
                if not r.names.get(code):
                    seq = r.seq + int(np.argmax(r.reason == code))
                    blank.append(Escape("audit", f"record {seq} has no reason", str(r.nic or "")))
        found = []
        for key, slots in seen.items():
            parts = named.get(key, [])
            if not parts and not slots.size and key not in singles:
                continue  # no mark and no record: nothing to match (most rings, most steps)
            if key in singles:
                parts = [*parts, np.array(singles[key], dtype=np.int64)]
            described = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else slots[:0]
            ring_pass = self._passes.get(key)
            same = None if ring_pass is None else ring_pass.match(slots, described)
            if same is None:  # ``slots`` are sorted (``refusal_marks``: nonzero): only the records' slots need a sort
                same = described.size == slots.size and bool((np.sort(described) == slots).all())
            if same:
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
        """Each record's reason must be true of what it refused (fuzz/oracle/reasons.py), judged per batch."""
        oracle = self.oracle
        if oracle is None:
            return []
        found: list[Escape] = []
        # a virtqueue chain's record is judged where its notify is, from the oracle's own walk (fuzz/oracle/virtq.py)
        items = [i for i in items if not (isinstance(i, dict) and (i.get("detail") or {}).get("format") == "virtq")]
        for item in _runs(items):
            names: Mapping[int, str]
            if isinstance(item, list):  # consecutive descriptor records of one queue, read from a file: as columns
                rows, names, codes = self._run_rows(oracle, item)
            elif isinstance(item, LoggedSpan):  # the same, parsed into columns as the file was followed
                rows = item.rows(self._context(oracle, item.nic, item.kind, item.queue))
                names, codes = item.names, item.reason
            elif isinstance(item, dict):
                rows, names, codes = self._dict_rows(oracle, item), {0: str(item.get("reason") or "")}, _ZERO
            else:
                rows, names, codes = self._span_rows(oracle, item), item.names, item.reason
            spans = oracle.references(rows.tenant, rows.seq, rows.seq + int(codes.size))
            whole = len(spans) == 1 and spans[0][:2] == (rows.seq, rows.seq + codes.size)
            if whole:  # the rows are this call's own: every row's reason set here, not by ``judge``'s copy
                rows.codes, rows.names = codes, names
            if not whole and spans:  # a packet's records are judged together, whatever the pin reference did
                for line in judge(rows, names, codes, spans[0][2], only=_PACKET):
                    found.append(Escape("audit", f"wrong reason: {line}", rows.nic))
            for lo, hi, ref in spans:
                part = rows if whole else _slice(rows, lo - rows.seq, hi - lo)
                skip = _NONE if whole else _PACKET
                for line in judge(part, names, codes[lo - rows.seq : hi - rows.seq], ref, skip=skip):
                    found.append(Escape("audit", f"wrong reason: {line}", rows.nic))
        return found

    def _context(self, oracle: Oracle, nic: str, kind: str, queue: int | None) -> dict[str, Any]:
        """What the oracle knows of a record's queue (its owner, ring size, tails, rule book): the same for every
        record of the queue while the same rings and oracle are watched, so kept until ``attach`` or ``watch``."""
        key = (id(oracle), nic, kind, queue)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = self._context_of(oracle, nic, kind, queue)
        return context

    def _context_of(self, oracle: Oracle, nic: str, kind: str, queue: int | None) -> dict[str, Any]:
        tenant = oracle.queue_owner.get(nic)
        ring = self.rings.get((nic, kind, queue if queue is not None else -1))
        tails = frozenset(
            queue_reg(TDT if k == "tx" else RDT, q) for (n, k, q) in self.rings if n == nic and k in ("tx", "rx")
        )
        ring_size = None if ring is None else len(ring)
        return {"tenant": tenant, "ring_size": ring_size, "tails": tails, "rules": oracle.rules}

    def _span_rows(self, oracle: Oracle, span: RecordSpanLike) -> Rows:
        rows = Rows(span.seq, span.nic, span.kind, **self._context(oracle, span.nic, span.kind, span.queue))
        descs = span.descs
        if descs is not None and descs.dtype.names is not None and "addr" in descs.dtype.names:
            rows.addr = descs["addr"].astype(np.uint64)
            extra = span.extra or {}
            rows.detail = extra
            if span.kind == "rx":
                rows.length = np.full(descs.size, int(extra.get("checked_bytes", -1)), dtype=np.int64)
            else:
                rows.length = descs["length"].astype(np.int64)
                rows.cmd = descs["cmd"]
                rows.cso, rows.css = descs["cso"].astype(np.int64), descs["css"].astype(np.int64)
                if span.ring_index is not None:
                    rows.slot = span.ring_index.astype(np.int64)
            rows.bad_byte = span.bad_byte
            rows.owner = span.owner
        elif span.iova is not None and span.length is not None:
            rows.addr = span.iova.astype(np.uint64)
            rows.length = span.length.astype(np.int64)
            rows.write = bool(span.write)
        return rows

    def _run_rows(
        self, oracle: Oracle, run: list[dict[str, Any]]
    ) -> tuple[Rows, dict[int, str], npt.NDArray[np.uint8]]:
        """Consecutive descriptor records of one queue (dicts, as read from a file) as one set of columns."""
        first = run[0]
        nic, kind = str(first["nic"] or ""), str(first["kind"] or "")
        rows = Rows(int(first["seq"]), nic, kind, **self._context(oracle, nic, kind, first["queue"]))
        descs = [r["desc"] for r in run]
        details = [r["detail"] or {} for r in run]
        rows.addr = np.array([int(d["addr"]) for d in descs], dtype=np.uint64)
        if kind == "rx":
            rows.length = np.array([int(d.get("checked_bytes", -1)) for d in details], dtype=np.int64)
        else:
            rows.length = np.array([int(d.get("length", 0)) for d in descs], dtype=np.int64)
            rows.cmd = np.array([int(d.get("cmd", 0)) for d in descs], dtype=np.uint8)
            rows.cso = np.array([int(d.get("cso", 0)) for d in descs], dtype=np.int64)
            rows.css = np.array([int(d.get("css", 0)) for d in descs], dtype=np.int64)
            rows.slot = np.array([int(r.get("ring_index") or 0) for r in run], dtype=np.int64)
        rows.bad_byte = np.array([_signed_bad_byte(d) for d in details], dtype=np.int64)
        rows.owner = np.array([str(d.get("owner", "")) for d in details], dtype=np.str_)
        rows.detail = details[0]
        codes_of: dict[str, int] = {}
        codes = np.array([codes_of.setdefault(str(r["reason"]), len(codes_of)) for r in run], dtype=np.uint8)
        return rows, {code: name for name, code in codes_of.items()}, codes

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
                rows.cso = np.array([int(desc.get("cso", 0))], dtype=np.int64)
                rows.css = np.array([int(desc.get("css", 0))], dtype=np.int64)
                rows.slot = np.array([int(record.get("ring_index") or 0)], dtype=np.int64)
            rows.bad_byte = np.array([_signed_bad_byte(detail)], dtype=np.int64)
            rows.owner = np.array([str(detail.get("owner", ""))], dtype=np.str_)
        elif kind == "iommu" and "iova" in detail:
            rows.addr = np.array([int(str(detail["iova"]), 0)], dtype=np.uint64)
            rows.length = np.array([int(detail.get("length", 0))], dtype=np.int64)
            rows.write = detail.get("access") == "write"
        return rows

    def finish(self) -> list[Escape]:
        """End of a campaign: counters equal records; a file-backed log's chain verifies and matches the marks."""
        found: list[Escape] = []
        counters = Counter(dict(self.sink.counters))
        counters.subtract(self._start_counters)
        counted = +counters
        end = audit_count(self.sink)
        path = self.sink.path
        if path is not None and self.verify is not None:
            files = [Path(path), *sorted(Path(path).parent.glob(Path(path).name + ".*"))]
            files = [f for f in files if f.exists() and (f == Path(path) or f.suffix[1:].isdigit())]
            followed = self._finish_followed(files, counted, end)
            if followed is not None:
                return followed
            tally = _LogTally(self, self._start)
            result = self.verify(files, on_record=tally.take)
            if not result.ok:
                return [Escape("audit", f"audit chain does not verify: {result.problem}")]
            tally.flush()
            if result.first_seq > self._start:  # the log's disk budget deleted records of this run: totals only
                if sum(counted.values()) != end - self._start:
                    found.append(
                        Escape("audit", f"counters sum to {sum(counted.values())}, {end - self._start} records")
                    )
                return found + tally.wrong[:LOGGED_WRONG_LIMIT]
            found += tally.wrong[:LOGGED_WRONG_LIMIT]
            written, held, described = tally.written, tally.records, tally.described
        else:
            items = list(self.sink.since(self._start))
            held = sum(_width(r) for r in items)
            if _evicted(self.sink.capacity, sum(_width(r) for r in self.sink.since(0))) and held != end - self._start:
                # evicted by a bounded store: compare the totals
                if sum(counted.values()) != end - self._start:
                    found.append(
                        Escape("audit", f"counters sum to {sum(counted.values())}, {end - self._start} records")
                    )
                return found
            written, described = self._tally_held(items)
        return found + self._compare(written, held, described, counted, end)

    def _finish_followed(self, files: list[Path], counted: Counter[tuple[Any, ...]], end: int) -> list[Escape] | None:
        """``finish`` for a log followed step by step: None when the short way does not apply (then the log is
        re-read record by record, as for a log nobody followed).

        Every record from ``_start`` to ``end`` was followed once, in order, and matched and judged after its
        step (``_Followed``); the chain verifies; it ends at ``end - 1`` and starts at or before ``_start``;
        and the files hold exactly the bytes followed (``holds``).  Then the records on disk from ``_start``
        on are the records followed, and the counts taken as they were followed are the file's.
        """
        followed = self._followed
        if followed is None or self.holds is None or self.verify is None or not followed.whole(end):
            return None
        # ``holds`` re-reads and re-hashes the followed bytes (file reads and SHA-256 release the GIL): on a thread
        # of its own while ``verify`` runs, so the two reads of the log overlap instead of following each other
        same = _Background(self.holds, files)
        try:
            result = self.verify(files, on_record=None)
        finally:
            holds = same.result()
        if not result.ok:
            return [Escape("audit", f"audit chain does not verify: {result.problem}")]
        if result.first_seq > self._start or result.head_seq != end - 1 or not holds:
            return None
        return self._compare(followed.written, followed.records, followed.described(self.rings), counted, end)

    def _compare(
        self,
        written: Counter[tuple[Any, Any, Any]],
        held: int,
        described: Counter[tuple[Any, Any, Any, Any]],
        counted: Counter[tuple[Any, ...]],
        end: int,
    ) -> list[Escape]:
        """Counters equal records, one record per seq, one descriptor record per refusal mark."""
        found = []
        if written != counted or held != end - self._start:
            diff = sorted(set(written.items()) ^ set(counted.items()), key=str)[:4]
            found.append(Escape("audit", f"counters do not equal records ({held} records): {diff}"))
        marks = self.marks
        if described != marks:
            lost = sum((marks - described).values())
            extra = sum((described - marks).values())
            found.append(Escape("audit", f"{lost} refused descriptors without a record, {extra} records without one"))
        return found

    def _tally_held(
        self, items: Sequence[dict[str, Any] | RecordSpanLike]
    ) -> tuple[Counter[tuple[Any, Any, Any]], Counter[tuple[Any, Any, Any, Any]]]:
        """Held records per (nic, queue, reason), and descriptor records of the watched queues per ring slot."""
        written: Counter[tuple[Any, Any, Any]] = Counter()
        described: Counter[tuple[Any, Any, Any, Any]] = Counter()
        for r in items:
            if isinstance(r, dict):
                written[(r["nic"], r["queue"], r["reason"])] += 1
                if r["desc_hex"] is not None and (r["nic"], r["kind"], r["queue"]) in self.rings:
                    described[(r["nic"], r["kind"], r["queue"], r["ring_index"])] += 1
                continue
            _count_reasons(written, r)
            if r.ring_index is not None and (r.nic, r.kind, r.queue) in self.rings:  # descriptor records
                slots, times = np.unique(r.ring_index, return_counts=True)
                for slot, n in zip(slots.tolist(), times.tolist(), strict=True):
                    described[(r.nic, r.kind, r.queue, slot)] += n
        return written, described


#: ``_Followed`` counts the descriptor records' slots it collected every so many spans (bounded memory).
FOLD_SPANS = 1024
#: The keys of a record that ``_LogTally.take`` counts by, and those of a descriptor record's slot.
_COUNTED = frozenset({"seq", "nic", "queue", "reason", "desc_hex"})
_DESCRIBED = frozenset({"kind", "ring_index"})


def _count_reasons(written: Counter[tuple[Any, Any, Any]], span: RecordSpanLike) -> None:
    """Add a span's records to ``written``, per (nic, queue, reason): one count per distinct reason code."""
    times = np.bincount(span.reason)  # (codes are uint8: a bincount, not a sort)
    for code in times.nonzero()[0].tolist():
        written[(span.nic, span.queue, span.names[code])] += int(times[code])


class _Followed:
    """The records of a followed log, as ``AuditWatch._match_records`` took them step by step: how many, whether
    one per seq in order from the watch's start, and the counts ``finish`` compares (as ``_LogTally`` counts a log
    it re-reads): records per (nic, queue, reason), descriptor records per (nic, kind, queue, ring slot).
    Per-record Python only for the records that came as dicts (events, odd chunks); a span is counted in numpy."""

    def __init__(self, start: int) -> None:
        self.next = start
        self.records = 0
        #: a record out of order, repeated or missing, or one without the keys the counts need: not usable
        self.odd = False
        self.written: Counter[tuple[Any, Any, Any]] = Counter()
        self._slots: Counter[tuple[Any, Any, Any, Any]] = Counter()
        self._pending: list[tuple[tuple[Any, Any, Any], npt.NDArray[np.int64]]] = []

    def whole(self, end: int) -> bool:
        """Every record up to ``end`` was followed, once each and in order."""
        return not self.odd and self.next == end

    def add(self, items: Sequence[dict[str, Any] | RecordSpanLike]) -> None:
        for r in items:
            if isinstance(r, dict):
                seq = r.get("seq")
                if type(seq) is not int or seq != self.next or not r.keys() >= _COUNTED:
                    self.odd = True  # (``_LogTally.take`` reads these keys of every record: the long way says)
                    return
                if r["desc_hex"] is not None and not r.keys() >= _DESCRIBED:
                    self.odd = True
                    return
                self.next = seq + 1
                self.records += 1
                self.written[(r["nic"], r["queue"], r["reason"])] += 1
                if r["desc_hex"] is not None:
                    self._slots[(r["nic"], r["kind"], r["queue"], r["ring_index"])] += 1
                continue
            if r.seq != self.next:
                self.odd = True
                return
            self.next = r.seq + len(r)
            self.records += len(r)
            _count_reasons(self.written, r)
            if r.ring_index is not None:
                self._pending.append(((r.nic, r.kind, r.queue), r.ring_index))
                if len(self._pending) >= FOLD_SPANS:
                    self._fold()

    def _fold(self) -> None:
        by_key: dict[tuple[Any, Any, Any], list[npt.NDArray[np.int64]]] = {}
        for key, slots in self._pending:
            by_key.setdefault(key, []).append(slots)
        self._pending.clear()
        for key, parts in by_key.items():
            slots, times = np.unique(np.concatenate(parts), return_counts=True)
            for slot, n in zip(slots.tolist(), times.tolist(), strict=True):
                self._slots[(*key, slot)] += n

    def described(self, rings: Mapping[QueueKey, Any]) -> Counter[tuple[Any, Any, Any, Any]]:
        """Descriptor records of the queues in ``rings`` per (nic, kind, queue, ring slot)."""
        self._fold()
        return Counter({k: n for k, n in self._slots.items() if k[:3] in rings})


#: Wrong reasons reported from a file-backed log at the end (the first few; one is already an escape).
LOGGED_WRONG_LIMIT = 8
#: Consecutive descriptor records judged in one ``judge`` call at most.
LOGGED_RUN = 4096
#: ``_LogTally`` counts the keys it collected every so many records (bounded memory, C-speed counting).
COUNT_EVERY = 65536


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
        self._written: Counter[tuple[Any, Any, Any]] = Counter()
        self._described: Counter[tuple[Any, Any, Any, Any]] = Counter()
        #: keys of records taken and not yet counted: counted in bulk (``Counter.update`` over a list runs in C)
        self._keys: list[tuple[Any, Any, Any]] = []
        self._slots: list[tuple[Any, Any, Any, Any]] = []
        self.records = 0
        self.wrong: list[Escape] = []
        self._run: list[dict[str, Any]] = []
        self._key: tuple[Any, Any, Any] | None = None

    @property
    def written(self) -> Counter[tuple[Any, Any, Any]]:
        """Records per (nic, queue, reason)."""
        self._count()
        return self._written

    @property
    def described(self) -> Counter[tuple[Any, Any, Any, Any]]:
        """Descriptor records of the watched queues per (nic, kind, queue, ring slot)."""
        self._count()
        return self._described

    def _count(self) -> None:
        rings = self.watch.rings
        self._written.update(self._keys)
        self._described.update(k for k in self._slots if k[:3] in rings)
        self._keys.clear()
        self._slots.clear()

    def take(self, r: dict[str, Any]) -> None:
        """One verified record (``verify``'s ``on_record``): two appends, unless its reason is judged here."""
        if r["seq"] < self.start:
            return
        self.records += 1
        nic, queue, reason = r["nic"], r["queue"], r["reason"]
        self._keys.append((nic, queue, reason))
        if r["desc_hex"] is not None:
            self._slots.append((nic, r["kind"], queue, r["ring_index"]))
        if len(self._keys) >= COUNT_EVERY:
            self._count()
        if reason not in WITHOUT_PINS or self.oracle is None or self.ref is None:
            return
        if len(self.wrong) >= LOGGED_WRONG_LIMIT:
            return
        kind = r["kind"]
        desc = r["desc"]
        if not (desc and "addr" in desc) or reason in EVENT_PREDICATES:  # an event: judged on its own detail
            rows = self.watch._dict_rows(self.oracle, r)
            lines = judge(rows, {0: str(reason)}, _ZERO, self.ref, only=WITHOUT_PINS)
            self.wrong += [Escape("audit", f"wrong reason: {line}", str(nic or "")) for line in lines]
            return
        key = (nic, kind, queue)
        run = self._run
        if run and (key != self._key or r["seq"] != run[-1]["seq"] + 1 or _full(run)):
            self.flush()
        self._key = key
        self._run.append(r)

    def flush(self) -> None:
        """Judge the pending run of consecutive descriptor records of one queue."""
        run, self._run = self._run, []
        if not run or self.oracle is None or self.ref is None:
            return
        rows, names, codes = self.watch._run_rows(self.oracle, run)
        nic = rows.nic
        for line in judge(rows, names, codes, self.ref, only=WITHOUT_PINS):
            self.wrong.append(Escape("audit", f"wrong reason: {line}", nic))


class _Background:
    """``fn(*args)`` on a thread of its own, started now; ``result()`` waits for it (and raises what it raised)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._out: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="audit-holds", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._out = fn(*args)
        except BaseException as error:  # handed to the caller by ``result``
            self._error = error

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out


def _signed_bad_byte(detail: Mapping[str, Any]) -> int:
    """A record's ``first_bad_byte`` (hex text) as the int64 the reason predicates read; -1 when none."""
    bad = int(str(detail["first_bad_byte"]), 0) if "first_bad_byte" in detail else -1
    return bad - (1 << 64) if bad >= 1 << 63 else bad


_ZERO = np.zeros(1, dtype=np.uint8)
_PACKET = frozenset(PACKET_PREDICATES)
_NONE: frozenset[str] = frozenset()


def _full(run: list[dict[str, Any]]) -> bool:
    """A run of logged records is judged once it holds ``LOGGED_RUN``, cut after a packet's end (EOP) so a
    packet's records are judged together (or at twice that, whatever: no packet is so long)."""
    if len(run) < LOGGED_RUN:
        return False
    desc = run[-1].get("desc") or {}
    return bool(int(desc.get("cmd", 0)) & TXD_CMD_EOP) or run[-1].get("kind") != "tx" or len(run) >= 2 * LOGGED_RUN


def _descriptor_record(r: dict[str, Any]) -> bool:
    desc = r.get("desc")
    return r.get("kind") in ("tx", "rx") and isinstance(desc, dict) and "addr" in desc


def _runs(
    items: list[dict[str, Any] | RecordSpanLike],
) -> list[list[dict[str, Any]] | dict[str, Any] | RecordSpanLike]:
    """``items`` with consecutive descriptor records (dicts) of one queue joined into lists, to judge as columns."""
    out: list[list[dict[str, Any]] | dict[str, Any] | RecordSpanLike] = []
    run: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and _descriptor_record(item) and str(item.get("reason")) not in EVENT_PREDICATES:
            if run and (
                (item.get("nic"), item.get("kind"), item.get("queue"))
                != (run[-1].get("nic"), run[-1].get("kind"), run[-1].get("queue"))
                or item.get("seq") != run[-1].get("seq", -2) + 1
                or _full(run)
            ):
                out.append(run)
                run = []
            run.append(item)
            continue
        if run:
            out.append(run)
            run = []
        out.append(item)
    if run:
        out.append(run)
    return out


def _slice(rows: Rows, lo: int, n: int) -> Rows:
    """Records ``lo..lo+n-1`` of ``rows`` (the pin reference changed in between)."""
    part = slice(lo, lo + n)
    columns = ("addr", "length", "cmd", "bad_byte", "slot", "cso", "css", "owner")
    cut = {k: getattr(rows, k)[part] for k in columns if getattr(rows, k) is not None}
    return dataclasses.replace(rows, seq=rows.seq + lo, **cut)


def audit_complete(watch: AuditWatch) -> list[Escape]:
    """The end-of-campaign audit check (``AuditWatch.finish``), for fuzz/campaign.py."""
    return watch.finish()


def audit_count(sink: AuditSinkLike) -> int:
    """Records an audit sink has taken so far."""
    return int(sink.next_seq)


#: ``_named`` per read-only names mapping seen: (the mapping, its table), by ``id`` (an in-memory span's ``names`` is
#: the verifier's reason table, one read-only object for every span; a mapping that may change is not kept)
_NAMED: dict[int, tuple[Mapping[int, str], npt.NDArray[np.bool_]]] = {}


def _named(names: Mapping[int, str]) -> npt.NDArray[np.bool_]:
    """Per reason code (a byte): whether ``names`` gives it a non-blank name, as a table to index by codes."""
    kept = _NAMED.get(id(names))
    if kept is not None and kept[0] is names:
        return kept[1]
    table = np.zeros(256, dtype=bool)
    for code, name in names.items():
        if 0 <= code < 256 and name:
            table[code] = True
    if isinstance(names, MappingProxyType) and len(_NAMED) < 64:  # (the reference keeps its id from being reused)
        _NAMED[id(names)] = (names, table)
    return table


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


def _evicted(capacity: int | None, held: int) -> bool:
    """Whether a store holding ``held`` records from some seq on holds nothing older: it is full and evicts.

    A bounded in-memory store (``capacity``) drops its oldest records only; a record missing anywhere else,
    or while the store has room, was lost.
    """
    return capacity is not None and held >= capacity
