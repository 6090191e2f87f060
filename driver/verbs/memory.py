"""A tenant's process memory for RDMA: an anonymous mapping with its virtual address and a numpy view.

Verbs work on virtual addresses of the calling process: ``ibv_reg_mr``
pins pages of the caller's own memory and SGEs name addresses inside it.
An ``Arena`` is one such mapping.  The tenant registers parts of it as MRs
and leaves the gaps unregistered, so an SGE that runs past its MR still
names real, mapped bytes of the tenant's own process: only the MR check
(the verifier's, or the device's) stands between the WR and those bytes.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import numpy.typing as npt


class Arena:
    """``size`` bytes of zeroed, page-aligned anonymous memory (``mmap``); ``view`` is a numpy window on it."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % mmap.PAGESIZE:
            raise ValueError(f"arena size must be a positive multiple of {mmap.PAGESIZE}, got {size}")
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view: npt.NDArray[np.uint8] = np.frombuffer(self._map, dtype=np.uint8)
        anchor = ctypes.c_char.from_buffer(self._map)
        self.addr = ctypes.addressof(anchor)
        del anchor  # a live export would keep the mapping from closing

    def offset(self, addr: int) -> int:
        """Offset in the arena of a virtual address inside it."""
        off = addr - self.addr
        if not 0 <= off < self.size:
            raise ValueError(f"{addr:#x} is not inside the arena [{self.addr:#x}, +{self.size:#x})")
        return off

    def close(self) -> None:
        """Unmap.  Deregister every MR on the arena first: the device may still be using the pages."""
        del self.view
        self._map.close()
