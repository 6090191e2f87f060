"""Invariants 2 to 6 of the design (docs/architecture.md), each judged from outside the kernel.

2. doorbell-only user window: the device's register file before and after;
3. snapshot before check: the DMA observer's descriptor fetches, the user-read
   counter, and a rewrite between check and device (the ``after_check`` hook);
4. whole range, right access: every byte the device moves, against the
   owner's pins, over a random mix of good and bad descriptors, per mode;
5. pins outlive DMA: unpin and free of a buffer the device still owns;
6. one audit record per rejection: a real hash-chained log read back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import indices, regs
from ring.descriptors import RX_DESC, RXD_STAT_DD, TX_DESC, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.frames import FrameBatch
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from tests.conftest import seq_frame
from tests.verifier.conftest import (
    GOOD,
    MORE,
    READ,
    RING,
    WRITE,
    Env,
    RawRx,
    RawTx,
    one_record,
)
from verifier.audit.log import AuditLog
from verifier.audit.read import read_records, verify
from verifier.kernel import KernelError, Process
from verifier.modes.inplace import InPlaceQueue
from verifier.queue_state import QueueState

TRAPPING = ["verifier", "unsafe-inplace"]


def frames_of(addr: int, length: int) -> range:
    return range(addr >> PAGE_SHIFT, ((addr + max(length, 1) - 1) >> PAGE_SHIFT) + 1)


def state(env: Env, nic: str, kind: str) -> QueueState:
    st = env.kernel.queue(nic, kind).state
    assert st is not None
    return st


# -- invariant 2: doorbell-only user window --------------------------------------------------------
def hostile_offsets() -> list[int]:
    """Every named register of queue 0 and queue 1, plus unnamed, unaligned and out-of-BAR offsets."""
    named = sorted(regs.NAMES)
    queue1 = [regs.queue_reg(r, 1) for r in regs.TX_RING_REGS + regs.RX_RING_REGS]
    return [*named, *queue1, 0x0004, 0x3819, 0x1_FFFC, regs.BAR0_SIZE, regs.BAR0_SIZE + 0x3818]


@pytest.mark.parametrize("mode", TRAPPING)
def test_every_other_register_write_is_refused_and_audited(make_env: Callable[..., Env], mode: str) -> None:
    env = make_env(mode)
    alice_tx, alice_rx = RawTx(env.alice, "nic0"), RawRx(env.alice, "nic0")
    bob_rx = RawRx(env.bob, "nic1")
    own_tails = {alice_tx.q.handle.tail_offset, alice_rx.handle.tail_offset}
    devices = {"nic0": env.nic0, "nic1": env.nic1}
    before = {name: (dev.regs.copy(), dict(dev.stats)) for name, dev in devices.items()}
    expected = []
    for nic in ("nic0", "nic1"):
        window = env.alice.map_registers(nic)
        for offset in hostile_offsets():
            if nic == "nic0" and offset in own_tails:
                continue
            window.write32(offset, 0xDEAD_BEEF)  # CTRL.RST is bit 26 of this value: a reset, were it let through
            owned_by_bob = nic == "nic1" and offset == bob_rx.handle.tail_offset
            expected.append((nic, offset, "REG_NOT_OWNER" if owned_by_bob else "REG_NOT_DOORBELL"))
    for name, dev in devices.items():
        assert np.array_equal(dev.regs, before[name][0]), name
        assert dev.stats == before[name][1]
    records = env.records()
    assert [(r["nic"], int(r["detail"]["offset"], 16), r["reason"]) for r in records] == expected
    assert all(r["kind"] == "register" and r["tenant_name"] == "alice" for r in records)
    assert not env.dma.batches
    # the window still rings alice's own doorbell
    alice_tx.send(1)
    alice_tx.doorbell()
    assert len(env.wire) == 1 and len(env.records()) == len(expected)


@pytest.mark.parametrize("mode", ["none", "iommu"])
def test_the_owner_register_window_passes_through(make_env: Callable[..., Env], mode: str) -> None:
    """Without a trap the whole BAR is the tenant's (an unprotected VFIO mmap); no record is written."""
    env = make_env(mode)
    RawTx(env.alice, "nic0")  # iommu: puts nic0 in alice's domain
    window = env.alice.map_registers("nic0")
    for offset, value in [(regs.TDBAL, 0x1230), (regs.IMS, 0x4), (regs.RAL0, 0x0BAD_F00D), (regs.TDBAL + 0x100, 0x40)]:
        window.write32(offset, value)
        assert env.nic0.reg(offset) == value
    assert not env.records()


