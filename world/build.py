"""The composition root: build memory, kernel, NICs, wires and tenants from a scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from device.clock import Clock, VirtualClock, WallClock
from device.e1000 import E1000, EngineMode
from device.pcap import PcapWriter
from device.poller import DevicePoller
from device.wire import Cable, Tap
from ring.frames import FrameBatch
from ring.memory import PhysicalMemory
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from world.scenario import Scenario


@dataclass
class World:
    """Everything one scenario builds; ``close()`` flushes pcaps and stops threads."""

    scenario: Scenario
    memory: PhysicalMemory
    kernel: Kernel
    nics: dict[str, E1000]
    cables: list[Cable]
    tenants: dict[str, Process]
    pcaps: list[PcapWriter] = field(default_factory=list)
    poller: DevicePoller | None = None

    @classmethod
    def build(cls, scenario: Scenario, pcap: str | bool | None = True, audit: AuditSink | None = None) -> World:
        """Build the world.  ``pcap``: True = as the scenario says, False = none, a path = that file.

        ``audit``: where the kernel records rejections (default: in memory only).
        """
        memory = PhysicalMemory(scenario.memory_size, scenario.kernel_size, seed=scenario.seed)
        kernel = Kernel(memory, scenario.protection, audit)
        nics = {n.name: E1000(n.name, memory, n.mac, n.queues, scenario.engine) for n in scenario.nics}
        world = cls(scenario, memory, kernel, nics, [], {})
        for spec in scenario.cables:
            clock: Clock = VirtualClock() if scenario.engine is EngineMode.INLINE else WallClock()
            cable = Cable(nics[spec.a].port, nics[spec.b].port, clock)
            world.cables.append(cable)
            path = spec.pcap if pcap is True else (pcap if isinstance(pcap, str) else None)
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                writer = PcapWriter(path)
                world.pcaps.append(writer)
                cable.taps.append(_pcap_tap(writer))
        for spec_nic in scenario.nics:
            dev = nics[spec_nic.name]
            dev.attach()
            dev.irq = kernel.interrupt(spec_nic.name)  # the NIC's interrupt line to the kernel
            dev.dma.iommu = kernel.iommu  # None unless protection is iommu
            kernel.attach_nic(spec_nic.name, dev, spec_nic.mac, spec_nic.queues)
        for spec_tenant in scenario.tenants:
            world.tenants[spec_tenant.name] = kernel.spawn(spec_tenant.name)
        if scenario.engine is EngineMode.THREADED:
            world.poller = DevicePoller(list(nics.values()))
            world.poller.start()
        return world

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Threaded engine: wait until the devices have no work left.  Inline: nothing to wait for."""
        return True if self.poller is None else self.poller.drain(timeout_s)

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        for writer in self.pcaps:
            writer.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pcap_tap(writer: PcapWriter) -> Tap:
    def tap(_source: str, frames: FrameBatch, stamps: npt.NDArray[np.int64]) -> None:
        writer.write(frames, stamps)

    return tap
