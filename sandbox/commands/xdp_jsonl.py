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
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

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


def _field(obj: dict[str, object], name: str, bits: int, line: int, default: int | None = None) -> int:
    if name not in obj:
        if default is not None:
            return default
        raise DescriptorLineError(f'line {line}: missing "{name}"')
    raw = obj[name]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise DescriptorLineError(f'line {line}: "{name}" must be an integer or a "0x..." string, got {raw!r}')
    try:
        value = raw if isinstance(raw, int) else int(raw.strip(), 0)
    except ValueError:
        raise DescriptorLineError(f'line {line}: "{name}" {raw!r} is not an integer') from None
    if not 0 <= value < 1 << bits:
        raise DescriptorLineError(f'line {line}: "{name}" {raw!r} does not fit in an unsigned {bits}-bit field')
    return value


def _meta(obj: dict[str, object], line: int) -> tuple[int, int, int, int]:
    raw = obj[META]
    if not isinstance(raw, dict):
        raise DescriptorLineError(f'line {line}: "{META}" must be an object like {{"flags": 2, "csum_start": 34}}')
    extra = sorted(set(raw) - set(META_FIELDS))
    if extra:
        raise DescriptorLineError(f'line {line}: unknown "{META}" key {extra[0]!r} (keys: {", ".join(META_FIELDS)})')
    try:
        flags, start, offset, launch = (_field(raw, name, bits, line, 0) for name, bits in META_FIELDS.items())
    except DescriptorLineError as err:
        raise DescriptorLineError(str(err).replace(f"line {line}: ", f"line {line}: {META}.", 1)) from None
    return flags, start, offset, launch


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
        extra = sorted(set(obj) - set(FIELDS) - {LABEL, META})
        if extra:
            raise DescriptorLineError(
                f"line {number}: unknown key {extra[0]!r} (keys: addr, len, options, class, meta)"
            )
        label = obj.get(LABEL, "")
        if not isinstance(label, str):
            raise DescriptorLineError(f'line {number}: "{LABEL}" must be a string')
        addr, length, options = (_field(obj, name, bits, number) for name, bits in FIELDS.items())
        rows.append((addr, length, options))
        labels.append(label)
        any_meta |= META in obj
        metas.append(_meta(obj, number) if META in obj else (0, 0, 0, 0))
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
