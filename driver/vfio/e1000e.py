"""The 82574L (QEMU's e1000e) under VFIO: open it, loop its PHY back, poll it.

``E1000eVfio.open`` does the VFIO steps of driver/vfio/device.py for one device
and hands out BAR0 as the ``RegisterBus`` the kernel (verifier/kernel.py)
attaches, exactly where the emulated ``E1000`` is attached elsewhere: the
kernel's bring-up, queue programming and doorbells then reach the real
registers.  After the kernel's bring-up (which resets the MAC with
CTRL.RST), ``loopback`` sets BMCR bit 14 through MDIC, so every frame the
device transmits comes back to its own receiver: nothing leaves QEMU (the
device has no netdev at all).

Completions: the emulated NIC calls the kernel's interrupt handler; here
the lab polls instead (``poll``): the handler reads the device's head
registers and writes the completions back into the tenants' rings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from driver.pci import DEVICE_ID, VENDOR_ID, VENDOR_INTEL
from driver.vfio import e1000e_regs as e
from driver.vfio.device import Bar, Container, Device, VfioError, bind_to_vfio
from ring import regs


@dataclass
class E1000eVfio:
    """One 82574L bound to vfio-pci: the container (its IOMMU domain), the device and BAR0."""

    bdf: str
    group: int
    container: Container
    device: Device
    bar: Bar
    irq: Callable[[], None] | None = None  # the kernel's interrupt handler for this NIC (polled)
    after_poll: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def open(cls, bdf: str, noiommu: bool = False) -> E1000eVfio:
        """``noiommu``: VFIO's no-IOMMU mode (driver/vfio/device.py): the device reaches all of guest RAM."""
        group = bind_to_vfio(bdf, noiommu=noiommu)
        container = Container(group, noiommu)
        try:
            device = Device(container, bdf)
        except BaseException:
            container.close()
            raise
        try:
            vendor = device.config_read16(VENDOR_ID)
            ident = device.config_read16(DEVICE_ID)
            if (vendor, ident) != (VENDOR_INTEL, e.PCI_DEVICE_82574L):
                raise VfioError(f"{bdf} is {vendor:04x}:{ident:04x}, not an 82574L "
                                f"({VENDOR_INTEL:04x}:{e.PCI_DEVICE_82574L:04x})")  # fmt: skip
            device.enable_bus_master()
            bar = device.map_bar0()
        except BaseException:
            device.close()
            container.close()
            raise
        return cls(bdf, group, container, device, bar)

    # -- the PHY ------------------------------------------------------------------------------
    def _mdic(self, value: int, timeout_s: float = 1.0) -> int:
        self.bar.write32(regs.MDIC, value)
        deadline = time.monotonic() + timeout_s
        while True:
            done = self.bar.read32(regs.MDIC)
            if done & e.MDIC_ERROR:
                raise VfioError(f"MDIC reported an error for {value:#010x}")
            if done & e.MDIC_READY:
                return done & e.MDIC_DATA_MASK
            if time.monotonic() > deadline:
                raise VfioError("MDIC never became ready")

    def phy_read(self, reg: int) -> int:
        return self._mdic(e.mdic_read(reg))

    def phy_write(self, reg: int, value: int) -> None:
        self._mdic(e.mdic_write(reg, value))

    def loopback(self, on: bool = True) -> None:
        """PHY loopback (BMCR bit 14): transmitted frames come back to this device's receiver."""
        bmcr = self.phy_read(e.PHY_BMCR)
        self.phy_write(e.PHY_BMCR, bmcr | e.BMCR_LOOPBACK if on else bmcr & ~e.BMCR_LOOPBACK)
        if bool(self.phy_read(e.PHY_BMCR) & e.BMCR_LOOPBACK) != on:
            raise VfioError("the PHY did not take the loopback bit")

    def wait_link(self, timeout_s: float = 5.0) -> None:
        """Wait for STATUS.LU: the receiver drops frames while the link is down."""
        deadline = time.monotonic() + timeout_s
        while not self.bar.read32(regs.STATUS) & regs.STATUS_LU:
            if time.monotonic() > deadline:
                raise VfioError(f"link did not come up in {timeout_s:g} s")
            time.sleep(0.01)

    # -- completions -----------------------------------------------------------------------------
    def poll(self) -> None:
        """What an interrupt would do: run the kernel's handler, then whatever waits on completions."""
        if self.irq is not None:
            self.irq()
        for hook in self.after_poll:
            hook()

    def close(self) -> None:
        self.device.close()
        self.container.close()
