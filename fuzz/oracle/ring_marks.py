"""A watched ring's refusal marks, completions and packet splits read and reaped in one compiled call
(fuzz/oracle/ringmarks.c), and a queue's marks matched to its records' slots in another, for audit.py.

Why: ``AuditWatch.after_step`` runs after every step of a campaign, on every
watched ring, and its numpy path (the marks' one-word test, the completions'
test, ``rules.packet_atomicity``, the reaping, then the sorted comparison of
the marks with the slots the step's records name) is some twenty small array
calls a step, each a few microseconds on a 255-descriptor batch.  The pass is
only faster: its tests are the masks audit.py makes from the ring/ dtypes
(``_word_test``), the numpy path beside it is the semantics, and
tests/fuzz/test_oracle_fast_paths.py holds the two to the same marks, splits,
reaped bytes and matches on hostile rings, and to the same findings word for
word on campaigns with slips planted.

The oracle's own: it shares no code with verifier/ (whose refusals it
judges).  ``NIC_SANDBOX_FASTPATH=0`` switches it off with the other
accelerators (ring/compiled.py).
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from ring import compiled
from ring.cbuild import RINGMARKS


@functools.cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The compiled pass (None: not loaded) and the line that says why, asked once per process."""
    return compiled.loaded(
        RINGMARKS, {}, "fuzz oracle's ring marks", "the numpy path reads them", logging.getLogger(__name__)
    )


def enabled() -> bool:
    """Whether the compiled pass is loaded (else ``RingPass.of`` always answers None)."""
    return state()[0] is not None


class RingPass:
    """One watched ring's compiled reading: its words and scratch buffers, pointed to once (``AuditWatch.attach``).

    ``mark``, ``sent``: ``(mask, value)`` over a descriptor's second word; ``eop``: the end-of-packet bit there;
    ``clear_mark``, ``clear_sent``: the bits a reaped marked / sent slot loses (its status, and an RX slot's errors).
    """

    def __init__(
        self,
        fast: compiled.Compiled,
        ring: npt.NDArray[np.void],
        mark: tuple[int, int],
        sent: tuple[int, int],
        eop: int,
        clear_mark: int,
        clear_sent: int,
    ) -> None:
        ffi = fast.ffi
        self._lib = fast.lib
        self.size = len(ring)
        self._ring = ring  # (the pointer below borrows its memory)
        self._words = ffi.cast("uint64_t *", ffi.from_buffer(ring.view(np.uint8), require_writable=True))
        self._marks = np.empty(self.size, dtype=np.int64)
        self._marks_ptr = ffi.cast("int64_t *", ffi.from_buffer(self._marks))
        self._split = np.zeros(3, dtype=np.int64)
        self._split_ptr = ffi.cast("int64_t *", ffi.from_buffer(self._split))
        self._seen = np.zeros(self.size, dtype=np.uint8)
        self._seen_ptr = ffi.from_buffer(self._seen)
        self._args = (*mark, *sent, eop, clear_mark, clear_sent)
        self._ffi = ffi

    @classmethod
    def of(cls, ring: npt.NDArray[np.void], **masks: Any) -> RingPass | None:
        """The pass for a C-contiguous ring of 16-byte descriptors when the module is loaded, else None."""
        fast = state()[0]
        if fast is None or ring.dtype.itemsize != 16 or not ring.flags.c_contiguous or ring.size == 0:
            return None
        return cls(fast, ring, **masks)

    def step(self, completions: bool) -> tuple[npt.NDArray[np.int64], tuple[int, int, int]]:
        """The marked slots (ascending, a new array), and (how many splits, first sent slot, its marked next slot):
        splits and completions only with ``completions``.  Reaps the marked slots, and the sent ones with
        ``completions``."""
        mark_mask, mark_value, sent_mask, sent_value, eop, clear_mark, clear_sent = self._args
        k = self._lib.ringmarks_step(
            self.size,
            self._words,
            mark_mask,
            mark_value,
            1 if completions else 0,
            sent_mask,
            sent_value,
            eop,
            clear_mark,
            clear_sent,
            self._marks_ptr,
            self._split_ptr,
        )
        split = self._split
        return self._marks[:k].copy(), (int(split[0]), int(split[1]), int(split[2]))

    def match(self, marks: npt.NDArray[np.int64], described: npt.NDArray[Any]) -> bool | None:
        """Whether ``described`` names each of ``marks`` (strictly ascending slots of this ring) once and nothing
        else; None when the columns are not int64 and contiguous, or a mark is not a slot of this ring (the numpy
        path then compares)."""
        if (
            marks.dtype != np.int64
            or described.dtype != np.int64
            or not marks.flags.c_contiguous
            or not described.flags.c_contiguous
        ):
            return None
        if marks.size != described.size:
            return False
        if marks.size == 0:
            return True
        ffi = self._ffi
        same = self._lib.ringmarks_match(
            marks.size,
            ffi.cast("int64_t *", ffi.from_buffer(marks)),
            described.size,
            ffi.cast("int64_t *", ffi.from_buffer(described)),
            self.size,
            self._seen_ptr,
        )
        return None if same < 0 else bool(same)  # -1: a mark outside this ring (the C wrote nothing)


