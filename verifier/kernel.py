"""The kernel: owner of physical memory, tenants, pins, NICs, queues and the doorbell path.

It is the trusted party of the sandbox.  Tenants reach it through
``Process`` (the system-call surface of ring/syscalls.py); NICs are reached
through their register bus only, and they reach the kernel back through
their interrupt line, which the composition root connects to
``Kernel.interrupt``.  The protection mode decides what a doorbell does
(verifier/modes/protection.py); the kernel holds the mode's object, chosen
once (verifier/modes/select.py), and never asks which mode it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ring import regs
from ring.descriptors import DESC_SIZE
from ring.memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ring.syscalls import DmaRegion, PinHandle, QueueHandle, RegisterBus, VirtqHandle
from verifier.address_space import AddressSpace, SegFault
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejection_batch import IommuFaultBatch
from verifier.audit.rejections import AuditSink, Origin, record_event, record_rows
from verifier.doorbell import DoorbellWindow
from verifier.modes.base import QueueHandler, QueueRefused, QueueRequest
from verifier.modes.iommu import Faults, Iommu
from verifier.modes.protection import Protection
from verifier.modes.select import mode_for
from verifier.nic_control import Nic, bring_up
from verifier.pins import Access, Pin, PinError, PinTable
from verifier.queue_state import QueueState
from verifier.rules import reasons as R
from verifier.rules.policy import Policy
from verifier.virtio.control import is_virtio
from verifier.virtio.gate import VirtioGate, VirtioRefused

TX = "tx"
RX = "rx"


def physical_runs(frames: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Consecutive frames merged into (physical address, bytes) runs."""
    runs: list[list[int]] = []
    for frame in frames.tolist():
        if runs and runs[-1][0] + runs[-1][1] == frame << PAGE_SHIFT:
            runs[-1][1] += PAGE_SIZE
        else:
            runs.append([frame << PAGE_SHIFT, PAGE_SIZE])
    return tuple((start, size) for start, size in runs)


class KernelError(Exception):
    """A system call was refused (bad argument, not yours, already taken, still pinned)."""


@dataclass
class Queue:
    """An opened queue: its owner, the ring the tenant writes, and the kernel's handler."""

    nic: str
    kind: str
    index: int
    owner: int
    ring: DmaRegion
    size: int
    tail_offset: int
    head_offset: int
    handler: QueueHandler | None = None  # None: the doorbell goes straight through

    @property
    def state(self) -> QueueState | None:
        return None if self.handler is None else self.handler.state


