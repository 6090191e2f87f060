"""The attack demo's attacks against a real e1000e in the lab: two layers of defence side by side.

Runs inside the lab VM.  Mallory owns the 82574L (its IOMMU domain holds
her pins and rings); alice is another tenant with a secret page.  Each
attack runs in a fresh ``LabWorld`` in one protection mode:

- ``verifier``: the project's kernel checks the descriptors before the
  doorbell; a hostile one is refused and audited, the real device never
  sees it (its head register does not move) and the IOMMU has nothing to
  fault on;
- ``none``: the doorbell goes straight to the device, which DMAs wherever
  the descriptor points; the real IOMMU (QEMU's VT-d under Linux's
  vfio_iommu_type1) is the only defence left, and the guest kernel logs a
  DMAR fault for the page.  Each fault is matched to the attack by
  address: the attack says which pages only the IOMMU stands in front of.

The threaded-engine race of the attack demo has no counterpart here: QEMU's
e1000e fetches the descriptors inside the doorbell's MMIO write itself
(e1000e_set_tdt -> e1000e_start_xmit), so there is no window to race.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from driver.vfio.tenant import VfioTenant
from lab.guest.kmsg import FAULT_SPACING_S, DmarFault, KernelLog
from lab.guest.world import ETHERTYPE_LOCAL, MAC, NIC, LabWorld
from ring import regs
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC
from ring.frames import FrameBatch
from ring.memory import CANARY_TAG, PAGE_MASK, PAGE_SIZE
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion, Syscalls
from sandbox.demos.attack import CMD, LEAK_LEN, RING, SECRET, post_tx
from verifier.audit.memory import MemoryAudit
from verifier.kernel import KernelError, Process
from verifier.modes.protection import Protection

#: A frame mallory sends herself through PHY loopback (to make the device use her RX descriptors).
PROBE = MAC + MAC + ETHERTYPE_LOCAL + bytes(range(100))
FAULT_WAIT_S = 3.0
#: After the first fault (or none), how long to listen for more before judging.
FAULT_SETTLE_S = 0.3


def page(addr: int) -> int:
    return addr & ~PAGE_MASK


@dataclass(frozen=True)
class Expected:
    """What the IOMMU must report when it alone stands in the way: (write?, page) per DMA it blocks.

    ``some`` means at least one of them (QEMU's VT-d keeps one fault record, so a second fault in
    the same burst may be lost, and the device gives up on a packet at its first failed DMA)."""

    faults: tuple[tuple[bool, int], ...]
    #: device registers that move only if the hostile descriptor reached the device (TDH for a TX attack)
    hostile: tuple[str, ...] = ()

    def allows(self, fault: DmarFault) -> bool:
        return (fault.write, fault.addr) in self.faults


@dataclass
class LabArena:
    """A fresh lab world with mallory (the NIC's owner) and alice, and the evidence collectors."""

    world: LabWorld
    audit: MemoryAudit
    mallory: VfioTenant
    alice: Process
    rx: RxQueue | None = None
    watched: list[tuple[str, int, bytes]] = field(default_factory=list)  # (what, phys, bytes before)
    before: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, bdf: str, protection: Protection) -> LabArena:
        audit = MemoryAudit()
        world = LabWorld.build(bdf, protection, audit)
        try:
            arena = cls(world, audit, world.spawn_owner("mallory"), world.spawn("alice"))
            kernel = world.memory.kernel_frames
            arena.watch("kernel memory", kernel.phys, kernel.nbytes)
        except BaseException:
            world.close()
            raise
        return arena

    # -- helpers the attacks use ---------------------------------------------------------------
    def kernel_addr(self, frame: int) -> int:
        return self.world.memory.kernel_frames.phys + frame * PAGE_SIZE

    def tx_queue(self) -> TxQueue:
        return TxQueue(self.mallory, NIC, size=RING)

    def open_rx(self) -> RxQueue:
        """Mallory's receive queue: whatever the device transmits comes back here (PHY loopback)."""
        self.rx = RxQueue(self.mallory, NIC, size=RING)
        return self.rx

    def secret_page(self) -> tuple[DmaRegion, int]:
        """Alice's pinned page with a marked secret; returns it and its physical address."""
        region = self.alice.alloc_dma(PAGE_SIZE)
        marker = SECRET + b"alice"
        region.view[: len(marker)] = np.frombuffer(marker, dtype=np.uint8)
        region.view[len(marker) : 256] = 0x5A
        self.alice.pin(region.vaddr, PAGE_SIZE, DEVICE_READ)
        phys = self.alice.virt_to_phys(region.vaddr)
        self.watch("alice's page", phys, PAGE_SIZE)
        return region, phys

    def watch(self, what: str, phys: int, nbytes: int) -> None:
        self.watched.append((what, phys, bytes(self.world.memory.view(phys, nbytes))))

    def mark(self) -> None:
        """Remember the device's ring registers just before the hostile doorbell."""
        bar = self.world.nic.bar
        self.before = {name: bar.read32(reg) for name, reg in REGS_WATCHED.items()}

    def send_probe(self, txq: TxQueue) -> None:
        txq.tx_burst(FrameBatch.from_frames([PROBE]))

    # -- evidence ---------------------------------------------------------------------------------
    def moved(self, names: tuple[str, ...]) -> list[str]:
        """Which of ``names`` changed since ``mark()``."""
        bar = self.world.nic.bar
        return [name for name in names if self.before and bar.read32(REGS_WATCHED[name]) != self.before[name]]

    def leaked(self) -> bool:
        """A kernel canary or alice's secret in a frame the device sent (and looped back to mallory)."""
        if self.rx is None:
            return False
        self.world.nic.poll()
        got = bytes(self.rx.rx_burst().data)
        return CANARY_TAG in got or SECRET in got

    def corrupted(self) -> list[str]:
        memory = self.world.memory
        return [what for what, phys, old in self.watched if bytes(memory.view(phys, len(old))) != old]


