"""PhysicalMemory over bytes it did not allocate (QEMU's guest RAM): the same bytes, the same layout."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from ring.memory import CANARY_TAG, PhysicalMemory

SIZE = 1 << 20
KERNEL = 64 << 10


def test_backing_bytes_are_the_memory() -> None:
    shared = mmap.mmap(-1, SIZE)  # anonymous shared mapping, as a memfd mapping is
    shared[:] = b"\xab" * SIZE
    ram = np.frombuffer(shared, dtype=np.uint8)
    memory = PhysicalMemory(SIZE, KERNEL, seed=5, backing=ram)
    assert np.shares_memory(memory.data, ram)
    plain = PhysicalMemory(SIZE, KERNEL, seed=5)
    assert np.array_equal(memory.data, plain.data)  # seeded kernel region, zeroed rest: as if fresh
    assert shared[: len(CANARY_TAG)] == CANARY_TAG
    frames = memory.alloc(4096, owner=1)
    memory.view(frames.phys, 4)[:] = np.frombuffer(b"qemu", dtype=np.uint8)
    assert shared[frames.phys : frames.phys + 4] == b"qemu"


@pytest.mark.parametrize(
    "backing",
    [
        np.zeros(SIZE - 4096, dtype=np.uint8),
        np.zeros(SIZE, dtype=np.uint16)[: SIZE // 2],
        np.zeros((2, SIZE // 2), dtype=np.uint8),
        np.frombuffer(bytes(SIZE), dtype=np.uint8),  # read-only
    ],
)
def test_unusable_backing_is_refused(backing: np.ndarray) -> None:
    with pytest.raises(ValueError, match="backing memory"):
        PhysicalMemory(SIZE, KERNEL, backing=backing)