def test_iommu_refuses_register_writes_to_another_tenants_device(make_env: Callable[..., Env]) -> None:
    """Bob cannot drive nic0, which is in alice's domain: replaying her ring would send her buffers to bob."""
    env = make_env("iommu")
    tx = TxQueue(env.alice, "nic0", size=RING)
    assert env.nic0.read32(regs.TDT) == 0
    secret = seq_frame(7, 100)
    addr = tx.pool.bus_addr[0]
    tx.ring[0]["addr"], tx.ring[0]["length"], tx.ring[0]["cmd"] = addr, 100, GOOD  # written, never rung
    tx.pool.memory[:100] = np.frombuffer(secret, dtype=np.uint8)
    before = env.nic0.regs.copy()
    window = env.bob.map_registers("nic0")
    for offset, value in [(regs.TDH, 0), (regs.TDT, 1), (regs.TDBAL, 0), (regs.CTRL, regs.CTRL_RST)]:
        window.write32(offset, value)
    assert np.array_equal(env.nic0.regs, before)
    assert env.wire == [] and not env.dma.batches
    assert [r["reason"] for r in env.records("register")] == [
        "REG_NOT_DOORBELL",
        "REG_NOT_OWNER",
        "REG_NOT_DOORBELL",
        "REG_NOT_DOORBELL",
    ]
    assert {r["tenant_name"] for r in env.records()} == {"bob"}
    assert window.read32(regs.TDLEN) == 0 and env.alice.map_registers("nic0").read32(regs.TDLEN) == RING * 16


# -- invariant 3: snapshot before check ------------------------------------------------------------
def test_device_reads_descriptors_only_from_kernel_frames(make_env: Callable[..., Env]) -> None:
    env = make_env("verifier")
    tx, rx = TxQueue(env.alice, "nic0", size=RING), RxQueue(env.bob, "nic1", size=RING)
    raw = RawTx(env.bob, "nic1")  # bob also transmits: hostile descriptors go through the same path
    got = 0
    for burst in range(12):
        n = tx.tx_burst(_frames(burst * 10, 10))
        raw.put(0x2000, 64)  # kernel memory
        raw.send(burst)
        raw.doorbell()
        got += len(rx.rx_burst())
        assert n == 10
    assert got == 120
    seen: Counter[str] = Counter()
    for b in env.dma.batches:
        seen[b.purpose] += 1
        if b.purpose.endswith(("-desc", "-wb")):
            for phys, length in zip(b.phys.tolist(), b.lengths.tolist(), strict=True):
                owners = env.memory.owner[list(frames_of(phys, length))]
                assert (owners == OWNER_KERNEL).all(), (b.purpose, hex(phys), length)
    assert {"tx-desc", "rx-desc", "tx-wb", "rx-wb"} <= set(seen)


def _frames(first: int, n: int) -> FrameBatch:
    return FrameBatch.from_frames(seq_frame(first + i, 64) for i in range(n))


