"""The JSON Lines spelling of AF_XDP TX descriptors that ``nic-sandbox verify --format xdp`` reads and writes.

One descriptor per line: ``{"addr": A, "len": L, "options": O}``, each field an
integer or a string such as ``"0x1000"`` (any base Python's ``int(text, 0)``
reads), within the field's width in ``struct xdp_desc`` (u64, u32, u32).  An
optional ``"class"`` string labels the line (the case generator writes one) and
is shown next to disagreements.  An optional ``"meta"`` object is the ``struct
xsk_tx_metadata`` that lies ``tx_metadata_len`` bytes before the buffer
(``ring.descriptors.XSK_TX_METADATA``): ``{"flags": F, "csum_start": S,
"csum_offset": O, "launch_time": T}``, numbers as above within u64, u16, u16,
u64, any of them left out meaning 0; a line without ``"meta"`` has all-zero
metadata.  Blank lines are skipped; any other line that is not such an object is
an error naming its line number (nesting too deep for the parser and integers
past Python's int-digit limit too: never a traceback).

The line's schema is a pydantic model (``_Line``, ``_Meta``): the fields,
their widths and the keys allowed are declared once there, and pydantic's
first complaint is put into this format's one-line words.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

from ring.descriptors import XDP_DESC, XSK_TX_METADATA

FIELDS = {"addr": 64, "len": 32, "options": 32}  # name -> width in bits (struct xdp_desc)
#: name -> width in bits (struct xsk_tx_metadata's request side, include/uapi/linux/if_xdp.h)
META_FIELDS = {"flags": 64, "csum_start": 16, "csum_offset": 16, "launch_time": 64}
LABEL = "class"
META = "meta"
#: Longest line read (a descriptor with metadata and a label is a few hundred characters): a file without newlines,
#: or ``/dev/zero``, is refused at its first line instead of filling memory.
MAX_LINE = 64 << 10


class DescriptorLineError(ValueError):
    """A line that is not a descriptor; the message starts with ``line N:``."""


def _unsigned(bits: int) -> Any:
    """An integer field of ``bits`` bits: a JSON integer or a string any base of ``int(text, 0)`` reads."""

    def parse(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(f'must be an integer or a "0x..." string, got {raw!r}')
        try:
            value = raw if isinstance(raw, int) else int(raw.strip(), 0)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{raw!r} does not fit in an unsigned {bits}-bit field")
        return value

    return Annotated[int, BeforeValidator(parse)]


class _Meta(BaseModel):
    """``struct xsk_tx_metadata``'s request side (include/uapi/linux/if_xdp.h); a key left out is 0."""

    model_config = ConfigDict(extra="forbid")
    flags: _unsigned(META_FIELDS["flags"]) = 0  # type: ignore[valid-type]
    csum_start: _unsigned(META_FIELDS["csum_start"]) = 0  # type: ignore[valid-type]
    csum_offset: _unsigned(META_FIELDS["csum_offset"]) = 0  # type: ignore[valid-type]
    launch_time: _unsigned(META_FIELDS["launch_time"]) = 0  # type: ignore[valid-type]