REGS_WATCHED = {"TDH": regs.TDH, "RDH": regs.RDH, "TDBAL": regs.TDBAL, "TDBAH": regs.TDBAH}


def raw_rx_ring(sys: Syscalls, addrs: list[int]) -> None:
    """Open RX queue 0 by hand and post buffers at the given bus addresses (no pool, no checks of our own)."""
    ring = sys.alloc_dma(RING * DESC_SIZE)
    handle = sys.open_rx_queue(NIC, 0, ring, RING)
    ring.view.view(RX_DESC)["addr"][: len(addrs)] = addrs
    handle.doorbell.write32(handle.tail_offset, len(addrs))


# -- the attacks ------------------------------------------------------------------------------------


def tx_kernel_memory(a: LabArena) -> Expected:
    txq = a.tx_queue()
    a.open_rx()
    addr = a.kernel_addr(7)
    a.mark()
    post_tx(txq, addr, LEAK_LEN)
    return Expected(((False, page(addr)),), ("TDH",))


def tx_other_tenant(a: LabArena) -> Expected:
    txq = a.tx_queue()
    a.open_rx()
    _, phys = a.secret_page()  # pinned by alice: in the kernel's pin table, not in this device's domain
    a.mark()
    post_tx(txq, phys, LEAK_LEN)
    return Expected(((False, page(phys)),), ("TDH",))


def rx_into_kernel(a: LabArena) -> Expected:
    txq = a.tx_queue()
    addr = a.kernel_addr(9)
    a.mark()
    raw_rx_ring(a.mallory, [addr])
    a.send_probe(txq)  # comes back through PHY loopback into the posted "buffer"
    return Expected(((True, page(addr)),), ("RDH",))


def straddle_pin_end(a: LabArena) -> Expected:
    txq = a.tx_queue()
    a.open_rx()
    mine = a.mallory.alloc_dma(PAGE_SIZE)
    a.mallory.pin(mine.vaddr, PAGE_SIZE, DEVICE_READ)
    _, phys = a.secret_page()
    mine_phys = a.mallory.virt_to_phys(mine.vaddr)
    if phys != mine_phys + PAGE_SIZE:
        a.notes.append("setup: alice's page is not right after mallory's")
    a.mark()
    post_tx(txq, mine.bus + PAGE_SIZE - LEAK_LEN + 1, LEAK_LEN)  # the last byte is one past the pin
    return Expected(((False, page(mine_phys + PAGE_SIZE)),), ("TDH",))


def addr_wrap(a: LabArena) -> Expected:
    txq = a.tx_queue()
    a.open_rx()
    a.mark()
    addr = 2**64 - 32
    post_tx(txq, addr, LEAK_LEN)  # addr + len wraps to 96
    return Expected(((False, page(addr)), (False, 0)), ("TDH",))


def unpin_in_flight(a: LabArena) -> Expected:
    txq = a.tx_queue()
    region = a.mallory.alloc_dma(PAGE_SIZE)
    handle = a.mallory.pin(region.vaddr, PAGE_SIZE, DEVICE_WRITE)
    phys = a.mallory.virt_to_phys(region.vaddr)
    a.mark()
    raw_rx_ring(a.mallory, [region.bus, region.bus + 2048])
    outcome = a.mallory.unpin(handle)
    try:
        a.mallory.free_dma(region)
        freed = True
    except KernelError:
        freed = False
    victim = a.alice.alloc_dma(PAGE_SIZE)  # first fit: the frame mallory just freed, if she could
    victim.view[:] = 0x41
    a.watch("alice's new buffer", a.alice.virt_to_phys(victim.vaddr), PAGE_SIZE)
    a.notes.append(f"unpin {outcome}, free {'done' if freed else 'refused'}")
    a.send_probe(txq)
    # no register to watch: with the unpin deferred, the frame rightly lands in mallory's still-pinned buffer
    return Expected(((True, page(phys)),))