@pytest.mark.parametrize("mode", TRAPPING)
def test_each_user_descriptor_is_read_once_per_doorbell(make_env: Callable[..., Env], mode: str) -> None:
    env = make_env(mode)
    tx = RawTx(env.alice)
    st = state(env, "nic0", "tx")
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    total = 0
    for k in (1, 5, 0, 17, 40, 3, 60, 2):
        for i in range(k):
            cmd = MORE if (mode == "verifier" and i == k - 1 and k == 3) else GOOD  # leave one packet open once
            tx.put(buf.bus + 64 * (i % 60), 64, cmd)
        tx.doorbell()
        total += k
        assert st.user_reads == total, (k, st.user_reads)
        tx.doorbell()  # the same tail again: nothing new to read
        assert st.user_reads == total
    tx.doorbell(RING + 3)  # a refused tail reads nothing
    assert st.user_reads == total


def _race_to_kernel(env: Env, nic: str, kind: str, slot: int, addr: int) -> None:
    """After the kernel checked the batch and before the device acts, point ``slot`` at ``addr``."""

    def rewrite(st: QueueState) -> None:
        ring = st.user.view.view(TX_DESC if kind == "tx" else RX_DESC)
        ring["addr"][slot] = addr
        if kind == "tx":
            ring["length"][slot] = 256

    state(env, nic, kind).after_check.append(rewrite)


@pytest.mark.parametrize("mode", TRAPPING)
def test_tx_rewrite_after_the_check(make_env: Callable[..., Env], mode: str) -> None:
    """The race: the user slot is pointed at kernel memory between check and device."""
    env = make_env(mode)
    tx = RawTx(env.alice)
    kernel_addr = 5 * PAGE_SIZE  # a canary sits at the start of every kernel frame
    slot = tx.send(1, 64)
    _race_to_kernel(env, "nic0", "tx", slot, kernel_addr)
    tx.doorbell()
    assert not env.records()  # the kernel checked a good descriptor
    leaked = any(c in f for f in env.wire for c in env.memory.canaries)
    touched = env.touched(kernel_addr, kernel_addr + 256)
    if mode == "verifier":
        assert env.wire == [seq_frame(1, 64)] and not leaked and not touched
    else:
        assert leaked and touched, "unsafe-inplace lets the device read the rewritten descriptor"


@pytest.mark.parametrize("mode", TRAPPING)
def test_rx_rewrite_after_the_check(make_env: Callable[..., Env], mode: str) -> None:
    env = make_env(mode)
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    buf = env.buffer(env.bob, PAGE_SIZE, WRITE)
    kernel_addr = 6 * PAGE_SIZE
    canary = env.memory.data[kernel_addr : kernel_addr + 64].tobytes()
    slot = rx.put(buf.bus)
    _race_to_kernel(env, "nic1", "rx", slot, kernel_addr)
    rx.doorbell()
    tx.send(9)
    tx.doorbell()
    overwritten = env.memory.data[kernel_addr : kernel_addr + 64].tobytes() != canary
    if mode == "verifier":
        assert not overwritten and not env.touched(kernel_addr, kernel_addr + 2048)
        assert buf.read(0, 64) == seq_frame(9)
    else:
        assert overwritten, "unsafe-inplace lets the device write through the rewritten descriptor"


# -- invariant 4: nothing outside the owner's pinned frames is ever DMA'd --------------------------
def _bad_tx_menu(env: Env, bus: dict[str, int]) -> list[tuple[int, int]]:
    size = env.memory.size
    return [
        (3 * PAGE_SIZE, 128),  # kernel (physical; unmapped as an IOVA)
        (bus["bob"], 128),  # another tenant
        (bus["alice_phys"], 128),  # alice's own buffer by physical address
        (bus["write_only"], 128),  # pinned for device write only
        (bus["unpinned"], 128),
        (bus["pool_end"] - 64, 128),  # straddles the end of the pinned pool
        (2**64 - 64, 128),
        (size - 64, 128),
        (bus["pool"], 0),
        (bus["pool"], 5000),
    ]


