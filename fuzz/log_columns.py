"""A followed log's chunk as columns in one compiled pass (fuzz/logcols.c), for fuzz/log_follow.py.

Why: with the audit log on disk the oracle reads back every record the
kernel wrote; parsed by msgspec into one struct per record and turned into
columns field by field, that costs about 2.5 µs a record, a sixth of what a
campaign on disk spends beyond the same campaign in memory.  The compiled
reader writes the fields the oracle judges straight into columns.  It is
only faster: it takes a chunk only when every line is in the writer's
strict compact form and every record is a plain descriptor record of one
kind, and says "not sure" otherwise; then ``logged_chunk``'s msgspec path
(the reference) takes the chunk.  tests/fuzz/test_log_columns.py holds the
two to the same spans on real logs and on hostile edits of them.

The oracle's own reader: it shares no code with verifier/ (whose log it
judges).  ``NIC_SANDBOX_FASTPATH=0`` switches it off with the other
accelerators (ring/compiled.py).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import numpy as np

from fuzz.oracle import audit
from fuzz.oracle.logged import LoggedSpan
from fuzz.oracle.reasons import EVENT_PREDICATES
from ring import compiled
from ring.cbuild import LOGCOLS
from ring.descriptors import TXD_CMD_EOP

#: logcols.h's constants, checked against the module when it loads.
MAX_STRINGS = 64
UNSURE = -1


@functools.cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The compiled reader (None: not loaded) and the line that says why, asked once per process."""
    return compiled.loaded(
        LOGCOLS,
        {"LOGCOLS_MAX_STRINGS": MAX_STRINGS, "LOGCOLS_UNSURE": UNSURE, "LOGCOLS_EOP": TXD_CMD_EOP},
        "fuzz oracle's log reader",
        "the msgspec path reads the followed log",
        logging.getLogger(__name__),
    )


_EVENTS = frozenset(EVENT_PREDICATES)
#: Bytes a descriptor record's line has at least (its keys alone are more): room for the columns of a chunk.
_SHORTEST = 128
_PLAIN_KINDS = ("tx", "rx")
# rows of the int64 columns
_SEQ, _QUEUE, _SLOT, _LENGTH, _CMD, _CSO, _CSS, _CHECKED, _LINE = range(9)
_NIC, _KIND, _REASON, _OWNER = range(4)


def enabled() -> bool:
    """Whether the compiled reader is loaded (else ``spans`` always answers None)."""
    return state()[0] is not None


