"""Physical memory: one flat byte array cut into 4 KiB frames.

Why one numpy array: the device's DMA, the kernel's checks and the tenant's
"mmap" views all address the same bytes, exactly as CPU and NIC share DRAM on
a machine without an IOMMU.  Every frame has a ground-truth owner (kernel,
tenant N, or free) that only the allocator changes; the oracle of the fuzzer
judges DMA against this table, never against the verifier's own records.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # x86-64 base page, the pinning granule of VFIO and ibv_reg_mr
PAGE_MASK = PAGE_SIZE - 1

OWNER_FREE = -1
OWNER_KERNEL = -2

#: Every kernel canary starts with this tag, so a scan of a frame on the wire
#: can find candidates with one ``bytes.find`` before comparing the secret.
CANARY_TAG = b"\xcaKSECRET"
CANARY_SIZE = 32

DEFAULT_MEMORY_SIZE = 64 << 20
DEFAULT_KERNEL_SIZE = 4 << 20


class OutOfFrames(Exception):
    """Raised when physical memory cannot satisfy a request (out of frames)."""


def owner_name(owner: int) -> str:
    """Human name of a frame owner code, as the audit log and reports print it."""
    if owner == OWNER_FREE:
        return "free"
    if owner == OWNER_KERNEL:
        return "kernel"
    return f"tenant{owner}"


@dataclass(frozen=True)
class FrameRange:
    """A physically contiguous run of frames: ``[first, first + count)``."""

    first: int
    count: int

    @property
    def phys(self) -> int:
        return self.first << PAGE_SHIFT

    @property
    def nbytes(self) -> int:
        return self.count << PAGE_SHIFT


@functools.lru_cache(maxsize=4)
def _kernel_image(kernel_size: int, seed: int) -> tuple[npt.NDArray[np.uint8], frozenset[bytes]]:
    """The kernel region's seeded bytes and its canaries: one canary at the start of every frame.

    Cached because a fuzz campaign builds a fresh machine from the same seed again and again; each
    machine copies the bytes into its own DRAM.  The cached array is a view of immutable ``bytes``, so
    no caller can make it writable again (``flags.writeable = True`` raises) and leak one machine's
    writes into the next.
    """
    kernel_frames = kernel_size >> PAGE_SHIFT
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, kernel_size, dtype=np.uint8)
    secrets = rng.integers(0, 256, (kernel_frames, CANARY_SIZE - len(CANARY_TAG)), dtype=np.uint8)
    frames = image.reshape(kernel_frames, PAGE_SIZE)
    frames[:, : len(CANARY_TAG)] = np.frombuffer(CANARY_TAG, dtype=np.uint8)
    frames[:, len(CANARY_TAG) : CANARY_SIZE] = secrets
    canaries = frozenset(bytes(row) for row in frames[:, :CANARY_SIZE])
    return np.frombuffer(image.tobytes(), dtype=np.uint8), canaries


class PhysicalMemory:
    """DRAM of the simulated machine, its frame owners and its allocator.

    The first ``kernel_size`` bytes belong to the kernel and are filled with
    seeded random bytes in which a secret canary is planted at the start of
    every frame: any canary seen on a wire is kernel memory that escaped.
    """

    def __init__(
        self,
        size: int = DEFAULT_MEMORY_SIZE,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        seed: int = 0,
        backing: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """``backing``: use these bytes as DRAM instead of a fresh array (zeroed here, then seeded).

        A real device model can then DMA into the very bytes the kernel checks:
        driver/qemu/machine.py passes QEMU's guest RAM, a shared mapping of one memfd.
        """
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"memory size must be a positive multiple of {PAGE_SIZE}, got {size}")
        if kernel_size < PAGE_SIZE or kernel_size % PAGE_SIZE or kernel_size >= size:
            raise ValueError(f"kernel region must be a whole number of frames below the memory size, got {kernel_size}")
        self.size = size
        self.frames = size >> PAGE_SHIFT
        if backing is None:
            self.data: npt.NDArray[np.uint8] = np.zeros(size, dtype=np.uint8)
        else:
            if backing.dtype != np.uint8 or backing.ndim != 1 or backing.size != size or not backing.flags.writeable:
                raise ValueError(f"backing memory must be a writable 1-D uint8 array of {size} bytes")
            self.data = backing
            self.data[kernel_size:] = 0
        self.owner: npt.NDArray[np.int32] = np.full(self.frames, OWNER_FREE, dtype=np.int32)
        kernel_frames = kernel_size >> PAGE_SHIFT
        self.kernel_frames = FrameRange(0, kernel_frames)
        self.owner[:kernel_frames] = OWNER_KERNEL
        image, self._canaries = _kernel_image(kernel_size, seed)
        self.data[:kernel_size] = image

    # -- ground truth -----------------------------------------------------
    @property
    def canaries(self) -> frozenset[bytes]:
        """The kernel's secrets, one per kernel frame (the oracle looks for them)."""
        return self._canaries

    def owner_of(self, phys: int) -> int:
        """Owner of the frame holding ``phys`` (``OWNER_FREE`` beyond memory)."""
        frame = phys >> PAGE_SHIFT
        if phys < 0 or frame >= self.frames:
            return OWNER_FREE
        return int(self.owner[frame])

    def contains(self, phys: int, length: int) -> bool:
        """True when ``[phys, phys + length)`` lies inside physical memory."""
        return phys >= 0 and length >= 0 and phys + length <= self.size

    # -- allocation -------------------------------------------------------
    def alloc(self, nbytes: int, owner: int) -> FrameRange:
        """Allocate physically contiguous frames for ``owner`` (first fit).

        Contiguity mirrors what kernel-bypass drivers ask for (ixy and DPDK
        use hugepages so a ring or a buffer pool never crosses a physical
        discontinuity).  First fit keeps runs deterministic for a seed.
        """
        if owner == OWNER_FREE:
            raise ValueError("cannot allocate frames for the free owner")
        count = max(1, -(-nbytes // PAGE_SIZE))
        free = self.owner == OWNER_FREE
        # Start of every run of `count` free frames: a window sum over the free mask.
        csum = np.concatenate(([0], np.cumsum(free, dtype=np.int64)))
        windows = csum[count:] - csum[:-count]
        starts = np.flatnonzero(windows == count)
        if starts.size == 0:
            raise OutOfFrames(f"out of physical memory: no {count} contiguous free frames")
        first = int(starts[0])
        self.owner[first : first + count] = owner
        self.data[first << PAGE_SHIFT : (first + count) << PAGE_SHIFT] = 0
        return FrameRange(first, count)

    def free(self, frames: FrameRange) -> None:
        """Return frames to the free pool; their contents are scrubbed."""
        self.owner[frames.first : frames.first + frames.count] = OWNER_FREE
        self.data[frames.phys : frames.phys + frames.nbytes] = 0

    def view(self, phys: int, nbytes: int) -> npt.NDArray[np.uint8]:
        """A writable numpy view of ``[phys, phys + nbytes)`` (no copy)."""
        if not self.contains(phys, nbytes):
            raise IndexError(f"physical range {phys:#x}+{nbytes:#x} is outside memory")
        return self.data[phys : phys + nbytes]
