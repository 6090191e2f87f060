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
* **open a queue** (docs/architecture.md, ``Kernel.open_queue``): accepted
  exactly when the queue is free, the ring size is a multiple of 8 from 8 to
  65536 (``TDLEN`` a multiple of 128 bytes), the region named is mapped and
  at least ``TDLEN`` long, and every frame of ``[phys, phys + TDLEN)`` lies in
  memory and is the caller's (the memory controller's owner: ground truth),
  as VFIO and AF_XDP registrations check the memory handed over.  Accepting
  a ring that runs into another tenant's frame lets the device fetch (and
  the kernel mark) her bytes; refusing a ring over the caller's own memory
  denies her the queue.  Both are wrong answers.

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
from ring.descriptors import DESC_SIZE
from ring.memory import PAGE_SHIFT, owner_name


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
    #: queues (nic, kind, index) the oracle saw opened after the judge was told (a queue opens once)
    opened: set[tuple[str, str, int]] = field(default_factory=set)

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

    def open_queue(
        self,
        tenant: int,
        queue: tuple[str, str, int],
        phys: int | None,
        nbytes: int,
        slots: int,
        accepted: bool,
        owner: npt.NDArray[np.int32],
    ) -> list[Escape]:
        """The kernel answered ``tenant``'s opening of ``queue`` with a ring of ``slots`` descriptors over ``nbytes``
        at physical ``phys`` (None: the address is not mapped); ``owner``: every frame's owner, ground truth."""
        length = slots * DESC_SIZE
        why = ""
        if queue in self.opened:
            why = "the queue is open already"
        elif not (8 <= slots <= 65536 and slots % 8 == 0):
            why = f"{slots} slots is not a multiple of 8 from 8 to 65536"
        elif phys is None:
            why = "the ring's address is not mapped"
        elif nbytes < length:
            why = f"the region ({nbytes:#x} bytes) is shorter than the ring ({length:#x})"
        elif phys < 0 or phys + length > owner.size << PAGE_SHIFT:
            why = f"[{phys:#x}, +{length:#x}) runs past the end of memory"
        else:
            frames = owner[phys >> PAGE_SHIFT : ((phys + length - 1) >> PAGE_SHIFT) + 1]
            foreign = (frames != tenant).nonzero()[0]
            if foreign.size:
                frame = (phys >> PAGE_SHIFT) + int(foreign[0])
                why = f"frame {frame} of the ring [{phys:#x}, +{length:#x}) is {owner_name(int(owner[frame]))}'s"
        if accepted:
            self.opened.add(queue)
        if accepted and why:
            return [Escape("syscall", f"{queue[0]} {queue[1]} queue {queue[2]} opened, but {why}", queue[0])]
        if not accepted and not why:
            return [
                Escape(
                    "syscall",
                    f"{queue[0]} {queue[1]} queue {queue[2]} refused: a ring of {slots} slots at {phys:#x} over "
                    f"{nbytes:#x} bytes of tenant {tenant}'s own memory breaks no rule",
                    queue[0],
                )
            ]
        return []
