"""Attack classes on the system-call surface: pins of any range, and stores into any NIC's registers.

``pin-range`` pins (and unpins) ranges of mallory's spare, holey and uaf
spans with every argument at a boundary -- an offset a byte before the span
(its guard page), at it, a byte in, a page in, at its last byte, at its end;
lengths 0, 1, a page -1/0/+1, to the span's end and one past; access 0..4 --
and then posts TX descriptors and RX buffers at the edges of the pages the
pin would cover if the kernel took it (page granular, as get_user_pages
pins): its first byte -1/0, its last byte 0/+1.

``foreign-reg`` stores into the registers of the other NICs: eve's doorbell
(after eve sent a few frames, so her ring holds valid descriptors: the tail
one back, one on, a full lap, the ring's size), her ring base repointed at
kernel memory then her doorbell, alice's and bob's doorbells (queues never
opened: ring base 0) and device resets.  The victim's descriptors being
valid, no byte need escape: the oracle's queue watch
(fuzz/oracle/queues.py) reports the queue that moved while mallory acted.
"""

from __future__ import annotations

import numpy as np

from fuzz.arena import MemoryMap, Span
from fuzz.edges import RX_BUFFER, edge_lengths
from fuzz.steps import Attack, EveSends, OpenQueue, PinRange, RegAt, Rx, Step, Tx, UnpinRange, tx_batch
from fuzz.steps.syscalls import UNMAPPED_REACH
from ring import regs
from ring.memory import PAGE_SIZE

FOREIGN = ("nic0", "nic1", "nic3")


def _span(m: MemoryMap, name: str) -> Span:
    return {"spare": m.spare, "holey": m.holey, "uaf": m.uaf}[name]


