"""The bytes a v2 audit writer holds until its next checkpoint: one growing buffer, written in one call.

Why: a doorbell's 255 record lines are about 115 KB.  Kept as a ``bytes``
blob they are copied out of the formatter's buffer, joined with what else
waits and joined again with their checkpoint line: three copies of every
byte before the one ``write``.  Here the compiled formatter
(verifier/audit/programs.py) writes the lines straight into the free end
of the buffer (``room``, then ``take``), the checkpoint line is appended
behind them, and the hash and the ``write`` read the same memory
(``view``): no copy of the batch at all.  A buffer is not shared: the log
that owns it uses it under its lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: The first buffer's size: a doorbell of 255 records and its checkpoint with room to spare.
FIRST_SIZE = 1 << 18
#: A buffer grown past this (one huge batch) is let go when it is emptied, not kept for the next batch.
KEEP_SIZE = 1 << 23


class LineBuffer:
    """Whole lines waiting for their checkpoint, back to back in one array (``used`` bytes of it)."""

    def __init__(self) -> None:
        self._data: npt.NDArray[np.uint8] = np.empty(0, dtype=np.uint8)
        self.used = 0
        self._pointed: tuple[Any, npt.NDArray[np.uint8], Any] | None = None  # ``pointer``'s (ffi, array, pointer)

    def __len__(self) -> int:
        return self.used

    def room(self, size: int) -> npt.NDArray[np.uint8]:
        """At least ``size`` free bytes after what is held (grown when short), to write into and then ``take``."""
        need = self.used + size
        if need > self._data.size:
            grown = np.empty(max(need, 2 * self._data.size, FIRST_SIZE), dtype=np.uint8)
            grown[: self.used] = self._data[: self.used]
            self._data = grown
        return self._data[self.used :]

    def pointer(self, ffi: Any) -> Any:
        """The buffer's first byte as ``ffi``'s ``uint8_t *`` (compiled code writes there): made once per array, not
        per call -- ``ffi.from_buffer`` costs more than the arithmetic a caller does on it.  Valid until the next
        ``room`` or ``append``."""
        pointed = self._pointed
        if pointed is None or pointed[1] is not self._data or pointed[0] is not ffi:
            pointed = self._pointed = (ffi, self._data, ffi.from_buffer("uint8_t[]", self._data))
        return pointed[2]

    def free(self, ffi: Any, size: int) -> Any:
        """``room(size)`` as a ``uint8_t *`` of ``ffi`` (``pointer``): where compiled code writes before ``take``."""
        self.room(size)
        return self.pointer(ffi) + self.used

    def take(self, size: int) -> None:
        """The first ``size`` bytes of the last ``room`` are now held."""
        self.used += size

    def append(self, data: bytes) -> None:
        """Hold ``data`` after what is held (copied through the array's memoryview: a quarter of the cost of a
        numpy slice assignment, which matters for a record or a checkpoint line at a time)."""
        end = self.used + len(data)
        if end > self._data.size:
            self.room(len(data))
        self._data.data[self.used : end] = data
        self.used = end

    def tail(self, start: int) -> bytes:
        """A copy of the held bytes from ``start`` on."""
        return self._data[start : self.used].tobytes()

    def cut(self, size: int) -> None:
        """Hold only the first ``size`` bytes."""
        self.used = size

    def view(self) -> memoryview:
        """The held bytes, not copied: valid until the next ``room`` or ``append``."""
        return memoryview(self._data[: self.used])  # type: ignore[arg-type]

    def clear(self) -> None:
        self.used = 0
        if self._data.size > KEEP_SIZE:
            self._data = np.empty(0, dtype=np.uint8)
