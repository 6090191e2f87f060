"""Batches of frames and vectorised byte moves.

A burst of frames travels as one ``FrameBatch``: a single uint8 array with
the frames back to back plus an array of lengths, the way DPDK passes an
array of mbufs rather than one object per packet.  Moving bytes between a
batch and memory is one numpy gather or scatter for the whole burst; no
Python loop per frame sits on the data path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def range_index(starts: npt.ArrayLike, lengths: npt.ArrayLike) -> I64:
    """Flat byte indices of the ranges ``[starts[i], starts[i] + lengths[i])``, in order.

    Equal lengths (the common burst of same-size frames) take a 2-D
    broadcast; mixed lengths take one ``np.repeat``.
    """
    s = np.asarray(starts, dtype=np.int64)
    n = np.asarray(lengths, dtype=np.int64)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(n[0])
    if bool((n == first).all()):
        return (s[:, None] + np.arange(first, dtype=np.int64)[None, :]).ravel()
    ends = np.cumsum(n)
    return np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(s - (ends - n), n)


def buffer_chunks(lengths: I64, per_frame: I64, buf_size: int) -> tuple[I64, npt.NDArray[np.bool_], I64]:
    """Cut frames into buffer-sized chunks, one per descriptor, as NICs and drivers lay them out.

    ``per_frame[i]`` is how many buffers frame i takes (ceil(len / buf_size)).
    Returns each chunk's length, whether it ends its frame (EOP), and the
    frame it belongs to.
    """
    n = lengths.size
    ends = np.cumsum(per_frame)
    total = int(ends[-1]) if n else 0
    frame_of = np.repeat(np.arange(n), per_frame)
    part = np.arange(total) - np.repeat(ends - per_frame, per_frame)
    chunk = np.minimum(buf_size, lengths[frame_of] - part * buf_size)
    last = np.zeros(total, dtype=bool)
    last[ends - 1] = True
    return chunk, last, frame_of


def _equal_length(lengths: I64) -> int | None:
    if lengths.size == 0:
        return None
    first = int(lengths[0])
    return first if first > 0 and np.logical_and.reduce(lengths == first) else None


def _rows(memory: U8, length: int) -> U8:
    """Every ``length``-byte window of ``memory`` as a row (a strided view, no copy).

    Indexing this view with the start addresses moves whole rows at once,
    several times faster than indexing every byte.
    """
    return np.ndarray((memory.size - length + 1, length), dtype=np.uint8, buffer=memory, strides=(1, 1))


def rows_at(memory: U8, starts: npt.ArrayLike, length: int) -> U8:
    """The ``length`` bytes at each start, as an ``(n, length)`` copy (one row gather)."""
    return _rows(memory, length)[np.asarray(starts, dtype=np.int64)]


def gather(memory: U8, starts: npt.ArrayLike, lengths: npt.ArrayLike) -> U8:
    """Copy the given ranges of ``memory`` out, back to back."""
    s = np.asarray(starts, dtype=np.int64)
    n = np.asarray(lengths, dtype=np.int64)
    same = _equal_length(n)
    if same is not None:
        return _rows(memory, same)[s].ravel()
    return memory[range_index(s, n)]


def scatter(memory: U8, starts: npt.ArrayLike, lengths: npt.ArrayLike, data: U8) -> None:
    """Copy ``data`` (ranges back to back) into the given ranges of ``memory``."""
    s = np.asarray(starts, dtype=np.int64)
    n = np.asarray(lengths, dtype=np.int64)
    same = _equal_length(n)
    if same is not None:
        _rows(memory, same)[s] = data.reshape(s.size, same)
        return
    memory[range_index(s, n)] = data


def chunk_rows(memory: U8, chunk: int) -> U8:
    """``memory`` as a ``(count, chunk)`` matrix of its chunk-sized buffers (a view, no copy).

    A mempool's buffers are chunk-aligned (buffer ``i`` at byte ``i * chunk``,
    as DPDK's mbufs and ixy's buffers are), so a burst's frames are the
    starts of rows of this view: moving them is one row gather or scatter,
    with no per-byte index array.
    """
    return memory[: memory.size - memory.size % chunk].reshape(-1, chunk)


#: ``_COLUMNS[:n]`` is 0..n-1, the column numbers of a chunk row (cached for the mask of ``gather_rows``; as
#: wide as e1000's largest receive buffer, RCTL.BSIZE 16384)
_COLUMNS = np.arange(1 << 14, dtype=np.int64)


def gather_rows(chunks: U8, rows: slice | I64, lengths: I64, longest: int, same: bool) -> U8:
    """The first ``lengths[i]`` bytes of each chosen row of ``chunks`` (``chunk_rows``), back to back.

    ``rows`` is a slice of consecutive rows (a ring's slots without wrap) or
    row numbers; ``longest`` is the longest length (at most the row width:
    a longer frame is not in one row) and ``same`` says every length equals
    it.  Equal lengths are one ``(n, longest)`` copy; mixed
    lengths take that block and keep each row's first ``lengths[i]`` bytes
    through one 2-D mask (row-major order is frame order).
    """
    block = chunks[rows, :longest]
    if not same:
        columns = _COLUMNS[:longest] if longest <= _COLUMNS.size else np.arange(longest, dtype=np.int64)
        return block[columns < lengths[:, None]]
    return block.flatten() if isinstance(rows, slice) else block.reshape(-1)


def scatter_rows(chunks: U8, rows: I64, lengths: I64, data: U8, same: int | None) -> None:
    """Copy frames (``data``, back to back) into the starts of the given rows of ``chunks`` (``chunk_rows``).

    ``same``: the length of every frame when all are equal (one row
    scatter), else None (one byte scatter, since a mixed-length write must
    not touch the bytes past each frame).
    """
    if same is not None:
        chunks[rows, :same] = data.reshape(-1, same)
        return
    width = chunks.shape[1]
    chunks.reshape(-1)[range_index(rows * width, lengths)] = data


#: The arrays of every empty batch ``FrameBatch.none`` builds (zero bytes: nothing in them can change).
_NO_BYTES, _NO_LENGTHS = np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)


@dataclass
class FrameBatch:
    """Frames back to back in ``data``; frame i is ``lengths[i]`` bytes long."""

    data: U8 = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    lengths: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: the longest frame's length when whoever built the batch already knew it (a compiled burst path), else None
    known_longest: int | None = field(default=None, compare=False, repr=False)
    #: every frame's length when whoever built the batch knew they are all equal (a matrix of frames, a run of
    #: same-length descriptors), else None: a burst path then needs no pass over ``lengths`` to find it out
    known_same: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.uint8)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        if int(self.lengths.sum()) != self.data.size:
            raise ValueError(
                f"frame lengths add up to {int(self.lengths.sum())} bytes but the batch holds {self.data.size}"
            )

    # -- construction ------------------------------------------------------
    @classmethod
    def from_frames(cls, frames: Iterable[bytes]) -> FrameBatch:
        items = [bytes(f) for f in frames]
        data = np.frombuffer(b"".join(items), dtype=np.uint8).copy()
        return cls(data, np.array([len(f) for f in items], dtype=np.int64))

    @classmethod
    def counted(cls, data: U8, lengths: I64, longest: int | None = None, same: int | None = None) -> FrameBatch:
        """A batch whose lengths are known to add up to ``data.size`` (a burst path summed them as it copied,
        and may have noted the longest, or that all are ``same``): the check of ``__init__`` is skipped, not the
        invariant.  Both arrays must be contiguous uint8 and int64."""
        batch = cls.__new__(cls)
        batch.data, batch.lengths, batch.known_longest, batch.known_same = data, lengths, longest, same
        return batch

    @classmethod
    def none(cls) -> FrameBatch:
        """An empty batch, built without checks (what a poll of an empty ring returns, as often as it polls)."""
        return cls.counted(_NO_BYTES, _NO_LENGTHS)

    @classmethod
    def from_matrix(cls, rows: U8) -> FrameBatch:
        """A batch of equal-length frames from an ``(n, length)`` byte matrix."""
        n, length = rows.shape
        known = length if n and length else None
        return cls(np.ascontiguousarray(rows).ravel(), np.full(n, length, dtype=np.int64), known, known)

    @classmethod
    def concat(cls, batches: Sequence[FrameBatch]) -> FrameBatch:
        if not batches:
            return cls()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.data for b in batches]),
            np.concatenate([b.lengths for b in batches]),
        )

    # -- access ------------------------------------------------------------
    def __len__(self) -> int:
        return self.lengths.size

    @property
    def longest(self) -> int:
        """The length of the longest frame (0 for an empty batch)."""
        if self.known_longest is not None:
            return self.known_longest
        return int(self.lengths.max()) if self.lengths.size else 0

    @property
    def nbytes(self) -> int:
        return self.data.size

    @property
    def offsets(self) -> I64:
        """Start of each frame in ``data``."""
        return np.cumsum(self.lengths) - self.lengths

    def frame(self, i: int) -> bytes:
        start = int(self.lengths[:i].sum())
        return self.data[start : start + int(self.lengths[i])].tobytes()

    def __iter__(self) -> Iterator[bytes]:
        start = 0
        raw = self.data.tobytes()
        for length in self.lengths.tolist():
            yield raw[start : start + length]
            start += length

    def as_matrix(self) -> U8:
        """The frames as an ``(n, length)`` matrix; all frames must be equally long."""
        if len(self) == 0:
            return self.data.reshape(0, 0)
        length = int(self.lengths[0])
        if not bool((self.lengths == length).all()):
            raise ValueError("frames differ in length; no matrix view")
        return self.data.reshape(len(self), length)

    def take(self, start: int, stop: int) -> FrameBatch:
        """Frames ``[start, stop)`` as a new batch (views, no copy of bytes)."""
        offs = self.offsets
        lo = int(offs[start]) if start < len(self) else self.nbytes
        hi = int(offs[stop]) if stop < len(self) else self.nbytes
        return FrameBatch(self.data[lo:hi], self.lengths[start:stop])
