"""The contract of a protection mode: what the kernel asks of it, in one place.

The kernel never asks *which* mode it runs; it asks its mode object
(chosen once, by verifier/modes/select.py) four things, as rust-vmm's
virtio-queue puts a queue's whole contract in one trait (``QueueT``):

* **open a queue** (``open_queue``): program the device's ring registers
  and return the handler that takes the queue's doorbells, or None when a
  tail write goes straight to the device;
* **take a doorbell and reap completions**: the handler's ``doorbell`` and
  ``reap`` (``QueueHandler``), called on a tenant's tail write and on the
  NIC's interrupt;
* **translate**: which address a tenant's DMA region carries
  (``dma_region``: physical, or IO virtual under an IOMMU) and what the
  device's DMA goes through (``iommu``, None: physical addresses), kept in
  step with the tenant's pins (``pinned``, ``unpinned``);
* and which of a tenant's register accesses reach the device itself
  (``writes_reach_device``, ``reads_reach_device``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from ring.memory import PhysicalMemory
from ring.syscalls import DmaRegion
from verifier.modes.protection import Protection
from verifier.nic_control import Nic
from verifier.pins import Access, Pin, PinTable
from verifier.queue_state import QueueState
from verifier.rules.policy import Policy

if TYPE_CHECKING:
    from verifier.modes.iommu import FaultHandler, Iommu

I64 = npt.NDArray[np.int64]


class QueueRefused(Exception):
    """The mode cannot open this queue for this tenant (the kernel reports it as a refused system call)."""


class QueueHandler(Protocol):
    """The kernel's side of one trapped queue: its bookkeeping, its doorbell and its completions."""

    @property
    def state(self) -> QueueState: ...

    def doorbell(self, new_tail: int) -> None:
        """The tenant wrote ``new_tail`` to the queue's tail register."""

    def reap(self) -> None:
        """The NIC interrupted: hand finished descriptors back to the tenant."""


@dataclass(frozen=True)
class QueueRequest:
    """Everything a mode needs to open one queue of one tenant (the kernel has checked the arguments)."""

    memory: PhysicalMemory
    nic: Nic
    tenant: int
    pins: PinTable
    tx: bool
    index: int
    ring: DmaRegion  # the tenant's ring, in its own address space
    phys: int  # the ring's physical address
    size: int  # descriptors
    policy: Policy
    state: Callable[[], QueueState]  # the kernel's bookkeeping of the queue, made on demand


class ProtectionMode(ABC):
    """One protection mode (verifier/modes/protection.py): how the kernel stands between tenants and devices."""

    protection: ClassVar[Protection]
    #: What every DMA of an attached device goes through (None: devices use physical addresses).
    iommu: Iommu | None = None

    def __init__(self, on_fault: FaultHandler | None = None) -> None:
        """``on_fault`` hears each DMA batch's IOMMU faults; only a translating mode has any."""
        del on_fault

    @property
    def traps_doorbell(self) -> bool:
        """The kernel sees every tail write (and unmasks the completion interrupts it reaps on)."""
        return self.protection.traps_doorbell

    @abstractmethod
    def open_queue(self, request: QueueRequest) -> QueueHandler | None:
        """Program the device's ring; the handler of the queue's doorbells (None: they go straight through)."""

    @abstractmethod
    def writes_reach_device(self, nic: Nic, tenant: int) -> bool:
        """Whether ``tenant``'s stores into ``nic``'s registers (other than its trapped tails) reach the device."""

    @abstractmethod
    def reads_reach_device(self, nic: Nic, tenant: int, offset: int) -> bool:
        """Whether ``tenant``'s load of ``nic``'s register ``offset`` reads the device (else the kernel answers)."""

    def dma_region(self, region: DmaRegion) -> DmaRegion:
        """The region as the tenant's descriptors name it: by physical address unless the mode translates."""
        return region

    def pinned(self, nics: Iterable[Nic], tenant: int, iova: int, frames: I64, access: Access) -> None:
        """``tenant`` pinned ``frames`` at page-aligned ``iova``: only a translating mode has a table to update."""
        return None

    def unpinned(self, nics: Iterable[Nic], tenant: int, pin: Pin) -> None:
        """``tenant`` unpinned ``pin``: only a translating mode has a table to update."""
        return None
