"""A hostile-tenant rig for the verifier tests: a World in any protection mode, raw rings, DMA and wire logs.

The tenant here is the attacker: it writes descriptors straight into its
ring (``RawTx``/``RawRx``) and rings the doorbell itself, so each test hands
the kernel exactly the descriptor it wants judged.  Every NIC has a DMA
observer (``Env.dma``) and the cable a tap (``Env.wire``), so a test can say
what the device touched and what left on the wire, independently of what the
kernel claims.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from device.e1000 import E1000, EngineMode
from driver.tenant.txq import TxQueue
from ring import indices
from ring.descriptors import (
    DESC_SIZE,
    RX_DESC,
    RXD_ERR_REFUSED,
    RXD_STAT_DD,
    TX_DESC,
    TXD_CMD_EOP,
    TXD_CMD_IFCS,
    TXD_CMD_RS,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from ring.memory import PhysicalMemory
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion
from tests.conftest import seq_frame
from tests.device.raw import DmaLog, watch
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection
from world import scenario as scenario_mod
from world.build import World
from world.emulated import Emulated

GOOD = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS  # a whole packet in one descriptor
MORE = TXD_CMD_IFCS | TXD_CMD_RS  # a fragment: more of the packet follows
READ, WRITE = DEVICE_READ, DEVICE_WRITE
RING = 64  # descriptors per raw ring


def build_world(
    protection: Protection | str, engine: EngineMode | str = EngineMode.INLINE, audit: AuditSink | None = None
) -> World[Emulated]:
    """The embedded pingpong scenario (alice on nic0, bob on nic1, one cable) in the given mode."""
    base = scenario_mod.load()
    scen = dataclasses.replace(base, protection=Protection(protection), engine=EngineMode(engine))
    return World.build(scen, pcap=False, audit=audit)


@dataclass
class Buffer:
    """A tenant DMA region and the pin on (part of) it."""

    region: DmaRegion
    pin: int | None

    @property
    def bus(self) -> int:
        return self.region.bus

    @property
    def end(self) -> int:
        return self.region.bus + self.region.size

    def fill(self, offset: int, data: bytes) -> None:
        self.region.view[offset : offset + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, offset: int, length: int) -> bytes:
        return self.region.view[offset : offset + length].tobytes()


class RawTx:
    """A tenant's TX queue written by hand: descriptors at ``tail``, then one doorbell."""

    def __init__(self, proc: Process, nic: str = "nic0", size: int = RING) -> None:
        self.q = TxQueue(proc, nic, size=size)
        self.size = size

    def put(self, addr: int, length: int, cmd: int = GOOD, cso: int = 0, css: int = 0) -> int:
        """Write one descriptor at the tail; return its slot."""
        slot = self.q.tail
        desc = np.zeros(1, dtype=TX_DESC)
        desc["addr"], desc["length"], desc["cmd"] = addr, length, cmd
        desc["cso"], desc["css"] = cso, css
        self.q.ring[slot] = desc[0]
        self.q.tail = indices.advance(slot, 1, self.size)
        return slot

    def doorbell(self, tail: int | None = None) -> None:
        self.q.doorbell.write32(self.q.handle.tail_offset, self.q.tail if tail is None else tail)

    def pool_frame(self, i: int, data: bytes) -> int:
        """Copy ``data`` into pool buffer ``i`` (pinned for device read) and return its bus address."""
        pool = self.q.pool
        i %= pool.count
        pool.memory[i * pool.buf_size : i * pool.buf_size + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return int(pool.bus_addr[i])

    def send(self, seq: int, size: int = 64) -> int:
        """A good one-descriptor frame from the pool; return its slot (the doorbell is the caller's)."""
        return self.put(self.pool_frame(seq, seq_frame(seq, size)), size)

    def status(self, slot: int) -> int:
        return int(self.q.ring["status"][slot])

    def refused(self, slot: int) -> bool:
        return self.status(slot) == TXD_STAT_DD | TXD_STAT_REFUSED


class RawRx:
    """A tenant's RX queue opened through the system calls, with no buffer posted yet."""

    def __init__(self, proc: Process, nic: str = "nic1", size: int = RING) -> None:
        self.proc, self.size = proc, size
        self.region = proc.alloc_dma(size * DESC_SIZE)
        self.handle = proc.open_rx_queue(nic, 0, self.region, size)
        self.ring = self.region.view.view(RX_DESC)
        self.tail = 0

    def put(self, addr: int) -> int:
        slot = self.tail
        desc = np.zeros(1, dtype=RX_DESC)
        desc["addr"] = addr
        self.ring[slot] = desc[0]
        self.tail = indices.advance(slot, 1, self.size)
        return slot

    def doorbell(self, tail: int | None = None) -> None:
        self.handle.doorbell.write32(self.handle.tail_offset, self.tail if tail is None else tail)

    def refused(self, slot: int) -> bool:
        """The kernel's refusal mark: DD without EOP, RXD_ERR_REFUSED, length 0."""
        d = self.ring[slot]
        return int(d["status"]) == RXD_STAT_DD and int(d["errors"]) == RXD_ERR_REFUSED and int(d["length"]) == 0

    def received(self, slot: int) -> bytes | None:
        """The frame the device completed into ``slot`` (None if the slot is not done with data)."""
        d = self.ring[slot]
        if not int(d["status"]) & RXD_STAT_DD or int(d["errors"]) or not int(d["length"]):
            return None
        addr = int(d["addr"])
        if self.proc.kernel.iommu is not None:  # the descriptor holds an IOVA: the tenant's own pointer
            addr = self.proc.virt_to_phys(addr)
        return self.proc.kernel.memory.data[addr : addr + int(d["length"])].tobytes()


@dataclass
class Env:
    """One World plus what the tests observe of it."""

    world: World[Emulated]
    dma: DmaLog
    wire: list[bytes] = field(default_factory=list)  # frames that left nic0 (alice) or nic1 (bob), in order

    @property
    def kernel(self) -> Kernel:
        return self.world.kernel

    @property
    def memory(self) -> PhysicalMemory:
        return self.world.memory

    @property
    def protection(self) -> Protection:
        return self.world.kernel.protection

    @property
    def alice(self) -> Process:
        return self.world.tenants["alice"]

    @property
    def bob(self) -> Process:
        return self.world.tenants["bob"]

    @property
    def nic0(self) -> E1000:
        return self.world.nics["nic0"]

    @property
    def nic1(self) -> E1000:
        return self.world.nics["nic1"]

    @property
    def audit(self) -> MemoryAudit:
        sink = self.kernel.audit
        assert isinstance(sink, MemoryAudit)
        return sink

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.audit.records if kind is None or r["kind"] == kind]

    def buffer(self, proc: Process, nbytes: int, access: int | None, pin_bytes: int | None = None) -> Buffer:
        """Allocate ``nbytes``; pin the first ``pin_bytes`` (default: all) with ``access`` (None: no pin)."""
        region = proc.alloc_dma(nbytes)
        pin = None if access is None else proc.pin(region.vaddr, pin_bytes or nbytes, access)
        return Buffer(region, pin)

    def data_accesses(self, purpose: str, allowed: bool | None = None) -> list[tuple[int, int]]:
        """``(bus address, length)`` of each access of ``purpose`` the device tried (or only allowed / blocked ones)."""
        out = []
        for b in self.dma.of(purpose):
            for addr, length, ok in zip(b.addrs.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
                if allowed is None or ok == allowed:
                    out.append((int(addr), int(length)))
        return out

    def touched(self, lo: int, hi: int) -> bool:
        """Did the device try to move any byte of ``[lo, hi)`` (bus or physical address), by any access?"""
        for b in self.dma.batches:
            for addr, phys, length in zip(b.addrs.tolist(), b.phys.tolist(), b.lengths.tolist(), strict=True):
                for start in {addr, phys}:
                    if start < hi and lo < start + length:
                        return True
        return False


@pytest.fixture
def make_env() -> Iterator[Callable[..., Env]]:
    """Factory: ``make_env(protection, engine=..., audit=...)``; every world is closed after the test."""
    built: list[World[Emulated]] = []

    def make(
        protection: Protection | str, engine: EngineMode | str = EngineMode.INLINE, audit: AuditSink | None = None
    ) -> Env:
        world = build_world(protection, engine, audit)
        built.append(world)
        env = Env(world, watch(world.nics["nic0"], world.nics["nic1"]))
        world.backend.cables[0].taps.append(lambda _src, frames, _stamps: env.wire.extend(frames))
        return env

    yield make
    for world in built:
        world.close()


def one_record(env: Env, kind: str, ring_index: int) -> dict[str, Any]:
    """The single audit record of ``kind`` at ``ring_index`` (fails if there are none or several)."""
    found = [r for r in env.records(kind) if r["ring_index"] == ring_index]
    assert len(found) == 1, f"expected one {kind} record at slot {ring_index}, got {found}"
    return found[0]


def assert_tx_refused(env: Env, tx: RawTx, slot: int, reason: str, check_untouched: bool = True) -> dict[str, Any]:
    """A refused TX descriptor: refusal status in the user slot, one audit record, its buffer never DMA'd."""
    rec = one_record(env, "tx", slot)
    assert rec["reason"] == reason, rec
    assert tx.refused(slot), f"slot {slot} status {tx.status(slot):#x}"
    addr, length = int(rec["desc"]["addr"]), int(rec["desc"]["length"])
    if check_untouched and length:
        assert not env.touched(addr, addr + length), f"the device touched the refused buffer {addr:#x}+{length}"
    return rec


def assert_rx_refused(env: Env, rx: RawRx, slot: int, reason: str) -> dict[str, Any]:
    """A refused RX descriptor: refusal mark, one audit record, no DMA anywhere in its receive buffer."""
    rec = one_record(env, "rx", slot)
    assert rec["reason"] == reason, rec
    assert rx.refused(slot), rx.ring[slot]
    addr = int(rec["desc"]["addr"])
    assert not env.touched(addr, addr + 2048), f"the device touched the refused RX buffer {addr:#x}"
    return rec
