"""Protection ``verifier`` for a virtqueue: snapshot the graph once, check it, and let the device walk only the copy.

Invariant 3 for graphs.  The device's queue registers point at a shadow
virtqueue in kernel memory, never at the tenant's.  On a notify the kernel
reads the tenant's available index once, copies the new available entries
and the descriptor table once (and each indirect table a chain reaches, once:
verifier/rules/virtq.py), judges every chain on those copies, and writes each
accepted chain *flattened* (its buffers as a direct chain, indirect pointer
dropped) into free slots of the shadow descriptor table before it makes the
chain available to the device and notifies it.  Whatever the tenant writes
into its table after the notify (a new ``next``, a new indirect table), the
device never sees it: the TOCTOU race has nothing to race against.

The kernel holds at most queue-size chains of a queue at once (published
to the device or waiting): a notify that makes more available than the
queue has room for, counting those still outstanding, is refused whole
(``VIRTQ_AVAIL_JUMP``), so neither the kernel's pending list nor the
tenant's used ring can overflow.  A refused chain is completed at once in the tenant's used ring with ``len``
``VIRTQ_USED_LEN_REFUSED`` and audited, one record naming the descriptor that
broke it (invariant 6).  When the device returns shadow chains (its used
ring moves; its interrupt tells the kernel), the kernel writes ``{tenant head,
len}`` into the tenant's used ring, frees the shadow slots and drops the
in-flight pin references (invariant 5).  Accepted chains that find no free
shadow slots wait, in order, for the next completion.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ring import indices
from ring.memory import OWNER_KERNEL, PAGE_SHIFT, PhysicalMemory
from ring.syscalls import RegisterBus
from ring.virtio import (
    QUEUE_NOTIFY,
    TRANSMITQ,
    VIRTQ_DESC,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_ELEM,
    VIRTQ_USED_LEN_REFUSED,
    VirtqLayout,
    avail_bytes,
    avail_dtype,
    used_bytes,
    used_dtype,
)
from verifier.audit.record import AuditRecord
from verifier.audit.rejections import AuditSink, Origin, record_event
from verifier.pins import PinTable
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, owner_label
from verifier.rules.virtq import ChainVerdicts, check_chains
from verifier.virtio.control import program_queue

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_ADDRESS_REASONS = frozenset(
    {R.ADDR_WRAP, R.ADDR_BEYOND_MEMORY, R.ADDR_NOT_PINNED, R.ACCESS_NO_READ, R.ACCESS_NO_WRITE, R.PIN_RELEASED}
)


@dataclass
class Pending:
    """Accepted chains not yet published: their tenant heads and their buffers, chain ``c`` at ``starts[c]:``."""

    heads: I64
    buffers: npt.NDArray[np.void]
    starts: I64


@dataclass(frozen=True)
class VirtqRequest:
    """One virtqueue a tenant asked to open (the kernel has checked that the region is its own)."""

    memory: PhysicalMemory
    bus: RegisterBus
    origin: Origin
    pins: PinTable
    audit: AuditSink
    index: int
    layout: VirtqLayout
    phys: int  # the tenant's region: its three areas at the layout's offsets

    @property
    def size(self) -> int:
        return self.layout.size


class Areas:
    """The three areas of one virtqueue at physical address ``phys``, as the kernel's own views."""

    def __init__(self, data: U8, phys: int, layout: VirtqLayout) -> None:
        size = layout.size
        self.desc = data[phys + layout.desc : phys + layout.desc + size * VIRTQ_DESC.itemsize].view(VIRTQ_DESC)
        avail = data[phys + layout.avail : phys + layout.avail + avail_bytes(size)].view(avail_dtype(size))
        used = data[phys + layout.used : phys + layout.used + used_bytes(size)].view(used_dtype(size))
        self.avail_idx, self.avail_ring = avail["idx"], avail["ring"][0]
        self.used_idx, self.used_ring = used["idx"], used["ring"][0]
        self.phys = phys
        self.layout = layout


def passthrough(r: VirtqRequest) -> None:
    """Protection ``none``: the device is pointed at the tenant's own areas and walks them itself."""
    lay = r.layout
    program_queue(r.bus, r.index, r.size, r.phys + lay.desc, r.phys + lay.avail, r.phys + lay.used)


