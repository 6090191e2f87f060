"""What the two trapping modes (``verifier``, ``unsafe-inplace``) share: the register window is the kernel's.

A tenant's stores reach the device only as doorbells of its own queues,
through the queue's handler; its loads see the kernel's view of its queues'
tail and head (verifier/kernel.py) and the device's STATUS, and read 0
anywhere else, as a tenant given only a doorbell page sees nothing more.
"""

from __future__ import annotations

from ring import regs
from verifier.modes.base import ProtectionMode
from verifier.nic_control import Nic


class TrappingMode(ProtectionMode):
    """A mode whose kernel traps every doorbell and hides the rest of the register window."""

    def writes_reach_device(self, nic: Nic, tenant: int) -> bool:
        return False

    def reads_reach_device(self, nic: Nic, tenant: int, offset: int) -> bool:
        return offset == regs.STATUS
