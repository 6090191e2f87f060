"""The kernel's virtio NICs: attach (probe and bring-up), open a virtqueue, and the trapped QueueNotify.

Which protection modes a virtio NIC supports, and what each does:

* ``none``: the device's queues point at the tenant's own areas and every
  register write reaches the device (the whole virtio-mmio window, as an
  unprotected VFIO mmap gives it); the device walks the tenant's graph
  itself, which is what an attacker exploits;
* ``verifier``: the device's queues point at a shadow virtqueue in kernel
  memory (verifier/virtio/shadow.py); the only register write a tenant may
  make is a ``QueueNotify`` of a queue it owns, which the kernel traps: it
  snapshots and checks the new chains and publishes the accepted ones.

``iommu`` and ``unsafe-inplace`` are refused at attach time: the emulated
IOMMU and the in-place race are modelled for the e1000 rings only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ring import virtio as V
from ring.syscalls import DmaRegion, RegisterBus, VirtqHandle
from verifier.address_space import SegFault
from verifier.audit.rejections import Origin, record_event
from verifier.modes.protection import Protection
from verifier.nic_control import Nic
from verifier.rules import reasons as R
from verifier.virtio.control import VirtioInitError, bring_up
from verifier.virtio.shadow import ShadowVirtq, VirtqRequest, passthrough

if TYPE_CHECKING:
    from verifier.kernel import Kernel, Process

#: The protection modes a virtio NIC runs under.
SUPPORTED = (Protection.NONE, Protection.VERIFIER)


class VirtioRefused(Exception):
    """A virtio request the kernel refuses (the kernel turns it into its own KernelError)."""


@dataclass
class VirtioNic:
    """The kernel's record of one virtio NIC: its negotiated features and its open virtqueues."""

    nic: Nic
    features: int
    owners: dict[int, int] = field(default_factory=dict)  # queue index -> tenant
    shadows: dict[int, ShadowVirtq] = field(default_factory=dict)  # verifier: queue index -> its shadow
    regions: dict[int, int] = field(default_factory=dict)  # queue index -> the tenant's vaddr of its virtqueue


class VirtioGate:
    """Every virtio NIC of one kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.nics: dict[str, VirtioNic] = {}

    def attach(self, name: str, bus: RegisterBus, mac: bytes) -> Nic:
        protection = self.kernel.protection
        if protection not in SUPPORTED:
            raise VirtioRefused(
                f"{name} is a virtio NIC: it supports protection {' and '.join(p.value for p in SUPPORTED)}, "
                f"not {protection.value}"
            )
        try:
            features = bring_up(bus)
        except VirtioInitError as err:
            raise VirtioRefused(f"{name}: {err}") from None
        nic = Nic(name, bus, bytes(mac), 1)
        self.nics[name] = VirtioNic(nic, features)
        return nic

    def open_queue(self, proc: Process, nic_name: str, index: int, region: DmaRegion, size: int) -> VirtqHandle:
        vn = self.nics.get(nic_name)
        if vn is None:
            raise VirtioRefused(f"{nic_name} is not a virtio NIC")
        if index not in (V.RECEIVEQ, V.TRANSMITQ):
            raise VirtioRefused(f"{nic_name} has virtqueues {V.RECEIVEQ} (receiveq1) and {V.TRANSMITQ} (transmitq1), "
                                f"not {index}")  # fmt: skip
        try:
            layout = V.VirtqLayout.of(size)
        except ValueError as err:
            raise VirtioRefused(str(err)) from None
        if index in vn.owners:
            raise VirtioRefused(f"virtqueue {index} of {nic_name} belongs to tenant {vn.owners[index]}")
        try:
            phys = proc.aspace.virt_to_phys(region.vaddr)
        except SegFault as err:
            raise VirtioRefused(f"the virtqueue is not mapped ({err})") from None
        if region.size < layout.nbytes or not proc.aspace.owns_phys(phys, layout.nbytes):
            raise VirtioRefused("the virtqueue is not memory of this tenant, or too small")
        kernel = self.kernel
        origin = Origin(proc.tenant_id, proc.name, nic_name, index, "tx" if index == V.TRANSMITQ else "rx")
        request = VirtqRequest(kernel.memory, vn.nic.bus, origin, proc.pins, kernel.audit, index, layout, phys)
        try:
            if kernel.protection is Protection.VERIFIER:
                shadow = ShadowVirtq(request)
                vn.shadows[index] = shadow
                kernel.add_reaper(nic_name, shadow.reap)
            else:
                passthrough(request)
        except VirtioInitError as err:
            raise VirtioRefused(f"{nic_name}: {err}") from None
        vn.owners[index] = proc.tenant_id
        vn.regions[index] = region.vaddr
        return VirtqHandle(nic_name, index, proc.map_registers(nic_name), V.QUEUE_NOTIFY, size)

    def holds_virtqueue(self, tenant: int, first: int, last: int) -> str | None:
        """Which virtqueue of ``tenant`` lies in virtual range ``[first, last)``, if any (it may not be freed)."""
        for name, vn in self.nics.items():
            for index, vaddr in vn.regions.items():
                if vn.owners.get(index) == tenant and first <= vaddr < last:
                    return f"virtqueue {index} of {name}"
        return None

    # -- the register window ------------------------------------------------------------------------------
    def register_write(self, tenant: int, nic_name: str, offset: int, value: int) -> None:
        """``none``: straight to the device.  ``verifier``: only a notify of one's own queue, trapped."""
        vn = self.nics[nic_name]
        if self.kernel.protection is Protection.NONE:
            vn.nic.bus.write32(offset, value)
            return
        owner = vn.owners.get(value) if offset == V.QUEUE_NOTIFY else None
        if owner == tenant and value in vn.shadows:
            vn.shadows[value].doorbell()
            return
        reason = R.REG_NOT_OWNER if owner is not None else R.REG_NOT_DOORBELL
        detail: dict[str, Any] = {"register": V.reg_name(offset), "offset": f"{offset:#05x}", "value": f"{value:#x}"}
        if owner is not None:
            detail["queue_owner"] = self.kernel.tenant_name(owner)
        audit = self.kernel.audit
        record_event(audit, Origin(tenant, self.kernel.tenant_name(tenant), nic_name, -1, "register"), "register",
                     reason, detail)  # fmt: skip
        audit.commit()

    def register_read(self, tenant: int, nic_name: str, offset: int) -> int:
        """``none``: the device.  ``verifier``: the device's status (to see DEVICE_NEEDS_RESET), else 0."""
        vn = self.nics[nic_name]
        if self.kernel.protection is Protection.NONE or offset == V.STATUS:
            return vn.nic.bus.read32(offset)
        return 0
