"""Protection mode ``none``: the tenant's ring and doorbell go straight to the device.

What kernel-bypass drivers without an IOMMU do (ixy, DPDK with
``vfio-pci`` in no-IOMMU mode, ``uio_pci_generic``): the device reads the
user ring by physical address and nothing checks a descriptor, so the
attack demo leaks.  Kept as the baseline the other modes are measured by.
"""

from __future__ import annotations

from typing import ClassVar

from verifier.modes.base import ProtectionMode, QueueHandler, QueueRequest
from verifier.modes.protection import Protection
from verifier.nic_control import Nic, program_ring


class NoProtection(ProtectionMode):
    """The whole register window passed through; the device reads the user ring."""

    protection: ClassVar[Protection] = Protection.NONE

    def open_queue(self, request: QueueRequest) -> QueueHandler | None:
        program_ring(request.nic.bus, request.tx, request.index, request.phys, request.size)
        return None

    def writes_reach_device(self, nic: Nic, tenant: int) -> bool:
        return True

    def reads_reach_device(self, nic: Nic, tenant: int, offset: int) -> bool:
        return True