class ShadowVirtq:
    """The kernel's copy of one virtqueue, the map from shadow chains back to tenant heads, and the pending chains."""

    def __init__(self, r: VirtqRequest) -> None:
        self.r = r
        self.size = size = r.size
        self.tx = r.index == TRANSMITQ
        self.kind = "tx" if self.tx else "rx"
        data = r.memory.data
        self.user = Areas(data, r.phys, r.layout)
        frames = r.memory.alloc(r.layout.nbytes, OWNER_KERNEL)
        self.shadow = Areas(data, frames.phys, r.layout)
        self.last_avail = 0  # the tenant's next available entry (free-running)
        self.user_used = 0  # the tenant's used idx, written only by the kernel
        self.shadow_avail = 0
        self.shadow_used = 0  # the device's used entries the kernel has reaped
        self.free = np.arange(size, dtype=np.int64)[::-1].copy()  # free shadow descriptor slots: free[:top]
        self.top = size
        self.to_user = np.full(size, -1, dtype=np.int64)  # shadow head -> tenant head
        self.chain_of = np.full(size, -1, dtype=np.int64)  # shadow slot -> the shadow head of its chain
        self.pending: deque[Pending] = deque()  # accepted chains waiting for shadow room, in order
        self._pumping = False
        self.outstanding = 0  # accepted chains not yet returned in the tenant's used ring (published or pending)
        r.pins.sources.append(self.in_flight)
        lay = r.layout
        program_queue(r.bus, r.index, size, frames.phys + lay.desc, frames.phys + lay.avail, frames.phys + lay.used)

    # -- the notify -------------------------------------------------------------------------------------
    def doorbell(self) -> None:
        """The tenant notified this queue: snapshot, check, publish what passed, complete what did not."""
        size = self.size
        idx = int(self.user.avail_idx[0])  # read once
        moved = indices.distance16(self.last_avail, idx)
        if moved > size - self.outstanding:  # more chains than the queue holds: its used ring could not take them
            detail = {"format": "virtq", "last_avail": self.last_avail, "avail_idx": idx, "queue_size": size,
                      "outstanding": self.outstanding}  # fmt: skip
            record_event(self.r.audit, self.r.origin, self.kind, R.VIRTQ_AVAIL_JUMP, detail)
            self.r.audit.commit()
            return
        if moved:
            slots = (self.last_avail + np.arange(moved, dtype=np.int64)) & (size - 1)
            heads = self.user.avail_ring[slots].astype(np.int64)  # the snapshot of the new entries
            table = self.user.desc.copy()  # ... and of the descriptor table, once
            r = self.r
            v = check_chains(table, heads, r.memory.data, r.pins, r.memory.owner, tx=self.tx)
            first = self.last_avail
            self.last_avail = idx
            refused = ~v.accepted
            if bool(refused.any()):
                self._refuse(v, first)
            ok = np.flatnonzero(v.accepted)
            if ok.size:
                counts = v.starts[ok + 1] - v.starts[ok]
                buffers = v.buffers if ok.size == v.heads.size else v.buffers[np.isin(v.chain_of, ok)]
                self.pending.append(Pending(heads[ok], buffers, np.concatenate(([0], np.cumsum(counts)))))
                self.outstanding += ok.size
        self._pump()

    def _refuse(self, v: ChainVerdicts, first_avail: int) -> None:
        """One audit record per refused chain, and its completion in the tenant's used ring (no DMA)."""
        r = self.r
        picked = np.flatnonzero(~v.accepted)
        names = VIRTQ_DESC.names or ()
        for c in picked.tolist():
            code = int(v.reason[c])
            at = int(v.bad_index[c])
            detail: dict[str, Any] = {
                "rule": R.BY_CODE[code].rule,
                "format": "virtq",
                "head": int(v.heads[c]),
                "avail_idx": (first_avail + c) & 0xFFFF,
                "descriptor": at,
                "table": "indirect" if bool(v.bad_indirect[c]) else "descriptors",
            }
            if code in _ADDRESS_REASONS and int(v.bad_byte[c]) >= 0:
                detail["first_bad_byte"] = f"{int(v.bad_byte[c]):#x}"
            if int(v.owner[c]) != NO_OWNER:
                detail["frame_owner"] = owner_label(int(v.owner[c]), r.origin.tenant)
            row = v.bad_desc[c]
            named = at >= 0 and code != R.VIRTQ_HEAD_BEYOND
            r.audit.record(
                AuditRecord(
                    tenant=r.origin.tenant,
                    tenant_name=r.origin.tenant_name,
                    nic=r.origin.nic,
                    queue=r.index,
                    kind=self.kind,
                    ring_index=int(v.heads[c]),
                    raw=row.tobytes() if named else None,
                    fields={n: int(row[n]) for n in names} if named else None,
                    reason=R.name(code),
                    detail=detail,
                )
            )
        r.audit.commit()
        heads = v.heads[picked]
        self._complete_user(heads, np.full(heads.size, VIRTQ_USED_LEN_REFUSED, dtype=np.int64))

    def _complete_user(self, heads: I64, lengths: I64) -> None:
        """Write ``{head, len}`` into the tenant's used ring, then its idx (elements first, §2.7.8)."""
        n = heads.size
        if n == 0:
            return
        slots = (self.user_used + np.arange(n, dtype=np.int64)) & (self.size - 1)
        elems = np.zeros(n, dtype=VIRTQ_USED_ELEM)
        elems["id"], elems["len"] = heads, lengths
        self.user.used_ring[slots] = elems
        self.user_used = (self.user_used + n) & 0xFFFF
        self.user.used_idx[0] = self.user_used

    # -- the shadow ring --------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Publish pending chains while the shadow table has room, notifying the device after each batch."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.pending and self._publish(self.pending[0]):
                if self.pending[0].heads.size == 0:
                    self.pending.popleft()
                self.shadow.avail_idx[0] = self.shadow_avail  # entries first, then idx (§2.7.13)
                self.r.bus.write32(QUEUE_NOTIFY, self.r.index)  # the device runs; its interrupt reaps
        finally:
            self._pumping = False

    def _publish(self, p: Pending) -> bool:
        """Copy the leading chains of ``p`` that fit into free shadow slots, flattened; False if none fits."""
        ends = p.starts[1:]
        k = int(np.searchsorted(ends, self.top, side="right"))  # chains whose buffers all fit
        if k == 0:
            return False
        total = int(ends[k - 1])
        slots = self.free[self.top - total : self.top][::-1].copy()
        self.top -= total
        rows = p.buffers[:total].copy()
        last = np.zeros(total, dtype=bool)
        last[ends[:k] - 1] = True
        rows["flags"] = (rows["flags"] & VIRTQ_DESC_F_WRITE) | np.where(last, 0, VIRTQ_DESC_F_NEXT).astype(np.uint16)
        rows["next"] = np.where(last, 0, np.roll(slots, -1)).astype(np.uint16)
        self.shadow.desc[slots] = rows
        shadow_heads = slots[p.starts[:k]]
        self.chain_of[slots] = np.repeat(shadow_heads, ends[:k] - p.starts[:k])
        self.to_user[shadow_heads] = p.heads[:k]
        self.shadow.avail_ring[(self.shadow_avail + np.arange(k)) & (self.size - 1)] = shadow_heads
        self.shadow_avail = (self.shadow_avail + k) & 0xFFFF
        p.heads, p.buffers, p.starts = p.heads[k:], p.buffers[total:], p.starts[k:] - total
        return True

    def reap(self) -> None:
        """The device interrupted: return its finished shadow chains to the tenant, then publish what waits."""
        done = indices.distance16(self.shadow_used, int(self.shadow.used_idx[0]))
        if done == 0 or done > self.size:
            return
        slots = (self.shadow_used + np.arange(done, dtype=np.int64)) & (self.size - 1)
        elems = self.shadow.used_ring[slots].copy()
        self.shadow_used = (self.shadow_used + done) & 0xFFFF
        ids = elems["id"].astype(np.int64)
        known = (ids < self.size) & (self.to_user[np.minimum(ids, self.size - 1)] >= 0)
        ids = ids[known]
        heads = self.to_user[ids]
        self.to_user[ids] = -1
        freed = np.flatnonzero(np.isin(self.chain_of, ids)) if ids.size else ids
        self.chain_of[freed] = -1
        self.free[self.top : self.top + freed.size] = freed
        self.top += freed.size
        self._complete_user(heads, elems["len"][known].astype(np.int64))
        self.outstanding -= heads.size
        if self.r.pins.releasing:
            self.r.pins.settle()
        self._pump()

    def in_flight(self) -> tuple[I64, I64]:
        """First frame and frame count of every buffer the device may still touch (pins outlive DMA).

        Accepted chains still waiting for shadow room count too: they were checked
        against the pins as they were, so an unpin now must wait for them as well.
        """
        parts = [self.shadow.desc[self.chain_of >= 0]]
        parts += [p.buffers for p in self.pending]  # checked and promised to the device: in flight too
        rows = np.concatenate(parts)
        rows = rows[rows["len"] > 0]
        addr = rows["addr"].astype(np.uint64)
        first = (addr >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        last = ((addr + rows["len"].astype(np.uint64) - np.uint64(1)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        return first, last - first + 1
