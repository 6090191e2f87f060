"""The audit log's one encoder: a record's canonical JSON, one record at a time or a batch from templates.

``encode`` is the canonical JSON of the log (verifier/audit/log.py:
fixed key order, compact, ASCII).  A record's *tail* -- its body from
``,"tenant":`` to the end of ``detail``, the part that says what was
refused -- comes from here in one of two ways: ``record_tail`` encodes one
``AuditRecord`` (every record the log writes one by one), and
``record_tails`` formats a whole batch from templates.  The log puts the
same envelope (``v``, ``seq``, the clock, ``protection``, ``prev``,
``hash``) around either, so the two ways differ only in the tail, and the
templates build every piece of it from ``encode`` and from the same
pieces ``record_tail`` uses (``_where``).

Under attack the audit log writes hundreds of refusals per doorbell, and
building a record dict per row and JSON-encoding the batch costs about
10 µs a record (``AuditLog.record_batch`` before this module).  Within one
batch most of a record is constant (tenant, NIC, queue, kind, the rule text
of each reason) and the rest is integers and hex strings, so each body is
put together from parts encoded once per batch -- every string that could
need JSON escaping (names, rules, owner labels, the shared ``extra``
detail) goes through ``encode`` -- and numbers formatted directly
(Python's ``int`` formats as JSON's integers do).  ``tail_columns`` says
so as typed columns (verifier/audit/columns.py: integers, hex, raw bytes,
picks from tables of escaped strings), which the compiled formatter
(verifier/audit/encode.c) writes row by row into one buffer, or
``interleave`` in Python where it is not compiled.  The result must be byte
for byte ``record_tail`` of each of ``RejectionBatch.records`` /
``IommuFaultBatch.records`` (tests/verifier/test_audit_batch.py compares
whole files); a batch of any other shape gets ``None`` and takes
``record_tail`` row by row.

The same idea as the kernel's audit subsystem formatting ``type=`` records
with ``audit_log_format`` straight into a buffer rather than building a
structure first (kernel/audit.c).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from ring.descriptors import DESC_SIZE
from ring.memory import PAGE_SHIFT
from verifier.audit.columns import Column, Hexes, HexRows, Ints, Picks, interleave
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import REASON_NAMES, IommuFaultBatch, RecordRows, RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, owner_label


def _json_default(value: object) -> object:
    """Make numpy scalars and bytes JSON-able (descriptor fields come from numpy dtypes)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"audit record values must be JSON data, got {type(value).__name__}")