def repoint_ring_base(a: LabArena) -> Expected:
    txq = a.tx_queue()
    a.open_rx()
    fake = a.mallory.alloc_dma(PAGE_SIZE)
    a.mallory.pin(fake.vaddr, PAGE_SIZE, DEVICE_READ)
    addr = a.kernel_addr(13)
    descs = fake.view.view(TX_DESC)
    descs[0]["addr"], descs[0]["length"], descs[0]["cmd"] = addr, LEAK_LEN, CMD
    window = a.mallory.map_registers(NIC)
    a.mark()
    window.write32(regs.TDBAL, fake.bus & 0xFFFF_FFFF)
    window.write32(regs.TDBAH, fake.bus >> 32)
    window.write32(regs.TDLEN, RING * DESC_SIZE)
    window.write32(regs.TDH, 0)
    window.write32(txq.handle.tail_offset, 1)
    # the fetch of the fake ring is allowed (mallory pinned it), the data read is not, and the
    # status write-back into a page pinned for device *reads* only is not either
    fake_phys = a.mallory.virt_to_phys(fake.vaddr)
    return Expected(((False, page(addr)), (True, page(fake_phys))), ("TDBAL",))


LAB_ATTACKS: list[tuple[str, str, Callable[[LabArena], Expected]]] = [
    ("tx-kernel-memory", "send kernel memory out (TX from a kernel address)", tx_kernel_memory),
    ("tx-other-tenant", "read another tenant's buffer (TX from alice's page)", tx_other_tenant),
    ("rx-into-kernel", "DMA-write a received frame into kernel memory", rx_into_kernel),
    ("straddle-pin-end", "straddle the end of its own pin by one byte", straddle_pin_end),
    ("addr-wrap", "wrap addr + len past 2**64", addr_wrap),
    ("unpin-in-flight", "unpin and free an RX buffer the device still owns", unpin_in_flight),
    ("repoint-ring-base", "repoint TDBAL at a ring of its own making", repoint_ring_base),
]


@dataclass
class LabAttackResult:
    name: str
    title: str
    protection: Protection
    audit_reasons: list[str]
    faults: list[DmarFault]
    expected: Expected
    moved: list[str]  # of the attack's ``hostile`` registers, those that changed after the hostile doorbell
    leaked: bool
    corrupted: list[str]
    notes: list[str]

    @property
    def matched(self) -> list[DmarFault]:
        return [f for f in self.faults if self.expected.allows(f)]

    @property
    def unexplained(self) -> list[DmarFault]:
        return [f for f in self.faults if not self.expected.allows(f)]

    @property
    def blocked_by(self) -> str:
        """``verifier`` (refused and audited, no DMA), ``iommu`` (DMA faulted), or "" (it got through)."""
        if self.leaked or self.corrupted:
            return ""
        if self.protection is not Protection.NONE:
            return "verifier" if self.audit_reasons and not self.faults else ""
        return "iommu" if self.matched and not self.unexplained else ""


class FaultPacer:
    """Keeps DMA faults FAULT_SPACING_S apart, so the kernel's rate limit prints every one (lab/guest/kmsg.py)."""

    def __init__(self) -> None:
        self.last = 0.0

    def wait(self) -> None:
        pause = self.last + FAULT_SPACING_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def faulted(self) -> None:
        self.last = time.monotonic()


PACER = FaultPacer()


def run_lab_attack(bdf: str, name: str, protection: Protection) -> LabAttackResult:
    """One attack in a fresh lab world; the kernel log is read for faults while it runs."""
    entry = next((e for e in LAB_ATTACKS if e[0] == name), None)
    if entry is None:
        raise KeyError(name)
    key, title, attack = entry
    PACER.wait()
    log = KernelLog()
    try:
        arena = LabArena.build(bdf, Protection(protection))
    except BaseException:
        log.close()
        raise
    try:
        expected = attack(arena)
        arena.world.nic.poll()
        # only the IOMMU stands in the way in mode none: wait for its first fault, then a moment for more
        first = 1 if protection is Protection.NONE else 0
        faults = log.wait_faults(first, FAULT_WAIT_S)
        time.sleep(FAULT_SETTLE_S)
        faults += log.wait_faults(0, 0.0)
        if faults:
            PACER.faulted()
        return LabAttackResult(
            name=key,
            title=title,
            protection=Protection(protection),
            audit_reasons=[str(r["reason"]) for r in arena.audit.records],
            faults=faults,
            expected=expected,
            moved=arena.moved(expected.hostile),
            leaked=arena.leaked(),
            corrupted=arena.corrupted(),
            notes=arena.notes,
        )
    finally:
        arena.world.close()
        log.close()
