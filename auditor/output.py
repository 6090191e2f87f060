"""The rows of a query as CSV or JSON Lines, streamed in batches (never the whole result in memory).

Times leave DuckDB as ISO-8601 text with their nanoseconds (Python's
``datetime`` would cut them to microseconds); every other value is written
as Python gives it (64-bit unsigned addresses as exact integers).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

#: Rows fetched from DuckDB at once.
BATCH_ROWS = 10_000
#: How a TIMESTAMP_NS column is written: the log's own ``wall`` form.
WALL_FORMAT = "%Y-%m-%dT%H:%M:%S.%nZ"


def as_text_times(relation: Any) -> Any:
    """``relation`` with its timestamp columns turned into ISO-8601 text (nanoseconds kept)."""
    parts = []
    for name, kind in zip(relation.columns, relation.types, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        if str(kind).startswith("TIMESTAMP"):
            parts.append(f"strftime({quoted}::TIMESTAMP_NS, '{WALL_FORMAT}') AS {quoted}")
        else:
            parts.append(quoted)
    return relation.project(", ".join(parts)) if parts else relation


def rows(relation: Any) -> Iterator[tuple[Any, ...]]:
    """Every row of ``relation``, fetched ``BATCH_ROWS`` at a time."""
    names = relation.columns
    for batch in relation.to_arrow_reader(BATCH_ROWS):  # an Arrow stream: one batch in memory at a time
        columns = [batch.column(name).to_pylist() for name in names]
        yield from zip(*columns, strict=True)


def write_csv(relation: Any, out: TextIO) -> int:
    relation = as_text_times(relation)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(relation.columns)
    n = 0
    for row in rows(relation):
        writer.writerow(row)
        n += 1
    return n


def write_jsonl(relation: Any, out: TextIO) -> int:
    relation = as_text_times(relation)
    names = relation.columns
    n = 0
    for row in rows(relation):
        out.write(json.dumps(dict(zip(names, row, strict=True)), default=str, ensure_ascii=True) + "\n")
        n += 1
    return n