def encode(record: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """The canonical JSON of ``record`` (no newline): fixed key order as given, compact, ASCII.

    A list of records encodes as ``[`` + the records' encodings joined by ``,`` + ``]``.
    """
    text = json.dumps(
        record, separators=(",", ":"), sort_keys=False, ensure_ascii=True, allow_nan=False, default=_json_default
    )
    return text.encode("ascii")


_RULES: dict[int, str] = {r.code: r.rule for r in R.all_reasons()}
#: Detail keys ``RejectionBatch.records`` sets per row: an ``extra`` naming one would replace it in place.
ROW_DETAIL_KEYS = frozenset({"rule", "first_bad_byte", "frame", "owner"})


def _inner(part: dict[str, Any]) -> str:
    """``"k":v,...`` of ``part``: its canonical JSON without the braces."""
    return encode(part).decode("ascii")[1:-1]


def where(tenant: Any, tenant_name: Any, nic: str | None, queue: Any, kind: str) -> str:
    """``,"tenant":..,"kind":..``: where a record comes from, the values converted as the log writes them."""
    return _where_text(int(tenant), str(tenant_name), nic, None if queue is None else int(queue), kind)


@functools.lru_cache(maxsize=1024)
def _where_text(tenant: int, tenant_name: str, nic: str | None, queue: int | None, kind: str) -> str:
    """``_where`` of converted values: a campaign has few queues, each encoded once (not once per batch)."""
    return "," + _inner({"tenant": tenant, "tenant_name": tenant_name, "nic": nic, "queue": queue, "kind": kind})


def record_tail(entry: AuditRecord) -> str:
    """One record's body from ``,"tenant":`` to the end of ``detail``."""
    raw, ring_index = entry.raw, entry.ring_index
    what = {
        "ring_index": None if ring_index is None else int(ring_index),
        "desc_hex": None if raw is None else bytes(raw).hex(),
        "desc": entry.fields,
        "reason": entry.reason,
        "detail": entry.detail,
    }
    return where(entry.tenant, entry.tenant_name, entry.nic, entry.queue, entry.kind) + "," + _inner(what)


@functools.lru_cache(maxsize=1024)
def _reason_head(name: str, code: int) -> str:
    """``"reason":..,"detail":{"rule":..`` of one reason (detail left open), encoded once per process."""
    return _inner({"reason": name, "detail": {"rule": _RULES[code]}})[:-1]


@functools.lru_cache(maxsize=64)
def field_keys(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """``"name":`` of each descriptor field (a comma before all but the first), encoded once per dtype."""
    return tuple((b"," if k else b"") + text({name: 0})[:-1] for k, name in enumerate(names))


@functools.lru_cache(maxsize=1024)
def owner_text(label: str) -> bytes:
    """``,"owner":..`` of one owner label."""
    return b"," + text({"owner": label})


def _int_columns(*columns: np.ndarray[Any, Any]) -> bool:
    """True when every column is one-dimensional integers: ``tolist()`` gives ints, formatted as JSON writes them."""
    return all(c.ndim == 1 and c.dtype.kind in "ui" for c in columns)


def record_tails(rows: RecordRows) -> list[str] | None:
    """Each row's ``record_tail`` (None: a shape not covered by ``tail_columns``; take ``record_tail`` per row)."""
    columns = tail_columns(rows)
    if columns is None:
        return None
    return interleave(len(rows), [*columns, b"\n"]).decode("ascii").split("\n")[:-1]


def tail_columns(rows: RecordRows) -> list[Column] | None:
    """The rows' ``record_tail`` texts as columns (``interleave``): formatted column by column, not row by row."""
    if type(rows) is RejectionBatch:
        return _rejection_columns(rows)
    if type(rows) is IommuFaultBatch:
        return _fault_columns(rows)
    return None


def text(part: dict[str, Any]) -> bytes:
    """``"k":v,...`` of ``part`` as bytes."""
    return _inner(part).encode("ascii")


def _reasons(rows: RecordRows) -> Picks:
    """Each row's ``"reason":..,"detail":{"rule":..`` (detail left open): a table indexed by the reason code."""
    codes = np.flatnonzero(np.bincount(rows.reason, minlength=1)).tolist()
    return Picks(_reason_table(tuple((code, rows.names[code]) for code in codes)), rows.reason)


@functools.lru_cache(maxsize=1024)
def _reason_table(named: tuple[tuple[int, str], ...]) -> list[bytes]:
    """The table ``_reasons`` picks from: the head of each of a batch's reasons at its code (a campaign's
    batches carry a few combinations of reasons, each table built once)."""
    table = [b""] * (max(code for code, _ in named) + 1)
    for code, name in named:
        table[code] = _reason_head(name, code).encode("ascii")
    return table


@functools.cache
def reason_table() -> list[bytes]:
    """The head of every reason at its code, ``b""`` between: the table of every batch (the compiled templates,
    verifier/audit/programs.py), whose codes are known reasons (``reason_counts`` names each first)."""
    return _reason_table(tuple((code, name) for code, name in REASON_NAMES.items()))


@functools.lru_cache(maxsize=64)
def plain_descriptors(dtype: np.dtype[Any]) -> bool:
    """Descriptors of ``DESC_SIZE`` bytes whose fields are all plain integers (``tolist`` gives an int for each)."""
    fields = dtype.fields
    if not dtype.names or fields is None or dtype.itemsize != DESC_SIZE:
        return False
    return all(fields[name][0].kind in "ui" and not fields[name][0].shape for name in dtype.names)


def _rejection_columns(rows: RejectionBatch) -> list[Column] | None:
    descs = rows.descs
    dtype = descs.dtype
    names = dtype.names or ()
    if descs.ndim != 1 or not plain_descriptors(dtype):
        return None
    if not _int_columns(rows.ring_index, rows.reason, rows.bad_byte, rows.owner):
        return None
    extra = rows.extra
    extra_part = b""
    if extra:
        if ROW_DETAIL_KEYS.intersection(extra):
            return None  # ``detail.update(extra)`` would overwrite a row's key in its place
        extra_part = b"," + text(dict(extra))
    n = len(rows)
    raws = np.ascontiguousarray(descs).view(np.uint8).reshape(n, DESC_SIZE)
    place = where(rows.tenant, rows.tenant_name, rows.nic, rows.queue, rows.kind).encode("ascii")
    columns: list[Column] = [
        place + b',"ring_index":',
        Ints(rows.ring_index),
        b',"desc_hex":"',
        HexRows(raws),
        b'","desc":{',
    ]
    for key, name in zip(field_keys(names), names, strict=True):
        columns += [key, Ints(descs[name])]
    columns += [b"},", _reasons(rows)]
    # as RejectionBatch.records: -1 is "no address problem"; a byte at or above 2**63 reads negative in int64
    bad = rows.bad_byte
    if bad.dtype.kind == "u":  # never -1: every row names a byte, below 2**64 already
        has_bad, unsigned = np.ones(n, dtype=bool), bad.astype(np.uint64)
    else:
        has_bad = bad != -1
        unsigned = bad.astype(np.int64).view(np.uint64)  # two's complement: the byte modulo 2**64
    frames = unsigned >> np.uint64(PAGE_SHIFT)
    if has_bad.all():
        columns += [b',"first_bad_byte":"', Hexes(unsigned), b'","frame":', Ints(frames)]
    elif has_bad.any():  # each piece written only in the rows with a bad byte
        present = has_bad.view(np.uint8)
        columns += [
            Picks([b"", b',"first_bad_byte":"'], present),
            Hexes(unsigned, has_bad),
            Picks([b"", b'","frame":'], present),
            Ints(frames, has_bad),
        ]
    owner = rows.owner
    if (owner != NO_OWNER).any():
        codes = sorted(set(owner.tolist()))  # a few distinct owners: a label each, picked per row
        labels = [b"" if o == NO_OWNER else owner_text(owner_label(o, rows.tenant)) for o in codes]
        columns.append(Picks(labels, np.searchsorted(np.array(codes, dtype=owner.dtype), owner)))
    columns.append(extra_part + b"}")
    return columns


def _fault_columns(rows: IommuFaultBatch) -> list[Column] | None:
    if not _int_columns(rows.iova, rows.length, rows.reason):
        return None
    middle = where(rows.tenant, rows.tenant_name, rows.nic, rows.queue, "iommu")
    middle += "," + _inner({"ring_index": None, "desc_hex": None, "desc": None}) + ","
    access = "write" if rows.write else "read"
    vtd = "0x05" if rows.write else "0x06"  # as IommuFaultBatch.records
    end = "," + _inner({"access": access, "vtd_fault_reason": vtd}) + "}"
    return [
        middle.encode("ascii"),
        _reasons(rows),
        b',"iova":"',
        Hexes(rows.iova),
        b'","length":',
        Ints(rows.length),
        end.encode("ascii"),
    ]
