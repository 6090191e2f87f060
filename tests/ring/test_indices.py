"""Ring index arithmetic: producer tail, consumer head, one slot always left empty."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ring import indices

SIZE = 8


def test_empty_and_full() -> None:
    assert indices.used(3, 3, SIZE) == 0
    assert indices.free(3, 3, SIZE) == SIZE - 1
    assert indices.used(3, 2, SIZE) == SIZE - 1  # tail + 1 == head: full
    assert indices.free(3, 2, SIZE) == 0


def test_used_wraps() -> None:
    assert indices.used(6, 1, SIZE) == 3
    assert indices.free(6, 1, SIZE) == 4
    assert indices.used(0, 7, SIZE) == 7


def test_advance_wraps() -> None:
    assert indices.advance(5, 2, SIZE) == 7
    assert indices.advance(6, 2, SIZE) == 0
    assert indices.advance(7, 9, SIZE) == 0
    assert indices.advance(3, 0, SIZE) == 3


def test_slots() -> None:
    assert indices.slots(6, 4, SIZE).tolist() == [6, 7, 0, 1]
    assert indices.slots(0, 0, SIZE).tolist() == []
    assert indices.slots(2, SIZE, SIZE).tolist() == [2, 3, 4, 5, 6, 7, 0, 1]
    assert indices.slots(1, 2, SIZE).dtype == np.int64


def test_between() -> None:
    assert indices.between(6, 6, 1, SIZE)
    assert indices.between(0, 6, 1, SIZE)
    assert not indices.between(1, 6, 1, SIZE)  # half-open
    assert not indices.between(5, 6, 1, SIZE)
    assert not indices.between(4, 4, 4, SIZE)  # empty window holds nothing


ring = st.integers(min_value=1, max_value=4096).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1), st.integers(0, size - 1))
)


@given(ring)
def test_free_plus_used(args: tuple[int, int, int]) -> None:
    size, head, tail = args
    assert indices.free(head, tail, size) + indices.used(head, tail, size) == size - 1
    assert 0 <= indices.used(head, tail, size) < size


@given(ring, st.integers(0, 10_000))
def test_advance_by_used_reaches_tail(args: tuple[int, int, int], extra: int) -> None:
    size, head, tail = args
    assert indices.advance(head, indices.used(head, tail, size), size) == tail
    assert indices.advance(head, extra * size, size) == head
    assert 0 <= indices.advance(head, extra, size) < size


@given(ring, st.integers(0, 300))
def test_slots_wrap(args: tuple[int, int, int], count: int) -> None:
    size, start, _ = args
    got = indices.slots(start, count, size)
    assert got.size == count
    assert ((got >= 0) & (got < size)).all()
    expected = [start]
    for _ in range(count - 1):
        expected.append(indices.advance(expected[-1], 1, size))
    assert got.tolist() == expected[:count]


@given(ring)
def test_between_matches_slots(args: tuple[int, int, int]) -> None:
    size, head, tail = args
    window = set(indices.slots(head, indices.used(head, tail, size), size).tolist())
    for index in {0, head, tail, (head + size - 1) % size, (tail + 1) % size, size - 1}:
        assert indices.between(index, head, tail, size) == (index in window)


def test_read_and_write_window() -> None:
    ring = np.arange(SIZE, dtype=np.int64)
    assert indices.read_window(ring, 2, 3).tolist() == [2, 3, 4]
    assert indices.read_window(ring, 6, 4).tolist() == [6, 7, 0, 1]
    window = indices.read_window(ring, 0, 2)
    window[:] = -1
    assert ring[:2].tolist() == [0, 1]  # a copy, not a view
    indices.write_window(ring, 7, np.array([70, 80, 90], dtype=np.int64))
    assert ring.tolist() == [80, 90, 2, 3, 4, 5, 6, 70]


@given(ring, st.integers(0, 4096), st.integers(0, 2**32 - 1))
def test_windows_match_slots(args: tuple[int, int, int], want: int, seed: int) -> None:
    size, start, _ = args
    count = want % (size + 1)
    data = np.random.default_rng(seed).integers(0, 1 << 40, size)
    assert (indices.read_window(data, start, count) == data[indices.slots(start, count, size)]).all()
    values = np.arange(count, dtype=data.dtype) - count
    expected = data.copy()
    expected[indices.slots(start, count, size)] = values
    indices.write_window(data, start, values)
    assert (data == expected).all()
