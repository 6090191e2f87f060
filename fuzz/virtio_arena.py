"""The ``virtio`` machine: the attack scenario on emulated virtio-net NICs, mallory's raw virtqueues, the oracle.

The same four tenants as the e1000 arena (fuzz/arena.py): alice holds a secret,
mallory attacks from nic2, eve on nic3 receives what mallory sends and feeds
her receive queue.  The NICs are virtio-net on virtio-mmio (world/virtio.py),
inline, so a seed gives the same run.  Mallory drives her transmitq1 and
receiveq1 by hand: she writes descriptors into her table, indirect tables into
her ``scratch`` page (pinned device-read), available entries and the available
index as she likes, and notifies (``virtq``); she may also store into any
register of nic2's window (``reg``: the used ring repointed).  Virtio NICs run
protection ``none`` and ``verifier`` only (verifier/virtio/gate.py).

Memory map (first fit after the kernel's frames; all before any virtqueue is
opened, so the addresses are the same in both modes)::

    mallory: TX and RX virtqueues (queue size 32, one page each),
             scratch (1 page, device-read: indirect tables), 2 pages device-read (TX buffers),
             2 pages device-write (RX buffers), 2 pages read-write, 2 pages mapped, never pinned
    alice:   2 pages of secret (device-read pin), 2 pages of RX buffers (device-write pin)

The oracle watches every DMA engine and the cable as in the e1000 arena, and
reads mallory's virtqueues itself (fuzz/oracle/virtq.py): rules, refusals,
chains that never come back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driver.tenant.virtio_queue import VirtioTxQueue
from fuzz.arena import (
    FRAME_LEN,
    MAX_BATCH,
    SCENARIO,
    SECRET,
    Arena,
    MemoryMap,
    attack_pins,
    guard_kernel_and_alice,
    plant_marker,
    watching,
)
from fuzz.oracle.queues import QueueWatch
from fuzz.oracle.virtq import QueueView, VirtqJudge
from ring.descriptors import RX_DESC, TX_DESC
from ring.frames import FrameBatch
from ring.syscalls import DmaRegion
from ring.virtio import QUEUE_NOTIFY, RECEIVEQ, TRANSMITQ, VIRTQ_DESC, VirtqLayout, avail_dtype
from verifier.audit.rejections import AuditSink
from verifier.kernel import Process
from verifier.modes.protection import Protection
from verifier.virtio.gate import SUPPORTED
from world import scenario
from world.reset import Snapshot
from world.virtio import virtio_world

MACHINE = "virtio"
#: Mallory's virtqueues: small, so a chain of queue size + 1 or an avail jump of size + 1 is cheap to build.
QUEUE = 32
QUEUES = {"tx": TRANSMITQ, "rx": RECEIVEQ}
#: The protection modes a virtio NIC runs under (the kernel refuses the others when it attaches one).
MODES = SUPPORTED


@dataclass
class RawVirtq:
    """One of mallory's virtqueues, written by hand: its table, available ring and her own available count."""

    region: DmaRegion
    index: int
    desc: npt.NDArray[np.void]
    avail: npt.NDArray[np.void]  # the available ring, one record (flags, idx, ring[], used_event)
    count: int = 0  # free-running: the entries she has written (the index she would publish)

    @classmethod
    def open(cls, proc: Process, nic: str, index: int, region: DmaRegion) -> RawVirtq:
        lay = VirtqLayout.of(QUEUE)
        view = region.view
        desc = view[lay.desc : lay.desc + QUEUE * VIRTQ_DESC.itemsize].view(VIRTQ_DESC)
        avail = view[lay.avail : lay.avail + avail_dtype(QUEUE).itemsize].view(avail_dtype(QUEUE))
        proc.open_virtqueue(nic, index, region, QUEUE)
        return cls(region, index, desc, avail)


