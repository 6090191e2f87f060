"""``verify``'s fast path: a chunk of intact v1 lines, or a v2 batch's lines, checked with a compiled, typed decoder.

An intact log is the common case, and the reference check of one line
(``json.loads``, ``schema_problem`` with a ``strptime`` per ``wall``, a
canonical re-encode) costs tens of microseconds.  Here a whole chunk is
decoded by msgspec into ``Line`` structs in one call: the schema's types,
ranges and patterns (``RANGES``, ``KINDS``, ``REASON_RE``, 64 hex digits,
the ``wall`` form) are checked by the decoder in C, ``wall`` dates once per
distinct second, and the chunk is re-encoded in one call and compared with
its bytes.  What is left per record is the chain: ``seq``, ``prev`` and one
SHA-256.

Why msgspec (a dependency for this): it is the one well-kept JSON library
that decodes straight into typed records with constraints (``Meta``),
rejecting unknown keys, so that the schema is validated while parsing
instead of by Python code per field; and its encoder writes a struct's
fields in declaration order, compact, as this log's canonical JSON does.

Soundness over speed: this path may refuse a chunk the reference accepts
(then ``verify`` walks it line by line with the reference), never the
reverse.  msgspec and ``json.dumps(ensure_ascii=True)`` write every ASCII
character the same way except DEL (msgspec writes it raw), and msgspec
writes non-ASCII raw, so a chunk that is not ASCII or holds a raw DEL is
refused; floats, integers past 64 bits, nested values in ``desc`` and
``detail`` and ``v`` other than the integer 1 are refused by the types.
tests/verifier/test_audit_verify_fast.py holds both to the same verdicts.

A v2 batch (``fast_batch``) is decoded the same way into ``LineV2``; its
chain is one hash over the batch's bytes, checked by verifier/audit/read_v2.py.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from verifier.audit.log import MAX_REASON, REASON_RE

#: ``wall`` as the writer writes it (the reference also takes fewer digits and ``+00:00``: it decides those),
#: matched against a chunk's walls joined by newlines in one call.
_WALLS = re.compile(r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z\n)*")
#: Hex digits, deleted by ``str.translate``: what is left of a ``desc_hex`` is not hex.
_NOT_HEX = str.maketrans("", "", "0123456789abcdef")
_SEQ, _MONO, _DESC_HEX = operator.attrgetter("seq"), operator.attrgetter("mono_ns"), operator.attrgetter("desc_hex")
_U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
#: A value of ``desc`` or ``detail`` as the writer writes them (anything else: the reference decides).
_Scalar = int | str | bool | None


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    """The fields v1 and v2 records share, in the writer's order, each typed and bounded as ``schema_problem`` says.

    Types and integer ranges are checked by the decoder; the string forms
    (``wall``, ``desc_hex``, ``reason``) by ``fast_chunk`` for the whole
    chunk at once (a pattern per field costs more than the decode itself).
    Each schema narrows ``v`` to its own number (a redeclared field keeps its place).
    """

    v: int
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    wall: str
    mono_ns: Annotated[int, msgspec.Meta(ge=0)]  # at most 2**64 - 1: checked per chunk (msgspec bounds are int64)
    tenant: Annotated[int, msgspec.Meta(ge=-1, le=2**32 - 1)]
    tenant_name: str
    nic: str | None
    queue: _U32 | None
    kind: Literal["tx", "rx", "register", "iommu", "pin"]
    ring_index: _U32 | None
    desc_hex: str | None
    desc: dict[str, _Scalar] | None
    reason: str
    detail: dict[str, _Scalar]
    protection: str


class Line(_Record):
    """One v1 record as the writer writes it: ``FIELDS`` in order, the shared fields then the chain's two."""

    v: Literal[1]
    prev: str  # equal to the chain's own, 64 hex digits, or the chunk is refused
    hash: str


class LineV2(_Record):
    """One v2 record: ``FIELDS_V2`` in order (v1's without ``prev`` and ``hash``: its chain is the checkpoints')."""

    v: Literal[2]


_DECODE = msgspec.json.Decoder(list[Line]).decode
_DECODE_V2 = msgspec.json.Decoder(list[LineV2]).decode
_ENCODE = msgspec.json.Encoder().encode
#: What follows a record's body on its line: ``,"hash":"<64 hex>"}`` and the newline.
_HASH_TAIL = len(',"hash":"' + "0" * 64 + '"}\n')
#: ``RANGES["mono_ns"]``'s top, above what a msgspec bound can say.
_MONO_MAX = 2**64 - 1
#: How every line of the writer starts.
_START = b'{"v":'