#: A pointer to each ring's words by ``id``, with a weak reference that tells whether it is still that ring: made
#: from the buffer once per ring (``from_buffer`` of a ring in a machine's memory costs more than the read itself).
#: The plain pointer keeps nothing alive; it is used only while the ring it points into is.
_WORDS: dict[int, tuple[weakref.ref[npt.NDArray[np.void]], Any]] = {}


def _window(ring: npt.NDArray[np.void], start: int, count: int) -> tuple[compiled.Compiled, Any] | None:
    """The module and a pointer to ``ring``'s words, for a window of ``count`` slots from ``start`` (in the ring);
    None when not loaded, or the ring is not C-contiguous 16-byte descriptors."""
    fast = state()[0]
    if fast is None or ring.dtype.itemsize != 16 or not ring.flags.c_contiguous or not 0 <= start < len(ring):
        return None
    if count < 0:
        return None
    kept = _WORDS.get(id(ring))
    if kept is None or kept[0]() is not ring:
        if len(_WORDS) >= 256:  # forget the rings that are gone
            for key in [key for key, (alive, _) in _WORDS.items() if alive() is None]:
                del _WORDS[key]
        ffi = fast.ffi
        kept = _WORDS[id(ring)] = (
            weakref.ref(ring),
            ffi.cast("uint64_t *", ffi.cast("uintptr_t", ffi.from_buffer(ring))),
        )
    return fast, kept[1]


def count_marked(ring: npt.NDArray[np.void], start: int, count: int, mark: tuple[int, int]) -> int | None:
    """How many of the ``count`` slots from ``start`` on (wrapping) pass ``mark`` (None: not loaded, or the ring is
    read field by field)."""
    window = _window(ring, start, count)
    if window is None:
        return None
    fast, words = window
    return int(fast.lib.ringmarks_count(len(ring), words, start, count, *mark))


def held(
    ring: npt.NDArray[np.void], start: int, count: int, done: tuple[int, int], sent: tuple[int, int], eop: int
) -> tuple[int, int, int, bool] | None:
    """``ringmarks_held``: (first slot not done, first done after it, last sent, whether it ends its packet), as
    positions in the window (-1: none); None as ``count_marked``."""
    window = _window(ring, start, count)
    if window is None:
        return None
    fast, words = window
    out = fast.ffi.new("int64_t[4]")
    fast.lib.ringmarks_held(len(ring), words, start, count, *done, *sent, eop, out)
    return int(out[0]), int(out[1]), int(out[2]), bool(out[3])


def atomic(
    ring: npt.NDArray[np.void], start: int, count: int, mark: tuple[int, int], sent: tuple[int, int], eop: int
) -> tuple[int, int] | None:
    """``ringmarks_atomic``: the first and last slot of the window's first packet with a slot refused and a slot
    sent, (-1, -1) when none; None as ``count_marked``."""
    window = _window(ring, start, count)
    if window is None:
        return None
    fast, words = window
    out = fast.ffi.new("int64_t[2]")
    fast.lib.ringmarks_atomic(len(ring), words, start, count, *mark, *sent, eop, out)
    return int(out[0]), int(out[1])