@pytest.mark.parametrize("mode", ["verifier", "unsafe-inplace", "iommu"])
def test_dma_stays_inside_the_owners_pins(make_env: Callable[..., Env], mode: str) -> None:
    env = make_env(mode)
    rng = np.random.default_rng(2024)
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    bob_pool = env.buffer(env.bob, RING * 2048, WRITE)
    bob_ro = env.buffer(env.bob, PAGE_SIZE, READ)
    write_only = env.buffer(env.alice, PAGE_SIZE, WRITE)
    unpinned = env.buffer(env.alice, PAGE_SIZE, None)
    pool = tx.q.pool.region
    bus = {
        "bob": bob_pool.bus,
        "alice_phys": env.alice.virt_to_phys(pool.vaddr),
        "write_only": write_only.bus,
        "unpinned": unpinned.bus,
        "pool": pool.bus,
        "pool_end": pool.bus + pool.size,
    }
    bad_tx = _bad_tx_menu(env, bus)
    bad_rx = [3 * PAGE_SIZE, tx.q.pool.region.bus, bob_ro.bus, bob_pool.end - 1024, unpinned.bus, 2**64 - 1024]
    head = 0  # bob's oldest posted RX slot
    seq = 0
    for _ in range(25):
        for _ in range(int(rng.integers(1, 20))):  # alice: a burst mixing good and bad descriptors
            if rng.random() < 0.5:
                tx.send(seq)
                seq += 1
            else:
                addr, length = bad_tx[int(rng.integers(len(bad_tx)))]
                tx.put(addr % 2**64, length)
        tx.doorbell()
        done = indices.used(head, rx.tail, RING)
        status = indices.read_window(rx.ring["status"], head, done)
        head = indices.advance(head, int(np.argmin(status & RXD_STAT_DD)) if not status.all() else done, RING)
        room = RING - 1 - indices.used(head, rx.tail, RING)
        for _ in range(min(room, int(rng.integers(1, 12)))):  # bob: posts good and bad buffers
            if rng.random() < 0.5:
                rx.put(bob_pool.bus + 2048 * rx.tail)
            else:
                rx.put(bad_rx[int(rng.integers(len(bad_rx)))] % 2**64)
        rx.doorbell()
    assert env.wire, "good frames flowed"
    # what each device access may touch: the owner's pins with the right access, its rings, or kernel rings
    readable = _pinned_frames(env.alice, READ)
    writable = _pinned_frames(env.bob, WRITE)
    rings = {  # physical frames of the user rings (the device reads them in place, or through the IOMMU)
        "nic0": set(frames_of(env.alice.virt_to_phys(tx.q.region.vaddr), RING * 16)),
        "nic1": set(frames_of(env.bob.virt_to_phys(rx.region.vaddr), RING * 16)),
    }
    sink: set[int] = set()
    if mode == "unsafe-inplace":
        handler = env.kernel.queue("nic1", "rx").handler
        assert isinstance(handler, InPlaceQueue)
        sink = set(frames_of(handler.sink_phys, PAGE_SIZE))
    blocked = 0
    for b in env.dma.batches:
        for phys, length, ok in zip(b.phys.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
            if not ok:
                blocked += 1
                continue
            touched = set(frames_of(phys, length))
            if b.purpose == "tx-data":
                assert touched <= readable, (mode, hex(phys), length)
            elif b.purpose == "rx-data":
                assert touched <= writable | sink, (mode, hex(phys), length)
            elif mode == "verifier":
                assert (env.memory.owner[sorted(touched)] == OWNER_KERNEL).all(), (b.purpose, hex(phys))
            else:
                assert touched <= rings[b.device], (b.purpose, hex(phys))
    if mode == "iommu":
        assert blocked and env.records("iommu")  # the bad ones were tried and faulted
    else:
        assert not blocked and env.records("tx") and env.records("rx")


def _pinned_frames(proc: Process, access: int) -> set[int]:
    return {int(f) for p in proc.pins.pins.values() if p.state == "active" and p.access & access for f in p.frames}


# -- invariant 5: pins outlive DMA -----------------------------------------------------------------
@pytest.mark.parametrize("mode", TRAPPING)
def test_unpin_of_a_posted_rx_buffer_waits_for_the_device(make_env: Callable[..., Env], mode: str) -> None:
    env = make_env(mode)
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    buf = env.buffer(env.bob, PAGE_SIZE, WRITE)
    assert buf.pin is not None
    slot = rx.put(buf.bus)
    rx.doorbell()
    assert env.bob.unpin(buf.pin) == "deferred"
    (rec,) = env.records("pin")
    assert rec["reason"] == "PIN_IN_FLIGHT" and rec["detail"]["outcome"] == "deferred"
    assert rec["detail"]["in_flight_refs"] >= 1 and rec["tenant_name"] == "bob"
    with pytest.raises(KernelError, match="still pinned"):
        env.bob.free_dma(buf.region)
    with pytest.raises(KernelError):
        env.bob.unpin(buf.pin)  # the pin is no longer active
    # a new descriptor may not use the buffer any more (access is revoked at once)
    again = rx.put(buf.bus)
    rx.doorbell()
    rec = one_record(env, "rx", again)
    assert (rec["reason"], rec["detail"]["owner"]) == ("ADDR_NOT_PINNED", "own-unpinned")
    tx.send(3)
    tx.doorbell()
    assert rx.received(slot) == seq_frame(3)  # the device used it, safely: the frames were still pinned
    assert buf.pin not in env.bob.pins.pins  # completed: the deferred unpin finished
    env.bob.free_dma(buf.region)
    assert int(env.memory.owner[buf.bus >> PAGE_SHIFT]) == OWNER_FREE  # back to the allocator


def test_unpin_without_dma_in_flight_is_immediate(make_env: Callable[..., Env]) -> None:
    env = make_env("verifier")
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    assert buf.pin is not None and env.alice.unpin(buf.pin) == "released"
    env.alice.free_dma(buf.region)
    assert not env.records()


@pytest.mark.parametrize("mode", TRAPPING)
def test_unpin_next_to_a_buffer_ending_on_the_page_boundary_is_immediate(
    make_env: Callable[..., Env], mode: str
) -> None:
    """An RX buffer in the second half of a page ends on its last byte: the page after it is not in flight.

    Two pins on adjacent pages; the device holds a receive buffer (RCTL.BSIZE, 2048 bytes) ending exactly at the
    first page's end, so an unpin of the second page is immediate ("released"), and the first one's waits.
    (A frame count taken as ``(addr + length) >> PAGE_SHIFT`` counts one frame too many here.)"""
    env = make_env(mode)
    region = env.bob.alloc_dma(2 * PAGE_SIZE)
    low = env.bob.pin(region.vaddr, PAGE_SIZE, WRITE)
    high = env.bob.pin(region.vaddr + PAGE_SIZE, PAGE_SIZE, WRITE)
    rx = RawRx(env.bob)
    rx.put(region.bus + PAGE_SIZE - 2048)
    rx.doorbell()
    assert env.bob.unpin(high) == "released"
    assert env.bob.unpin(low) == "deferred"


# -- invariant 6: exactly one audit record per rejection -------------------------------------------
def test_one_record_per_rejection_in_a_real_log(make_env: Callable[..., Env], tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, protection="verifier", fsync="never")
    env = make_env("verifier", audit=log)
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    rng = np.random.default_rng(6)
    bob_buf = env.buffer(env.bob, 16 * 2048, WRITE)
    ro = env.buffer(env.bob, PAGE_SIZE, READ)
    refused_tx = refused_rx = 0
    per_doorbell: list[tuple[int, int, Counter[int]]] = []  # (first seq, end seq, refused slots)
    for _ in range(6):
        slots = []
        for _ in range(20):
            choice = int(rng.integers(4))
            if choice == 0:
                slots.append(tx.send(1))
            elif choice == 1:
                slots.append(tx.put(PAGE_SIZE, 64))  # kernel
            elif choice == 2:
                slots.append(tx.put(tx.q.pool.region.bus, 0))
            else:
                slots += [tx.put(tx.q.pool.region.bus, 64, MORE), tx.put(0x3000, 64, GOOD)]
        first = log.next_seq
        tx.doorbell()
        refused = Counter(s for s in slots if tx.status(s) == TXD_STAT_DD | TXD_STAT_REFUSED)
        per_doorbell.append((first, log.next_seq, refused))
        refused_tx += sum(refused.values())
    for i in range(12):
        rx.put(ro.bus if i % 3 == 0 else bob_buf.bus + 2048 * i)
    rx.doorbell()
    refused_rx = sum(rx.refused(s) for s in range(12))
    tx.doorbell(RING + 1)  # RING_TAIL_BEYOND
    env.alice.map_registers("nic0").write32(regs.RCTL, 0)  # REG_NOT_DOORBELL
    env.alice.map_registers("nic1").write32(rx.handle.tail_offset, 3)  # REG_NOT_OWNER
    assert bob_buf.pin is not None and env.bob.unpin(bob_buf.pin) == "deferred"  # PIN_IN_FLIGHT
    events = 4
    counters = log.counters
    log.close()
    records = list(read_records([path]))
    assert len(records) == refused_tx + refused_rx + events
    assert Counter(r["kind"] for r in records) == {"tx": refused_tx + 1, "rx": refused_rx, "register": 2, "pin": 1}
    assert counters == Counter((r["nic"], r["queue"], r["reason"]) for r in records)
    for nic, queue in {(r["nic"], r["queue"]) for r in records}:
        mine = Counter(r["reason"] for r in records if (r["nic"], r["queue"]) == (nic, queue))
        assert log.statistics(nic, queue) == dict(mine)
    assert refused_tx and refused_rx
    for first, end, refused in per_doorbell:  # each refused slot of each doorbell has exactly one record
        assert Counter(r["ring_index"] for r in records[first:end]) == refused
    assert env.kernel.statistics("nic0", 0) == log.statistics("nic0", 0)
    result = verify([path])
    assert result.ok and result.records == len(records) and result.head == log.head
    assert {r["protection"] for r in records} == {"verifier"}
    assert [r["seq"] for r in records] == list(range(len(records)))


def test_statistics_keep_tx_and_rx_of_one_queue_apart() -> None:
    """XDP_STATISTICS counts tx_invalid_descs and rx_invalid_descs apart; so does Kernel.statistics."""
    from verifier.modes.protection import Protection
    from world import scenario
    from world.build import World

    scen = dataclasses.replace(scenario.load(), protection=Protection.VERIFIER)
    with World.build(scen, pcap=False) as world:
        alice = world.tenants["alice"]
        from driver.tenant.rxq import RxQueue
        from driver.tenant.txq import TxQueue

        tx = TxQueue(alice, "nic0", size=64)
        rx = RxQueue(alice, "nic0", size=64)
        tx.ring[tx.tail]["addr"], tx.ring[tx.tail]["length"] = 0x1000, 60  # kernel memory, no EOP needed to refuse
        tx.ring[tx.tail]["cmd"] = 0x0B
        tx.tail += 1
        tx.doorbell.write32(tx.handle.tail_offset, tx.tail)
        rx.doorbell.write32(rx.handle.tail_offset, (rx.tail + 1) % rx.size)  # every slot is posted already
        kernel = world.kernel
        assert kernel.statistics("nic0", 0, "tx") == {"ADDR_NOT_PINNED": 1}
        assert kernel.statistics("nic0", 0, "rx") == {"RING_OVERRUN": 1}
        assert kernel.statistics("nic0", 0) == {"ADDR_NOT_PINNED": 1, "RING_OVERRUN": 1}