def as_dict(line: Line | LineV2) -> dict[str, Any]:
    """The record as ``json.loads`` gives it (for ``verify``'s ``on_record``)."""
    return msgspec.structs.asdict(line)


def fast_chunk(lines: list[bytes], expected: int, prev: str, wall_ok: Callable[[str], bool]) -> list[Line] | None:
    """The records of ``lines`` when every one passes every check of ``verify`` from ``expected``/``prev`` on.

    None when anything fails (or is outside what this path decides): the
    caller walks the chunk line by line with the reference.  ``wall_ok``: the
    reference's check of a ``wall`` value, asked once per distinct second.
    """
    records = _decode(b"".join(lines), len(lines), expected, _DECODE, wall_ok)
    if records is None:
        return None
    sha256 = hashlib.sha256
    for line, record in zip(lines, records, strict=True):
        if record.prev != prev:
            return None
        prev = sha256(prev.encode("ascii") + line[:-_HASH_TAIL] + b"}").hexdigest()
        if record.hash != prev:
            return None
    return records


def fast_batch(raw: bytes, n: int, expected: int, wall_ok: Callable[[str], bool]) -> list[LineV2] | None:
    """The records of a v2 batch's record lines ``raw`` (``n`` whole lines, seqs from ``expected`` on), when every
    line is its record's canonical encoding and of the schema; None: the caller checks line by line.

    The chain is not checked here: one hash over ``raw`` and the checkpoint does that (verifier/audit/read_v2.py).
    """
    return _decode(raw, n, expected, _DECODE_V2, wall_ok)


def batch_records(raw: bytes, n: int) -> list[LineV2] | None:
    """The records of ``n`` v2 record lines that the compiled check (verifier/audit/check.py) passed: decoded in one
    call, not checked again (None: msgspec refuses them; the caller checks them the long way)."""
    try:
        records = _DECODE_V2(b"[" + raw[:-1].replace(b"\n", b",") + b"]")
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    return records if len(records) == n else None


def _decode(raw: bytes, n: int, expected: int, decode: Callable[[bytes], Any], wall_ok: Callable[[str], bool]) -> Any:
    """``n`` lines of records decoded in one call, each canonical, of the schema, seqs ``expected`` on (else None)."""
    if not n or not raw.startswith(_START) or not raw.endswith(b"}\n") or not raw.isascii() or b"\x7f" in raw:
        return None
    # One record per line: every line ends ``}`` and the next starts ``{"v":`` (``}\n{"v":`` at each of the n - 1
    # joins).  In the array those joins read ``},{"v":``, which the canonical encoding of records of this schema
    # writes only between two records (no arrays of objects, and a ``"`` in a string is escaped), and the array
    # must be that encoding (checked below): so every newline is a record's end, and each line one record's text.
    if raw.count(b'}\n{"v":') != n - 1:
        return None
    joined = b"[" + raw[:-1].replace(b"\n", b",") + b"]"
    try:
        records = decode(joined)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    if len(records) != n or _ENCODE(records) != joined:
        return None  # a line that is not its record's canonical encoding
    if list(map(_SEQ, records)) != list(range(expected, expected + n)) or max(map(_MONO, records)) > _MONO_MAX:
        return None
    if not _strings_ok(records, wall_ok):
        return None
    return records


def _strings_ok(records: list[Line] | list[LineV2], wall_ok: Callable[[str], bool]) -> bool:
    """The string fields' forms, for the chunk at once: ``wall``, ``desc_hex`` and ``reason`` as the reference wants."""
    walls = {r.wall for r in records}  # distinct values: one per record in v1, one per batch in v2
    if _WALLS.fullmatch("\n".join(walls) + "\n") is None or not all(
        wall_ok(w) for w in {w[:19]: w for w in walls}.values()
    ):
        return False  # ``wall_ok``: a real date, asked once per distinct second
    hexes = [h for h in map(_DESC_HEX, records) if h is not None]
    if hexes and ({len(h) for h in hexes} != {32} or "".join(hexes).translate(_NOT_HEX)):
        return False
    return all(
        len(reason) <= MAX_REASON and REASON_RE.match(reason) is not None for reason in {r.reason for r in records}
    )
