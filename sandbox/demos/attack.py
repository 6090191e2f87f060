"""``nic-sandbox demo attack``: a malicious tenant against each protection mode.

Mallory owns nic2 and tries eight classic DMA attacks; eve, on the other end
of mallory's cable, receives whatever mallory sends and feeds mallory's RX
queue.  Every attack runs in a fresh world (same scenario and seed) that
shares one audit log, and is judged by the independent oracle (fuzz/oracle/judge.py):
a kernel canary or alice's secret on a wire, a DMA into a frame the queue's
owner does not own, or a watched region that changed.  Afterwards alice and
bob run honest pingpong traffic in the same mode to show that the defences
cost nothing in correctness.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.e1000 import EngineMode
from driver.tenant.txq import TxQueue
from fuzz.arena import watching
from fuzz.oracle.audit import audit_count
from fuzz.oracle.judge import Escape, Oracle
from ring import indices, regs
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PAGE_SIZE
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion
from sandbox.demos import pingpong
from verifier.audit.log import rotated_siblings
from verifier.audit.read import read_records
from verifier.audit.rejections import AuditSink
from verifier.kernel import KernelError, Process
from verifier.modes.protection import Protection
from world.build import World
from world.emulated import Emulated
from world.scenario import Scenario
from world.traffic import UdpFlow

CMD = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
RING = 64
LEAK_LEN = 128
SECRET = b"ALICE-SECRET:"


@dataclass
class AttackResult:
    name: str
    title: str
    succeeded: bool
    reason: str
    audit_seq: int | None
    evidence: bytes = b""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "succeeded": self.succeeded, "reason": self.reason, "audit_seq": self.audit_seq}


@dataclass
class Arena:
    """A fresh world for one attack, with the oracle attached everywhere."""

    world: World[Emulated]
    oracle: Oracle
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, scen: Scenario, audit: AuditSink, engine: EngineMode | None = None) -> Arena:
        if engine is not None:
            scen = dataclasses.replace(scen, engine=engine)
        world = World.build(scen, pcap=False, audit=audit)
        oracle = watching(world)
        kernel_region = world.memory.kernel_frames
        oracle.watch("kernel memory", kernel_region.phys, kernel_region.nbytes)
        return cls(world, oracle)

    def tenant(self, name: str) -> Process:
        return self.world.tenants[name]

    def settle(self) -> None:
        self.world.settle(2.0)
        self.oracle.check_integrity()

    def kernel_addr(self, frame: int) -> int:
        """A physical address inside the kernel's secret region (a canary sits at each frame start)."""
        return self.world.memory.kernel_frames.phys + frame * PAGE_SIZE

    def secret_buffer(self, pin: bool = True) -> tuple[DmaRegion, bytes]:
        """Alice fills one page with a marked secret (what another tenant must never read)."""
        alice = self.tenant("alice")
        region = alice.alloc_dma(PAGE_SIZE)
        marker = SECRET + bytes(f"{region.vaddr:x}", "ascii")
        region.view[: len(marker)] = np.frombuffer(marker, dtype=np.uint8)
        region.view[len(marker) : 256] = 0x5A
        if pin:
            alice.pin(region.vaddr, PAGE_SIZE, DEVICE_READ)
        self.oracle.secrets[marker] = "alice"
        return region, marker

    def eve_sends(self, count: int = 1) -> None:
        """Eve sends frames to mallory's NIC (so mallory's RX descriptors get used)."""
        spec = {t.name: t for t in self.world.scenario.tenants}
        mac = {n.name: n.mac for n in self.world.scenario.nics}
        flow = UdpFlow(mac["nic3"], mac["nic2"], spec["eve"].ip, spec["mallory"].ip, 256)
        TxQueue(self.tenant("eve"), "nic3", size=RING).tx_burst(flow.frames(0, count))


def post_tx(txq: TxQueue, addr: int, length: int, cmd: int = CMD) -> int:
    """Write one raw descriptor at the tail of a tenant's TX ring and ring the doorbell; return its slot."""
    slot = txq.tail
    desc = np.zeros(1, dtype=TX_DESC)
    desc["addr"], desc["length"], desc["cmd"] = addr, length, cmd
    txq.ring[slot] = desc[0]
    txq.tail = indices.advance(slot, 1, txq.size)
    txq.doorbell.write32(txq.handle.tail_offset, txq.tail)
    return slot


