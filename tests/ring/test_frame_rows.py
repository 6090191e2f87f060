"""Row gathers and scatters on a pool's 2-D view (ring/frames.py) against the byte-index gather and scatter.

A mempool's buffers are chunk-aligned, so the data path moves a burst as
rows of ``chunk_rows(memory, chunk)``; these must copy exactly the bytes the
byte-index ``gather``/``scatter`` copy, and touch nothing else.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ring.frames import chunk_rows, gather, gather_rows, scatter, scatter_rows

CHUNK, COUNT = 64, 24


@st.composite
def burst(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Distinct buffer ids and a length for each (equal lengths half the time)."""
    ids = np.array(draw(st.lists(st.integers(0, COUNT - 1), min_size=1, max_size=COUNT, unique=True)), dtype=np.int64)
    if draw(st.booleans()):
        lengths = np.full(ids.size, draw(st.integers(1, CHUNK)), dtype=np.int64)
    else:
        lengths = np.array(draw(st.lists(st.integers(1, CHUNK), min_size=ids.size, max_size=ids.size)), dtype=np.int64)
    return ids, lengths


def memory(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, COUNT * CHUNK, dtype=np.uint8)


@given(burst(), st.integers(0, 2**32 - 1))
def test_a_row_gather_copies_what_the_byte_gather_copies(b: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    ids, lengths = b
    mem = memory(seed)
    longest, same = int(lengths.max()), bool((lengths == lengths[0]).all())
    expected = gather(mem, ids * CHUNK, lengths)
    got = gather_rows(chunk_rows(mem, CHUNK), ids, lengths, longest, same)
    assert np.array_equal(got, expected)
    first = int(ids.min())  # consecutive rows, as a ring's slots without wrap
    n = min(lengths.size, COUNT - first)
    run, some = slice(first, first + n), lengths[:n]
    got = gather_rows(chunk_rows(mem, CHUNK), run, some, int(some.max()), bool((some == some[0]).all()))
    assert np.array_equal(got, gather(mem, np.arange(first, first + n) * CHUNK, some))
    got[:] = 0  # a copy, never a view of the pool (a full-width row is contiguous in memory)
    assert np.array_equal(mem, memory(seed))


@given(burst(), st.integers(0, 2**32 - 1))
def test_a_row_scatter_writes_what_the_byte_scatter_writes_and_nothing_else(
    b: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    ids, lengths = b
    data = np.random.default_rng(seed + 1).integers(0, 256, int(lengths.sum()), dtype=np.uint8)
    expected, got = memory(seed), memory(seed)
    scatter(expected, ids * CHUNK, lengths, data)
    same = int(lengths[0]) if bool((lengths == lengths[0]).all()) else None
    scatter_rows(chunk_rows(got, CHUNK), ids, lengths, data, same)
    assert np.array_equal(got, expected)


def test_chunk_rows_is_a_view_of_whole_chunks() -> None:
    mem = np.zeros(3 * CHUNK + 5, dtype=np.uint8)
    rows = chunk_rows(mem, CHUNK)
    assert rows.shape == (3, CHUNK)
    rows[2, 0] = 7
    assert mem[2 * CHUNK] == 7