def pin_range(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Pins at the boundaries of a span, maybe an unpin, then traffic at the edges of what would be pinned;
    a quarter of the attacks are instead a deferred unpin's lifetime (``deferred_unpin``)."""
    if rng.random() < 0.25:
        return deferred_unpin(rng, m, n)
    steps: list[Step] = []
    targets: list[tuple[int, int, int]] = []  # (first byte, end, access) of each pin as the kernel should take it
    for _ in range(int(rng.integers(1, 3))):
        name = ("spare", "holey", "uaf")[int(rng.integers(0, 3))]
        span = _span(m, name)
        offset = int(rng.choice([-1, 0, 1, PAGE_SIZE - 1, PAGE_SIZE, span.size - 1, span.size]))
        length = int(
            rng.choice([0, 1, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, span.size - offset, span.size - offset + 1])
        )
        length = max(0, length)
        access = int(rng.choice([0, 1, 2, 3, 3, 4]))
        steps.append(PinRange(name, offset, length, access))
        if length and offset >= 0:
            first = span.bus + (offset // PAGE_SIZE) * PAGE_SIZE
            end = span.bus + ((offset + length - 1) // PAGE_SIZE + 1) * PAGE_SIZE
            end = min(end, span.end + PAGE_SIZE)  # a pin past the span reaches at most its fence's first page
            targets.append((first, end, access or 1))
    if rng.random() < 0.3:
        steps.append(UnpinRange(int(rng.choice([0, 1, 40]))))
    if not targets:  # nothing could be pinned: aim at the spare span's edges anyway
        targets.append((m.spare.bus, m.spare.end, 3))
    k = max(1, min(n, 64))
    which = rng.integers(0, len(targets), k)
    lo = np.array([t[0] for t in targets], dtype=np.int64)[which]
    hi = np.array([t[1] for t in targets], dtype=np.int64)[which]
    size = edge_lengths(rng, k, PAGE_SIZE)
    side = rng.integers(0, 4, k)
    addr = np.where(side == 0, lo - 1, np.where(side == 1, lo, np.where(side == 2, hi - size, hi - size + 1)))
    steps.append(Tx(tx_batch(addr.astype(np.uint64), size)))
    if any(t[2] & 2 for t in targets):
        rx = np.where(rng.random(k) < 0.5, hi - RX_BUFFER + rng.integers(0, 2, k), lo - rng.integers(0, 2, k))
        steps += [Rx(rx.astype(np.uint64)), EveSends(k)]
    return Attack(tuple(steps), fresh=True)


def deferred_unpin(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """The system calls around a deferred unpin, each at the point where the lifetime rules decide its answer.

    Mallory pins ``spare`` read-write (pin 0) and ``uaf`` (pin 1, no DMA ever), posts 2..4 RX buffers into
    ``spare`` and unpins pin 0 while they are in flight ("deferred"), then unpins it again (the handle is no
    longer hers: refused).  Eve sends one frame: the kernel reaps a completion and settles deferred unpins,
    which may finish pin 0's release only, never an active pin.  Then the calls whose answer depends on the
    active pins still being there: a pin over one of ``holey``'s pinned pages (overlap: refused), the unpin
    of pin 1 (hers: accepted), a pin over ``uaf`` again (now free: accepted), in an order by seed, and eve's
    remaining frames.  The oracle judges each answer (fuzz/oracle/syscalls.py).
    """
    k = int(rng.integers(2, 5))
    buffers = (m.spare.bus + rng.permutation(4)[:k] * RX_BUFFER).astype(np.uint64)
    steps: list[Step] = [
        PinRange("spare", 0, m.spare.size, 3),
        PinRange("uaf", 0, PAGE_SIZE, int(rng.choice([1, 2, 3]))),
        Rx(buffers),
        UnpinRange(0),
        UnpinRange(0),
        EveSends(1),
    ]
    after: list[Step] = [
        PinRange("holey", int(rng.choice([0, 2 * PAGE_SIZE])) + int(rng.integers(0, 2)), 1, 3),
        UnpinRange(1),
        PinRange("uaf", 0, PAGE_SIZE, 3),
    ]
    order = rng.permutation(2)  # the holey pin and the unpin in either order; the re-pin of uaf after its unpin
    steps += [after[int(i)] for i in order] + [after[2], EveSends(k - 1)]
    return Attack(tuple(steps), fresh=True)


def ring_at_edge(rng: np.random.Generator, m: MemoryMap) -> Attack:
    """nic2's spare queue with its ring ending at the edge of mallory's memory, -1/0/+1 descriptor, or a frame on.

    ``scattered_lo`` is her last frame before alice's ``alice_gap`` (physically next): a ring of 8, 64 or 256
    slots ending one descriptor before that edge or on it is hers (to be accepted), one ending a descriptor
    or a frame past it runs into alice's frame (to be refused), whatever its first frames are.  The region
    named is exactly the ring, or a descriptor longer; then the tail is rung.
    """
    queue = "tx" if rng.random() < 0.7 else "rx"
    slots = int(rng.choice([8, 64, 256]))
    length = slots * 16
    end = PAGE_SIZE + int(rng.choice([-16, 0, 0, 16, 16, PAGE_SIZE]))  # the ring's end, from scattered_lo's start
    offset = max(0, end - length)
    nbytes = length + int(rng.choice([0, 0, 16]))
    tail_reg = regs.queue_reg(regs.TDT if queue == "tx" else regs.RDT, 1)
    tail = int(rng.choice([1, slots - 1]))
    return Attack((OpenQueue(queue, "scattered_lo", offset, nbytes, slots), RegAt("nic2", tail_reg, tail)), fresh=True)


def foreign_reg(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Stores into other tenants' NICs: eve's doorbell at its edges, her ring base then her doorbell, alice's and
    bob's doorbells and resets; eve's own frames before and after."""
    sent = int(rng.integers(1, 9))
    steps: list[Step] = [EveSends(sent)]  # eve's ring: slots 0..sent-1 valid, tail = sent
    for _ in range(int(rng.integers(1, 4))):
        pick = int(rng.integers(0, 5))
        if pick <= 1:  # eve's doorbell at its edges: one back (a full lap minus one), one on, a lap, the size
            value = int(rng.choice([sent - 1, sent + 1, 0, sent + m.ring_size, m.ring_size, m.ring_size - 1, 0xFFFF]))
            steps.append(RegAt("nic3", regs.TDT, value))
        elif pick == 2:  # eve's ring base at kernel memory, then her doorbell
            frame = int(rng.integers(0, m.kernel.size // PAGE_SIZE))
            steps += [
                RegAt("nic3", regs.TDBAL, (m.kernel.phys + frame * PAGE_SIZE) & 0xFFFF_FFFF),
                RegAt("nic3", regs.TDT, sent + 1),
            ]
        elif pick == 3:  # alice's or bob's doorbells (no queue opened: base 0), RX or TX
            nic = FOREIGN[int(rng.integers(0, 2))]
            steps.append(RegAt(nic, int(rng.choice([regs.TDT, regs.RDT])), int(rng.integers(1, 9))))
        else:  # a reset or a ring register of another NIC
            nic = FOREIGN[int(rng.integers(0, 3))]
            offset = int(rng.choice([regs.CTRL, regs.TDLEN, regs.TDH, regs.RDBAL, regs.RDLEN]))
            value = regs.CTRL_RST if offset == regs.CTRL else int(rng.integers(0, 1 << 16)) * 128
            steps.append(RegAt(nic, offset, value))
    steps.append(EveSends(int(rng.integers(1, 4))))
    return Attack(tuple(steps), fresh=True)


def open_queue(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """nic2's spare queue opened over a region at its boundaries, then its tail rung.

        Ring sizes 0, 7, 8, 9, 256, 512, 65536, 65544; the region a slot shorter
        than the ring, exactly it, a slot longer, or what is left of the span;
        the ring at the span's start, unaligned (8 bytes in), a page in, or so
        that its second half lies past the span (``scattered_lo``: in alice's
        frame).  Then a doorbell of the new queue at its edges (1, 8, the size - 1,
        the size, 300).  Lengths not a whole number of descriptors, and now and
    then an address past the span that nothing maps.  Every region that breaks the rules must be refused; one
        that is accepted is the tenant's own memory, so this class escapes
        nowhere with a correct kernel -- a kernel that took a ring over alice's
        frame lets the device fetch her bytes as descriptors.

    Half the attacks put the ring's end at the exact edge of mallory's memory (``ring_edge``); the oracle judges
    every answer, the refusals too (fuzz/oracle/syscalls.py).
    """
    if rng.random() < 0.5:
        return ring_at_edge(rng, m)
    queue = "tx" if rng.random() < 0.7 else "rx"
    name = ("spare", "holey", "uaf", "scattered_lo", "scattered_lo")[int(rng.integers(0, 5))]
    span = {"spare": m.spare, "holey": m.holey, "uaf": m.uaf, "scattered_lo": m.scattered_lo}[name]
    slots = int(rng.choice([0, 7, 8, 9, 256, 256, 512, 512, 65536, 65544]))
    offset = int(rng.choice([0, 0, 8, 16, PAGE_SIZE // 2, PAGE_SIZE]) % span.size)
    if rng.random() < 0.1:  # past the span's mapping: an address the kernel must refuse to translate
        offset = span.size + UNMAPPED_REACH
    want = slots * 16
    nbytes = int(rng.choice([max(0, want - 16), want, want, want + 8, want + 16, span.size - offset, 2 * PAGE_SIZE]))
    tail_reg = regs.queue_reg(regs.TDT if queue == "tx" else regs.RDT, 1)
    tail = int(rng.choice([1, 8, max(0, slots - 1), slots, 300]))
    return Attack((OpenQueue(queue, name, offset, nbytes, slots), RegAt("nic2", tail_reg, tail)), fresh=True)