def raw_rx_ring(proc: Process, nic: str, addrs: list[int]) -> None:
    """Open an RX queue by hand and post buffers at the given bus addresses."""
    ring = proc.alloc_dma(RING * DESC_SIZE)
    handle = proc.open_rx_queue(nic, 0, ring, RING)
    descs = ring.view.view(RX_DESC)
    descs["addr"][: len(addrs)] = addrs
    handle.doorbell.write32(handle.tail_offset, len(addrs))


# -- the attacks -----------------------------------------------------------------------


def tx_kernel_memory(a: Arena) -> str:
    txq = TxQueue(a.tenant("mallory"), "nic2", size=RING)
    post_tx(txq, a.kernel_addr(7), LEAK_LEN)
    return "no DMA: the device was never given the descriptor"


def tx_other_tenant(a: Arena) -> str:
    region, _ = a.secret_buffer()
    phys = a.tenant("alice").virt_to_phys(region.vaddr)
    txq = TxQueue(a.tenant("mallory"), "nic2", size=RING)
    post_tx(txq, phys, LEAK_LEN)
    return "no DMA of alice's frame"


def rx_into_kernel(a: Arena) -> str:
    raw_rx_ring(a.tenant("mallory"), "nic2", [a.kernel_addr(9)])
    a.eve_sends()
    return "no DMA write reached kernel memory"


def straddle_pin_end(a: Arena) -> str:
    mallory = a.tenant("mallory")
    mine = mallory.alloc_dma(PAGE_SIZE)
    mallory.pin(mine.vaddr, PAGE_SIZE, DEVICE_READ)
    secret, _ = a.secret_buffer()
    if a.tenant("alice").virt_to_phys(secret.vaddr) != mallory.virt_to_phys(mine.vaddr) + PAGE_SIZE:
        a.notes.append("setup: alice's page is not right after mallory's")
    txq = TxQueue(mallory, "nic2", size=RING)
    post_tx(txq, mine.bus + PAGE_SIZE - LEAK_LEN + 1, LEAK_LEN)  # the last byte is one past the pin
    return "the byte past the pin was never read"


def addr_wrap(a: Arena) -> str:
    txq = TxQueue(a.tenant("mallory"), "nic2", size=RING)
    post_tx(txq, 2**64 - 32, LEAK_LEN)  # addr + len wraps to 96
    return "the device's bus refused the wrapping address (master abort), no check was involved"


def toctou_race(a: Arena) -> str:
    """Post a good descriptor, ring, then rewrite it before the device reads it (threaded engine)."""
    mallory = a.tenant("mallory")
    txq = TxQueue(mallory, "nic2", size=RING)
    good = mallory.alloc_dma(PAGE_SIZE)
    mallory.pin(good.vaddr, PAGE_SIZE, DEVICE_READ)
    audit = a.world.kernel.audit
    for _attempt in range(20):  # a racing attacker retries until it wins or is caught
        seq = audit_count(audit)
        slot = post_tx(txq, good.bus, LEAK_LEN)
        txq.ring["addr"][slot] = a.kernel_addr(11)  # the rewrite, right after the doorbell
        a.settle()
        if a.oracle.escapes or audit_count(audit) != seq:
            break
        txq.reap()
    return "the device read the kernel's snapshot; the rewrite changed only the user ring"


def unpin_in_flight(a: Arena) -> str:
    mallory = a.tenant("mallory")
    region = mallory.alloc_dma(PAGE_SIZE)
    handle = mallory.pin(region.vaddr, PAGE_SIZE, DEVICE_WRITE)
    raw_rx_ring(mallory, "nic2", [region.bus, region.bus + 2048])
    outcome = mallory.unpin(handle)
    try:
        mallory.free_dma(region)
        freed = True
    except KernelError:
        freed = False
    alice = a.tenant("alice")
    victim = alice.alloc_dma(PAGE_SIZE)
    victim.view[:] = 0x41
    phys = alice.virt_to_phys(victim.vaddr)
    a.oracle.watch("alice's new buffer", phys, PAGE_SIZE)
    a.notes.append(f"unpin {outcome}, free {'done' if freed else 'refused'}")
    a.eve_sends()
    return f"unpin was {outcome} and the free was {'done' if freed else 'refused'}: the frame stayed mallory's"


