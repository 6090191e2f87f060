"""One machine that times one doorbell: the tenant's tail write for ``n`` new TX descriptors.

What is timed (``DoorbellRig.time_one``) is the single MMIO store a
kernel-bypass driver makes after writing ``n`` descriptors into its ring: the
tail register write (TDT).  Under ``verifier`` and ``unsafe-inplace`` that
store traps into the kernel (verifier/kernel.py, ``register_write``), which
judges the tail, snapshots the ``n`` new descriptors once, checks them
against the tenant's pins, posts them to the ring the device reads, rings
the device's own TDT and returns; under ``none`` and ``iommu`` it goes
straight to the device's register.  Writing the descriptors into the ring
happens before the clock starts: it is the tenant's own memory, no crossing.

The device is held out of the measurement by default, as on real hardware a
posted MMIO write returns before the NIC has fetched anything: the rig
clears the transmitter's enable bit (TCTL.EN, manual 13.4.33) before the
timed write, so the e1000 only latches its tail; then, untimed, it sets
TCTL.EN again and the device fetches, gathers and sends the ``n`` frames
(nic1 at the far end of the cable has its receiver off and counts them
missed), interrupts, and the kernel writes the completions back.  With
``with_device=True`` the transmitter stays on and the clock runs until the
inline engine has done all of that inside the tail write (doorbell to
completion).  The rig writes TCTL through the device's own register bus, as
a test bench's hands would, never through the tenant's window.

Every timed batch starts where it does not wrap around the ring's end (an
untimed filler batch reaches the end first), so each point measures the same
contiguous snapshot; and after each batch the rig checks every descriptor
came back done and not refused, so a number is never the cost of a refusal.
"""

from __future__ import annotations

import time

import numpy as np

from device.e1000 import E1000, EngineMode
from driver.tenant.mempool import Mempool
from driver.tenant.txq import ONE_BUFFER_WORD
from ring import regs
from ring.descriptors import DESC_SIZE, TX_DESC, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.frames import scatter
from ring.memory import PAGE_SIZE
from verifier.modes.protection import Protection
from world.build import World
from world.emulated import Emulated
from world.scenario import CableSpec, NicSpec, Scenario, TenantSpec
from world.traffic import UdpFlow

#: The largest batch a rig takes: its ring holds twice that (a power of two), and e1000 rings stop at 65536 slots.
MAX_BATCH = 16384
FRAME_SIZE = 64  # bytes on the wire, FCS included: the smallest Ethernet frame, so descriptors dominate
BUF_SIZE = 2048  # one buffer per descriptor, as a PMD's mbufs
KERNEL_BYTES = 4 << 20
_MACS = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
_IPS = ("198.18.0.1", "198.18.0.2")


class RigError(RuntimeError):
    """The machine did not do what the measurement assumes (a refused or unfinished descriptor): a bug, not a number."""


def ring_size(max_batch: int) -> int:
    """Slots of the rig's ring: a power of two at least twice ``max_batch`` (>= 8: TDLEN is a multiple of 128 B)."""
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"the largest batch must be between 1 and {MAX_BATCH}, got {max_batch}")
    return max(8, 1 << (2 * max_batch - 1).bit_length())


