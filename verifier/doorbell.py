"""The doorbell window: a tenant's mapping of a NIC's registers.

It is a kernel-owned object on purpose.  Every tenant register access goes
through ``Kernel.register_write``/``register_read``, so the kernel decides
what a write does: in mode ``none`` it is passed to the device untouched
(the whole BAR is exposed, as an unprotected VFIO mmap is).

The window keeps the kernel's table of its owner's own trapped tail
registers (``trapped``, filled by ``Kernel.open_queue``), so the hot store,
a tail write to one's own queue, goes to the queue's handler in one step:
the same decision ``Kernel.register_write`` makes first, taken without
building its lookup key.  Every other access goes through the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verifier.kernel import Kernel


class DoorbellWindow:
    """What a tenant holds after mapping a NIC's registers: a RegisterBus."""

    def __init__(self, kernel: Kernel, tenant_id: int, nic: str) -> None:
        self.kernel = kernel
        self.tenant_id = tenant_id
        self.nic = nic
        #: tail register offset -> the ``doorbell`` of this tenant's own trapped queue there (the kernel fills it;
        #: the bound method, so the hot store looks up nothing but the offset)
        self.trapped: dict[int, Callable[[int], None]] = {}

    def write32(self, offset: int, value: int) -> None:
        doorbell = self.trapped.get(offset)
        if doorbell is not None:
            doorbell(value)  # a tail write to one's own trapped queue: Kernel.register_write's hot path
            return
        self.kernel.register_write(self.tenant_id, self.nic, offset, value)

    def read32(self, offset: int) -> int:
        return self.kernel.register_read(self.tenant_id, self.nic, offset)
