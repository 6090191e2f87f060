"""Ring index arithmetic, in one place.

Convention of every descriptor ring of the 8254x family (and of AF_XDP and
virtio): the producer owns ``tail``, the consumer owns ``head``; the ring is
empty when ``head == tail`` and full when ``tail + 1 == head`` (one slot is
always left empty so that full and empty differ).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

G = TypeVar("G", bound=np.generic)


def used(head: int, tail: int, size: int) -> int:
    """Descriptors the producer has handed over and the consumer not yet taken."""
    return (tail - head) % size


def free(head: int, tail: int, size: int) -> int:
    """Slots the producer may still fill without overtaking the consumer."""
    return size - 1 - used(head, tail, size)


def advance(index: int, count: int, size: int) -> int:
    """``index`` moved ``count`` slots forward, wrapping at ``size``."""
    return (index + count) % size


def slots(start: int, count: int, size: int) -> npt.NDArray[np.int64]:
    """The ``count`` slot numbers from ``start`` onward, wrapped (a batch's indices)."""
    return (np.arange(count, dtype=np.int64) + start) % size


def between(index: int, head: int, tail: int, size: int) -> bool:
    """True when ``index`` lies in the half-open window ``[head, tail)`` of the ring."""
    return (index - head) % size < used(head, tail, size)


def read_window(ring: npt.NDArray[G], start: int, count: int) -> npt.NDArray[G]:
    """Copy ``count`` entries of ``ring`` from slot ``start`` on, wrapping (at most two slices)."""
    size = ring.shape[0]
    first = min(count, size - start)
    if first == count:
        return ring[start : start + count].copy()
    return np.concatenate((ring[start:], ring[: count - first]))


def write_window(ring: npt.NDArray[G], start: int, values: npt.NDArray[G]) -> None:
    """Store ``values`` into ``ring`` from slot ``start`` on, wrapping (at most two slices)."""
    size = ring.shape[0]
    count = values.shape[0]
    first = min(count, size - start)
    ring[start : start + first] = values[:first]
    if first < count:
        ring[: count - first] = values[first:]