def scenario(protection: Protection, max_batch: int) -> Scenario:
    """Two e1000s on a cable, one tenant on nic0, memory for its ring and ``max_batch`` buffers."""
    ring_bytes = ring_size(max_batch) * DESC_SIZE
    need = KERNEL_BYTES + 2 * ring_bytes + max_batch * BUF_SIZE + (8 << 20)  # the shadow ring, slack for the rest
    size = -(-need // (1 << 20)) << 20
    return Scenario(
        name="bench-doorbell",
        source="<bench doorbell>",
        seed=1,
        engine=EngineMode.INLINE,
        protection=protection,
        memory_size=max(size, 2 * KERNEL_BYTES),
        kernel_size=KERNEL_BYTES,
        nics=(NicSpec("nic0", _MACS[0]), NicSpec("nic1", _MACS[1])),
        tenants=(TenantSpec("alice", "nic0", _IPS[0]),),
        cables=(CableSpec("nic0", "nic1"),),
    )


class DoorbellRig:
    """A machine in one protection mode whose tenant times one tail write at a time."""

    def __init__(self, protection: Protection, max_batch: int, with_device: bool = False) -> None:
        self.protection = Protection(protection)
        self.max_batch = max_batch
        self.with_device = with_device
        self.size = ring_size(max_batch)
        self.world: World[Emulated] = World.build(scenario(self.protection, max_batch), pcap=False)
        try:
            tenant = self.world.tenants["alice"]
            self.device: E1000 = self.world.nics["nic0"]
            self.region = tenant.alloc_dma(max(self.size * DESC_SIZE, PAGE_SIZE))
            self.ring = self.region.view[: self.size * DESC_SIZE].view(TX_DESC)
            self.words = self.ring.view(np.uint64).reshape(self.size, 2)
            self.pool = Mempool(tenant, max_batch, BUF_SIZE)
            flow = UdpFlow(_MACS[0], _MACS[1], _IPS[0], _IPS[1], FRAME_SIZE)
            frames = flow.frames(0, max_batch)
            ids = np.arange(max_batch, dtype=np.int64)
            scatter(self.pool.memory, self.pool.offsets(ids), frames.lengths, frames.data)
            self.second_word = frames.lengths.astype(np.uint64) | ONE_BUFFER_WORD
            handle = tenant.open_tx_queue("nic0", 0, self.region, self.size)
            self.bus, self.tail_offset = handle.doorbell, handle.tail_offset
            self.tctl = self.device.read32(regs.TCTL) | regs.TCTL_EN
            self.tail = 0
            self._hold_transmitter()
        except BaseException:
            self.world.close()
            raise

    @property
    def compiled(self) -> bool:
        """Whether the kernel's compiled snapshot-check-post would run (the accelerators are in use)."""
        from verifier.rules import fastpath

        return fastpath.enabled() is not None

    def time_one(self, n: int) -> int:
        """Nanoseconds of the tail write that hands ``n`` new descriptors over (see the module's docstring)."""
        start, new_tail = self.prepare(n)
        bus, offset = self.bus, self.tail_offset
        t0 = time.perf_counter_ns()
        bus.write32(offset, new_tail)
        elapsed = time.perf_counter_ns() - t0
        self.finish(start, n)
        return elapsed

    def close(self) -> None:
        self.world.close()

    def __enter__(self) -> DoorbellRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- untimed: what the tenant does before the doorbell, and the device after it ----------------
    def prepare(self, n: int) -> tuple[int, int]:
        """Write ``n`` descriptors where they do not wrap (after a filler batch if need be): (first slot, new tail)."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch must be between 1 and {self.max_batch} descriptors, got {n}")
        if self.tail + n > self.size:  # reach the ring's end untimed, so the timed snapshot is one piece
            self._post(self.size - self.tail)
        start = self.tail
        return start, self._write(n)

    def _write(self, n: int) -> int:
        """Write ``n`` descriptors (one 64-byte frame each, status clear) from the tail; the new tail."""
        tail = self.tail
        words = self.words[tail : tail + n]
        words[:, 0] = self.pool.bus_addr[:n]
        words[:, 1] = self.second_word[:n]
        self.tail = (tail + n) % self.size
        return self.tail

    def _post(self, n: int) -> None:
        start = self.tail
        self.bus.write32(self.tail_offset, self._write(n))
        self.finish(start, n)

    def finish(self, start: int, n: int) -> None:
        """Let the device send what was posted (unless it already did) and check every descriptor came back done."""
        if not self.with_device:
            self.device.write32(regs.TCTL, self.tctl)  # inline: the engine runs inside this write
            self._hold_transmitter()
        status = self.ring["status"][start : start + n]
        if not bool(np.all(status & TXD_STAT_DD)) or bool(np.any(status & TXD_STAT_REFUSED)):
            done = int(np.count_nonzero(status & TXD_STAT_DD))
            refused = int(np.count_nonzero(status & TXD_STAT_REFUSED))
            raise RigError(
                f"{self.protection.value}: of {n} descriptors from slot {start}, {done} came back done and "
                f"{refused} refused; the rig's batches must all be sent"
            )

    def _hold_transmitter(self) -> None:
        if not self.with_device:
            self.device.write32(regs.TCTL, self.tctl & ~regs.TCTL_EN)
