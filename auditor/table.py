"""The ``records`` table: the audit log's v1 schema as typed SQL columns, declared once.

Every tool of the auditor that reads a log through DuckDB (``audit query``,
``audit export --parquet``, ``audit export --format ocsf``) reads it through
``SELECT_SQL`` below, so a column has one name, one type and one meaning
everywhere: times are ``TIMESTAMP_NS`` (the log keeps nanoseconds), bus
addresses and other 64-bit values are ``UBIGINT`` (the hex strings of
``detail`` -- ``first_bad_byte``, ``iova``, ``vaddr``, ``offset``, ``value`` --
become numbers), the decoded descriptor and the facts of ``detail`` are
flattened into ``desc_*`` and ``detail_*`` columns, and ``detail`` stays
whole as JSON text for anything not flattened.

DuckDB reads each line's values as JSON (``RAW_COLUMNS``) and the projection
checks each one's JSON type before it casts: a record whose ``tenant_name`` is
a number or whose ``queue`` is 2**64 is not quietly converted, it gets a
``problem`` (the same words as ``verifier.audit.read.schema_problem``) and
the command names it.  What this does not check is the chain and the bytes
(canonical JSON, hashes): that is ``audit verify``'s job, and ``export`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifier.audit.log import FIELDS, KINDS, MAX_REASON, SCHEMA_V2, SCHEMA_VERSION
from verifier.audit.read import RANGES

#: The keys of a v1 record (declared once, by the writer), read by DuckDB as JSON values (typed by the projection,
#: which checks them); a v2 record has the same keys but ``prev`` and ``hash`` (NULL here), and a v2 checkpoint line
#: is told by its ``checkpoint`` key and left out (``read_json_sql``): it is the chain, which verify checks.
RAW_KEYS = (*FIELDS, "checkpoint")
#: ``read_json``'s ``columns`` argument: every key as JSON, so nothing is converted before it is checked.
RAW_COLUMNS = "{" + ", ".join(f"\"{k}\": 'JSON'" for k in RAW_KEYS) + "}"
_INT = "('UBIGINT', 'BIGINT')"


def _is_null(key: str) -> str:
    return f'("{key}" IS NULL OR json_type("{key}") = \'NULL\')'


def _text(expr: str) -> str:
    """A JSON string as text; NULL for anything else (a number is not a name)."""
    return f"CASE WHEN json_type({expr}) = 'VARCHAR' THEN ({expr})->>'$' END"


def _int(expr: str, sql_type: str) -> str:
    """A JSON integer as ``sql_type``; NULL for anything else or out of the type's range."""
    return f"CASE WHEN json_type({expr}) IN {_INT} THEN TRY_CAST(({expr})::VARCHAR AS {sql_type}) END"


def _hex(expr: str) -> str:
    """A ``"0x..."`` string of ``detail`` as UBIGINT (NULL when absent or not hex)."""
    return f"TRY_CAST({_text(expr)} AS UBIGINT)"


def _in_range(key: str) -> str:
    low, high = RANGES[key]
    return f'(json_type("{key}") IN {_INT} AND TRY_CAST("{key}"::VARCHAR AS HUGEINT) BETWEEN {low} AND {high})'


