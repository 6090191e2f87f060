"""The kernel: owner of physical memory, tenants, NICs and queue ownership.

It is the trusted party of the sandbox.  Tenants reach it through
``Process`` (the system-call surface of ring/syscalls.py); NICs are reached
through their register bus only.  The doorbell path
(``register_write``) is where protection modes act.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ring.memory import PhysicalMemory
from ring.syscalls import DmaRegion, QueueHandle, RegisterBus
from verifier.address_space import AddressSpace
from verifier.doorbell import DoorbellWindow
from verifier.nic_control import RX_BUFFER_SIZE, bring_up, program_ring
from verifier.protection import Protection

TX = "tx"
RX = "rx"


class KernelError(Exception):
    """A system call was refused (bad argument, not yours, already taken)."""


@dataclass
class Nic:
    """The kernel's record of one NIC: its bus and who owns which queue."""

    name: str
    bus: RegisterBus
    mac: bytes
    queues: int
    owners: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class Queue:
    """An opened queue: its owner and the ring the tenant writes."""

    nic: str
    kind: str
    index: int
    owner: int
    ring: DmaRegion
    size: int
    tail_offset: int


class Kernel:
    """Memory, tenants and NICs of one simulated machine."""

    def __init__(self, memory: PhysicalMemory, protection: Protection = Protection.NONE) -> None:
        self.memory = memory
        self.protection = protection
        self.nics: dict[str, Nic] = {}
        self.processes: dict[int, Process] = {}
        self.queues: dict[tuple[str, str, int], Queue] = {}

    # -- devices --------------------------------------------------------------
    def attach_nic(self, name: str, bus: RegisterBus, mac: bytes, queues: int = 1) -> Nic:
        if name in self.nics:
            raise KernelError(f"NIC {name!r} is attached already")
        bring_up(bus, mac)
        nic = Nic(name, bus, bytes(mac), queues)
        self.nics[name] = nic
        return nic

    def nic(self, name: str) -> Nic:
        try:
            return self.nics[name]
        except KeyError:
            raise KernelError(f"no NIC named {name!r}") from None

    # -- tenants ----------------------------------------------------------------
    def spawn(self, name: str) -> Process:
        tenant_id = len(self.processes)
        process = Process(self, tenant_id, name)
        self.processes[tenant_id] = process
        return process

    def open_queue(
        self, proc: Process, kind: str, nic_name: str, index: int, ring: DmaRegion, size: int
    ) -> QueueHandle:
        nic = self.nic(nic_name)
        if not 0 <= index < nic.queues:
            raise KernelError(f"{nic_name} has no {kind} queue {index}")
        owner = nic.owners.get((kind, index))
        if owner is not None:
            raise KernelError(f"{kind} queue {index} of {nic_name} belongs to tenant {owner}")
        phys = proc.aspace.virt_to_phys(ring.vaddr)
        if not proc.aspace.owns_phys(phys, ring.size):
            raise KernelError("the ring is not memory of this tenant")
        tail = program_ring(nic.bus, kind == TX, index, phys, size)
        nic.owners[(kind, index)] = proc.tenant_id
        self.queues[(nic_name, kind, index)] = Queue(nic_name, kind, index, proc.tenant_id, ring, size, tail)
        return QueueHandle(nic_name, index, proc.map_registers(nic_name), tail, size, RX_BUFFER_SIZE)

    # -- the doorbell path --------------------------------------------------------
    def register_write(self, tenant_id: int, nic_name: str, offset: int, value: int) -> None:
        """A tenant's store into a NIC's register window."""
        self.nic(nic_name).bus.write32(offset, value)

    def register_read(self, tenant_id: int, nic_name: str, offset: int) -> int:
        """A tenant's load from a NIC's register window (statistics, head pointers)."""
        return self.nic(nic_name).bus.read32(offset)


class Process:
    """One tenant: an address space and the system calls of ring/syscalls.py."""

    def __init__(self, kernel: Kernel, tenant_id: int, name: str) -> None:
        self.kernel = kernel
        self._tenant_id = tenant_id
        self.name = name
        self.aspace = AddressSpace(tenant_id, kernel.memory)
        self._windows: dict[str, DoorbellWindow] = {}

    @property
    def tenant_id(self) -> int:
        return self._tenant_id

    def map_registers(self, nic: str) -> RegisterBus:
        self.kernel.nic(nic)
        if nic not in self._windows:
            self._windows[nic] = DoorbellWindow(self.kernel, self._tenant_id, nic)
        return self._windows[nic]

    def alloc_dma(self, nbytes: int) -> DmaRegion:
        return self.aspace.mmap(nbytes)

    def virt_to_phys(self, vaddr: int) -> int:
        return self.aspace.virt_to_phys(vaddr)

    def open_tx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        return self.kernel.open_queue(self, TX, nic, queue, ring, size)

    def open_rx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        return self.kernel.open_queue(self, RX, nic, queue, ring, size)
