"""The emulated e1000 back end: ``E1000`` devices over the sandbox's own memory, joined by ``Cable``s.

The devices DMA the same ``PhysicalMemory`` the kernel checks; with
protection ``iommu`` every DMA goes through the kernel's emulated IOMMU
(``dma.iommu``).  A cable's clock is virtual with the inline engine (same
seed, same time stamps: invariant 7) and the wall clock with the threaded
one, whose ``DevicePoller`` thread runs the devices once the machine is up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from device.clock import Clock, VirtualClock, WallClock
from device.e1000 import E1000, EngineMode
from device.pcap import PcapWriter
from device.poller import DevicePoller
from device.wire import Cable, Port, Tap
from ring.frames import FrameBatch
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.kernel import Kernel
from world.backend import Pcap
from world.scenario import Scenario


class Emulated:
    """The scenario's NICs as emulated e1000s.

    ``pcap``: True = as the scenario says, False = none, a path = that file.
    """

    def __init__(self, pcap: str | bool | None = True) -> None:
        self.pcap = pcap
        self.engine = EngineMode.INLINE
        self.nics: dict[str, E1000] = {}
        self.cables: list[Cable] = []
        self.writers: list[PcapWriter] = []
        self.poller: DevicePoller | None = None

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return self.writers

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8] | None:
        return None

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        self.engine = scenario.engine
        self.nics = {n.name: E1000(n.name, memory, n.mac, n.queues, scenario.engine) for n in scenario.nics}
        clock: Callable[[], Clock] = VirtualClock if scenario.engine is EngineMode.INLINE else WallClock
        self.cables, self.writers = lay_cables(scenario, {n: d.port for n, d in self.nics.items()}, clock, self.pcap)
        for dev in self.nics.values():
            dev.attach()  # the link comes up once the kernel sets CTRL.SLU and a cable is in the port
            dev.dma.iommu = kernel.iommu  # None unless protection is iommu
        return self.nics

    def connect(self, name: str, line: Callable[[], None]) -> None:
        self.nics[name].irq = line

    def attached(self, name: str) -> None:
        pass

    def start(self) -> None:
        if self.engine is EngineMode.THREADED:
            self.poller = DevicePoller(list(self.nics.values()))
            self.poller.start()

    def in_flight_limit(self, frame_bytes: int) -> int | None:
        """None: an emulated cable delivers inside the transmit; a frame the receiver has no room for is MPC."""
        return None

    def settle(self, timeout_s: float) -> bool:
        """Threaded engine: wait until the devices have no work left.  Inline: nothing to wait for."""
        return True if self.poller is None else self.poller.drain(timeout_s)

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        for writer in self.writers:
            writer.close()


def lay_cables(
    scenario: Scenario, ports: Mapping[str, Port], clock: Callable[[], Clock], pcap: str | bool | None
) -> tuple[list[Cable], list[PcapWriter]]:
    """The scenario's cables between emulated NICs' ``ports``, each on its own ``clock()``, and the pcap writers
    tapping them (``pcap``: True = as the scenario says, False = none, a path = that file)."""
    cables: list[Cable] = []
    writers: list[PcapWriter] = []
    for spec in scenario.cables:
        cable = Cable(ports[spec.a], ports[spec.b], clock())
        cables.append(cable)
        path = spec.pcap if pcap is True else (pcap if isinstance(pcap, str) else None)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer = PcapWriter(path)
            writers.append(writer)
            cable.taps.append(pcap_tap(writer))
    return cables, writers


def pcap_tap(writer: PcapWriter) -> Tap:
    def tap(_source: str, frames: FrameBatch, stamps: npt.NDArray[np.int64]) -> None:
        writer.write(frames, stamps)

    return tap