def repoint_ring_base(a: Arena) -> str:
    mallory = a.tenant("mallory")
    txq = TxQueue(mallory, "nic2", size=RING)
    fake = mallory.alloc_dma(PAGE_SIZE)
    mallory.pin(fake.vaddr, PAGE_SIZE, DEVICE_READ)
    descs = fake.view.view(TX_DESC)
    descs[0]["addr"], descs[0]["length"], descs[0]["cmd"] = a.kernel_addr(13), LEAK_LEN, CMD
    window = mallory.map_registers("nic2")
    window.write32(regs.TDBAL, fake.bus & 0xFFFF_FFFF)
    window.write32(regs.TDBAH, fake.bus >> 32)
    window.write32(regs.TDLEN, RING * DESC_SIZE)
    window.write32(regs.TDH, 0)
    window.write32(txq.handle.tail_offset, 1)
    return "the register writes never reached the device"


ATTACKS: list[tuple[str, str, Callable[[Arena], str], EngineMode | None]] = [
    ("tx-kernel-memory", "send kernel memory out (TX from a kernel address)", tx_kernel_memory, None),
    ("tx-other-tenant", "read another tenant's buffer (TX from alice's page)", tx_other_tenant, None),
    ("rx-into-kernel", "DMA-write a received frame into kernel memory", rx_into_kernel, None),
    ("straddle-pin-end", "straddle the end of its own pin by one byte", straddle_pin_end, None),
    ("addr-wrap", "wrap addr + len past 2**64", addr_wrap, None),
    ("toctou-race", "rewrite a descriptor after the doorbell (threaded engine)", toctou_race, EngineMode.THREADED),
    ("unpin-in-flight", "unpin and free an RX buffer the device still owns", unpin_in_flight, None),
    ("repoint-ring-base", "repoint TDBAL at a ring of its own making", repoint_ring_base, None),
]


def _first_record_reason(audit: AuditSink, seq: int) -> str | None:
    """The reason code of record ``seq``: read back from the log file, or from memory."""
    path = audit.path
    if path is None:
        for item in audit.since(seq):
            if isinstance(item, dict):
                return str(item["reason"])
            if len(item):
                return item.names[int(item.reason[0])]
        return None
    audit.commit()
    for record in read_records([path, *(p for _, p in rotated_siblings(path))]):
        if record["seq"] >= seq:
            return str(record["reason"])
    return None


def run_attack(scen: Scenario, audit: AuditSink, name: str) -> AttackResult:
    matches = [entry for entry in ATTACKS if entry[0] == name]
    if not matches:
        raise KeyError(name)
    key, title, attack, engine = matches[0]
    before = audit_count(audit)
    arena = Arena.build(scen, audit, engine)
    try:
        fallback = attack(arena)
        arena.settle()
    finally:
        arena.world.close()
    after = audit_count(audit)
    seq = before if after > before else None
    escapes: list[Escape] = arena.oracle.escapes
    if escapes:
        leaked = next((e.evidence for e in escapes if e.evidence), b"")
        return AttackResult(key, title, True, escapes[0].what, seq, leaked)
    if seq is not None:
        reason = _first_record_reason(audit, before) or "audited"
        return AttackResult(key, title, False, f"refused and audited ({reason})", seq)
    return AttackResult(key, title, False, fallback, None)


@dataclass
class AttackReport:
    protection: Protection
    results: list[AttackResult]
    honest: pingpong.PingPongReport
    seconds: float

    @property
    def stopped_everything(self) -> bool:
        """No attack got through and the honest tenants' traffic beside them arrived intact."""
        return not any(r.succeeded for r in self.results) and self.honest.clean


def run(scen: Scenario, audit: AuditSink, honest_frames: int = 2000) -> AttackReport:
    start = time.perf_counter()
    results = [run_attack(scen, audit, name) for name, *_ in ATTACKS]
    with World.build(scen, pcap=False, audit=audit) as world:
        honest = pingpong.run(world, honest_frames, 128, 32)
    return AttackReport(scen.protection, results, honest, time.perf_counter() - start)
