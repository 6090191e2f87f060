"""Physical memory (owners, canaries, allocator) and frame batches with vectorised gather/scatter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ring.frames import FrameBatch, gather, range_index, rows_at, scatter
from ring.memory import (
    CANARY_SIZE,
    CANARY_TAG,
    OWNER_FREE,
    OWNER_KERNEL,
    PAGE_SIZE,
    FrameRange,
    OutOfFrames,
    PhysicalMemory,
    _kernel_image,
    owner_name,
)


@pytest.fixture
def mem() -> PhysicalMemory:
    return PhysicalMemory(16 << 20, 1 << 20, seed=1)


# -- PhysicalMemory -----------------------------------------------------------
def test_owner_table(mem: PhysicalMemory) -> None:
    kernel_frames = (1 << 20) // PAGE_SIZE
    assert mem.frames == (16 << 20) // PAGE_SIZE
    assert mem.kernel_frames == FrameRange(0, kernel_frames)
    assert (mem.owner[:kernel_frames] == OWNER_KERNEL).all()
    assert (mem.owner[kernel_frames:] == OWNER_FREE).all()
    assert mem.owner_of(0) == OWNER_KERNEL
    assert mem.owner_of((1 << 20) - 1) == OWNER_KERNEL
    assert mem.owner_of(1 << 20) == OWNER_FREE
    assert mem.owner_of(mem.size) == OWNER_FREE  # beyond memory
    assert mem.owner_of(-1) == OWNER_FREE
    assert [owner_name(o) for o in (OWNER_FREE, OWNER_KERNEL, 3)] == ["free", "kernel", "tenant3"]


def test_canaries(mem: PhysicalMemory) -> None:
    kernel_frames = mem.kernel_frames.count
    assert len(mem.canaries) == kernel_frames
    for frame in range(kernel_frames):
        start = frame * PAGE_SIZE
        canary = mem.data[start : start + CANARY_SIZE].tobytes()
        assert canary.startswith(CANARY_TAG)
        assert canary in mem.canaries
    # the same seed plants the same secrets, another seed different ones
    assert PhysicalMemory(16 << 20, 1 << 20, seed=1).canaries == mem.canaries
    assert PhysicalMemory(16 << 20, 1 << 20, seed=2).canaries.isdisjoint(mem.canaries)
    # user memory starts zeroed and canary-free
    assert not mem.data[1 << 20 :].any()


def test_machines_of_one_seed_share_no_kernel_bytes(mem: PhysicalMemory) -> None:
    """The seeded kernel image is cached per seed (a campaign rebuilds machines); each machine owns a copy."""
    pristine = mem.data[: 1 << 20].copy()
    mem.data[: 1 << 20] = 0xEE  # an escape scribbles over the first machine's kernel
    again = PhysicalMemory(16 << 20, 1 << 20, seed=1)
    assert np.array_equal(again.data[: 1 << 20], pristine) and not np.shares_memory(again.data, mem.data)
    image, _ = _kernel_image(1 << 20, 1)
    assert not image.flags.writeable
    with pytest.raises(ValueError):
        image.flags.writeable = True  # the cached image cannot be made writable again


def test_contains(mem: PhysicalMemory) -> None:
    assert mem.contains(0, mem.size)
    assert mem.contains(mem.size, 0)
    assert not mem.contains(mem.size - 1, 2)
    assert not mem.contains(-1, 1)
    assert not mem.contains(0, -1)
    with pytest.raises(IndexError):
        mem.view(mem.size - 4, 8)


def test_bad_geometry() -> None:
    with pytest.raises(ValueError):
        PhysicalMemory(PAGE_SIZE * 4 + 1, PAGE_SIZE)
    with pytest.raises(ValueError):
        PhysicalMemory(PAGE_SIZE * 4, PAGE_SIZE * 4)
    with pytest.raises(ValueError):
        PhysicalMemory(PAGE_SIZE * 4, 0)


def test_alloc_first_fit_contiguous_zeroed(mem: PhysicalMemory) -> None:
    first_user = mem.kernel_frames.count
    a = mem.alloc(1, owner=0)
    assert a == FrameRange(first_user, 1)
    b = mem.alloc(3 * PAGE_SIZE, owner=1)
    assert b == FrameRange(first_user + 1, 3)
    assert b.phys == (first_user + 1) * PAGE_SIZE and b.nbytes == 3 * PAGE_SIZE
    assert (mem.owner[b.first : b.first + b.count] == 1).all()
    c = mem.alloc(PAGE_SIZE + 1, owner=0)
    assert c == FrameRange(first_user + 4, 2)
    # freeing b leaves a 3-frame hole: 2 frames fit there (first fit), 4 do not
    mem.view(b.phys, b.nbytes)[:] = 0xAB
    mem.free(b)
    assert (mem.owner[b.first : b.first + b.count] == OWNER_FREE).all()
    assert not mem.view(b.phys, b.nbytes).any()  # free scrubs
    mem.view(b.phys, b.nbytes)[:] = 0xCD  # stale bytes in a free frame...
    d = mem.alloc(2 * PAGE_SIZE, owner=2)
    assert d == FrameRange(b.first, 2)
    assert not mem.view(d.phys, d.nbytes).any()  # ...are zeroed by alloc
    e = mem.alloc(4 * PAGE_SIZE, owner=2)
    assert e.first == c.first + c.count
    assert mem.owner_of(e.phys) == 2


def test_alloc_refusals(mem: PhysicalMemory) -> None:
    with pytest.raises(ValueError):
        mem.alloc(PAGE_SIZE, OWNER_FREE)
    user = mem.frames - mem.kernel_frames.count
    with pytest.raises(OutOfFrames):
        mem.alloc((user + 1) * PAGE_SIZE, owner=0)
    whole = mem.alloc(user * PAGE_SIZE, owner=0)
    with pytest.raises(OutOfFrames):
        mem.alloc(1, owner=1)
    mem.free(whole)
    assert mem.alloc(1, owner=1).first == mem.kernel_frames.count


def test_alloc_never_touches_kernel(mem: PhysicalMemory) -> None:
    kernel = mem.data[: 1 << 20].copy()
    ranges = [mem.alloc(n * PAGE_SIZE, owner=n % 3) for n in (1, 5, 2, 7)]
    for r in ranges[::2]:
        mem.free(r)
    mem.alloc(3 * PAGE_SIZE, owner=0)
    assert (mem.data[: 1 << 20] == kernel).all()
    assert (mem.owner[: mem.kernel_frames.count] == OWNER_KERNEL).all()


# -- FrameBatch ------------------------------------------------------------------
def test_frame_batch_from_frames_and_iteration() -> None:
    frames = [b"abc", b"", b"defgh", b"x"]
    batch = FrameBatch.from_frames(frames)
    assert len(batch) == 4
    assert batch.nbytes == 9
    assert batch.lengths.tolist() == [3, 0, 5, 1]
    assert batch.offsets.tolist() == [0, 3, 3, 8]
    assert list(batch) == frames
    assert [batch.frame(i) for i in range(4)] == frames
    assert len(FrameBatch()) == 0 and list(FrameBatch()) == []


def test_frame_batch_length_mismatch() -> None:
    with pytest.raises(ValueError):
        FrameBatch(np.zeros(5, dtype=np.uint8), np.array([2, 2]))


def test_frame_batch_take_and_concat() -> None:
    frames = [bytes([i]) * (i + 1) for i in range(6)]
    batch = FrameBatch.from_frames(frames)
    assert list(batch.take(2, 4)) == frames[2:4]
    assert list(batch.take(0, 6)) == frames
    assert list(batch.take(4, 6)) == frames[4:]
    assert len(batch.take(6, 6)) == 0
    joined = FrameBatch.concat([batch.take(0, 2), batch.take(2, 5), batch.take(5, 6)])
    assert list(joined) == frames
    assert len(FrameBatch.concat([])) == 0
    assert FrameBatch.concat([batch]) is batch


def test_frame_batch_matrix() -> None:
    rows = np.arange(12, dtype=np.uint8).reshape(3, 4)
    batch = FrameBatch.from_matrix(rows)
    assert batch.lengths.tolist() == [4, 4, 4]
    assert (batch.as_matrix() == rows).all()
    assert FrameBatch().as_matrix().shape == (0, 0)
    with pytest.raises(ValueError):
        FrameBatch.from_frames([b"ab", b"c"]).as_matrix()


# -- gather / scatter ------------------------------------------------------------
def test_range_index() -> None:
    assert range_index([10, 20], [3, 3]).tolist() == [10, 11, 12, 20, 21, 22]
    assert range_index([10, 20, 5], [2, 0, 3]).tolist() == [10, 11, 5, 6, 7]
    assert range_index([], []).tolist() == []


def test_gather_scatter_equal_and_mixed() -> None:
    memory = np.arange(256, dtype=np.uint8)
    assert gather(memory, [0, 100], [4, 4]).tolist() == [0, 1, 2, 3, 100, 101, 102, 103]
    assert gather(memory, [7, 50], [1, 3]).tolist() == [7, 50, 51, 52]
    assert rows_at(memory, [1, 9], 2).tolist() == [[1, 2], [9, 10]]
    target = np.zeros(64, dtype=np.uint8)
    scatter(target, [0, 32], [3, 3], np.array([1, 2, 3, 4, 5, 6], dtype=np.uint8))
    scatter(target, [10, 40], [1, 2], np.array([7, 8, 9], dtype=np.uint8))
    assert target[[0, 1, 2, 32, 33, 34, 10, 40, 41]].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert int(np.count_nonzero(target)) == 9


@st.composite
def disjoint_ranges(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Non-overlapping ranges inside a 4 KiB buffer, in random order, equal or mixed lengths."""
    same = draw(st.booleans())
    count = draw(st.integers(0, 12))
    fixed = draw(st.integers(1, 64))
    lengths = [fixed if same else draw(st.integers(0, 64)) for _ in range(count)]
    gaps = [draw(st.integers(0, 200)) for _ in range(count)]
    starts, pos = [], 0
    for gap, length in zip(gaps, lengths, strict=True):
        starts.append(pos + gap)
        pos += gap + length
    order = draw(st.permutations(range(count)))
    return [starts[i] for i in order], [lengths[i] for i in order]


@given(disjoint_ranges(), st.integers(0, 2**32 - 1))
def test_gather_after_scatter(ranges: tuple[list[int], list[int]], seed: int) -> None:
    starts, lengths = ranges
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, sum(lengths), dtype=np.uint8)
    memory = np.zeros(4096, dtype=np.uint8)
    scatter(memory, starts, lengths, data)
    assert (gather(memory, starts, lengths) == data).all()
    # nothing outside the ranges was touched
    mask = np.ones(memory.size, dtype=bool)
    mask[range_index(starts, lengths)] = False
    assert not memory[mask].any()
    # the batch view of the gathered bytes splits at the right places
    batch = FrameBatch(gather(memory, starts, lengths), np.array(lengths, dtype=np.int64))
    expected = np.split(data, np.cumsum(lengths)[:-1]) if lengths else []
    assert list(batch) == [e.tobytes() for e in expected]
