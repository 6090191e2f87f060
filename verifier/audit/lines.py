"""A batch's audit record bodies formatted from per-batch templates: the bytes of ``encode``, no dict per record.

Under attack the audit log writes hundreds of refusals per doorbell, and
building a record dict per row and JSON-encoding the batch costs about
10 µs a record (``AuditLog.record_batch`` before this module).  Within one
batch most of a record is constant (tenant, NIC, queue, kind, the rule text
of each reason) and the rest is integers and hex strings, so each body is
put together from parts encoded once per batch -- every string that could
need JSON escaping (names, rules, owner labels, the shared ``extra``
detail) goes through the log's own ``encode`` -- and numbers formatted
directly (Python's ``int`` formats as JSON's integers do).  The result must
be byte for byte what ``encode`` gives for the record dict
``RejectionBatch.arguments``/``IommuFaultBatch.arguments`` would build
(tests/verifier/test_audit_batch.py compares whole files); a batch of any
other shape gets ``None`` and takes the dict path.

The same idea as the kernel's audit subsystem formatting ``type=`` records
with ``audit_log_format`` straight into a buffer rather than building a
structure first (kernel/audit.c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ring.descriptors import DESC_SIZE
from ring.memory import PAGE_SHIFT
from verifier.audit.rejection_batch import IommuFaultBatch, RecordRows, RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, owner_label

#: The canonical JSON of a dict, as ``verifier.audit.log.encode`` writes it (passed in: audit imports this module).
Encoder = Callable[[dict[str, Any]], bytes]

_RULES: dict[int, str] = {r.code: r.rule for r in R.all_reasons()}
#: Detail keys ``RejectionBatch.arguments`` sets per row: an ``extra`` naming one would replace it in place.
_ROW_DETAIL_KEYS = frozenset({"rule", "first_bad_byte", "frame", "owner"})


def _inner(encode: Encoder, part: dict[str, Any]) -> str:
    """``"k":v,...`` of ``part``: its canonical JSON without the braces."""
    return encode(part).decode("ascii")[1:-1]


def _where(encode: Encoder, rows: RecordRows, tenant: Any, tenant_name: Any, kind: str) -> str:
    """``,"tenant":..,"kind":..`` of every row, as ``AuditLog.record`` converts the values."""
    queue = rows.queue
    return "," + _inner(
        encode,
        {
            "tenant": int(tenant),
            "tenant_name": str(tenant_name),
            "nic": rows.nic,
            "queue": None if queue is None else int(queue),
            "kind": kind,
        },
    )


def _reason_heads(encode: Encoder, rows: RecordRows) -> dict[int, str]:
    """Reason code -> ``"reason":..,"detail":{"rule":..`` (detail left open) for every code in the batch."""
    codes = np.flatnonzero(np.bincount(rows.reason, minlength=1)).tolist()
    return {code: _inner(encode, {"reason": rows.names[code], "detail": {"rule": _RULES[code]}})[:-1] for code in codes}


def _int_columns(*columns: np.ndarray[Any, Any]) -> bool:
    """True when every column is one-dimensional integers: ``tolist()`` gives ints, formatted as JSON writes them."""
    return all(c.ndim == 1 and c.dtype.kind in "ui" for c in columns)


def record_tails(rows: RecordRows, encode: Encoder) -> list[str] | None:
    """Each row's record body from ``,"tenant":`` to the end of ``detail`` (None: a shape not covered here)."""
    if type(rows) is RejectionBatch:
        return _rejection_tails(rows, encode)
    if type(rows) is IommuFaultBatch:
        return _fault_tails(rows, encode)
    return None


def _rejection_tails(rows: RejectionBatch, encode: Encoder) -> list[str] | None:
    descs = rows.descs
    dtype = descs.dtype
    names = dtype.names
    fields = dtype.fields
    if not names or fields is None or dtype.itemsize != DESC_SIZE or descs.ndim != 1:
        return None
    if any(fields[name][0].kind not in "ui" or fields[name][0].shape for name in names):
        return None  # tolist() gives an int for each field only for plain integer fields
    if not _int_columns(rows.ring_index, rows.reason, rows.bad_byte, rows.owner):
        return None
    extra = rows.extra
    extra_part = ""
    if extra:
        if _ROW_DETAIL_KEYS.intersection(extra):
            return None  # ``detail.update(extra)`` would overwrite a row's key in its place
        extra_part = "," + _inner(encode, dict(extra))
    where = _where(encode, rows, rows.tenant, rows.tenant_name, rows.kind) + ',"ring_index":'
    desc_fmt = "{" + ",".join(_inner(encode, {name: 0})[:-1].replace("%", "%%") + "%d" for name in names) + "}"
    heads = _reason_heads(encode, rows)
    tenant = rows.tenant
    owners: dict[int, str] = {}
    hexes = descs.tobytes().hex()
    step = 2 * DESC_SIZE
    tails = []
    for j, (slot, code, bad, owner, values) in enumerate(
        zip(
            rows.ring_index.tolist(),
            rows.reason.tolist(),
            rows.bad_byte.tolist(),
            rows.owner.tolist(),
            descs.tolist(),
            strict=True,
        )
    ):
        detail_part = heads[code]
        if bad != -1:  # as RejectionBatch.arguments: a byte at or above 2**63 reads negative in int64
            bad %= 1 << 64
            detail_part += f',"first_bad_byte":"{bad:#x}","frame":{bad >> PAGE_SHIFT}'
        if owner != NO_OWNER:
            label = owners.get(owner)
            if label is None:
                label = owners[owner] = "," + _inner(encode, {"owner": owner_label(owner, tenant)})
            detail_part += label
        hexed = hexes[j * step : (j + 1) * step]
        tails.append(f'{where}{slot},"desc_hex":"{hexed}","desc":{desc_fmt % values},{detail_part}{extra_part}}}')
    return tails


def _fault_tails(rows: IommuFaultBatch, encode: Encoder) -> list[str] | None:
    if not _int_columns(rows.iova, rows.length, rows.reason):
        return None
    middle = _where(encode, rows, rows.tenant, rows.tenant_name, "iommu")
    middle += "," + _inner(encode, {"ring_index": None, "desc_hex": None, "desc": None}) + ","
    access = "write" if rows.write else "read"
    vtd = "0x05" if rows.write else "0x06"  # as IommuFaultBatch.arguments
    end = "," + _inner(encode, {"access": access, "vtd_fault_reason": vtd}) + "}"
    heads = _reason_heads(encode, rows)
    return [
        f'{middle}{heads[code]},"iova":"{addr:#x}","length":{length}{end}'
        for addr, length, code in zip(rows.iova.tolist(), rows.length.tolist(), rows.reason.tolist(), strict=True)
    ]
