"""Ring index arithmetic, in one place.

Convention of every descriptor ring of the 8254x family (and of AF_XDP and
virtio): the producer owns ``tail``, the consumer owns ``head``; the ring is
empty when ``head == tail`` and full when ``tail + 1 == head`` (one slot is
always left empty so that full and empty differ).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


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