@dataclass
class VirtioArena(Arena):
    """The ``virtio`` machine (see the module): an ``Arena`` whose NICs are virtio-net."""

    queues_v: dict[str, RawVirtq] = field(default_factory=dict)
    judge: VirtqJudge | None = None
    eve_q: VirtioTxQueue | None = None

    @classmethod
    def build_virtio(
        cls, protection: Protection | str, seed: int, audit: AuditSink, detail_limit: int | None, resettable: bool
    ) -> VirtioArena:
        base = scenario.load(embedded=SCENARIO)
        scen = dataclasses.replace(base, seed=seed, protection=Protection(protection))
        world = virtio_world(scen, pcap=False, audit=audit)
        memory, tenants = world.memory, world.tenants
        oracle = watching(world, detail_limit)
        mallory, alice = tenants["mallory"], tenants["alice"]
        lay = VirtqLayout.of(QUEUE)
        regions = {kind: mallory.alloc_dma(lay.nbytes) for kind in QUEUES}

        pins = attack_pins(oracle, mallory, alice)
        scratch_region, scratch, read_pin, write_pin, rw_pin, unpinned = (
            pins.scratch_region, pins.scratch, pins.read_pin, pins.write_pin, pins.rw_pin, pins.unpinned
        )  # fmt: skip
        secret_region, alice_secret, alice_rx = pins.secret_region, pins.alice_secret, pins.alice_rx
        marker = SECRET + b"%d" % seed
        plant_marker(secret_region.view, marker)
        kernel_span = guard_kernel_and_alice(oracle, memory, pins, marker)

        # queues last: the kernel's shadow virtqueues are allocated here, after every address above
        raw = {kind: RawVirtq.open(mallory, "nic2", QUEUES[kind], regions[kind]) for kind in QUEUES}
        eve_q = VirtioTxQueue(tenants["eve"], "nic3", QUEUE)
        tid = mallory.tenant_id

        def range_bad(addr: int, length: int, need: int) -> bool:
            return oracle.outside_pins(tid, addr, length, need)

        def read(addr: int, length: int) -> npt.NDArray[np.uint8]:
            return memory.data[addr : addr + length].copy()

        judge = VirtqJudge(read, range_bad, rules=scen.protection is Protection.VERIFIER)
        judge.counts = lambda nic, queue, kind: audit.statistics(nic, queue, kind)
        for kind, q in raw.items():
            phys = mallory.virt_to_phys(q.region.vaddr)
            judge.watch(QueueView("nic2", q.index, kind, memory.data, phys, QUEUE))

        mac = {n.name: n.mac for n in scen.nics}
        frames = np.zeros((MAX_BATCH, FRAME_LEN), dtype=np.uint8)
        frames[:, :6] = np.frombuffer(mac["nic2"], dtype=np.uint8)  # eve (nic3) to mallory (nic2)
        frames[:, 6:12] = np.frombuffer(mac["nic3"], dtype=np.uint8)
        frames[:, 12:14] = (0x08, 0x00)
        frames[:, 14:] = 0xEE
        # TX buffers: a zeroed virtio_net_hdr (a valid one: no offloads) then a frame from mallory to eve
        for page in range(read_pin.size // 2048):
            at = read_pin.phys + page * 2048
            memory.data[at : at + 2048] = 0
            memory.data[at + 12 : at + 18] = np.frombuffer(mac["nic3"], dtype=np.uint8)
            memory.data[at + 18 : at + 24] = np.frombuffer(mac["nic2"], dtype=np.uint8)
        mmap = MemoryMap(memory.size, kernel_span, scratch, read_pin, write_pin, rw_pin, unpinned, alice_secret,
                         alice_rx, unpinned, raw["tx"].region.bus, unpinned, rw_pin, alice_secret, rw_pin, unpinned,
                         ring_size=QUEUE)  # fmt: skip
        empty_tx, empty_rx = np.zeros(0, dtype=TX_DESC), np.zeros(0, dtype=RX_DESC)
        arena = cls(world, oracle, mmap, empty_tx, empty_rx, 0, 0, eve_q, FrameBatch.from_matrix(frames),
                    {"scratch": scratch_region}, QueueWatch({}, oracle.queue_owner, oracle.names),
                    queues_v=raw, judge=judge, eve_q=eve_q)  # fmt: skip
        arena.machine = MACHINE
        if resettable:
            arena.snapshot = Snapshot(world)
            arena.snapshot.take([arena], keep=[audit])
        return arena

    # -- operations ------------------------------------------------------------------------------------
    def virtq(
        self,
        queue: str,
        descs: list[tuple[int, npt.NDArray[np.void]]],
        tables: list[tuple[int, npt.NDArray[np.void]]],
        heads: list[int],
        jump: int = 0,
        notify: bool = True,
    ) -> None:
        """Mallory writes descriptors (slot, row) into her ``queue``'s table and indirect tables (byte offset into
        her scratch page, rows), appends ``heads`` to her available ring, publishes her count plus ``jump`` as
        the available index (``jump`` is not kept: the next call publishes her own count again), and notifies."""
        q = self.queues_v[queue]
        for slot, row in descs:
            q.desc[slot % QUEUE] = row
        scratch = self.map.scratch
        for at, rows in tables:
            raw = rows.view(np.uint8)
            end = min(at + raw.size, scratch.size)
            self.memory.data[scratch.phys + at : scratch.phys + end] = raw[: end - at]
        ring = q.avail["ring"][0]
        for h in heads:
            ring[q.count & (QUEUE - 1)] = h
            q.count = (q.count + 1) & 0xFFFF
        q.avail["idx"][0] = (q.count + jump) & 0xFFFF
        if notify:
            self._notify(q.index)

    def _notify(self, index: int) -> None:
        window = self.mallory.map_registers("nic2")
        assert self.judge is not None
        self.oracle.escapes += self.judge.notified("nic2", index, lambda: window.write32(QUEUE_NOTIFY, index))

    def reg(self, offset: int, value: int) -> None:
        """Mallory stores ``value`` into register ``offset`` of nic2 (a notify is judged as one)."""
        if offset == QUEUE_NOTIFY and value in QUEUES.values():
            self._notify(value)
            return
        self.mallory.map_registers("nic2").write32(offset, value & 0xFFFF_FFFF)

    def eve_sends(self, count: int) -> None:
        """Eve sends ``count`` frames to mallory, one at a time as a wire brings them (the kernel publishes a chain
        that waited for shadow room when an earlier one completes); the oracle expects each to finish a chain."""
        count = max(0, min(count, MAX_BATCH))
        if not count or self.eve_q is None or self.judge is None:
            return
        eve = self.eve_q
        one = FrameBatch(self.eve_frames.data[:FRAME_LEN], self.eve_frames.lengths[:1])
        for _ in range(count):
            self.oracle.escapes += self.judge.frames("nic2", RECEIVEQ, [FRAME_LEN], lambda: eve.tx_burst(one))


def virtio_arena(arena: Arena) -> VirtioArena:
    """``arena`` as the virtio machine; a step that needs it on another machine is a case error."""
    if not isinstance(arena, VirtioArena):
        raise TypeError(f'this op runs on the {MACHINE} machine (the case\'s "machine"), not on {arena.machine!r}')
    return arena
