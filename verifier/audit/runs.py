"""A v1 log file as runs of whole lines read in large blocks: ``verify``'s chunks without a ``bytes`` per line.

Why: reading a file line by line (``itertools.islice`` over it, then a
``b"".join`` for the compiled check) makes an object per line and costs
about 0.15 µs a line more than reading blocks -- a sixth of ``audit
verify``'s budget at a million records a second.  The fast path of
``verify`` needs only a run's bytes and its line count (the compiled line
check and chain walk, verifier/audit/check.py); the lines themselves are
split only when something asks for them (the reference walk, the decoder),
exactly as iterating the file splits them: after every ``\\n`` and nowhere
else, a last line without one kept as it is (a torn record).

A run inside one block is a view of it, not a copy; the pieces of a run
that spans blocks are kept in a list until they hold its newlines and
joined once, so one enormous line is not copied again with every block.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

from verifier.audit import check

#: Bytes read at a time (a few chunks of ``verify``'s lines).
BLOCK_BYTES = 4 << 20


class Run(Sequence[bytes]):
    """Consecutive whole lines of a file as read (``data[start:end]``), how many, and the lines split when first
    asked."""

    def __init__(self, data: bytes, start: int, end: int, count: int) -> None:
        self._data, self._start, self._end = data, start, end
        self._count = count
        self._lines: list[bytes] | None = None

    @property
    def raw(self) -> memoryview:
        """The run's bytes, not copied."""
        return memoryview(self._data)[self._start : self._end]

    def lines(self) -> list[bytes]:
        """The lines, each with its newline (the last may have none), as iterating the file gives them."""
        if self._lines is None:
            self._lines = io.BytesIO(self.raw).readlines()
        return self._lines

    def last(self) -> bytes:
        """The last line, without splitting the others."""
        if self._start == self._end:
            raise IndexError("an empty run has no last line")
        return self._data[self._data.rfind(b"\n", self._start, self._end - 1) + 1 or self._start : self._end]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.lines())

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if self._lines is None and isinstance(index, int) and index in (-1, self._count - 1):
            return self.last()
        return self.lines()[index]


def _line_end(data: bytes, start: int, n: int) -> tuple[int, int]:
    """Just past the ``n``th newline of ``data`` after ``start`` (-1: fewer follow), and the newlines seen:
    compiled, else a search for each."""
    compiled = check.line_end(data, start, n)
    if compiled is not None:
        return compiled
    for seen in range(n):
        found = data.find(b"\n", start)
        if found < 0:
            return -1, seen
        start = found + 1
    return start, n


def runs(path: Path, lines: int) -> Iterator[Run]:
    """The file's lines in runs of ``lines`` (the last run may hold fewer), in order.

    A run inside one block is a view of it; only a run that spans blocks is joined (a copy of its pieces)."""
    pending: list[bytes | memoryview] = []  # the start of a run that continues in the next block
    have = 0  # its newlines
    with path.open("rb") as f:
        while block := f.read(BLOCK_BYTES):
            start = 0
            if pending:
                end, found = _line_end(block, 0, lines - have)
                if end < 0:
                    pending.append(block)
                    have += found
                    continue
                pending.append(memoryview(block)[:end])
                data = b"".join(pending)
                yield Run(data, 0, len(data), lines)
                pending, have, start = [], 0, end
            while (cut := _line_end(block, start, lines))[0] >= 0:
                yield Run(block, start, cut[0], lines)
                start = cut[0]
            if start < len(block):
                pending, have = [memoryview(block)[start:]], cut[1]
    if pending:
        rest = b"".join(pending)
        yield Run(rest, 0, len(rest), rest.count(b"\n") + (not rest.endswith(b"\n")))
