"""Attack classes: named generators of malicious descriptor batches, aimed by the live memory map.

Each class turns (a numpy ``Generator`` seeded per campaign, the arena's
``MemoryMap``, a batch size) into one ``Attack`` (fuzz/steps/): legacy TX
descriptors (``TX_DESC``), RX buffer addresses and eve's frames, or register
writes with a fake ring.
Targets come from the map -- kernel canary frames, alice's pinned buffers,
mallory's own unpinned pages, exact pin edges +-1, page edges, the top of
the 64-bit space, the end of physical memory -- and a mutation step
(``mutate``: +-1, +-page, low-bit flips, boundary lengths) perturbs a share
of each batch, so a class explores around its targets rather than only at
them.  Every generator is vectorised: one batch is a handful of numpy calls.

``escapes_in`` says in which protection modes the independent oracle can
see an escape from this class *in this sandbox*.  Several classes escape
nowhere, by construction of the hardware model rather than by the
verifier's grace: the emulated bus master-aborts a DMA that wraps or leaves
physical memory (wrap; beyond-memory's ranges past the end, while its ranges
ending on the last byte read free memory), the device stalls on a tail outside
its ring (ring-index: also tails no 32-bit register holds, which the doorbell
window passes on whole and an untrapped device cuts to low bits past the ring),
and malformed packets never move a byte outside the
pins they name (fragments, bad-cmd).  Those classes still measure the
verifier's policy (their descriptors must be rejected in ``verifier``
mode) and guard against regressions in the device model.  ``iommu`` and
``verifier`` are meant to have no escapes at all; ``unsafe-inplace`` falls
only to races (class ``race``: a descriptor rewritten in the ``after_check``
window, between the kernel's check and the device's read; the class also
writes at ``before_read``, where the write must be judged, and on doorbells
that bring nothing, where no window may open: fuzz/oracle/races.py).

Some classes are *operation sequences* (``Attack(steps, fresh=True)``): pin,
post, unpin, free, alice's allocation, doorbell and eve's frames in one
order (``use-after-unpin``; the overrun variant of ``ring-index``).  An
attack with ``fresh`` set runs in an arena of its own, so its lifetime
steps start from the memory map the generator aimed at.  ``interleave``
draws such sequences at random (by seed) from every kind of step.

``OPT_IN`` holds classes left out of the default list, selectable by name:
``race-points`` (the race write at each point where the kernel reads user
memory, ``before_read`` or ``after_check``, half and half; ``race`` covers
both points in the default list) and
``race-threaded`` (a second thread rewriting while the threaded engine
runs: not reproducible by seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fuzz.arena import THREAD_ROUNDS, MemoryMap
from fuzz.csum_edges import csum_edge
from fuzz.edges import hidden, register_fires, ring_edge, scattered
from fuzz.held_packets import held
from fuzz.jumbo import jumbo
from fuzz.ring_order import ring_order
from fuzz.steps import (
    AFTER_CHECK,
    BEFORE_READ,
    POINTS,
    THREADED,
    Attack,
    Doorbell,
    EveSends,
    Free,
    Pin,
    Reg,
    Rewrite,
    Rx,
    Step,
    Tx,
    Unpin,
    VictimAlloc,
    post_and_receive,
    tx_batch,
)
from fuzz.steps.mutation import mutate
from fuzz.steps.tx import GOOD
from fuzz.surface import foreign_reg, open_queue, pin_range
from fuzz.virtio_classes import (
    virtio_avail,
    virtio_indirect,
    virtio_length,
    virtio_loop,
    virtio_order,
    virtio_race,
    virtio_used,
)
from ring import regs
from ring.descriptors import TXD_CMD_DEXT, TXD_CMD_IC, TXD_CMD_IFCS, TXD_CMD_RPS, TXD_CMD_RS, TXD_CMD_VLE
from ring.memory import PAGE_SIZE
from verifier.modes.protection import Protection

__all__ = ["AFTER_CHECK", "BEFORE_READ", "POINTS", "THREADED", "Attack", "Rewrite", "mutate", "tx_batch"]

MORE = TXD_CMD_IFCS | TXD_CMD_RS
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
NONE_ONLY = frozenset({Protection.NONE})
RACY = frozenset({Protection.NONE, Protection.UNSAFE_INPLACE})
NOWHERE: frozenset[Protection] = frozenset()

Generator = Callable[[np.random.Generator, MemoryMap, int], Attack]


@dataclass(frozen=True)
class AttackClass:
    name: str
    title: str
    escapes_in: frozenset[Protection]
    generate: Generator
    #: the machine its attacks run on (fuzz/arena.py ``MACHINES``); "" the campaign's choice per block
    machine: str = ""


# -- building blocks -------------------------------------------------------------------
def lengths(rng: np.random.Generator, n: int, low: int = 14, high: int = 1514) -> I64:
    """Frame-ish lengths with the boundary values over-represented."""
    edge = np.array([low, 60, 64, 128, 1514, high], dtype=np.int64)
    pick = rng.integers(low, high + 1, n)
    use_edge = rng.random(n) < 0.3
    return np.where(use_edge, edge[rng.integers(0, edge.size, n)], pick).astype(np.int64)


def inside(rng: np.random.Generator, span_start: int, span_size: int, length: I64) -> U64:
    """Addresses in a span: at page starts, page ends (minus length), or anywhere."""
    n = length.size
    pages = max(1, span_size // PAGE_SIZE)
    page = rng.integers(0, pages, n).astype(np.int64)
    where = rng.integers(0, 3, n)
    room = np.maximum(PAGE_SIZE - length, 0)
    anywhere = rng.integers(0, PAGE_SIZE, n) % (room + 1)
    offset = np.where(where == 0, 0, np.where(where == 1, room, anywhere))
    return (span_start + page * PAGE_SIZE + offset).astype(np.uint64)


# -- the classes -----------------------------------------------------------------------
def kernel_tx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    length = lengths(rng, n)
    frame = rng.integers(0, m.kernel.size // PAGE_SIZE, n)
    at_canary = rng.random(n) < 0.5  # half start at a frame start, where the canary sits
    offset = np.where(at_canary, 0, rng.integers(0, PAGE_SIZE, n) % np.maximum(PAGE_SIZE - length, 1))
    addr = (m.kernel.phys + frame * PAGE_SIZE + offset).astype(np.uint64)
    return Attack.of(Tx(tx_batch(mutate(rng, addr, 0.1), length)))


def kernel_rx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    frame = rng.integers(0, m.kernel.size // PAGE_SIZE, n)
    addr = (m.kernel.phys + frame * PAGE_SIZE + rng.choice([0, 2048, 1], n)).astype(np.uint64)
    return Attack.of(*post_and_receive(mutate(rng, addr, 0.1)))


def splice(rng: np.random.Generator, mine: npt.NDArray[np.void], theirs: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """Field-level splicing of two tenants' descriptors: the other's address, the rest from either.

    ``mine`` passes the verifier on its own (mallory's pinned buffer); the
    splice keeps the other tenant's address and takes length and command bits
    from one or the other, so the class still aims only at the other tenant.
    """
    out = theirs.copy()
    for name in ("length", "cmd"):
        take = rng.random(out.size) < 0.5
        out[name] = np.where(take, mine[name], theirs[name])
    return out


def other_tenant(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Read alice's secret (TX from her pinned, read-only buffer), aimed by physical address.

    A quarter of the batch is spliced from mallory's own valid traffic and a
    valid-looking copy of alice's (mutation by splicing descriptors of two tenants).
    """
    length = lengths(rng, n)
    addr = inside(rng, m.alice_secret.phys, m.alice_secret.size, length)
    batch = tx_batch(mutate(rng, addr, 0.1), length)
    k = n // 4
    if k:
        own_len = lengths(rng, k, high=PAGE_SIZE // 2)
        mine = tx_batch(inside(rng, m.read_pin.bus, m.read_pin.size, own_len), own_len)
        batch[:k] = splice(rng, mine, batch[:k])
    return Attack.of(Tx(batch))


def own_unpinned(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Mallory's own pages, mapped but never pinned: ground truth says they are hers, the pin rule says no."""
    length = lengths(rng, n)
    return Attack.of(Tx(tx_batch(inside(rng, m.unpinned.bus, m.unpinned.size, length), length)))


def straddle(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """First and last byte of each of mallory's pins, +-1: ``addr = start - 1`` or ``end - len + 1``."""
    spans = m.pin_edges
    which = rng.integers(0, len(spans), n)
    start = np.array([s.bus for s in spans], dtype=np.int64)[which]
    end = np.array([s.end for s in spans], dtype=np.int64)[which]
    length = lengths(rng, n, 2, PAGE_SIZE)
    jitter = rng.integers(-1, 2, n)  # -1, 0, +1 around the exact edge
    at_end = rng.random(n) < 0.6
    addr = np.where(at_end, end - length + 1 + jitter, start - 1 + jitter)
    return Attack.of(Tx(tx_batch(addr.astype(np.uint64), length)))


def wrap(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """addr + len past 2**64: on a bus without the check it would land at the kernel's frame 0."""
    length = lengths(rng, n, 2, PAGE_SIZE)
    back = rng.integers(1, length + 1)  # 1..len bytes below 2**64
    addr = (np.uint64(2**64 - 1) - back.astype(np.uint64) + np.uint64(1)).astype(np.uint64)
    return Attack.of(Tx(tx_batch(addr, length)))


def beyond_memory(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Ranges ending past the last byte of DRAM (just past it, far past it, at huge addresses), and a quarter
    at the rule's exact boundary: ending on the last byte or one before (``addr + len = M`` is inside memory,
    ``M + 1`` one past: docs/verifier.md, ADDR_BEYOND_MEMORY), so a kernel that calls the last byte beyond
    memory names a false reason.  Those read the last frame, free memory: an escape without protection.
    """
    length = lengths(rng, n)
    over = rng.integers(0, 4, n)
    near_end = m.memory_size - length + 1 + rng.integers(0, 64, n)  # straddles the end
    far = m.memory_size + rng.integers(0, 1 << 40, n)
    huge = (np.int64(1) << rng.integers(27, 63, n)) + rng.integers(0, PAGE_SIZE, n)
    edge = m.memory_size - length - rng.integers(0, 2, n)  # ends on the last byte, or one before
    addr = np.where(over == 0, near_end, np.where(over == 1, far, np.where(over == 2, huge, edge)))
    return Attack.of(Tx(tx_batch(addr.astype(np.uint64), length)))


def bad_length(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Zero bytes, or more than a page (up to 65535) from mallory's read pin: reads run past the pin."""
    zero = rng.random(n) < 0.3
    big = rng.integers(PAGE_SIZE + 1, 65536, n)
    big = np.where(rng.random(n) < 0.3, np.array([PAGE_SIZE + 1, 9015, 16289, 65535])[rng.integers(0, 4, n)], big)
    length = np.where(zero, 0, big)
    addr = m.read_pin.bus + rng.integers(0, 2, n) * PAGE_SIZE
    return Attack.of(Tx(tx_batch(addr, length)))


def fragments(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Packets of 19+ fragments, and packets without EOP, all from mallory's own read pin."""
    length = rng.integers(14, 256, n)
    addr = m.read_pin.bus + rng.integers(0, m.read_pin.size - 256, n)
    cmd = np.full(n, MORE)
    if rng.random() < 0.5:  # too many fragments: EOP only every 19..40 descriptors
        every = int(rng.integers(19, 41))
        cmd[every - 1 :: every] = GOOD
    return Attack.of(Tx(tx_batch(addr, length, cmd)))


def bad_cmd(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Unknown command bits (DEXT, RPS, VLE), and checksum offsets (CSO/CSS) outside the packet."""
    length = rng.integers(14, 200, n)
    addr = m.read_pin.bus + rng.integers(0, m.read_pin.size - 256, n)
    unknown = np.array([TXD_CMD_DEXT, TXD_CMD_RPS, TXD_CMD_VLE], dtype=np.int64)[rng.integers(0, 3, n)]
    csum = rng.random(n) < 0.5
    cmd = np.where(csum, GOOD | TXD_CMD_IC, GOOD | unknown)
    cso = np.where(csum, length + rng.integers(-1, 56, n), 0)
    css = np.where(csum & (rng.random(n) < 0.5), length + rng.integers(0, 56, n), 0)
    return Attack.of(Tx(tx_batch(addr, length, cmd, cso, css)))


def access_mismatch(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """TX from a write-only pin, or RX into a read-only pin (alternating batches)."""
    if rng.random() < 0.5:
        length = lengths(rng, n)
        return Attack.of(Tx(tx_batch(inside(rng, m.write_pin.bus, m.write_pin.size, length), length)))
    addr = m.read_pin.bus + rng.integers(0, 2, n) * 2048
    return Attack.of(*post_and_receive(addr.astype(np.uint64)))


def ring_index(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Good descriptors, then a tail beyond the ring or behind the natural one (a negative ``tail``: so many back);
    or an overrun: more new RX descriptors than are free, over buffers still in flight (``overrun``).

    Half the tails beyond the ring are values no 32-bit register holds (``wide_tails``): the doorbell window
    passes a store on as given, so the kernel's trap sees them whole and must refuse them as RING_TAIL_BEYOND."""
    pick = rng.random()
    if pick < 1 / 3:
        return overrun(rng, m, n)
    length = lengths(rng, n)
    descs = tx_batch(inside(rng, m.read_pin.bus, m.read_pin.size, length), length)
    if pick < 2 / 3:
        narrow = [m.ring_size, m.ring_size + 1, 0xFFFF, int(rng.integers(m.ring_size, 1 << 32))]
        tails = narrow if rng.random() < 0.5 else wide_tails(rng, m.ring_size)
        return Attack.of(Tx(descs, tail=int(tails[int(rng.integers(0, len(tails)))])))
    return Attack.of(Tx(descs, tail_back=int(rng.integers(1, m.ring_size))))  # so many slots behind the natural tail


def wide_tails(rng: np.random.Generator, size: int) -> list[int]:
    """Tails no 32-bit register holds: -1, 2**64 - 1 (a ``writeq`` of -1), 2**32 + size, and two drawn ones (a
    random high word over low bits past the ring; its negative).  Their low 16 bits all lie past a ``size``-slot
    ring, so where nothing traps the store (``none``: the device keeps the low bits) the device still stalls: the
    class escapes nowhere by construction, and a kernel that takes one whole (or raises) is what it finds."""
    high = int(rng.integers(1, 1 << 31)) << 32
    return [-1, 2**64 - 1, 2**32 + size, high | int(rng.integers(size, 1 << 16)), -high - 1]


def overrun(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """RX buffers posted until more than half the ring is in flight (eve sends nothing), then a doorbell that
    claims more new slots than are free: the new descriptors overwrite ones the device still owns.

    The claim stays within half the ring, so the kernel reads it as an overrun, not a tail moved backwards.
    """
    size = m.ring_size
    in_flight = int(rng.integers(size // 2, size - 8))
    free = size - 1 - in_flight
    claim = int(rng.integers(free + 1, size // 2 + 1))
    chunk = max(1, min(n, 255))
    steps: list[Step] = []
    for k in [chunk] * (in_flight // chunk) + ([in_flight % chunk] if in_flight % chunk else []) + [claim]:
        addr = m.write_pin.bus + rng.integers(0, m.write_pin.size // 2048, k) * 2048
        steps.append(Rx(addr.astype(np.uint64)))
    return Attack(tuple(steps), fresh=True)


def race(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Valid descriptors from mallory's read pin; one is rewritten in a window of the doorbell, chosen by seed:

    * 60%: ``after_check``, after the kernel checked it and before the device reads it (the TOCTOU window): its
      addr to a kernel canary frame, or its length past the pin -- ``unsafe-inplace`` and ``none`` fall;
    * 20%: ``before_read``, just before the kernel reads it: the write must be judged like any descriptor
      (refused in ``verifier`` and ``unsafe-inplace``; only ``none`` falls, an IOMMU fault under ``iommu``);
    * 20%: on a doorbell that brings nothing (the descriptors written, the old tail rung again; then the
      natural tail), a write at either point: such a doorbell has neither window, so it must not land there.

    The oracle is told each window and how often the write landed (fuzz/oracle/races.py), so a kernel that
    reads without its ``before_read`` moment, or opens a window on an empty doorbell, is found."""
    descs, slot, addr, length = _race_descs(rng, m, n)
    pick = rng.random()
    if pick < 0.6:
        return Attack.of(Tx(descs, rewrite=Rewrite(slot, addr, length)))
    if pick < 0.8:
        return Attack.of(Tx(descs, rewrite=Rewrite(slot, addr, length, point=BEFORE_READ)))
    point = BEFORE_READ if rng.random() < 0.5 else AFTER_CHECK
    return Attack.of(Tx(descs, tail_back=n, rewrite=Rewrite(slot, addr, length, point=point)), Doorbell("tx"))


def _race_descs(
    rng: np.random.Generator, m: MemoryMap, n: int
) -> tuple[npt.NDArray[np.void], int, int | None, int | None]:
    """Valid descriptors from mallory's read pin, a slot, and its rewrite (addr, length): a kernel canary frame,
    or a length past the pin."""
    length = lengths(rng, n)
    descs = tx_batch(inside(rng, m.read_pin.bus, m.read_pin.size, length), length)
    slot = int(rng.integers(0, n))
    if rng.random() < 0.6:
        return descs, slot, m.kernel.phys + int(rng.integers(0, m.kernel.size // PAGE_SIZE)) * PAGE_SIZE, None
    addr = int(descs["addr"][slot])
    return descs, slot, None, min(0xFFFF, m.read_pin.end - addr + 1 + int(rng.integers(0, PAGE_SIZE)))


def race_points(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """The race at every point where the kernel reads user memory, the point chosen by seed: ``before_read``
    (just before the kernel copies the descriptors in: the write is judged, so only ``none`` falls) or
    ``after_check`` (between the check and the device's read: ``unsafe-inplace`` and ``none`` fall)."""
    descs, slot, addr, length = _race_descs(rng, m, n)
    point = BEFORE_READ if rng.random() < 0.5 else AFTER_CHECK
    return Attack.of(Tx(descs, rewrite=Rewrite(slot, addr, length, point=point)))


def race_threaded(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """A second thread keeps rewriting a descriptor (to a kernel canary frame, or a length past the pin) while
    the main thread posts a few valid ones and rings the doorbell, round after round, with nic2 on the threaded
    engine (``Arena.tx_threaded``).  Timing decides which rewrites land where: not reproducible by seed."""
    k = max(1, min(n, 8))
    descs, slot, addr, length = _race_descs(rng, m, k)
    return Attack.of(Tx(descs, rewrite=Rewrite(slot, addr, length, point=THREADED, rounds=THREAD_ROUNDS)))


#: Registers other than the tails (refused when the kernel traps mallory's register window).
STRAY = (regs.CTRL, regs.RCTL, regs.TCTL, regs.IMS, regs.RDLEN, regs.RDH, regs.TIDV)


def interleave(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """A random interleaving (by seed) of lifetime and ring operations on mallory's spare page and her pins:
    pin (any access), unpin, free, RX buffers posted with or without a doorbell, TX, doorbells, a register
    write (one other than the tails), alice's allocation and eve's frames, in random order, with arguments
    from the live map (the spare page ``uaf``, her read/write pins, her unpinned pages).  Refused lifetime
    operations are notes.  Every RX buffer posted is rung and used by eve before the sequence ends."""
    steps: list[Step] = []
    k_max = max(1, min(n, 4))
    rx_spans = (m.uaf, m.uaf, m.write_pin, m.rw_pin, m.unpinned)
    tx_spans = (m.uaf, m.uaf, m.read_pin, m.rw_pin, m.unpinned)
    posted = 0  # RX buffers written and not yet matched by eve's frames (eve sends at most that many)
    total = 0  # RX buffers written in all
    for _ in range(int(rng.integers(4, 13))):
        op = int(rng.integers(0, 10))
        if op == 0:
            steps.append(Pin("uaf", access=int(rng.integers(1, 4))))
        elif op == 1:
            steps.append(Unpin("uaf"))
        elif op == 2:
            steps.append(Free("uaf"))
        elif op == 3:
            steps.append(VictimAlloc(1))
        elif op == 4:
            k = int(rng.integers(1, k_max + 1))
            span = rx_spans[int(rng.integers(0, len(rx_spans)))]
            addrs = (span.bus + rng.integers(0, span.size // 2048, k) * 2048).astype(np.uint64)
            steps.append(Rx(addrs, doorbell=bool(rng.random() < 0.5)))
            posted += k
            total += k
        elif op == 5:
            k = int(rng.integers(1, k_max + 1))
            span = tx_spans[int(rng.integers(0, len(tx_spans)))]
            length = lengths(rng, k, 14, 1024)
            steps.append(Tx(tx_batch(inside(rng, span.bus, span.size, length), length)))
        elif op == 6:
            steps.append(Doorbell("rx" if rng.random() < 0.7 else "tx"))
        elif op == 7:
            steps.append(Reg(int(rng.choice(STRAY)), int(rng.integers(0, 1 << 32))))
        else:
            count = max(1, min(posted, int(rng.integers(1, k_max + 1))))
            steps.append(EveSends(count))
            posted = max(0, posted - count)
    if total:  # ring what was only written, and enough frames for every buffer ever posted (extra ones drop)
        steps += [Doorbell("rx"), EveSends(total)]
    return Attack(tuple(steps), fresh=True)


def use_after_unpin(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Mallory pins her spare page for RX and writes buffers in it, then unpins it: before the doorbell
    (the device is rung with buffers she no longer pinned), and perhaps frees it and lets alice allocate the
    freed frame; or after the doorbell (the buffers are in flight), frees it, alice allocates.  Eve sends.

    Variant 3 puts a completion between the deferred unpin and the free: two buffers in flight, eve sends
    one frame (the kernel handles a completion while the other buffer is still the device's), then the free
    and alice's allocation, then eve's second frame lands in whatever frame the device still holds.  A kernel
    that settles a deferred unpin at the first completion instead of the last (a lifetime rule that forgets
    in-flight DMA) lets the free go through and the device write into alice's page: only this order finds it.
    """
    variant = int(rng.integers(0, 4))  # 0: unpin before the doorbell; 1: and free; 2: free in flight; 3: see above
    k = 2 if variant == 3 else int(rng.integers(1, 3))
    addrs = (m.uaf.bus + rng.permutation(2)[:k] * 2048).astype(np.uint64)
    reuse: list[Step] = [Free("uaf"), VictimAlloc(1)]
    steps: list[Step] = [Pin("uaf", access=2), Rx(addrs, doorbell=variant >= 2)]
    steps.append(Unpin("uaf"))
    if variant == 3:
        return Attack((*steps, EveSends(1), *reuse, EveSends(1)), fresh=True)
    if variant:
        steps += reuse
    if variant < 2:
        steps.append(Doorbell("rx"))
    steps.append(EveSends(k))
    return Attack(tuple(steps), fresh=True)


def register(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Repoint TDBAL at a fake ring of kernel addresses (or RDBAL at one of kernel RX buffers), plus stray
    writes, then the doorbell that would make the device fetch the fake ring: mallory's own doorbell over a
    valid descriptor (``edges.register_fires``), in a machine as built (device head 0)."""
    k = max(1, min(n, m.scratch.size // 16) - 8)
    length = lengths(rng, k)
    frame = rng.integers(0, m.kernel.size // PAGE_SIZE, k)
    fake = tx_batch((m.kernel.phys + frame * PAGE_SIZE).astype(np.uint64), length)
    full = np.resize(fake, m.scratch.size // 16)  # every slot of the page: whatever the head, a kernel address
    count = 8 * (1 + k // 8)
    tx = rng.random() < 0.6
    bal, bah, dlen, head, _ = regs.TX_RING_REGS if tx else regs.RX_RING_REGS
    writes = [
        (bal, m.scratch.bus & 0xFFFF_FFFF),
        (bah, m.scratch.bus >> 32),
        (dlen, count * 16),
        (head, 0),
    ]
    stray = [regs.CTRL, regs.RCTL, regs.TCTL, regs.IMS, regs.RDLEN, regs.RDH, regs.TIDV]
    for _ in range(int(rng.integers(0, 3))):
        writes.insert(0, (int(rng.choice(stray)), int(rng.integers(0, 1 << 32))))
    return register_fires(rng, m, n, writes, full)


class ClassTable(dict[str, AttackClass]):
    """The default classes; looking up an opt-in class by name (``CLASSES["race-threaded"]``) also works,
    while iterating, ``len`` and ``in`` see the default ones only."""

    def __missing__(self, name: str) -> AttackClass:
        return OPT_IN[name]


CLASSES: dict[str, AttackClass] = ClassTable(
    (c.name, c)
    for c in (
        AttackClass("kernel-tx", "TX from kernel memory (canary frames)", NONE_ONLY, kernel_tx),
        AttackClass("kernel-rx", "RX buffers in kernel memory", NONE_ONLY, kernel_rx),
        AttackClass("other-tenant", "TX from alice's pinned secret", NONE_ONLY, other_tenant),
        AttackClass("own-unpinned", "TX from mallory's mapped but unpinned pages", NONE_ONLY, own_unpinned),
        AttackClass("straddle", "first/last byte of a pin +-1", NONE_ONLY, straddle),
        AttackClass("wrap", "addr + len wrapping 2**64 (the bus master-aborts)", NOWHERE, wrap),
        AttackClass("beyond-memory", "ranges ending past memory, or on its last byte", NONE_ONLY, beyond_memory),
        AttackClass("bad-length", "zero and oversized lengths", NONE_ONLY, bad_length),
        AttackClass("fragments", "too many fragments, packets without EOP", NOWHERE, fragments),
        AttackClass("bad-cmd", "unknown command bits, checksum offsets outside the packet", NOWHERE, bad_cmd),
        AttackClass("access-mismatch", "TX from a write-only pin, RX into a read-only pin", NONE_ONLY, access_mismatch),
        AttackClass("ring-index", "tail beyond the ring, backwards, overrunning", NOWHERE, ring_index),
        AttackClass("register", "ring base repointed to a fake ring, then the doorbell", NONE_ONLY, register),
        AttackClass("race", "a checked TX descriptor rewritten before the device reads it", RACY, race),
        AttackClass("use-after-unpin", "unpin, free, alice reuses the frame", NONE_ONLY, use_after_unpin),
        AttackClass("interleave", "random interleavings of pin, unpin, free, post, doorbell", NONE_ONLY, interleave),
        AttackClass("hidden", "one descriptor past a rule's edge hidden in valid traffic", NONE_ONLY, hidden),
        AttackClass("scattered", "buffers over pins with holes and scattered frames", NONE_ONLY, scattered),
        AttackClass("ring-edge", "tails at the ring's edges: size-1/size/size+1, a full lap", NONE_ONLY, ring_edge),
        AttackClass("pin-range", "pin/unpin any range: guard pages, zero, partial, overlapping", NONE_ONLY, pin_range),
        AttackClass("open-queue", "a queue opened over any region, any ring size, then rung", NOWHERE, open_queue),
        AttackClass("foreign-reg", "stores into other tenants' NICs: eve's doorbell, alice's", NONE_ONLY, foreign_reg),
        AttackClass("jumbo", "buffers over 3+ frames under the jumbo policy, a hole inside", NONE_ONLY, jumbo, "jumbo"),
        AttackClass("held", "TX packets held open across doorbells at the bound: 7, 8, 9, 10", NOWHERE, held),
        AttackClass("ring-order", "RX slots handed back out of order, then a full-lap tail", NONE_ONLY, ring_order),
        AttackClass(
            "csum-edge",
            "checksum offsets on a packet's end, on a packet held open, under another fault",
            NOWHERE,
            csum_edge,
        ),
    )
)

#: The virtqueue graph classes (fuzz/virtio_classes.py), on the ``virtio`` machine: virtio NICs run protection
#: ``none`` and ``verifier`` only, so they are opt-in (``--classes virtio`` names them all).
VIRTIO = (
    AttackClass("virtio-loop", "a next looping back, a next or head of the queue size; a chain of it", NONE_ONLY,
                virtio_loop, "virtio"),
    AttackClass("virtio-indirect", "indirect in indirect, tables of Q+1, chains of Q+1 through one, tables elsewhere",
                NONE_ONLY, virtio_indirect, "virtio"),
    AttackClass("virtio-order", "a writable buffer before a readable one, 11 header bytes, unknown flags", NOWHERE,
                virtio_order, "virtio"),
    AttackClass("virtio-length", "buffers summed to 2**32 - 1 bytes (fits) or 2**32 and past (overflows le32)",
                NONE_ONLY, virtio_length, "virtio"),
    AttackClass("virtio-avail", "the available index moved by Q+1 or far past, then back", NONE_ONLY, virtio_avail,
                "virtio"),
    AttackClass("virtio-used", "the used ring (or table, avail ring) repointed at alice's or the kernel's memory",
                NONE_ONLY, virtio_used, "virtio"),
    AttackClass("virtio-race", "a notified chain's next or indirect entry rewritten before the frame arrives",
                NONE_ONLY, virtio_race, "virtio"),
)  # fmt: skip

#: Classes outside the default list, selectable by name (``--classes race-points,race-threaded``).
#: ``race-points`` is deterministic but escapes in unsafe-inplace too (the default list keeps ``race`` the
#: only class that does, and race-points' before_read writes are rejected there);
#: ``race-threaded`` depends on thread scheduling: not reproducible by seed.
OPT_IN: dict[str, AttackClass] = {
    c.name: c
    for c in (
        AttackClass("race-points", "a race write at each kernel read point, chosen by seed", RACY, race_points),
        AttackClass("race-threaded", "a second thread rewriting while the threaded engine runs", RACY, race_threaded),
        *VIRTIO,
    )
}


def select(names: str | list[str] | None) -> list[AttackClass]:
    """Classes by name (comma-separated or a list; None or "all": every class of ``CLASSES``, the opt-in ones
    of ``OPT_IN`` only by name); ValueError lists unknown ones."""
    if names is None or names == "all" or names == ["all"]:
        return list(CLASSES.values())
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    wanted = [v for n in wanted for v in ([c.name for c in VIRTIO] if n == "virtio" else [n])]
    known = {**CLASSES, **OPT_IN}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(
            f"unknown attack class{'es' if len(unknown) > 1 else ''}: {', '.join(unknown) or '(none given)'} "
            f"(known: {', '.join(known)})"
        )
    return [known[n] for n in dict.fromkeys(wanted)]
