"""The doorbell window: a tenant's mapping of a NIC's registers.

It is a kernel-owned object on purpose.  Every tenant register access goes
through ``Kernel.register_write``/``register_read``, so the kernel decides
what a write does: in mode ``none`` it is passed to the device untouched
(the whole BAR is exposed, as an unprotected VFIO mmap is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verifier.kernel import Kernel


class DoorbellWindow:
    """What a tenant holds after mapping a NIC's registers: a RegisterBus."""

    def __init__(self, kernel: Kernel, tenant_id: int, nic: str) -> None:
        self.kernel = kernel
        self.tenant_id = tenant_id
        self.nic = nic

    def write32(self, offset: int, value: int) -> None:
        self.kernel.register_write(self.tenant_id, self.nic, offset, value)

    def read32(self, offset: int) -> int:
        return self.kernel.register_read(self.tenant_id, self.nic, offset)
