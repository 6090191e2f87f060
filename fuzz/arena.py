"""The fuzzer's arena: the "attack" scenario, built (``World.build``), plus the oracle and the attacker's pins.

The machine is the embedded "attack" scenario (world/scenarios/attack.toml,
the one ``nic-sandbox demo attack`` runs): four NICs, two cables (nic0-nic1
for alice and bob, nic2-nic3 for mallory and eve), 64 MiB of memory of
which the first 4 MiB are the kernel's, with the campaign's seed and
protection mode, the inline engine and no pcap.  What the scenario does not
say is the arena's own: the oracle on every DMA and wire, and mallory's raw
rings and pins.  Mallory (the attacker, nic2) and alice (the victim) allocate and
pin *before* any queue is opened, so their physical addresses are the same
in every protection mode (shadow rings and in-place sinks come later): a
reproducer found under ``none`` names the same frames under ``verifier``.

Memory map (first fit after the kernel's 1024 frames)::

    mallory: TX ring (512 x 16 B), RX ring (512 x 16 B), scratch page (read pin: fake rings),
             2 pages pinned device-read, 2 write-only, 2 read-write, 2 mapped but never pinned
    alice:   2 pages of secret (read pin), 2 pages of RX buffers (write pin)
    mallory: 1 spare page, mapped, not pinned (``uaf``: the use-after-unpin sequences pin, unpin and free it)
    mallory: 3 pages, pages 0 and 2 pinned read-write, page 1 not (``holey``: a hole between two pins)
    mallory: 1 page pinned read-write, alice: 1 page (secret, guarded), mallory: 1 page pinned read-write
             (``scattered``: mallory's pinned frames are not contiguous: alice's frame lies between them)
    mallory: 2 pages, mapped, not pinned (``spare``: pins of the system-call classes), and two more, never pinned

Everything after ``uaf`` was added later, after every older span, so no
older address moved (the reproducers in fuzz/corpus name them).

Every operation a campaign or a reproducer performs is a method here
(``tx`` -- with an optional race rewrite --, ``rx``, ``doorbell``, ``reg``,
``eve_sends``, ``pin``, ``unpin``, ``free``, ``victim_alloc``), so both run
the same code.  Lifetime operations the kernel refuses (a free of a region
still pinned, an unpin of nothing) are noted in ``log``, not raised: a
refusal is a verdict, not a crash.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from device.e1000 import E1000, EngineMode
from device.poller import DevicePoller
from driver.tenant.txq import TxQueue
from driver.tenant.virtio_queue import VirtioTxQueue
from fuzz.oracle.judge import Escape, Oracle
from fuzz.oracle.queues import QueueWatch
from fuzz.oracle.races import RaceWrite
from fuzz.oracle.rules import RULE_BOOKS, rx_buffer_bytes
from ring import indices, regs
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC
from ring.frames import FrameBatch
from ring.memory import PAGE_SIZE, PhysicalMemory
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, KernelError, Process
from verifier.modes.protection import Protection
from verifier.rules.policy import POLICIES
from world import scenario
from world.build import World
from world.reset import Snapshot

if TYPE_CHECKING:
    from fuzz.steps.tx import Rewrite

SCENARIO = "attack"  # the embedded scenario the arena is (world/scenarios/attack.toml)
RING = 512  # mallory's raw rings and eve's TX queue: a batch of up to 255 descriptors always fits
MAX_BATCH = 255
FRAME_LEN = 256  # eve's frames to mallory
SECRET = b"ALICE-SECRET:"
THREAD_ROUNDS = 32  # tx_threaded: at most so many doorbells in one step
THREAD_SECONDS = 0.5  # ... and at most so long (then the threads are stopped and the poller drained)
THREAD_PAUSE = 0.0005  # after each doorbell the main thread sleeps this long: the device and the attacker run
READ_WRITE = DEVICE_READ | DEVICE_WRITE
#: How far a pin_range may reach outside its span (into the guard pages around it) and how long it may be.
PIN_REACH = 2 * PAGE_SIZE
NICS = ("nic0", "nic1", "nic2", "nic3")
SPARE_QUEUE = 1  # nic2's queue pair left free at build: ``open_queue`` opens it
QUEUE_KINDS = ("tx", "rx")  # the attack scenario's NICs (alice, bob, mallory, eve)


@dataclass(frozen=True)
class Machine:
    """A documented configuration of the machine an attack runs on: the kernel's policy, by name (the kernel's
    ``verifier.rules.policy.POLICIES`` and the oracle's own ``RULE_BOOKS``, each from the documentation), and
    whether the kernel uses its compiled fast path (``Kernel.accelerators``)."""

    policy: str = "default"
    accelerators: bool = True
    #: the NICs' device model: "e1000", or "virtio" (virtio-net split virtqueues: fuzz/virtio_arena.py)
    nic: str = "e1000"


#: The machines an attack may name (``Attack.machine``; "" is the machine as built by default).  ``jumbo``: the
#: 8254x's own limits, buffers over three or more frames (docs/verifier.md, "Policy limits").  ``numpy``: the
#: kernel's numpy checks alone, the reference the compiled fast path is measured against (a campaign runs
#: every other round of blocks there, fuzz/campaign.py).
#: ``virtio``: the same tenants on virtio-net NICs, mallory writing virtqueue graphs by hand (issue 16).
MACHINES: dict[str, Machine] = {
    "": Machine(),
    "jumbo": Machine(policy="jumbo"),
    "numpy": Machine(accelerators=False),
    "virtio": Machine(nic="virtio"),
}


def acting(tenant: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """An arena operation performed by ``tenant``: the queue watch checks no other tenant's queue moved."""

    def wrap(method: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(method)
        def run(self: Arena, *args: object, **kwargs: object) -> None:
            before = self.queues.read()
            try:
                method(self, *args, **kwargs)
            finally:
                self.oracle.escapes += self.queues.moved(self.tenants[tenant].tenant_id, before)

        return run

    return wrap


@dataclass(frozen=True)
class Span:
    """A range of memory the generators aim at: its device address (``bus``) and physical address."""

    bus: int
    phys: int
    size: int

    @property
    def end(self) -> int:
        return self.bus + self.size


@dataclass(frozen=True)
class MemoryMap:
    """The live memory map the generators choose targets from (addresses as mallory's descriptors name them)."""

    memory_size: int
    kernel: Span  # the kernel's secret region (a canary at every frame start)
    scratch: Span  # mallory, read pin: fake rings for the register class
    read_pin: Span  # mallory, device-read only
    write_pin: Span  # mallory, device-write only
    rw_pin: Span  # mallory, read and write
    unpinned: Span  # mallory, mapped, never pinned
    alice_secret: Span  # alice, read pin, marked secret
    alice_rx: Span  # alice, write pin
    uaf: Span  # mallory, mapped, not pinned at first: the use-after-unpin page
    tx_ring: int  # bus address of mallory's TX ring
    holey: Span  # mallory, 3 pages: the first and last pinned read-write, the middle one not (a hole)
    scattered_lo: Span  # mallory, 1 page pinned read-write, just below alice's ``alice_gap``
    alice_gap: Span  # alice, 1 page of secret between mallory's two scattered pins
    scattered_hi: Span  # mallory, 1 page pinned read-write, just above ``alice_gap``
    spare: Span  # mallory, 2 pages mapped, never pinned at build: the system-call classes pin and ring it
    ring_size: int = RING

    @property
    def pin_edges(self) -> list[Span]:
        """Mallory's pins, in address order: their first and last bytes are the straddle targets."""
        return [self.scratch, self.read_pin, self.write_pin, self.rw_pin]

    @property
    def holes(self) -> tuple[Span, Span, Span]:
        """The hole's page and the pinned pages around it (``holey``: pinned, hole, pinned)."""
        h = self.holey
        return (
            Span(h.bus, h.phys, PAGE_SIZE),
            Span(h.bus + PAGE_SIZE, h.phys + PAGE_SIZE, PAGE_SIZE),
            Span(h.bus + 2 * PAGE_SIZE, h.phys + 2 * PAGE_SIZE, PAGE_SIZE),
        )

    def pinned_runs(self, access: int) -> list[tuple[int, int]]:
        """Mallory's maximal runs of device addresses pinned with ``access`` (1 read, 2 write), as [start, end).

        Adjacent pins merge, so the byte just outside a run is never pinned with the access: a run's edges
        are the exact boundaries of the rule (a buffer ending on a run's last byte is valid, one more is not).
        """
        lo, _, hi = self.holes
        spans = [(self.scratch, 1), (self.read_pin, 1), (self.write_pin, 2), (self.rw_pin, 3), (lo, 3), (hi, 3),
                 (self.scattered_lo, 3), (self.scattered_hi, 3)]  # fmt: skip
        ranges = sorted((s.bus, s.end) for s, a in spans if a & access)
        runs: list[list[int]] = []
        for start, end in ranges:
            if runs and runs[-1][1] == start:
                runs[-1][1] = end
            else:
                runs.append([start, end])
        return [(a, b) for a, b in runs]


def pin_region(oracle: Oracle, proc: Process, pages: int, access: int | None) -> tuple[DmaRegion, Span]:
    """``pages`` new pages of ``proc``'s, pinned with ``access`` (None: left unpinned) and told to the oracle."""
    region = proc.alloc_dma(pages * PAGE_SIZE)
    phys = proc.virt_to_phys(region.vaddr)
    if access is not None:
        proc.pin(region.vaddr, region.size, access)
        oracle.grant(proc.tenant_id, phys, region.size, access, region.bus)
    return region, Span(region.bus, phys, region.size)


@dataclass(frozen=True)
class AttackPins:
    """The pins every machine gives mallory and alice, allocated in this order (each machine's addresses follow)."""

    scratch_region: DmaRegion
    scratch: Span  # mallory, 1 page, device-read
    read_pin: Span  # mallory, 2 pages, device-read
    write_pin: Span  # mallory, 2 pages, device-write
    rw_pin: Span  # mallory, 2 pages, both
    unpinned: Span  # mallory, 2 pages, never pinned
    secret_region: DmaRegion
    alice_secret: Span  # alice, 2 pages, device-read: the marker mallory must never get on a wire
    alice_rx: Span  # alice, 2 pages, device-write: her RX buffers mallory must never write


def attack_pins(oracle: Oracle, mallory: Process, alice: Process) -> AttackPins:
    """Allocate and pin ``AttackPins`` (the e1000 and the virtio machine share them, so their maps agree)."""
    scratch_region, scratch = pin_region(oracle, mallory, 1, DEVICE_READ)
    _, read_pin = pin_region(oracle, mallory, 2, DEVICE_READ)
    _, write_pin = pin_region(oracle, mallory, 2, DEVICE_WRITE)
    _, rw_pin = pin_region(oracle, mallory, 2, READ_WRITE)
    _, unpinned = pin_region(oracle, mallory, 2, None)
    secret_region, alice_secret = pin_region(oracle, alice, 2, DEVICE_READ)
    _, alice_rx = pin_region(oracle, alice, 2, DEVICE_WRITE)
    return AttackPins(scratch_region, scratch, read_pin, write_pin, rw_pin, unpinned, secret_region, alice_secret,
                      alice_rx)  # fmt: skip


def plant_marker(view: npt.NDArray[np.uint8], marker: bytes) -> None:
    """Fill ``view`` with 0x5A and ``marker`` every 256 bytes: any slice of it on a wire is a leak."""
    view[:] = 0x5A
    for at in range(0, view.size - len(marker), 256):
        view[at : at + len(marker)] = np.frombuffer(marker, dtype=np.uint8)


def guard_kernel_and_alice(oracle: Oracle, memory: PhysicalMemory, pins: AttackPins, marker: bytes) -> Span:
    """What every machine's oracle watches and guards: the kernel's memory, alice's secret (``marker``) and her RX
    buffers; returns the kernel's span."""
    oracle.secrets[marker] = "alice"
    kernel_span = Span(memory.kernel_frames.phys, memory.kernel_frames.phys, memory.kernel_frames.nbytes)
    oracle.watch("kernel memory", kernel_span.phys, kernel_span.size)
    oracle.guard("kernel memory", kernel_span.phys, kernel_span.size)
    oracle.guard("alice's secret", pins.alice_secret.phys, pins.alice_secret.size)
    oracle.guard("alice's RX buffers", pins.alice_rx.phys, pins.alice_rx.size)
    return kernel_span


def watching(world: World[Any], detail_limit: int | None = None) -> Oracle:
    """The independent oracle on every DMA engine and every cable of a built world (invariant 1: one choke point).

    It learns who owns which NIC and what each tenant is called from the
    scenario, nothing from the kernel: what it knows of pins it is told by
    the attacker (``Oracle.grant``).
    """
    owners = {t.nic: world.tenants[t.name].tenant_id for t in world.scenario.tenants}
    names = {proc.tenant_id: name for name, proc in world.tenants.items()}
    oracle = Oracle(world.memory, owners, names=names, detail_limit=detail_limit)
    for dev in world.nics.values():
        dev.dma.observers.append(oracle.on_dma)
    for cable in world.backend.cables:
        cable.taps.append(oracle.on_wire)
    return oracle


@dataclass
class Arena:
    """One machine, mallory's raw rings, the oracle; ``close()`` is cheap (inline engine, nothing to stop)."""

    world: World[Any]  # the emulated back end: ``Emulated`` (e1000), or ``EmulatedVirtio`` on the virtio machine
    oracle: Oracle
    map: MemoryMap
    tx_ring: npt.NDArray[np.void]
    rx_ring: npt.NDArray[np.void]
    tx_tail_offset: int
    rx_tail_offset: int
    eve_txq: TxQueue | VirtioTxQueue
    eve_frames: FrameBatch
    spans: dict[str, DmaRegion]  # mallory's regions the lifetime operations name
    queues: QueueWatch  # the oracle's check that a queue moves only when its owner acts
    tx_tail: int = 0
    rx_tail: int = 0
    log: list[str] = field(default_factory=list)
    handles: dict[str, int] = field(default_factory=dict)  # span -> pin handle
    victims: int = 0  # alice's allocations so far
    #: pins made by ``pin_range`` (handle, span, first page, pages), in order: ``unpin_range`` names them by index
    range_pins: list[tuple[int, str, int, int]] = field(default_factory=list)
    #: the machine as built, for ``reset`` (None unless built ``resettable``)
    snapshot: Snapshot | None = None
    #: which of ``MACHINES`` this is
    machine: str = ""

    @classmethod
    def build(
        cls,
        protection: Protection | str,
        seed: int,
        audit: AuditSink,
        detail_limit: int | None = None,
        resettable: bool = False,
        machine: str = "",
    ) -> Arena:
        """The machine, its oracle and mallory's rings; ``resettable``: snapshot it too, so ``reset`` can reuse it.

        ``machine``: which of ``MACHINES`` (the addresses are the same in each: the policy moves no allocation).
        """
        config = MACHINES[machine]
        if config.nic == "virtio":  # its own memory map and operations (imported here: it builds on this module)
            from fuzz.virtio_arena import VirtioArena

            return VirtioArena.build_virtio(protection, seed, audit, detail_limit, resettable)
        base = scenario.load(embedded=SCENARIO)
        # nic2 gets a second queue pair, free for mallory's own ``open_queue`` calls (the arena's, not the demo's)
        nics = tuple(dataclasses.replace(n, queues=SPARE_QUEUE + 1) if n.name == "nic2" else n for n in base.nics)
        scen = dataclasses.replace(
            base, nics=nics, seed=seed, protection=Protection(protection), engine=EngineMode.INLINE
        )
        # the default machine: the kernel's own Policy(); another: a copy per machine (its cached constants its own)
        policy = None if config.policy == "default" else dataclasses.replace(POLICIES[config.policy])
        world = World.build(scen, pcap=False, audit=audit, policy=policy, accelerators=config.accelerators)
        memory, tenants = world.memory, world.tenants
        oracle = watching(world, detail_limit)
        if world.scenario.protection is Protection.VERIFIER:  # the mode whose kernel claims every rule
            oracle.rules = RULE_BOOKS[config.policy]
            oracle.rx_buffer = lambda nic: rx_buffer_bytes(world.nics[nic].reg(regs.RCTL))

        mallory, alice = tenants["mallory"], tenants["alice"]
        tx_region = mallory.alloc_dma(RING * DESC_SIZE)
        rx_region = mallory.alloc_dma(RING * DESC_SIZE)

        pinned = functools.partial(pin_region, oracle)
        pins = attack_pins(oracle, mallory, alice)
        scratch, read_pin, write_pin, rw_pin, unpinned = (
            pins.scratch, pins.read_pin, pins.write_pin, pins.rw_pin, pins.unpinned
        )  # fmt: skip
        secret_region, alice_secret, alice_rx = pins.secret_region, pins.alice_secret, pins.alice_rx
        uaf_region, uaf = pinned(mallory, 1, None)  # after alice's: the addresses above stay as they were
        # Added later, after everything above (no older address moved): pins over scattered memory.
        holey_region, holey = pinned(mallory, 3, None)
        for page in (0, 2):  # two pins with an unpinned page between them
            vaddr = holey_region.vaddr + page * PAGE_SIZE
            mallory.pin(vaddr, PAGE_SIZE, READ_WRITE)
            oracle.grant(mallory.tenant_id, holey.phys + page * PAGE_SIZE, PAGE_SIZE, READ_WRITE,
                         holey.bus + page * PAGE_SIZE)  # fmt: skip
        scattered_region, scattered_lo = pinned(mallory, 1, READ_WRITE)
        gap_region, alice_gap = pinned(alice, 1, None)
        _, scattered_hi = pinned(mallory, 1, READ_WRITE)
        spare_region, whole = pinned(mallory, 4, None)  # pages 2 and 3: never pinned, a fence before what follows
        spare = Span(whole.bus, whole.phys, 2 * PAGE_SIZE)
        marker = SECRET + b"%d" % seed
        for view in (*(secret_region.view[p * PAGE_SIZE : (p + 1) * PAGE_SIZE] for p in range(2)), gap_region.view):
            plant_marker(view, marker)
        kernel_span = guard_kernel_and_alice(oracle, memory, pins, marker)
        oracle.watch("alice's page between mallory's pins", alice_gap.phys, alice_gap.size)
        oracle.guard("alice's page between mallory's pins", alice_gap.phys, alice_gap.size)

        # queues last: shadow rings and sinks are allocated here, after every address above
        tx_handle = mallory.open_tx_queue("nic2", 0, tx_region, RING)
        rx_handle = mallory.open_rx_queue("nic2", 0, rx_region, RING)
        eve_txq = TxQueue(tenants["eve"], "nic3", size=RING)
        # Frames the kernel charged to mallory without mapping them for her (unsafe-inplace's sink for
        # neutralised RX descriptors): she can never read them, so device writes there leak nothing.
        mapped = np.zeros(memory.frames, dtype=bool)
        for mapping in mallory.aspace.mappings:
            mapped[mapping.frames.first : mapping.frames.first + mapping.frames.count] = True
        for frame in np.flatnonzero((memory.owner == mallory.tenant_id) & ~mapped).tolist():
            oracle.grant(mallory.tenant_id, frame * PAGE_SIZE, PAGE_SIZE, DEVICE_WRITE)
        mac = {n.name: n.mac for n in scen.nics}
        frames = np.zeros((MAX_BATCH, FRAME_LEN), dtype=np.uint8)
        frames[:, :6] = np.frombuffer(mac["nic2"], dtype=np.uint8)  # eve (nic3) to mallory (nic2)
        frames[:, 6:12] = np.frombuffer(mac["nic3"], dtype=np.uint8)
        frames[:, 12:14] = (0x08, 0x00)
        frames[:, 14:] = 0xEE
        mmap = MemoryMap(
            memory.size,
            kernel_span,
            scratch,
            read_pin,
            write_pin,
            rw_pin,
            unpinned,
            alice_secret,
            alice_rx,
            uaf,
            tx_region.bus,
            holey,
            scattered_lo,
            alice_gap,
            scattered_hi,
            spare,
        )
        arena = cls(
            world,
            oracle,
            mmap,
            tx_region.view.view(TX_DESC),
            rx_region.view.view(RX_DESC),
            tx_handle.tail_offset,
            rx_handle.tail_offset,
            eve_txq,
            FrameBatch.from_matrix(frames),
            {"uaf": uaf_region, "spare": spare_region, "holey": holey_region, "scattered_lo": scattered_region},
            QueueWatch(world.nics, oracle.queue_owner, oracle.names),
        )
        arena.machine = machine
        if resettable:
            arena.snapshot = Snapshot(world)
            arena.snapshot.take([arena], keep=[audit])
        return arena

    def reset(self) -> None:
        """Back to the machine as built (world/reset.py): what an attack did is gone, down to the last byte of DRAM.

        Behaves as ``Arena.build`` with the same arguments would, without building (~1 ms, not ~14 ms): the
        same verdicts, oracle findings and audit records for the same steps.  The audit sink is not reset.
        """
        if self.snapshot is None:
            raise RuntimeError("this arena was not built resettable")
        self.snapshot.reset()

    @property
    def protection(self) -> Protection:
        return self.world.scenario.protection

    @property
    def seed(self) -> int:
        return self.world.scenario.seed

    @property
    def memory(self) -> PhysicalMemory:
        return self.world.memory

    @property
    def kernel(self) -> Kernel:
        return self.world.kernel

    @property
    def nics(self) -> Mapping[str, E1000]:
        return self.world.nics

    @property
    def tenants(self) -> Mapping[str, Process]:
        return self.world.tenants

    @property
    def mallory(self) -> Process:
        return self.tenants["mallory"]

    # -- operations (one per reproducer op) -------------------------------------------
    @acting("mallory")
    def tx(
        self,
        descs: npt.NDArray[np.void],
        tail: int | None = None,
        rewrite: Rewrite | None = None,
        tail_back: int | None = None,
    ) -> None:
        """Write ``descs`` at mallory's TX tail and ring the doorbell.

        ``tail``: ring that raw value instead of the natural tail, as given: the
        doorbell window passes a tenant's store on unmasked, so a value no 32-bit
        register holds (-1, 2**32, 2**64 - 1: a ``writeq`` over TDT, a negative
        operand) reaches the kernel's trap as it is (ring-index attacks);
        ``tail_back``: ring so many slots behind the natural tail instead.
        ``rewrite``: the race -- mallory rewrites one of the slots just
        written at ``rewrite.point``: "after_check" (an ``after_check`` hook on
        her TX queue: after the kernel checked them, before the device reads
        them), "before_read" (a ``before_read`` hook: after the doorbell's tail
        was judged, just before the kernel copies the descriptors in), each
        removed afterwards; or "threaded" (``tx_threaded``: a second thread,
        the threaded engine).  A mode without a kernel check (none, iommu) has
        no such window: the rewrite lands right before the doorbell.  The oracle
        is told where the write was to land and how often it did (``RaceWrite``):
        each window is the kernel's, once per doorbell that brings descriptors.
        """
        if rewrite is not None and rewrite.point == "threaded":
            self.tx_threaded(descs, rewrite)
            return
        n = int(descs.size)
        start = self.tx_tail
        if n:
            indices.write_window(self.tx_ring, self.tx_tail, descs)
        self.tx_tail = indices.advance(self.tx_tail, n, RING)
        value = self.tx_tail if tail is None else tail
        if tail_back is not None:
            value = (self.tx_tail - tail_back) % RING
        state = self.kernel.queue("nic2", "tx").state if rewrite is not None else None
        hooks = None
        hook = None
        race = None
        if rewrite is not None:
            slot = (start + rewrite.slot_offset) % RING
            landed = [0]

            def hook(_state: object = None) -> None:
                landed[0] += 1
                self._rewrite(slot, rewrite)

            if state is None:
                hook()
            else:
                hooks = state.before_read if rewrite.point == "before_read" else state.after_check
                hooks.append(hook)
                race = RaceWrite(rewrite.point, lambda: landed[0])
        try:
            self._tail("tx", value, race)
        finally:
            if hooks is not None and hook is not None:
                hooks.remove(hook)

    def _rewrite(self, slot: int, rewrite: Rewrite) -> None:
        if rewrite.addr is not None:
            self.tx_ring["addr"][slot] = rewrite.addr & 0xFFFF_FFFF_FFFF_FFFF
        if rewrite.length is not None:
            self.tx_ring["length"][slot] = rewrite.length & 0xFFFF

    @acting("mallory")
    def tx_threaded(self, descs: npt.NDArray[np.void], rewrite: Rewrite) -> None:
        """The threaded race: nic2 runs on a ``DevicePoller`` for this step while a second thread keeps rewriting.

        The main thread posts ``descs`` and rings the doorbell ``rewrite.rounds``
        times (bounded by ``THREAD_ROUNDS``, the ring and ``THREAD_SECONDS``);
        meanwhile an attacker thread rewrites, over and over, descriptor
        ``slot_offset`` of the latest round.  Whether a rewrite lands before
        the kernel's read, between check and device read, or after the device
        is a matter of thread scheduling: not reproducible by seed.  Both
        threads are stopped, the poller drained and nic2 set back to the
        inline engine before this returns.
        """
        n = int(descs.size)
        rounds = max(1, min(rewrite.rounds, THREAD_ROUNDS, MAX_BATCH // max(n, 1)))
        dev = self.nics["nic2"]
        window = self.mallory.map_registers("nic2")
        target = [-1]  # the slot the attacker rewrites (-1: none yet)
        stop = threading.Event()

        def attacker() -> None:
            while not stop.is_set():
                slot = target[0]
                if slot >= 0:
                    self._rewrite(slot, rewrite)
                time.sleep(0)  # let the others run: the race is in the interleaving

        deadline = time.monotonic() + THREAD_SECONDS
        dev.mode = EngineMode.THREADED
        poller = DevicePoller([dev])
        thread = threading.Thread(target=attacker, name="fuzz-attacker", daemon=True)
        poller.start()
        thread.start()
        try:
            for _ in range(rounds):
                if time.monotonic() >= deadline:
                    break
                start = self.tx_tail
                if n:
                    indices.write_window(self.tx_ring, start, descs)
                self.tx_tail = indices.advance(start, n, RING)
                if n:
                    target[0] = (start + rewrite.slot_offset % n) % RING
                window.write32(self.tx_tail_offset, self.tx_tail)
                time.sleep(THREAD_PAUSE)  # the device and the attacker run now, in whatever order
        finally:
            stop.set()
            thread.join(timeout=1.0)
            poller.drain(timeout_s=1.0)
            poller.stop()
            dev.mode = EngineMode.INLINE
        self.log.append(f"tx_threaded: {rounds} round(s) of {n} descriptor(s), poller rounds {poller.rounds}")

    @acting("mallory")
    def rx(self, addrs: npt.NDArray[np.uint64], doorbell: bool = True) -> None:
        """Post empty RX buffers at ``addrs`` on mallory's RX ring and ring the doorbell (unless told not to)."""
        n = int(addrs.size)
        fresh = np.zeros(n, dtype=RX_DESC)
        fresh["addr"] = addrs
        indices.write_window(self.rx_ring, self.rx_tail, fresh)
        self.rx_tail = indices.advance(self.rx_tail, n, RING)
        if doorbell:
            self.doorbell("rx")

    @acting("mallory")
    def doorbell(self, queue: str) -> None:
        """Ring mallory's ``queue`` ("rx" or "tx") at its natural tail (what was written without a doorbell)."""
        self._tail(queue, self.rx_tail if queue == "rx" else self.tx_tail)

    def _tail(self, queue: str, value: int, race: RaceWrite | None = None) -> None:
        """Mallory's store into her ``queue`` tail register, shown to the oracle (ring geometry at its edges);
        ``race``: the race write this doorbell's window is to carry."""
        offset = self.rx_tail_offset if queue == "rx" else self.tx_tail_offset
        window, dev = self.mallory.map_registers("nic2"), self.nics["nic2"]
        head, tail = (regs.RDH, regs.RDT) if queue == "rx" else (regs.TDH, regs.TDT)
        self.oracle.tail_written(
            "nic2",
            queue,
            0,
            value,
            RING,
            lambda: window.write32(offset, value),
            lambda: (dev.reg(regs.queue_reg(head, 0)), dev.reg(regs.queue_reg(tail, 0))),
            self.rx_ring if queue == "rx" else self.tx_ring,
            race,
        )

    # -- lifetime operations (use after unpin) -------------------------------------------
    @acting("mallory")
    def pin(self, span: str, access: int) -> None:
        """Mallory pins one of her spans; the oracle's pin reference learns of it (nothing else does)."""
        region = self.spans[span]
        if span in self.handles:  # one pin per span: the oracle's pin reference keeps no counts
            self.log.append(f"pin {span}: already pinned (handle {self.handles[span]}), skipped")
            return
        try:
            handle = self.mallory.pin(region.vaddr, region.size, access)
        except KernelError as err:
            self.log.append(f"pin {span}: refused ({err})")
            return
        self.handles[span] = int(handle)
        phys = self.mallory.virt_to_phys(region.vaddr)
        frames = np.arange(phys >> 12, ((phys + region.size - 1) >> 12) + 1, dtype=np.int64)
        tid = self.mallory.tenant_id
        self.oracle.escapes += self.oracle.syscalls.pin(tid, int(handle), frames, self.oracle.pinned.get(tid))
        # exactly this access now: a deferred unpin the kernel finished since leaves its bits in the reference
        self.oracle.revoke(self.mallory.tenant_id, phys, region.size, region.bus)
        self.oracle.grant(
            self.mallory.tenant_id, self.mallory.virt_to_phys(region.vaddr), region.size, access, region.bus
        )
        self.log.append(f"pin {span}: handle {int(handle)}")

    @acting("mallory")
    def unpin(self, span: str) -> None:
        """Mallory unpins a span ("released" at once, or "deferred" while DMA is in flight)."""
        handle = self.handles.pop(span, None)
        if handle is None:
            self.log.append(f"unpin {span}: not pinned")
            return
        try:
            outcome = self.mallory.unpin(handle)
        except KernelError as err:
            self.oracle.escapes += self.oracle.syscalls.unpin(self.mallory.tenant_id, handle, accepted=False)
            self.log.append(f"unpin {span}: refused ({err})")
            return
        self.oracle.escapes += self.oracle.syscalls.unpin(self.mallory.tenant_id, handle, accepted=True)
        self.log.append(f"unpin {span}: {outcome}")
        region = self.spans[span]
        phys = self.mallory.virt_to_phys(region.vaddr)
        if outcome == "released":  # the device may no longer touch it; a deferred unpin ends at the free
            self.oracle.revoke(self.mallory.tenant_id, phys, region.size, region.bus)
        else:  # deferred: pinned for the DMA in flight, released whenever the kernel lets go
            self.oracle.release_pending(self.mallory.tenant_id, phys, region.size)

    @acting("mallory")
    def free(self, span: str) -> None:
        """Mallory frees a span's memory (refused while pinned, also while a deferred unpin waits)."""
        region = self.spans[span]
        self.oracle.owners_changing()
        try:
            phys = self.mallory.virt_to_phys(region.vaddr)
            self.mallory.free_dma(region)
        except KernelError as err:
            self.log.append(f"free {span}: refused ({err})")
            return
        tid = self.mallory.tenant_id
        self.oracle.escapes += self.oracle.syscalls.free(tid, phys, region.size, self.oracle.pinned.get(tid))
        self.oracle.revoke(self.mallory.tenant_id, phys, region.size, region.bus)
        self.log.append(f"free {span}: done, frame {phys >> 12} back in the free pool")

    @acting("alice")
    def victim_alloc(self, pages: int) -> None:
        """Alice allocates ``pages`` (first fit: a frame mallory just freed) and fills them; the oracle guards them."""
        self.oracle.owners_changing()
        region = self.tenants["alice"].alloc_dma(max(1, pages) * PAGE_SIZE)
        region.view[:] = 0x41
        phys = self.tenants["alice"].virt_to_phys(region.vaddr)
        self.victims += 1
        name = f"alice's new buffer {self.victims}"
        self.oracle.watch(name, phys, region.size)
        self.oracle.guard(name, phys, region.size)
        self.log.append(f"victim_alloc: alice got frame {phys >> 12}")

    @acting("eve")
    def eve_sends(self, count: int) -> None:
        """Eve sends ``count`` frames to mallory's NIC, so that posted RX buffers are used."""
        count = max(0, min(count, MAX_BATCH))
        if count:
            self.eve_txq.tx_burst(
                FrameBatch(self.eve_frames.data[: count * FRAME_LEN], self.eve_frames.lengths[:count])
            )

    @acting("mallory")
    def fake_ring(self, descs: npt.NDArray[np.void]) -> None:
        """Mallory writes descriptors into her scratch page (a ring of her own making, for register attacks)."""
        view = self.memory.data[self.map.scratch.phys : self.map.scratch.phys + self.map.scratch.size].view(TX_DESC)
        view[:] = np.zeros(view.size, dtype=TX_DESC)
        view[: descs.size] = descs

    @acting("mallory")
    def reg(self, offset: int, value: int) -> None:
        """Mallory stores ``value`` into register ``offset`` of nic2 (anything but a tail is refused when trapped)."""
        window = self.mallory.map_registers("nic2")
        if offset in (self.rx_tail_offset, self.tx_tail_offset):  # her own doorbell: shown to the oracle
            self._tail("rx" if offset == self.rx_tail_offset else "tx", value & 0xFFFF_FFFF)
        else:
            window.write32(offset, value & 0xFFFF_FFFF)
        # a raw store to her own tail: her driver reads the tail back and goes on from where the queue now is
        # (the kernel's accepted tail when trapped, the device's register otherwise), as a driver resyncs
        if offset == self.rx_tail_offset:
            self.rx_tail = window.read32(offset) % RING
        elif offset == self.tx_tail_offset:
            self.tx_tail = window.read32(offset) % RING

    # -- the system-call surface: any range, any NIC ----------------------------------------
    @acting("mallory")
    def pin_range(self, span: str, offset: int, length: int, access: int) -> None:
        """Mallory pins ``length`` bytes at ``offset`` into one of her spans (offset and length may reach into the
        guard pages around it, be zero, overlap a pin, ask for no or unknown access); the oracle's pin reference
        learns of what the kernel accepted, page by page as mallory's own page table says."""
        region = self.spans[span]
        vaddr = region.vaddr + offset
        try:
            handle = self.mallory.pin(vaddr, length, access)
        except KernelError as err:
            self.log.append(f"pin_range {span}{offset:+#x} len {length:#x} access {access}: refused ({err})")
            return
        first, last = vaddr >> 12, (vaddr + length - 1) >> 12
        tid = self.mallory.tenant_id
        frames = np.array([self.mallory.virt_to_phys(p << 12) >> 12 for p in range(first, last + 1)], dtype=np.int64)
        self.oracle.escapes += self.oracle.syscalls.pin(tid, int(handle), frames, self.oracle.pinned.get(tid))
        for page in range(first, last + 1):
            phys = self.mallory.virt_to_phys(page << 12)
            bus = region.bus + (page << 12) - region.vaddr
            # the page now carries exactly this access (an earlier pin of it, released by the kernel when its
            # in-flight DMA finished, leaves bits behind that a grant alone would keep)
            self.oracle.revoke(self.mallory.tenant_id, phys, PAGE_SIZE, bus)
            self.oracle.grant(self.mallory.tenant_id, phys, PAGE_SIZE, access, bus)
        self.range_pins.append((int(handle), span, first, last - first + 1))
        self.log.append(f"pin_range {span}{offset:+#x} len {length:#x} access {access}: handle {int(handle)}")

    @acting("mallory")
    def unpin_range(self, index: int) -> None:
        """Mallory unpins the ``index``-th pin this arena's ``pin_range`` made (past the last: a handle no pin
        has, which the kernel must refuse)."""
        if index >= len(self.range_pins):
            bogus = 1 << 20 | index
            try:
                self.mallory.unpin(bogus)
            except KernelError as err:
                self.log.append(f"unpin_range {index}: handle {bogus} refused ({err})")
                return
            self.log.append(f"unpin_range {index}: handle {bogus} accepted")
            return
        handle, span, first, pages = self.range_pins[index]
        try:
            outcome = self.mallory.unpin(handle)
        except KernelError as err:
            self.oracle.escapes += self.oracle.syscalls.unpin(self.mallory.tenant_id, handle, accepted=False)
            self.log.append(f"unpin_range {index}: refused ({err})")
            return
        self.oracle.escapes += self.oracle.syscalls.unpin(self.mallory.tenant_id, handle, accepted=True)
        region = self.spans[span]
        for page in range(first, first + pages):
            phys = self.mallory.virt_to_phys(page << 12)
            if outcome == "released":
                self.oracle.revoke(self.mallory.tenant_id, phys, PAGE_SIZE, region.bus + (page << 12) - region.vaddr)
            else:
                self.oracle.release_pending(self.mallory.tenant_id, phys, PAGE_SIZE)
        self.log.append(f"unpin_range {index}: {outcome}")

    @acting("mallory")
    def open_queue(self, kind: str, span: str, offset: int, nbytes: int, size: int) -> None:
        """Mallory opens nic2's spare ``kind`` queue with a ring of ``size`` slots over ``nbytes`` she names at
        ``offset`` into a span (any length, alignment and size: the kernel must refuse what breaks its rules).

        The region is what her system call names: a virtual address and a length; the kernel's view of it is
        the memory behind that address (clipped at the end of memory).
        """
        region = self.spans[span]
        vaddr = region.vaddr + offset
        phys: int | None = None
        try:
            phys = self.mallory.virt_to_phys(vaddr)
            view = self.memory.data[phys : min(phys + nbytes, self.memory.size)]
        except KernelError:  # nothing mapped there: she names the address anyway, the kernel must refuse it
            view = np.zeros(0, dtype=np.uint8)
        ring = DmaRegion(vaddr, region.bus + offset, nbytes, view)
        opener = self.mallory.open_tx_queue if kind == "tx" else self.mallory.open_rx_queue
        self.oracle.owners_changing()  # the kernel may allocate the queue's shadow ring
        owner = self.memory.owner.copy()  # the frames' owners before the kernel allocates anything for the queue
        judge = functools.partial(
            self.oracle.syscalls.open_queue, self.mallory.tenant_id, ("nic2", kind, SPARE_QUEUE), phys, nbytes, size
        )
        try:
            opener("nic2", SPARE_QUEUE, ring, size)
        except KernelError as err:
            self.oracle.escapes += judge(False, owner)
            self.log.append(f"open_queue {kind} {size} slots over {span}{offset:+#x} len {nbytes:#x}: refused ({err})")
            return
        self.oracle.escapes += judge(True, owner)
        self.log.append(f"open_queue {kind} {size} slots over {span}{offset:+#x} len {nbytes:#x}: opened")

    @acting("mallory")
    def reg_at(self, nic: str, offset: int, value: int) -> None:
        """Mallory stores ``value`` into register ``offset`` of any NIC, through her mapping of its registers."""
        self.mallory.map_registers(nic).write32(offset, value & 0xFFFF_FFFF)

    def settle(self) -> list[Escape]:
        """After a step: the cheap integrity check; return and forget the escapes found since the last call.

        With ``oracle.detail_limit`` set, escapes beyond the limit are only
        counted: read them with ``take_suppressed``.
        """
        self.oracle.check_written()
        found = list(self.oracle.escapes)
        self.oracle.escapes.clear()
        return found

    def take_suppressed(self) -> int:
        n = self.oracle.suppressed
        self.oracle.suppressed = 0
        return n

    def close(self) -> list[Escape]:
        """The full-hash backstop over kernel memory; return what it found."""
        self.oracle.check_integrity()
        return self.settle()