class Kernel:
    """Memory, tenants, pins and NICs of one simulated machine."""

    def __init__(
        self,
        memory: PhysicalMemory,
        protection: Protection = Protection.VERIFIER,
        audit: AuditSink | None = None,
        policy: Policy | None = None,
        accelerators: bool = True,
    ) -> None:
        """``accelerators``: False runs the numpy checks alone on this machine's queues (the semantics; the compiled
        fast path is only faster), as ``NIC_SANDBOX_FASTPATH=0`` does for a whole process -- per machine, so one
        process can run both and compare them (as Linux's ``net.core.bpf_jit_enable`` picks JIT or interpreter).
        """
        self.memory = memory
        self.protection = Protection(protection)
        self.mode = mode_for(self.protection, self._iommu_fault)
        self.audit: AuditSink = audit if audit is not None else MemoryAudit()
        self.policy = policy or Policy()
        self.accelerators = accelerators
        self.nics: dict[str, Nic] = {}
        self.processes: dict[int, Process] = {}
        self.queues: dict[tuple[str, str, int], Queue] = {}
        self.iommu: Iommu | None = self.mode.iommu  # what the devices' DMA goes through (world/build.py wires it)
        self._next_pin = 1
        self._reapers: dict[str, list[Callable[[], None]]] = {}  # per NIC: completion handlers
        self._doorbells: dict[tuple[str, int], Queue] = {}  # (NIC, tail register) -> its queue
        self.virtio = VirtioGate(self)  # the virtio NICs: their bring-up, virtqueues and trapped notify

    # -- devices --------------------------------------------------------------
    def attach_nic(self, name: str, bus: RegisterBus, mac: bytes, queues: int = 1, flow_control: bool = False) -> Nic:
        """Bring a NIC up; ``flow_control``: 802.3x PAUSE both ways, as ``ethtool -A DEV rx on tx on`` asks."""
        if name in self.nics:
            raise KernelError(f"NIC {name!r} is attached already")
        if is_virtio(bus):  # the virtio-mmio probe: MagicValue "virt" (virtio 1.2 §4.2.3.1.1)
            try:
                nic = self.virtio.attach(name, bus, mac)
            except VirtioRefused as err:
                raise KernelError(str(err)) from None
            self.nics[name] = nic
            return nic
        bring_up(
            bus,
            mac,
            interrupts=self.mode.traps_doorbell,
            rx_buffer_size=self.policy.rx_buffer_size,
            flow_control=flow_control,
        )
        nic = Nic(name, bus, bytes(mac), queues)
        self.nics[name] = nic
        return nic

    def nic(self, name: str) -> Nic:
        try:
            return self.nics[name]
        except KeyError:
            raise KernelError(f"no NIC named {name!r}") from None

    def interrupt(self, nic_name: str) -> Callable[[], None]:
        """The handler for a NIC's interrupt line: reap completions of its trapped queues."""

        reapers = self._reapers.setdefault(nic_name, [])

        def handler() -> None:
            for reap in reapers:
                reap()

        return handler

    def add_reaper(self, nic_name: str, reap: Callable[[], None]) -> None:
        """Run ``reap`` on each interrupt of NIC ``nic_name`` (a trapped queue's completion handler)."""
        self._reapers.setdefault(nic_name, []).append(reap)

    # -- tenants ----------------------------------------------------------------
    def spawn(self, name: str) -> Process:
        tenant_id = len(self.processes)
        process = Process(self, tenant_id, name)
        self.processes[tenant_id] = process
        return process

    def tenant_name(self, tenant_id: int) -> str:
        proc = self.processes.get(tenant_id)
        return proc.name if proc else f"tenant{tenant_id}"

    # -- pinning ------------------------------------------------------------------
    def pin(self, proc: Process, vaddr: int, length: int, access: int) -> PinHandle:
        if length <= 0:
            raise KernelError("a pin needs at least one byte")
        if access & ~int(Access.READ_WRITE):
            raise KernelError(f"unknown access bits {access:#x} (DEVICE_READ=1, DEVICE_WRITE=2)")
        want = Access(access)
        if not want:
            raise KernelError("a pin must grant device read and/or device write access")
        first_page = vaddr >> PAGE_SHIFT
        last_page = (vaddr + length - 1) >> PAGE_SHIFT
        try:
            frames = np.array(
                [proc.aspace.virt_to_phys(p << PAGE_SHIFT) >> PAGE_SHIFT for p in range(first_page, last_page + 1)],
                dtype=np.int64,
            )
        except SegFault as err:
            raise KernelError(str(err)) from None
        handle = self._next_pin
        pin = Pin(handle, proc.tenant_id, vaddr, length, want, frames)
        try:
            proc.pins.add(pin)
        except PinError as err:
            raise KernelError(str(err)) from None
        self._next_pin += 1
        self.mode.pinned(self.nics.values(), proc.tenant_id, first_page << PAGE_SHIFT, frames, want)
        return PinHandle(handle, physical_runs(frames))

    def unpin(self, proc: Process, handle: int) -> str:
        pin = proc.pins.pins.get(handle)
        try:
            outcome = proc.pins.release(handle)
        except PinError as err:
            raise KernelError(str(err)) from None
        assert pin is not None
        self.mode.unpinned(self.nics.values(), proc.tenant_id, pin)
        if outcome == "deferred":
            in_flight = proc.pins.references(pin.frames)
            record_event(self.audit, Origin(proc.tenant_id, proc.name, "", -1, "pin"), "pin", R.PIN_IN_FLIGHT,
                         {"handle": handle, "vaddr": f"{pin.vaddr:#x}", "length": pin.length,
                          "in_flight_refs": in_flight, "outcome": "deferred"})  # fmt: skip
            self.audit.commit()
        return outcome

    # -- queues ---------------------------------------------------------------------
    def open_queue(
        self, proc: Process, kind: str, nic_name: str, index: int, ring: DmaRegion, size: int
    ) -> QueueHandle:
        nic = self.nic(nic_name)
        if nic_name in self.virtio.nics:
            raise KernelError(f"{nic_name} is a virtio NIC: it has virtqueues (open_virtqueue), not {kind} rings")
        if not 0 <= index < nic.queues:
            raise KernelError(f"{nic_name} has no {kind} queue {index}")
        if not 8 <= size <= regs.MAX_RING_SLOTS or size % 8:
            raise KernelError(
                f"ring size must be a multiple of 8 from 8 to {regs.MAX_RING_SLOTS} (TDLEN % 128 == 0, bits 19:7), "
                f"got {size}"
            )
        owner = nic.owners.get((kind, index))
        if owner is not None:
            raise KernelError(f"{kind} queue {index} of {nic_name} belongs to tenant {owner}")
        try:
            phys = proc.aspace.virt_to_phys(ring.vaddr)
        except SegFault as err:  # a hostile region names an unmapped address: refused, as mmap would EFAULT
            raise KernelError(f"the ring is not mapped ({err})") from None
        length = size * DESC_SIZE  # TDLEN: the ring is exactly size descriptors, whatever the region's length
        if ring.size < length or not proc.aspace.owns_phys(phys, length):
            raise KernelError("the ring is not memory of this tenant, or too small")
        # The kernel's own mapping of the ring (TDLEN bytes at its physical address), never the tenant's view:
        # a tenant hands over an address and a length, as VFIO and AF_XDP registrations do, not a mapping.
        ring = DmaRegion(ring.vaddr, ring.bus, length, self.memory.data[phys : phys + length])
        tx = kind == TX
        head_reg, tail_reg = (regs.TDH, regs.TDT) if tx else (regs.RDH, regs.RDT)
        head_offset, tail_offset = regs.queue_reg(head_reg, index), regs.queue_reg(tail_reg, index)
        request = QueueRequest(
            self.memory, nic, proc.tenant_id, proc.pins, tx, index, ring, phys, size, self.policy,
            lambda: self._state(proc, nic, kind, index, ring, phys, size, tail_offset, head_offset),
        )  # fmt: skip
        try:
            handler = self.mode.open_queue(request)
        except QueueRefused as err:
            raise KernelError(str(err)) from None
        queue = Queue(nic_name, kind, index, proc.tenant_id, ring, size, tail_offset, head_offset, handler)
        nic.owners[(kind, index)] = proc.tenant_id
        self.queues[(nic_name, kind, index)] = queue
        self._doorbells[(nic_name, tail_offset)] = queue
        window = proc.map_registers(nic_name)
        if queue.handler is not None:
            self.add_reaper(nic_name, queue.handler.reap)
            window.trapped[tail_offset] = queue.handler.doorbell  # the doorbell's hot path (verifier/doorbell.py)
        return QueueHandle(nic_name, index, window, tail_offset, size, self.policy.rx_buffer_size)

    def open_virtqueue(self, proc: Process, nic_name: str, index: int, region: DmaRegion, size: int) -> VirtqHandle:
        """Open virtqueue ``index`` of a virtio NIC for ``proc`` (verifier/virtio/gate.py)."""
        self.nic(nic_name)
        try:
            return self.virtio.open_queue(proc, nic_name, index, region, size)
        except VirtioRefused as err:
            raise KernelError(str(err)) from None

    def _state(self, proc: Process, nic: Nic, kind: str, index: int, ring: DmaRegion, phys: int, size: int,
               tail_offset: int, head_offset: int) -> QueueState:  # fmt: skip
        return QueueState(
            origin=Origin(proc.tenant_id, proc.name, nic.name, index, kind),
            user=ring,
            user_phys=phys,
            size=size,
            bus=nic.bus,
            tail_reg=tail_offset,
            head_reg=head_offset,
            pins=proc.pins,
            owners=self.memory.owner,
            memory_size=self.memory.size,
            policy=self.policy,
            audit=self.audit,
            accelerators=self.accelerators,
        )

    def statistics(self, nic: str, index: int, kind: str | None = None) -> dict[str, int]:
        """Rejections of one queue by reason, as AF_XDP's XDP_STATISTICS reports invalid descriptors.

        ``kind`` ("tx" or "rx") keeps TX queue n and RX queue n apart.  The counts come
        from the audit sink, so they equal its records by construction.
        """
        return dict(self.audit.statistics(nic, index, kind))

    def queue(self, nic: str, kind: str, index: int = 0) -> Queue:
        try:
            return self.queues[(nic, kind, index)]
        except KeyError:
            raise KernelError(f"no open {kind} queue {index} on {nic}") from None

    # -- the doorbell path --------------------------------------------------------
    def register_write(self, tenant_id: int, nic_name: str, offset: int, value: int) -> None:
        """A tenant's store into a NIC's register window: the doorbell trap of the trapping modes."""
        queue = self._doorbells.get((nic_name, offset))
        if queue is not None and queue.owner == tenant_id and queue.handler is not None:
            queue.handler.doorbell(value)  # the hot path: a tail write to one's own trapped queue
            return
        if nic_name in self.virtio.nics:
            self.virtio.register_write(tenant_id, nic_name, offset, value)
            return
        nic = self.nic(nic_name)
        if self.mode.writes_reach_device(nic, tenant_id):
            nic.bus.write32(offset, value)
            return
        reason = R.REG_NOT_OWNER if queue is not None else R.REG_NOT_DOORBELL
        detail: dict[str, Any] = {"register": regs.reg_name(offset), "offset": f"{offset:#06x}", "value": f"{value:#x}"}
        if queue is not None:
            detail["queue_owner"] = self.tenant_name(queue.owner)
        record_event(self.audit, Origin(tenant_id, self.tenant_name(tenant_id), nic_name, -1, "register"),
                     "register", reason, detail)  # fmt: skip
        self.audit.commit()

    def register_read(self, tenant_id: int, nic_name: str, offset: int) -> int:
        """A tenant's load: what the mode lets reach the device, else a trapped queue's user-ring view, else 0."""
        if nic_name in self.virtio.nics:
            return self.virtio.register_read(tenant_id, nic_name, offset)
        nic = self.nic(nic_name)
        if self.mode.reads_reach_device(nic, tenant_id, offset):
            return nic.bus.read32(offset)
        for queue in self.queues.values():
            if queue.nic == nic_name and queue.owner == tenant_id and queue.state is not None:
                if offset == queue.tail_offset:
                    return queue.state.tail
                if offset == queue.head_offset:
                    return queue.state.done
        return 0

    # -- the IOMMU's fault line -----------------------------------------------------
    def _iommu_fault(self, faults: Faults) -> None:
        """One ``iommu`` record per blocked access of a DMA batch, committed together (group commit)."""
        nic = self.nics.get(faults.device)
        owner = nic.iommu_owner if nic is not None and nic.iommu_owner is not None else -1
        codes = np.where(faults.permission, R.IOMMU_PERMISSION, R.IOMMU_NOT_MAPPED).astype(np.uint8)
        record_rows(self.audit, IommuFaultBatch(owner, self.tenant_name(owner), faults.device, faults.iova,
                                                faults.length, faults.write, codes))  # fmt: skip
        self.audit.commit()