class _Line(BaseModel):
    """One line: ``struct xdp_desc`` (u64 addr, u32 len, u32 options), a label and the metadata, all checked."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    addr: _unsigned(FIELDS["addr"])  # type: ignore[valid-type]
    len: _unsigned(FIELDS["len"])  # type: ignore[valid-type]
    options: _unsigned(FIELDS["options"])  # type: ignore[valid-type]
    label: StrictStr = Field(default="", alias="class")  # LABEL
    meta: _Meta | None = Field(default=None, alias="meta")  # META


def _problem(err: ValidationError, number: int) -> DescriptorLineError:
    """The first thing pydantic found wrong, as one line in this format's words (``line N: "key" ...``)."""
    first = err.errors(include_url=False)[0]
    where = [str(part) for part in first["loc"]]
    kind = first["type"]
    if kind == "extra_forbidden":
        if len(where) > 1:
            return DescriptorLineError(
                f'line {number}: unknown "{META}" key {where[-1]!r} (keys: {", ".join(META_FIELDS)})'
            )
        return DescriptorLineError(f"line {number}: unknown key {where[0]!r} (keys: addr, len, options, class, meta)")
    if kind == "missing":
        return DescriptorLineError(f'line {number}: missing "{where[-1]}"')
    if where == [META]:
        return DescriptorLineError(f'line {number}: "{META}" must be an object like {{"flags": 2, "csum_start": 34}}')
    if where == [LABEL]:
        return DescriptorLineError(f'line {number}: "{LABEL}" must be a string')
    error = first.get("ctx", {}).get("error")
    message = str(error) if error is not None else first["msg"]
    key = f'{META}."{where[-1]}"' if len(where) > 1 else f'"{where[-1]}"'
    return DescriptorLineError(f"line {number}: {key} {message}")


def bounded_lines(stream: IO[str], limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of ``stream``, each read with at most ``limit`` characters; a longer one is refused."""
    for number in itertools.count(1):
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            raise DescriptorLineError(f"line {number}: longer than {limit:,} characters")
        yield line


def read_descriptors(lines: Iterable[str]) -> tuple[npt.NDArray[np.void], list[str], npt.NDArray[np.void] | None]:
    """Parse descriptor lines: an ``XDP_DESC`` array, one label per descriptor ("" when none) and the metadata.

    The metadata is one ``XSK_TX_METADATA`` per descriptor (zero where a line
    has no ``"meta"``), or None when no line has one.
    """
    rows: list[tuple[int, int, int]] = []
    labels: list[str] = []
    metas: list[tuple[int, int, int, int]] = []
    any_meta = False
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DescriptorLineError(f"line {number}: not JSON ({err.msg})") from None
        except RecursionError:
            raise DescriptorLineError(f"line {number}: JSON nested too deeply") from None
        except ValueError:  # an integer past Python's int-digit limit (sys.get_int_max_str_digits)
            raise DescriptorLineError(
                f"line {number}: an integer of more than {sys.get_int_max_str_digits()} digits"
            ) from None
        if not isinstance(obj, dict):
            raise DescriptorLineError(f'line {number}: expected an object like {{"addr": 0, "len": 64, "options": 0}}')
        try:
            line = _Line.model_validate(obj)
        except ValidationError as err:
            raise _problem(err, number) from None
        rows.append((line.addr, line.len, line.options))
        labels.append(line.label)
        any_meta |= line.meta is not None
        m = line.meta
        metas.append((0, 0, 0, 0) if m is None else (m.flags, m.csum_start, m.csum_offset, m.launch_time))
    meta = np.array(metas, dtype=XSK_TX_METADATA) if any_meta else None
    return np.array(rows, dtype=XDP_DESC), labels, meta


def write_descriptors(
    descs: npt.NDArray[np.void], labels: list[str], meta: npt.NDArray[np.void] | None = None
) -> Iterator[str]:
    """The lines :func:`read_descriptors` reads back: addresses in hex, labels kept, non-zero metadata kept."""
    fields = zip(descs["addr"].tolist(), descs["len"].tolist(), descs["options"].tolist(), labels, strict=True)
    records = meta.tolist() if meta is not None else [(0, 0, 0, 0)] * len(labels)
    for (addr, length, options, label), record in zip(fields, records, strict=True):
        row: dict[str, object] = {"addr": hex(addr), "len": length, "options": hex(options)}
        if label:
            row[LABEL] = label
        if any(record):
            flags, start, offset, launch = record
            written: dict[str, object] = {"flags": hex(flags), "csum_start": start, "csum_offset": offset}
            if launch:
                written["launch_time"] = launch
            row[META] = written
        yield json.dumps(row)
