"""The seam between the one builder (world/build.py) and a kind of NIC.

A machine is the same whatever its NICs are: memory, a kernel in front of
it, NICs the kernel brings up through their BARs, tenants.  What differs is
where the RAM lives (a fresh buffer; QEMU's guest RAM; an mmap the real
IOMMU maps), what a NIC is (the emulated e1000; QEMU's e1000 over qtest;
the lab's 82574L under VFIO), what a cable is (a ``Cable`` between ports;
two UDP sockets; the PHY looped back) and what runs the devices (the
doorbell write itself, a ``DevicePoller``, QEMU's main loop with an
``IrqPoller``).  A ``Backend`` answers exactly those questions, in the
order a machine powers on, and the builder does everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.kernel import Kernel
from world.scenario import Scenario

#: The kind of device a back end's NICs are (E1000, QemuE1000, E1000eVfio).
Nic_co = TypeVar("Nic_co", covariant=True)


class Pcap(Protocol):
    """A capture a back end writes (a ``PcapWriter``; QEMU's own filter-dump)."""

    @property
    def path(self) -> Path: ...


class Backend(Protocol[Nic_co]):
    """One kind of NIC, plugged into ``World.assemble``; the builder calls these in this order.

    A back end is made with its own options only (a pcap path, QEMU's
    binary, a PCI address); the scenario comes from the builder.

    ``ram`` (power on) -- ``plug`` (NICs made and cabled) -- per NIC in the
    scenario's order: ``connect`` its interrupt line, ``Kernel.attach_nic``
    on its BAR, ``attached`` -- tenants spawned -- ``start``.  If anything
    after ``ram`` fails, the builder calls ``close``.
    """

    @property
    def nics(self) -> Mapping[str, Nic_co]:
        """The devices, by the scenario's NIC names (what tests and demos reach beneath the kernel)."""
        ...

    @property
    def pcaps(self) -> Sequence[Pcap]:
        """The captures this machine writes, one per cable that asked for one."""
        ...

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8] | None:
        """Power on: the bytes that are the machine's RAM (``None``: a fresh buffer of ``PhysicalMemory``'s own)."""
        ...

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        """Make the scenario's NICs over ``memory``, in its engine mode, and cable them; return each one's BAR."""
        ...

    def connect(self, name: str, line: Callable[[], None]) -> None:
        """Connect NIC ``name``'s interrupt line to the kernel's handler ``line`` (before its bring-up)."""
        ...

    def attached(self, name: str) -> None:
        """NIC ``name`` was brought up by the kernel: what this kind of device needs afterwards."""
        ...

    def start(self) -> None:
        """Every NIC is up and every tenant exists: let the devices run."""
        ...

    def in_flight_limit(self, frame_bytes: int) -> int | None:
        """Frames of ``frame_bytes`` a cable holds before it drops one (None: it never drops, it back-pressures)."""
        ...

    def settle(self, timeout_s: float) -> bool:
        """Wait until the devices have no work left (and every completion reached the kernel)."""
        ...

    def close(self) -> None:
        """Stop whatever runs the devices and release them; flush the captures."""
        ...
