"""A real two-NIC rig without the sandbox package: memory, two E1000s on a cable, a kernel, two tenants.

nic0 (alice transmits) and nic1 (bob receives) are joined by a ``Cable``;
the kernel runs in protection mode ``none``, so doorbells go straight to the
devices.  ``make_rig`` is a plain function so Hypothesis tests can build a
fresh rig per example; the ``rig`` fixture wraps it for ordinary tests.
"""

from __future__ import annotations

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

MAC0 = bytes.fromhex("020000000001")
MAC1 = bytes.fromhex("020000000002")
ETHERTYPE_IPV4 = b"\x08\x00"
ETH_HEADER = 14


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
    memory = PhysicalMemory(16 << 20, 1 << 20, seed=1)
    nic0 = E1000("nic0", memory, MAC0, mode=mode)
    nic1 = E1000("nic1", memory, MAC1, mode=mode)
    cable = Cable(nic0.port, nic1.port)
    nic0.attach()
    nic1.attach()
    kernel = Kernel(memory, Protection.NONE)
    kernel.attach_nic("nic0", nic0, MAC0)
    kernel.attach_nic("nic1", nic1, MAC1)
    rig = Rig(memory, nic0, nic1, cable, kernel, kernel.spawn("alice"), kernel.spawn("bob"))
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
