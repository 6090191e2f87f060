"""The device's burst path under an IOMMU: translated through the IOTLB, held to the numpy engines' walk.

Protection ``iommu`` puts every device access through the IOMMU; the burst
path (device/fastdev.c) may translate a burst only when every page it
touches is in the IOTLB, and must otherwise leave it to the numpy engines,
which walk the table, fault and audit.  Two identical worlds get the same
random stream: bursts from the tenant's queues, descriptors written by hand
at pages the tenant pinned and then unpinned (the stale-IOTLB attack: the
unmap must invalidate, and the access must fault, not reach the frame),
pages never mapped, and re-pins of the same page.  One world's devices run
with the burst path, the other's with the numpy engines only.  Memory, the
wire, registers, statistics, counters, the IOMMU's faults and IOTLB counters
and the audit records must be the same; and the burst path must have run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device import fastdev
from device.e1000 import E1000
from device.tx_engine import TxEngine
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import indices
from ring.descriptors import TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.frames import FrameBatch
from ring.memory import PAGE_SIZE
from ring.syscalls import DEVICE_READ
from tests.conftest import RIG, Rig, seq_frame
from tests.verifier.compiled import compiled_accelerator
from verifier.modes.protection import Protection
from world.build import World

RING = 32


@pytest.fixture(autouse=True)
def _compiled() -> None:
    compiled_accelerator(fastdev.enabled(), fastdev.status())


def iommu_rig(burst_path: bool) -> tuple[Rig, World]:
    world = World.build(dataclasses.replace(RIG, protection=Protection.IOMMU), pcap=False)
    nics, tenants = world.backend.nics, world.tenants
    rig = Rig(world.memory, nics["nic0"], nics["nic1"], world.backend.cables[0], world.kernel, tenants["alice"],
              tenants["bob"])  # fmt: skip
    rig.cable.taps.append(lambda _src, frames, _stamps: rig.wire.extend(frames))
    if not burst_path:
        devs: tuple[E1000, E1000] = (rig.nic0, rig.nic1)
        for dev in devs:
            for tx in dev.tx:
                tx.fast = None
            for rx in dev.rx:
                rx.fast = None
    return rig, world


step = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 40)),
    st.tuples(st.just("recv"), st.integers(1, 40)),
    st.tuples(st.just("hand"), st.sampled_from(("pinned", "unpinned", "never"))),
    st.tuples(st.just("unpin"), st.just(0)),
    st.tuples(st.just("pin"), st.just(0)),
)


def run(burst_path: bool, steps: list[tuple[str, int | str]]) -> tuple[object, ...]:
    rig, world = iommu_rig(burst_path)
    tx, rx = TxQueue(rig.alice, "nic0", 0, size=RING), RxQueue(rig.bob, "nic1", 0, size=RING)
    spare = rig.alice.alloc_dma(PAGE_SIZE)  # a page alice pins and unpins: its IOTLB entry must not outlive the pin
    spare.view[:] = 0x5A
    handle: int | None = int(rig.alice.pin(spare.vaddr, PAGE_SIZE, DEVICE_READ))
    got: list[bytes] = []
    seq = 0
    for op, arg in steps:
        if op == "send":
            assert isinstance(arg, int)
            tx.tx_burst(FrameBatch.from_frames([seq_frame(seq + i) for i in range(arg)]))
            seq += arg
        elif op == "recv":
            assert isinstance(arg, int)
            got.extend(rx.rx_burst(arg))
        elif op == "hand" and indices.free(tx.clean, tx.tail, tx.size):
            desc = np.zeros(1, dtype=TX_DESC)
            desc["addr"] = {"pinned": spare.vaddr, "unpinned": spare.vaddr + 64, "never": 0x7F00_0000}[str(arg)]
            desc["length"] = 64
            desc["cmd"] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
            tx.ring[tx.tail] = desc[0]
            tx.tail = indices.advance(tx.tail, 1, tx.size)
            tx.doorbell.write32(tx.handle.tail_offset, tx.tail)
        elif op == "unpin" and handle is not None:
            rig.alice.unpin(handle)
            handle = None
        elif op == "pin" and handle is None:
            handle = int(rig.alice.pin(spare.vaddr, PAGE_SIZE, DEVICE_READ))
    tx.reap()
    iommu = world.kernel.iommu
    assert iommu is not None
    devs: tuple[E1000, E1000] = (rig.nic0, rig.nic1)
    return (
        got,
        rig.memory.data.tobytes(),
        [bytes(f) for f in rig.wire],
        [d.regs.tobytes() for d in devs],
        [dict(d.stats) for d in devs],
        [dataclasses.asdict(d.counters) for d in devs],
        [d.dma.blocked for d in devs],
        iommu.faults,
        dataclasses.asdict(iommu.iotlb),
        [dict(r) if isinstance(r, dict) else r for r in world.kernel.audit.since(0)],
        dataclasses.asdict(tx.stats),
        dataclasses.asdict(rx.stats),
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(step, min_size=1, max_size=20))
def test_the_burst_path_under_an_iommu_matches_the_walking_engines(steps: list[tuple[str, int | str]]) -> None:
    assert run(True, steps) == run(False, steps)


def test_a_mapped_burst_takes_the_burst_path_and_a_stale_page_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = []
    real = TxEngine._burst

    def spy(self: TxEngine, *args: int) -> object:
        out = real(self, *args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(TxEngine, "_burst", spy)
    steps: list[tuple[str, int | str]] = [("send", 8), ("send", 8), ("recv", 40), ("hand", "pinned"), ("unpin", 0),
                                          ("hand", "pinned")]  # fmt: skip
    result = run(True, steps)
    assert True in taken  # the second burst, its pages now in the IOTLB, went through the compiled path
    faults = result[7]
    assert isinstance(faults, int) and faults >= 1  # the descriptor at the unpinned page faulted
