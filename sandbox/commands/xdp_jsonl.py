"""The JSON Lines spelling of AF_XDP TX descriptors that ``nic-sandbox verify --format xdp`` reads and writes.

One descriptor per line: ``{"addr": A, "len": L, "options": O}``, each field an
integer or a string such as ``"0x1000"`` (any base Python's ``int(text, 0)``
reads), within the field's width in ``struct xdp_desc`` (u64, u32, u32).  An
optional ``"class"`` string labels the line (the case generator writes one) and
is shown next to disagreements.  Blank lines are skipped; any other line that is
not such an object is an error naming its line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from ring.descriptors import XDP_DESC

FIELDS = {"addr": 64, "len": 32, "options": 32}  # name -> width in bits (struct xdp_desc)
LABEL = "class"


class DescriptorLineError(ValueError):
    """A line that is not a descriptor; the message starts with ``line N:``."""


def _field(obj: dict[str, object], name: str, bits: int, line: int) -> int:
    if name not in obj:
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


def read_descriptors(lines: Iterable[str]) -> tuple[npt.NDArray[np.void], list[str]]:
    """Parse descriptor lines into an ``XDP_DESC`` array and one label per descriptor ("" when none)."""
    rows: list[tuple[int, int, int]] = []
    labels: list[str] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DescriptorLineError(f"line {number}: not JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise DescriptorLineError(f'line {number}: expected an object like {{"addr": 0, "len": 64, "options": 0}}')
        extra = sorted(set(obj) - set(FIELDS) - {LABEL})
        if extra:
            raise DescriptorLineError(f"line {number}: unknown key {extra[0]!r} (keys: addr, len, options, class)")
        label = obj.get(LABEL, "")
        if not isinstance(label, str):
            raise DescriptorLineError(f'line {number}: "{LABEL}" must be a string')
        addr, length, options = (_field(obj, name, bits, number) for name, bits in FIELDS.items())
        rows.append((addr, length, options))
        labels.append(label)
    return np.array(rows, dtype=XDP_DESC), labels


def write_descriptors(descs: npt.NDArray[np.void], labels: list[str]) -> Iterator[str]:
    """The lines :func:`read_descriptors` reads back: addresses in hex, labels kept."""
    fields = zip(descs["addr"].tolist(), descs["len"].tolist(), descs["options"].tolist(), labels, strict=True)
    for addr, length, options, label in fields:
        row: dict[str, object] = {"addr": hex(addr), "len": length, "options": hex(options)}
        if label:
            row[LABEL] = label
        yield json.dumps(row)
