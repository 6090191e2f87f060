"""``World.assemble``: the one builder calls a back end in the documented order, and closes it on failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.kernel import Kernel
from world import scenario
from world.backend import Pcap
from world.build import World
from world.scenario import Scenario


class Bus:
    """A register file that remembers writes: enough for the kernel's bring-up."""

    def __init__(self) -> None:
        self.regs: dict[int, int] = {}

    def read32(self, offset: int) -> int:
        return self.regs.get(offset, 0)

    def write32(self, offset: int, value: int) -> None:
        self.regs[offset] = value


class Recording:
    """A back end that records what the builder asks of it."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.buses: dict[str, Bus] = {}
        self.fail_at = fail_at

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what == self.fail_at:
            raise RuntimeError(what)

    @property
    def nics(self) -> Mapping[str, Bus]:
        return self.buses

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return ()

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8] | None:
        self._call("ram")
        return None

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        self._call("plug")
        self.buses = {"nic0": Bus(), "nic1": Bus()}
        return self.buses

    def connect(self, name: str, line: Callable[[], None]) -> None:
        self._call(f"connect {name}")

    def attached(self, name: str) -> None:
        self._call(f"attached {name}")

    def start(self) -> None:
        self._call("start")

    def in_flight_limit(self, frame_bytes: int) -> int | None:
        return None

    def settle(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        self.calls.append("close")


def test_the_builder_powers_on_plugs_brings_up_each_nic_then_spawns_and_starts() -> None:
    backend = Recording()
    world = World.assemble(scenario.load(), backend)
    assert backend.calls == ["ram", "plug", "connect nic0", "attached nic0", "connect nic1", "attached nic1", "start"]
    assert list(world.tenants) == ["alice", "bob"]
    assert list(world.kernel.nics) == ["nic0", "nic1"]
    assert world.nics["nic0"] is backend.buses["nic0"]
    world.close()
    assert backend.calls[-1] == "close"


@pytest.mark.parametrize("step", ["plug", "attached nic1", "start"])
def test_a_failure_after_power_on_closes_the_back_end(step: str) -> None:
    backend = Recording(fail_at=step)
    with pytest.raises(RuntimeError, match=step):
        World.assemble(scenario.load(), backend)
    assert backend.calls[-1] == "close"