@dataclass(frozen=True)
class Column:
    """One column of ``records``: its name, SQL type, how it is computed from the raw JSON, and what it means."""

    name: str
    type: str
    expr: str
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("seq", "UBIGINT", _int("seq", "UBIGINT"), "0, 1, 2, ... across rotated files"),
    Column("wall", "TIMESTAMP_NS", f"TRY_CAST({_text('wall')} AS TIMESTAMP_NS)", "UTC time, nanoseconds"),
    Column("mono_ns", "UBIGINT", _int("mono_ns", "UBIGINT"), "monotonic clock, ns"),
    Column("tenant", "BIGINT", _int("tenant", "BIGINT"), "tenant id (-1: a DMA domain without owner)"),
    Column("tenant_name", "VARCHAR", _text("tenant_name"), "tenant name"),
    Column("nic", "VARCHAR", _text("nic"), "NIC name (NULL for pin records)"),
    Column("queue", "UINTEGER", _int("queue", "UINTEGER"), "queue index of tx/rx records"),
    Column("kind", "VARCHAR", _text("kind"), "tx, rx, register, iommu or pin"),
    Column("ring_index", "UINTEGER", _int("ring_index", "UINTEGER"), "ring slot, or the refused tail"),
    Column("reason", "VARCHAR", _text("reason"), "reason code (docs/verifier.md#reason-codes)"),
    Column("protection", "VARCHAR", _text("protection"), "protection mode of the writer"),
    Column("desc_hex", "VARCHAR", _text("desc_hex"), "the raw 16-byte descriptor, 32 hex digits"),
    Column("desc_addr", "UBIGINT", _int("\"desc\"->'addr'", "UBIGINT"), "descriptor buffer address (bus address)"),
    Column("desc_length", "UINTEGER", _int("\"desc\"->'length'", "UINTEGER"), "descriptor length"),
    Column("desc_cmd", "UTINYINT", _int("\"desc\"->'cmd'", "UTINYINT"), "TX command bits"),
    Column("desc_status", "UTINYINT", _int("\"desc\"->'status'", "UTINYINT"), "status bits"),
    Column("desc_cso", "UTINYINT", _int("\"desc\"->'cso'", "UTINYINT"), "TX checksum offset"),
    Column("desc_css", "UTINYINT", _int("\"desc\"->'css'", "UTINYINT"), "TX checksum start"),
    Column("desc_special", "USMALLINT", _int("\"desc\"->'special'", "USMALLINT"), "VLAN tag field"),
    Column("desc_csum", "USMALLINT", _int("\"desc\"->'csum'", "USMALLINT"), "RX checksum"),
    Column("desc_errors", "UTINYINT", _int("\"desc\"->'errors'", "UTINYINT"), "RX error bits"),
    Column("rule", "VARCHAR", _text("detail->'rule'"), "the rule's text (detail.rule)"),
    Column("first_bad_byte", "UBIGINT", _hex("detail->'first_bad_byte'"), "first byte outside the pins"),
    Column("frame", "UBIGINT", _int("detail->'frame'", "UBIGINT"), "the frame of first_bad_byte"),
    Column("owner", "VARCHAR", _text("detail->'owner'"), "who owns that frame: kernel, tenantN, free, own, ..."),
    Column("checked_bytes", "UBIGINT", _int("detail->'checked_bytes'", "UBIGINT"), "RX buffer size checked"),
    Column("new_tail", "UBIGINT", _int("detail->'new_tail'", "UBIGINT"), "tail records: the tail written"),
    Column("register", "VARCHAR", _text("detail->'register'"), "register records: the register's name"),
    Column("reg_offset", "UBIGINT", _hex("detail->'offset'"), "register records: its offset"),
    Column("reg_value", "UBIGINT", _hex("detail->'value'"), "register records: the value written"),
    Column("iova", "UBIGINT", _hex("detail->'iova'"), "IOMMU faults: the IO virtual address"),
    Column("access", "VARCHAR", _text("detail->'access'"), "IOMMU faults: read or write"),
    Column("handle", "UBIGINT", _int("detail->'handle'", "UBIGINT"), "pin records: the pin handle"),
    Column("vaddr", "UBIGINT", _hex("detail->'vaddr'"), "pin records: the pinned virtual address"),
    Column("detail", "VARCHAR", "detail::VARCHAR", "the whole detail object as JSON text"),
    Column("prev", "VARCHAR", _text("prev"), "hash of the previous record"),
    Column("hash", "VARCHAR", _text("hash"), "this record's chain hash"),
)

_HEX64 = "'^[0-9a-f]{64}$'"
_WALL_RE = r"'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|\+00:00)$'"
_KINDS = "(" + ", ".join(f"'{k}'" for k in KINDS) + ")"

