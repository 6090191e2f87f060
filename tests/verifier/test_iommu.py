"""Mode ``iommu``: descriptors carry IO virtual addresses and an emulated IOMMU translates every DMA.

Nothing checks descriptors before the device sees them; the device's own
accesses fault instead.  Each test looks at three things: the audit record
of the fault (kind ``iommu``), the DMA observer's verdict on the access
(blocked, no byte moved), and the wire.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring.descriptors import RXD_ERR_RXE, RXD_STAT_DD
from ring.frames import FrameBatch
from ring.memory import OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from tests.conftest import seq_frame
from tests.verifier.conftest import READ, RING, WRITE, Env, RawRx, RawTx
from verifier.address_space import USER_BASE
from verifier.kernel import KernelError


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env("iommu")


def fault(env: Env, reason: str, iova: int, access: str) -> dict[str, object]:
    """The one IOMMU fault record for ``iova``."""
    found = [r for r in env.records("iommu") if int(str(r["detail"]["iova"]), 16) == iova]
    assert len(found) == 1, env.records()
    rec = found[0]
    assert rec["reason"] == reason and rec["detail"]["access"] == access
    assert rec["detail"]["vtd_fault_reason"] == ("0x05" if access == "write" else "0x06")  # VT-d: by request kind
    return rec


def blocked(env: Env, purpose: str) -> list[tuple[int, int]]:
    return env.data_accesses(purpose, allowed=False)


def test_honest_traffic_flows_with_iovas(env: Env) -> None:
    tx, rx = TxQueue(env.alice, "nic0", size=RING), RxQueue(env.bob, "nic1", size=RING)
    sent = [seq_frame(i, 64 + (i * 37) % 1400) for i in range(200)]
    got: list[bytes] = []
    for start in range(0, len(sent), 25):
        assert tx.tx_burst(FrameBatch.from_frames(sent[start : start + 25])) == 25
        got += list(rx.rx_burst())
    assert got == sent
    assert not env.records()
    # the descriptors carried the tenants' own pointers; the IOMMU turned them into physical addresses
    data = [b for b in env.dma.batches if b.purpose in ("tx-data", "rx-data")]
    assert data and all((b.addrs >= np.uint64(USER_BASE)).all() for b in data)
    assert all((b.phys < np.uint64(env.memory.size)).all() and b.allowed.all() for b in data)
    assert int(tx.ring["addr"][0]) >= USER_BASE


def test_tx_from_a_kernel_physical_address_faults(env: Env) -> None:
    tx = RawTx(env.alice)
    kernel_addr = 7 * PAGE_SIZE
    assert int(env.memory.owner[kernel_addr >> PAGE_SHIFT]) == OWNER_KERNEL
    tx.put(kernel_addr, 128)
    ok = tx.send(1)
    tx.doorbell()
    rec = fault(env, "IOMMU_NOT_MAPPED", kernel_addr, "read")
    assert rec["nic"] == "nic0" and rec["tenant_name"] == "alice"
    assert blocked(env, "tx-data") == [(kernel_addr, 128)]
    assert env.wire == [seq_frame(1)]  # only the honest frame left
    assert not any(c in f for f in env.wire for c in env.memory.canaries)
    assert ok == 1 and len(env.records()) == 1


def test_tx_from_a_write_only_buffer_faults_with_permission(env: Env) -> None:
    tx = RawTx(env.alice)
    rx_only = env.buffer(env.alice, PAGE_SIZE, WRITE)
    rx_only.fill(0, seq_frame(2))
    tx.put(rx_only.bus, 64)
    tx.doorbell()
    fault(env, "IOMMU_PERMISSION", rx_only.bus, "read")
    assert blocked(env, "tx-data") == [(rx_only.bus, 64)]
    assert env.wire == []


def test_rx_into_a_read_only_buffer_faults_with_permission(env: Env) -> None:
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    ro = env.buffer(env.bob, PAGE_SIZE, READ)
    slot = rx.put(ro.bus)
    rx.doorbell()
    tx.send(3)
    tx.doorbell()
    rec = fault(env, "IOMMU_PERMISSION", ro.bus, "write")
    assert rec["nic"] == "nic1" and rec["tenant_name"] == "bob"
    assert blocked(env, "rx-data") == [(ro.bus, 64)]
    assert ro.read(0, PAGE_SIZE) == bytes(PAGE_SIZE)  # no byte moved
    assert int(rx.ring["status"][slot]) & RXD_STAT_DD and int(rx.ring["errors"][slot]) == RXD_ERR_RXE


def test_a_buffer_running_off_its_pin_faults(env: Env) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 2 * PAGE_SIZE, READ, pin_bytes=PAGE_SIZE)
    buf.fill(PAGE_SIZE - 64, seq_frame(4))
    tx.put(buf.bus + PAGE_SIZE - 64, 64)  # the last bytes of the pinned page
    tx.put(buf.bus + PAGE_SIZE - 63, 64)  # one byte into the unpinned page
    tx.doorbell()
    fault(env, "IOMMU_NOT_MAPPED", buf.bus + PAGE_SIZE - 63, "read")
    assert env.wire == [seq_frame(4)]


def test_unpin_unmaps_at_once(env: Env) -> None:
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    src = env.buffer(env.alice, PAGE_SIZE, READ)
    src.fill(0, seq_frame(5))
    tx.put(src.bus, 64)
    tx.doorbell()
    assert env.wire == [seq_frame(5)]
    assert src.pin is not None and env.alice.unpin(src.pin) == "released"  # no deferral under an IOMMU
    tx.put(src.bus, 64)
    tx.doorbell()
    fault(env, "IOMMU_NOT_MAPPED", src.bus, "read")
    assert env.wire == [seq_frame(5)]
    # a posted RX buffer: unpinned and freed while the device still holds its descriptor
    dst = env.buffer(env.bob, PAGE_SIZE, WRITE)
    phys = env.bob.virt_to_phys(dst.bus)
    slot = rx.put(dst.bus)
    rx.doorbell()
    assert dst.pin is not None and env.bob.unpin(dst.pin) == "released"
    env.bob.free_dma(dst.region)
    reused = env.alice.alloc_dma(PAGE_SIZE)  # the frame goes to another tenant at once
    assert env.alice.virt_to_phys(reused.vaddr) == phys
    reused.view[:] = 0x5A
    tx.send(6)
    tx.doorbell()
    fault(env, "IOMMU_NOT_MAPPED", dst.bus, "write")
    assert (reused.view == 0x5A).all()  # the late DMA could not reach the new owner's data
    assert int(rx.ring["errors"][slot]) == RXD_ERR_RXE


def test_one_domain_per_device(env: Env) -> None:
    RawTx(env.alice, "nic0")
    assert env.kernel.nic("nic0").iommu_owner == env.alice.tenant_id
    with pytest.raises(KernelError, match="domain"):  # nic0's RX queue is free, but the device is alice's
        RxQueue(env.bob, "nic0", size=RING)
    RawRx(env.alice, "nic0")  # the owner opens more queues on its device
    assert env.kernel.nic("nic0").iommu_owner == env.alice.tenant_id
    # bob's own pins never enter nic0's domain
    bob_buf = env.buffer(env.bob, PAGE_SIZE, READ)
    domain = env.kernel.iommu.domains["nic0"] if env.kernel.iommu is not None else None
    assert domain is not None and (bob_buf.bus >> PAGE_SHIFT) not in domain.entries
