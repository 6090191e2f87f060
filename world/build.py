"""The composition root: build memory, kernel, NICs, wires and tenants from a scenario.

``World.assemble`` is the one place that connects them, whatever the NICs
are: a ``Backend`` (world/backend.py) says where the RAM lives, makes and
cables the NICs and runs them -- the emulated e1000 (world/emulated.py,
``World.build``), QEMU's e1000 over qtest (world/qemu.py) and the lab's
82574L under VFIO (lab/guest/world.py).  The fuzzer's arena is the
``attack`` scenario built here, plus the oracle (fuzz/arena.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ring.memory import PhysicalMemory
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from verifier.rules.policy import Policy
from world.backend import Backend, Pcap
from world.emulated import Emulated
from world.scenario import Scenario

#: The world's back end, with what is its own (``cables``, ``machine`` ...): ``world.backend``.
B_co = TypeVar("B_co", bound="Backend[Any]", covariant=True)
B = TypeVar("B", bound="Backend[Any]")
Nic = TypeVar("Nic")


@dataclass
class World(Generic[B_co]):
    """Everything one scenario builds; ``close()`` stops what runs the devices and flushes pcaps."""

    scenario: Scenario
    memory: PhysicalMemory
    kernel: Kernel
    backend: B_co
    tenants: dict[str, Process]

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        pcap: str | bool | None = True,
        audit: AuditSink | None = None,
        policy: Policy | None = None,
        accelerators: bool = True,
    ) -> World[Emulated]:
        """Build the world on emulated e1000s.  ``pcap``: True = as the scenario says, False = none, a path = that file.

        ``audit``: where the kernel records rejections (default: in memory only); ``policy`` and
        ``accelerators``: the kernel's (verifier/kernel.py ``Kernel``; default: the default policy, accelerated).
        """
        return World.assemble(scenario, Emulated(pcap), audit, policy, accelerators)

    @staticmethod
    def assemble(
        scenario: Scenario,
        backend: B,
        audit: AuditSink | None = None,
        policy: Policy | None = None,
        accelerators: bool = True,
    ) -> World[B]:
        """Power the machine on: memory over the back end's RAM, the kernel, the NICs, the tenants.

        The order is fixed, because allocation order in ``PhysicalMemory``
        decides every address a reproducer names: memory and the kernel
        first, then each NIC's bring-up in the scenario's order, then the
        tenants in theirs.
        """
        ram = backend.ram(scenario)
        try:
            memory = PhysicalMemory(scenario.memory_size, scenario.kernel_size, seed=scenario.seed, backing=ram)
            kernel = Kernel(memory, scenario.protection, audit, policy, accelerators)
            bars = backend.plug(scenario, memory, kernel)
            for nic in scenario.nics:
                backend.connect(nic.name, kernel.interrupt(nic.name))
                kernel.attach_nic(nic.name, bars[nic.name], nic.mac, nic.queues, nic.flow_control)
                backend.attached(nic.name)
            tenants = {t.name: kernel.spawn(t.name) for t in scenario.tenants}
            backend.start()
        except BaseException:
            backend.close()
            raise
        return World(scenario, memory, kernel, backend, tenants)

    @property
    def nics(self: World[Backend[Nic]]) -> Mapping[str, Nic]:
        """The devices, by the scenario's NIC names (typed as the back end's: ``E1000``, ``QemuE1000`` ...)."""
        return self.backend.nics

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return self.backend.pcaps

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until the devices have no work left (inline emulated NICs: nothing to wait for)."""
        return self.backend.settle(timeout_s)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> World[B_co]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