#: The first problem of a record, in ``schema_problem``'s words (NULL: a v1 record).  Checked before anything casts.
PROBLEM_SQL = f"""CASE
    WHEN NOT (json_type(v) IN {_INT} AND v::VARCHAR IN ('{SCHEMA_VERSION}', '{SCHEMA_V2}'))
        THEN 'schema: v=' || coalesce(v::VARCHAR, 'None') || ' is not supported (this reader knows v={SCHEMA_VERSION})'
    WHEN NOT {_in_range("seq")} THEN 'schema: bad value for ''seq'''
    WHEN NOT coalesce(regexp_matches({_text("wall")}, {_WALL_RE})
        AND year(TRY_CAST({_text("wall")} AS TIMESTAMP_NS)) >= 1970, false) THEN 'schema: bad value for ''wall'''
    WHEN NOT {_in_range("mono_ns")} THEN 'schema: bad value for ''mono_ns'''
    WHEN NOT {_in_range("tenant")} THEN 'schema: bad value for ''tenant'''
    WHEN json_type(tenant_name) IS DISTINCT FROM 'VARCHAR' THEN 'schema: bad value for ''tenant_name'''
    WHEN NOT ({_is_null("nic")} OR json_type(nic) = 'VARCHAR') THEN 'schema: bad value for ''nic'''
    WHEN NOT ({_is_null("queue")} OR {_in_range("queue")}) THEN 'schema: bad value for ''queue'''
    WHEN {_text("kind")} IS NULL OR {_text("kind")} NOT IN {_KINDS} THEN 'schema: bad value for ''kind'''
    WHEN NOT ({_is_null("ring_index")} OR {_in_range("ring_index")}) THEN 'schema: bad value for ''ring_index'''
    WHEN NOT ({_is_null("desc_hex")} OR coalesce(regexp_matches({_text("desc_hex")}, '^[0-9a-f]{{32}}$'), false))
        THEN 'schema: bad value for ''desc_hex'''
    WHEN NOT ({_is_null("desc")} OR json_type("desc") = 'OBJECT') THEN 'schema: bad value for ''desc'''
    WHEN NOT coalesce(length({_text("reason")}) <= {MAX_REASON}
        AND regexp_matches({_text("reason")}, '^[A-Z][A-Z0-9_]*$'), false) THEN 'schema: bad value for ''reason'''
    WHEN json_type(detail) IS DISTINCT FROM 'OBJECT' THEN 'schema: bad value for ''detail'''
    WHEN json_type(protection) IS DISTINCT FROM 'VARCHAR' THEN 'schema: bad value for ''protection'''
    WHEN v::VARCHAR = '{SCHEMA_V2}' AND NOT ({_is_null("prev")} AND {_is_null("hash")})
        THEN 'schema: unexpected key ''prev'''
    WHEN v::VARCHAR = '{SCHEMA_V2}' THEN NULL
    WHEN NOT coalesce(regexp_matches({_text("prev")}, {_HEX64}), false) THEN 'schema: bad value for ''prev'''
    WHEN NOT coalesce(regexp_matches({_text("hash")}, {_HEX64}), false) THEN 'schema: bad value for ''hash'''
END"""

#: The typed columns, computed from the raw JSON values (``FROM read_json(..., columns=RAW_COLUMNS)``).
SELECT_SQL = ",\n".join(f'{c.expr} AS "{c.name}"' for c in COLUMNS)
#: The table's schema for ``CREATE TABLE``.
SCHEMA_SQL = ", ".join(f'"{c.name}" {c.type}' for c in COLUMNS)


def read_json_sql(paths: list[str]) -> str:
    """``read_json`` over ``paths`` (one record per line, every key a JSON value, the file name kept)."""
    files = "[" + ", ".join(quote(p) for p in paths) + "]"
    return (
        f"(SELECT * FROM read_json({files}, format = 'newline_delimited', columns = {RAW_COLUMNS}, "
        "filename = '_file', maximum_object_size = 16777216) WHERE checkpoint IS NULL)"
    )


def quote(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
