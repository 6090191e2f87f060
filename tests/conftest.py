"""A real two-NIC rig without the sandbox package: memory, two E1000s on a cable, a kernel, two tenants.

The rig is a scenario written here (``RIG``) and built by the one builder,
``World.build``: nic0 (alice transmits) and nic1 (bob receives) are joined
by a ``Cable``; the kernel runs in protection mode ``none``, so doorbells go
straight to the devices.  ``make_rig`` is a plain function so Hypothesis
tests can build a fresh rig per example; the ``rig`` fixture wraps it for
ordinary tests.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from device.e1000 import E1000, EngineMode
from device.wire import Cable
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring.frames import FrameBatch
from ring.memory import PhysicalMemory
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection
from world.build import World
from world.scenario import CableSpec, NicSpec, Scenario, TenantSpec


@pytest.fixture(autouse=True)
def _stop_signals_kept() -> Iterator[None]:
    """A test that builds a Ray actor's or worker's object in pytest's own process (they ignore SIGINT, as they must
    in a cluster) must not leave it ignored: every later subprocess would inherit that and no Ctrl-C test could stop
    its command.  Put back whatever a test changed."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


MAC0 = bytes.fromhex("020000000001")
MAC1 = bytes.fromhex("020000000002")
ETHERTYPE_IPV4 = b"\x08\x00"
ETH_HEADER = 14
RIG = Scenario(
    name="rig",
    source="tests/conftest.py",
    seed=1,
    engine=EngineMode.INLINE,
    protection=Protection.NONE,
    memory_size=16 << 20,
    kernel_size=1 << 20,
    nics=(NicSpec("nic0", MAC0), NicSpec("nic1", MAC1)),
    tenants=(TenantSpec("alice", "nic0", "198.18.0.1"), TenantSpec("bob", "nic1", "198.18.0.2")),
    cables=(CableSpec("nic0", "nic1"),),
)


@dataclass
class Rig:
    memory: PhysicalMemory
    nic0: E1000
    nic1: E1000
    cable: Cable
    kernel: Kernel
    alice: Process
    bob: Process
    wire: list[bytes] = field(default_factory=list)  # every frame that crossed the cable, in order

    def tx_queue(self, size: int = 64, pool_size: int | None = None) -> TxQueue:
        """Alice's transmit queue 0 on nic0."""
        return TxQueue(self.alice, "nic0", 0, size=size, pool_size=pool_size)

    def rx_queue(self, size: int = 64) -> RxQueue:
        """Bob's receive queue 0 on nic1."""
        return RxQueue(self.bob, "nic1", 0, size=size)


def make_rig(mode: EngineMode = EngineMode.INLINE) -> Rig:
    """``RIG`` built with ``mode``.  Threaded, the world's own poller is stopped: these tests run the devices."""
    world = World.build(dataclasses.replace(RIG, engine=mode), pcap=False)
    world.close()  # stops a threaded world's DevicePoller (an inline world has nothing to stop or flush)
    nics, tenants, cable = world.backend.nics, world.tenants, world.backend.cables[0]
    rig = Rig(world.memory, nics["nic0"], nics["nic1"], cable, world.kernel, tenants["alice"], tenants["bob"])
    cable.taps.append(lambda _src, frames, _stamps: rig.wire.extend(frames))
    return rig


def frame(payload: bytes, dst: bytes = MAC1, src: bytes = MAC0) -> bytes:
    """An Ethernet II frame: destination MAC, source MAC, ethertype 0x0800, payload."""
    return dst + src + ETHERTYPE_IPV4 + payload


def seq_frame(seq: int, size: int = 64) -> bytes:
    """A ``size``-byte frame to nic1 whose payload starts with a 4-byte sequence number."""
    body = seq.to_bytes(4, "big")
    body += bytes((seq + i) & 0xFF for i in range(size - ETH_HEADER - len(body)))
    return frame(body)


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[ETH_HEADER : ETH_HEADER + 4], "big")


def batch(frames: list[bytes]) -> FrameBatch:
    return FrameBatch.from_frames(frames)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


@pytest.fixture
def threaded_rig() -> Rig:
    return make_rig(EngineMode.THREADED)


# -- the lab marker (declared in pyproject.toml): tests that run inside the lab VM (lab/, docs/lab.md) --
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside the lab VM, deselect ``lab`` tests: tests/lab/ boots the VM and runs them there.

    Inside it, deselect those of the other boot variant (``lab(variant="noiommu")`` needs the no-IOMMU boot)."""
    from lab.guest.env import VARIANT_IOMMU, in_lab, variant

    def elsewhere(item: pytest.Item) -> bool:
        marker = item.get_closest_marker("lab")
        if marker is None:
            return False
        return not in_lab() or marker.kwargs.get("variant", VARIANT_IOMMU) != variant()

    lab_items = [item for item in items if elsewhere(item)]
    if lab_items:
        config.hook.pytest_deselected(items=lab_items)
        items[:] = [item for item in items if not elsewhere(item)]