class Process:
    """One tenant: an address space, its pins, and the system calls of ring/syscalls.py."""

    def __init__(self, kernel: Kernel, tenant_id: int, name: str) -> None:
        self.kernel = kernel
        self._tenant_id = tenant_id
        self.name = name
        self.aspace = AddressSpace(tenant_id, kernel.memory)
        self.pins = PinTable(tenant_id, kernel.memory.frames)
        self._windows: dict[str, DoorbellWindow] = {}

    @property
    def tenant_id(self) -> int:
        return self._tenant_id

    def map_registers(self, nic: str) -> DoorbellWindow:
        self.kernel.nic(nic)
        if nic not in self._windows:
            self._windows[nic] = DoorbellWindow(self.kernel, self._tenant_id, nic)
        return self._windows[nic]

    def alloc_dma(self, nbytes: int) -> DmaRegion:
        return self.kernel.mode.dma_region(self.aspace.mmap(nbytes))

    def free_dma(self, region: DmaRegion) -> None:
        try:
            mapping = self.aspace.mapping_at(region.vaddr)
        except SegFault as err:
            raise KernelError(str(err)) from None
        frames = np.arange(mapping.frames.first, mapping.frames.first + mapping.frames.count)
        if bool(self.pins.held[frames].any()):
            raise KernelError("region is still pinned (unpin first; a deferred unpin waits for in-flight DMA)")
        first, last = mapping.vaddr, mapping.vaddr + mapping.frames.nbytes
        for queue in self.kernel.queues.values():
            if queue.owner == self._tenant_id and first <= queue.ring.vaddr < last:
                raise KernelError(f"region holds the ring of {queue.kind} queue {queue.index} of {queue.nic}")
        held = self.kernel.virtio.holds_virtqueue(self._tenant_id, first, last)
        if held is not None:
            raise KernelError(f"region holds {held}")
        self.aspace.munmap(mapping)

    def virt_to_phys(self, vaddr: int) -> int:
        try:
            return self.aspace.virt_to_phys(vaddr)
        except SegFault as err:
            raise KernelError(str(err)) from None

    def pin(self, vaddr: int, length: int, access: int) -> PinHandle:
        return self.kernel.pin(self, vaddr, length, access)

    def unpin(self, handle: int) -> str:
        return self.kernel.unpin(self, handle)

    def open_tx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        return self.kernel.open_queue(self, TX, nic, queue, ring, size)

    def open_rx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        return self.kernel.open_queue(self, RX, nic, queue, ring, size)

    def open_virtqueue(self, nic: str, queue: int, region: DmaRegion, size: int) -> VirtqHandle:
        return self.kernel.open_virtqueue(self, nic, queue, region, size)