def spans(chunk: bytes) -> list[dict[str, Any] | LoggedSpan] | None:
    """``logged_chunk``'s answer for a chunk of plain descriptor records of one kind (and checkpoints), or None
    when the compiled reader is not sure of the chunk (or not loaded): the msgspec path then takes it."""
    fast = state()[0]
    if fast is None or not chunk:
        return None
    ffi, lib = fast.ffi, fast.lib
    capacity = len(chunk) // _SHORTEST + 1  # (a chunk of shorter records: not sure, the reference reads it)
    ints = np.empty((9, capacity), dtype=np.int64)
    words = np.empty((2, capacity), dtype=np.uint64)  # addr, first bad byte
    ids = np.empty((4, capacity), dtype=np.int32)
    strings = np.empty(2 * MAX_STRINGS, dtype=np.int64)
    count = ffi.new("int64_t *")
    # one pointer per array (numpy's ``.ctypes`` costs microseconds a call), its rows by pointer arithmetic
    i64 = ffi.cast("int64_t *", ffi.from_buffer(ints))
    u64 = ffi.cast("uint64_t *", ffi.from_buffer(words))
    i32 = ffi.cast("int32_t *", ffi.from_buffer(ids))
    c = capacity
    n = lib.logcols_read(
        ffi.from_buffer(chunk), len(chunk), capacity,
        i64 + _SEQ * c, i64 + _QUEUE * c, i64 + _SLOT * c, u64,
        i64 + _LENGTH * c, i64 + _CMD * c, i64 + _CSO * c, i64 + _CSS * c, i64 + _CHECKED * c, u64 + c,
        i64 + _LINE * c, i32 + _NIC * c, i32 + _KIND * c, i32 + _REASON * c, i32 + _OWNER * c,
        ffi.cast("int64_t *", ffi.from_buffer(strings)), count,
    )  # fmt: skip
    if n <= 0:
        return None
    names = [chunk[o : o + size].decode("ascii") for o, size in strings[: 2 * int(count[0])].reshape(-1, 2).tolist()]
    kind = names[int(ids[_KIND, 0])]
    if kind not in _PLAIN_KINDS:
        return None
    starts = np.empty(n, dtype=np.int64)
    codes = np.empty(n, dtype=np.uint8)
    run_names = np.empty((n, MAX_STRINGS), dtype=np.int32)
    n_names = np.empty(n, dtype=np.int64)
    runs = lib.logcols_runs(
        n, audit.LOGGED_RUN, i64 + _SEQ * c, i64 + _QUEUE * c, i64 + _CMD * c,
        i32 + _NIC * c, i32 + _KIND * c, i32 + _REASON * c, int(kind == "tx"),
        ffi.cast("int64_t *", ffi.from_buffer(starts)), ffi.from_buffer(codes),
        ffi.cast("int32_t *", ffi.from_buffer(run_names)), ffi.cast("int64_t *", ffi.from_buffer(n_names)),
    )  # fmt: skip
    if runs <= 0:
        return None  # several kinds, a TX cmd beyond a byte: the reference says what
    used = [
        [names[i] for i in row[:k]] for row, k in zip(run_names[:runs].tolist(), n_names[:runs].tolist(), strict=True)
    ]
    if not all(all(run) and _EVENTS.isdisjoint(run) for run in used):
        return None  # a blank reason, an event: the record-by-record path says what it is
    seq, queue, nic = ints[_SEQ, :n], ints[_QUEUE, :n], ids[_NIC, :n]
    lengths = ints[_CHECKED if kind == "rx" else _LENGTH, :n]
    cmd = None if kind == "rx" else ints[_CMD, :n].astype(np.uint8)
    bad_byte = words[1, :n].view(np.int64)
    owner_ids = ids[_OWNER, :n]
    single_owner = bool((owner_ids == owner_ids[0]).all())
    bounds = starts[:runs].tolist()
    out: list[dict[str, Any] | LoggedSpan] = []
    for lo, hi, reasons in zip(bounds, [*bounds[1:], n], used, strict=True):
        start = int(ints[_LINE, lo])
        head = _loads(chunk[start : chunk.index(b"\n", start)])  # the first record's whole detail goes with the run
        first = int(seq[lo])
        if not isinstance(head, dict) or head.get("seq") != first:
            return None
        owner = owner_ids[lo:hi]
        if single_owner:
            owners = np.array([names[int(owner[0])]], dtype=np.str_).repeat(hi - lo)
        else:  # (the column's width is its longest owner's, as the reference's)
            found, which = np.unique(owner, return_inverse=True)
            owners = np.array([names[o] for o in found.tolist()], dtype=np.str_)[which.reshape(-1)]
        out.append(
            LoggedSpan(
                seq=first,
                nic=names[int(nic[lo])],
                kind=kind,
                queue=int(queue[lo]),
                ring_index=ints[_SLOT, lo:hi],
                reason=codes[lo:hi],
                names=dict(enumerate(reasons)),
                addr=words[0, lo:hi],
                lengths=lengths[lo:hi],
                cmd=None if cmd is None else cmd[lo:hi],
                cso=None if kind == "rx" else ints[_CSO, lo:hi],
                css=None if kind == "rx" else ints[_CSS, lo:hi],
                bad_byte=bad_byte[lo:hi],
                owner=owners,
                detail=head.get("detail") or {},
            )
        )
    return out


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None
