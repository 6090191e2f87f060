"""The kernel's answers to a tenant's pin, unpin and free calls, judged from the oracle's own account.

A refused descriptor leaves an audit record whose reason the oracle judges
(fuzz/oracle/reasons.py); a system call leaves an answer -- a handle, a
refusal, "released" or "deferred" -- and the rules of pin lifetime
(docs/verifier.md, "Pin lifetime") say which answer is right:

* **pin**: a frame can be pinned once per tenant, an overlapping pin is
  refused (VFIO_IOMMU_MAP_DMA over a mapped IOVA: ``-EEXIST``).  A pin
  accepted over a frame the tenant still holds with an active pin is wrong.
* **unpin**: accepted exactly for a pin the tenant holds and has not
  unpinned yet (``ibv_dereg_mr`` of a deregistered MR fails, as does
  VFIO_IOMMU_UNMAP_DMA of nothing).  Accepting a second unpin of the same
  handle (while its deferred release waits for DMA, say) is wrong, and so is
  refusing the unpin of a pin she holds.
* **free**: ``free_dma`` is refused while any frame of the region is pinned.

"Holds" is the oracle's account, not the kernel's pin table: the handles
the kernel gave back (``pinned``), the ones the tenant unpinned since
(``unpinned``), and the pin reference (``Oracle.pinned``: access bits per
frame, ``UNPIN_ASKED`` where a deferred unpin may or may not have finished --
the kernel lets go when the device is done, so no answer is judged there).
Handles given out before the judge was told (the arena's build) are not
judged.  Findings are of kind ``syscall``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fuzz.oracle.escape import Escape
from fuzz.oracle.reasons import ACCESS_BITS, UNPIN_ASKED
from ring.memory import PAGE_SHIFT


def _active(table: npt.NDArray[np.uint8] | None, frames: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The ``frames`` the reference says are pinned by an active pin (access bits, no unpin asked)."""
    if table is None or frames.size == 0:
        return frames[:0]
    bits = table[frames]
    return frames[((bits & np.uint8(ACCESS_BITS)) != 0) & ((bits & np.uint8(UNPIN_ASKED)) == 0)]


@dataclass
class SyscallJudge:
    """What each tenant's pin, unpin and free calls should have answered; wrong answers become escapes."""

    #: tenant -> handles the kernel gave for its pins, and the ones it unpinned since (accepted)
    pinned: dict[int, set[int]] = field(default_factory=dict)
    unpinned: dict[int, set[int]] = field(default_factory=dict)

    def pin(
        self, tenant: int, handle: int, frames: npt.NDArray[np.int64], table: npt.NDArray[np.uint8] | None
    ) -> list[Escape]:
        """The kernel accepted a pin of ``frames`` (``table``: the reference before it)."""
        self.pinned.setdefault(tenant, set()).add(handle)
        self.unpinned.get(tenant, set()).discard(handle)
        overlap = _active(table, frames)
        if not overlap.size:
            return []
        return [
            Escape(
                "syscall",
                f"pin accepted (handle {handle}) over frame {int(overlap[0])}, which tenant {tenant} holds "
                f"pinned already: an overlapping pin must be refused (VFIO: -EEXIST)",
                address=int(overlap[0]) << PAGE_SHIFT,
            )
        ]

    def unpin(self, tenant: int, handle: int, accepted: bool) -> list[Escape]:
        """The kernel answered an unpin of ``handle`` (accepted: released or deferred)."""
        held = self.pinned.get(tenant, set())
        gone = self.unpinned.setdefault(tenant, set())
        if handle in held:
            held.discard(handle)
            gone.add(handle)
            if accepted:
                return []
            return [Escape("syscall", f"unpin of handle {handle} refused, a pin tenant {tenant} holds")]
        if handle in gone and accepted:
            return [
                Escape(
                    "syscall",
                    f"unpin of handle {handle} accepted twice: tenant {tenant} unpinned it already "
                    "(a deferred release waits for the device; the handle is no longer hers)",
                )
            ]
        return []

    def free(self, tenant: int, phys: int, length: int, table: npt.NDArray[np.uint8] | None) -> list[Escape]:
        """The kernel accepted a free of ``[phys, phys + length)`` (``table``: the reference before it)."""
        frames = np.arange(phys >> PAGE_SHIFT, ((phys + length - 1) >> PAGE_SHIFT) + 1, dtype=np.int64)
        still = _active(table, frames)
        if not still.size:
            return []
        return [
            Escape(
                "syscall",
                f"free accepted over frame {int(still[0])}, which tenant {tenant} still holds pinned "
                "(free_dma is refused while pinned)",
                address=int(still[0]) << PAGE_SHIFT,
            )
        ]
