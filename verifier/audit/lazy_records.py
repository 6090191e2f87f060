"""The newest audit records of an in-memory sink, bounded, with batches kept as columns until read.

``LazyRecords`` behaves like the ``deque(maxlen=keep)`` of record dicts it
replaces (``len``, iteration, indexing, ``append``, ``pop``, ``popleft``,
``maxlen``), but a batch of refusals (``RecordRows``: rejected descriptors,
IOMMU faults) is stored as one chunk and each of its records is built only
when someone reads it.  Eviction past ``maxlen`` works per record, exactly
as a bounded deque's, by narrowing the oldest chunk.

``since(seq)`` is the data-only view for an outside observer (the fuzzer's
oracle): the records from ``seq`` on, a single record as its dict and a
batch as a ``RecordSpan`` of plain columns, without building a dict per row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import RecordRows


def as_record(seq: int, entry: AuditRecord) -> dict[str, Any]:
    """The in-memory record of ``entry``, numbered ``seq``: the keys of a log line that say what was refused."""
    raw = entry.raw
    return {
        "seq": seq,
        "tenant": entry.tenant,
        "tenant_name": entry.tenant_name,
        "nic": entry.nic,
        "queue": entry.queue,
        "kind": entry.kind,
        "ring_index": entry.ring_index,
        "desc_hex": raw.hex() if raw is not None else None,
        "desc": entry.fields,
        "reason": entry.reason,
        "detail": entry.detail,
    }


@dataclass(frozen=True)
class RecordSpan:
    """Consecutive records of one queue and kind (seq ``seq`` on), as plain columns.

    ``ring_index`` is the ring slot each record names (its record has
    ``desc_hex``), or None when the records name no descriptor (IOMMU faults).
    ``reason`` holds codes; ``names`` maps a code to the record's ``reason`` string.
    The remaining columns are what the records say about each refusal, for an
    observer that judges whether the reason is true (fuzz/oracle/reasons.py):
    ``descs`` (the descriptors as judged), ``bad_byte`` (``first_bad_byte``, -1
    when none), ``extra`` (detail shared by every row, e.g. ``checked_bytes``),
    ``owner`` (the ``detail.owner`` label of each refused descriptor's offending frame), and for IOMMU faults
    ``iova``, ``length`` and ``write``.  None: not that kind.
    """

    seq: int
    nic: str
    kind: str
    queue: int | None
    ring_index: npt.NDArray[np.int64] | None
    reason: npt.NDArray[np.uint8]
    names: Mapping[int, str]
    descs: npt.NDArray[np.void] | None = None
    bad_byte: npt.NDArray[np.int64] | None = None
    extra: Mapping[str, Any] | None = None
    iova: npt.NDArray[np.uint64] | None = None
    length: npt.NDArray[np.int64] | None = None
    write: bool | None = None
    #: each row's ``detail.owner`` label (``kernel``, ``free``, ``tenantN``, ``own``, ``own-unpinned``; ``""``: none)
    owner: npt.NDArray[np.str_] | None = None

    def __len__(self) -> int:
        return int(self.reason.size)


class _Chunk:
    """Rows ``lo..hi-1`` of a batch whose row 0 has seq ``seq``."""

    __slots__ = ("hi", "lo", "rows", "seq")

    def __init__(self, seq: int, rows: RecordRows) -> None:
        self.seq = seq
        self.rows = rows
        self.lo = 0
        self.hi = len(rows)

    def records(self, lo: int, hi: int) -> Iterator[dict[str, Any]]:
        """Records of rows ``lo..hi-1``, built now."""
        for i, entry in enumerate(self.rows.records(lo, hi), start=lo):
            yield as_record(self.seq + i, entry)

    def span(self, lo: int) -> RecordSpan:
        """Rows ``lo..hi-1`` as columns."""
        rows, part = self.rows, slice(lo, self.hi)
        slots = rows.ring_index
        labels = getattr(rows, "owner_labels", None)  # descriptor refusals name the offending frame's owner

        def column(name: str) -> Any:
            value = getattr(rows, name, None)  # the columns of RejectionBatch or IommuFaultBatch, if present
            return None if value is None else value[part]

        return RecordSpan(
            self.seq + lo,
            rows.nic,
            rows.kind,
            rows.queue,
            None if slots is None else slots[part],
            rows.reason[part],
            rows.names,
            descs=column("descs"),
            bad_byte=column("bad_byte"),
            extra=getattr(rows, "extra", None),
            iova=column("iova"),
            length=column("length"),
            write=getattr(rows, "write", None),
            owner=None if labels is None else labels[part],
        )


Item = dict[str, Any] | _Chunk  # one stored record, or a batch


def _width(item: Item) -> int:
    """How many records ``item`` holds now."""
    return 1 if isinstance(item, dict) else item.hi - item.lo


def _record_at(item: Item, i: int) -> dict[str, Any]:
    """The ``i``-th record ``item`` holds now (0: its oldest), built if it is a batch's."""
    if isinstance(item, dict):
        return item
    (record,) = item.records(item.lo + i, item.lo + i + 1)
    return record


class LazyRecords:
    """Newest ``maxlen`` records (None: all), oldest first; a batch is one chunk until a record is read."""

    def __init__(self, maxlen: int | None = None) -> None:
        if maxlen is not None and maxlen < 0:
            raise ValueError(f"maxlen must be >= 0 or None, got {maxlen}")
        self._maxlen = maxlen
        self._items: deque[Item] = deque()
        self._size = 0

    @property
    def maxlen(self) -> int | None:
        return self._maxlen

    def __len__(self) -> int:
        return self._size

    # -- adding -------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        self._items.append(record)
        self._size += 1
        if self._maxlen is not None and self._size > self._maxlen:
            self._trim()

    def add_batch(self, seq: int, rows: RecordRows) -> None:
        """Store ``rows`` as records ``seq``, ``seq + 1``, ... without building them."""
        if len(rows):
            self._items.append(_Chunk(seq, rows))
            self._size += len(rows)
            if self._maxlen is not None and self._size > self._maxlen:
                self._trim()

    def _trim(self) -> None:
        assert self._maxlen is not None
        while self._size > self._maxlen:
            oldest = self._items[0]
            if isinstance(oldest, dict):
                self._items.popleft()
                self._size -= 1
                continue
            drop = min(self._size - self._maxlen, oldest.hi - oldest.lo)
            oldest.lo += drop
            self._size -= drop
            if oldest.lo == oldest.hi:
                self._items.popleft()

    # -- removing (as a deque does) -------------------------------------------------------
    def pop(self) -> dict[str, Any]:
        """Remove and return the newest record."""
        if not self._items:
            raise IndexError("pop from an empty record store")
        newest = self._items[-1]
        self._size -= 1
        if isinstance(newest, dict):
            return self._items.pop()  # type: ignore[return-value]
        (record,) = newest.records(newest.hi - 1, newest.hi)
        newest.hi -= 1
        if newest.lo == newest.hi:
            self._items.pop()
        return record

    def popleft(self) -> dict[str, Any]:
        """Remove and return the oldest record."""
        if not self._items:
            raise IndexError("pop from an empty record store")
        oldest = self._items[0]
        self._size -= 1
        if isinstance(oldest, dict):
            return self._items.popleft()  # type: ignore[return-value]
        (record,) = oldest.records(oldest.lo, oldest.lo + 1)
        oldest.lo += 1
        if oldest.lo == oldest.hi:
            self._items.popleft()
        return record

    def clear(self) -> None:
        self._items.clear()
        self._size = 0

    # -- reading ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in list(self._items):
            if isinstance(item, dict):
                yield item
            else:
                yield from item.records(item.lo, item.hi)

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        for item in reversed(list(self._items)):
            if isinstance(item, dict):
                yield item
            else:
                yield from reversed(list(item.records(item.lo, item.hi)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        size = self._size
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("record index out of range")
        if index >= size // 2:  # near the newest end (the usual question): walk from there
            left = size - index  # records from the end, counting this one
            for item in reversed(self._items):
                n = _width(item)
                if left <= n:
                    return _record_at(item, n - left)
                left -= n
        else:
            for item in self._items:
                n = _width(item)
                if index < n:
                    return _record_at(item, index)
                index -= n
        raise IndexError("record index out of range")  # not reached: the sizes add up

    def since(self, seq: int) -> list[dict[str, Any] | RecordSpan]:
        """The held records with seq ``seq`` onwards, oldest first: a dict per single record, a span per batch.

        Records already evicted (past ``maxlen``) or popped are simply absent:
        a reader that knows how many to expect compares the count and the first seq.
        """
        found: list[dict[str, Any] | RecordSpan] = []
        for item in reversed(self._items):
            if isinstance(item, dict):
                if int(item.get("seq", -1)) < seq:
                    break
                found.append(item)
                continue
            if item.seq + item.hi <= seq:
                break
            lo = max(item.lo, seq - item.seq)
            found.append(item.span(lo))
            if lo > item.lo:
                break
        found.reverse()
        return found
