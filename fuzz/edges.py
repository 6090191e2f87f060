"""Attack classes at the exact edges of every rule: one hostile descriptor hidden in valid traffic, buffers over
scattered pins, ring geometry at the full-ring edges.

Why a class of mostly *valid* traffic: the verifier's compiled fast path
(verifier/rules/fastpath.c) takes a doorbell batch only when every descriptor
in it passes; a batch hostile throughout is handed back to the numpy checks
at once, so a slip in the C (an off-by-one at a buffer's end, a length rule
dropped) is never exercised by such batches.  ``hidden`` posts batches of
valid descriptors aimed at the exact edges of mallory's pinned runs (first
byte, last byte, a whole page, a page crossing), and in most batches hides
exactly one descriptor one step past a boundary: a byte past a run's end or
before its start, a length of the limit + 1 or spanning a hole, a zero
length, an unsupported command bit, checksum offsets one past the packet, a
packet of the fragment limit + 1 or a frame one byte over the jumbo limit (and, as often, a valid packet exactly at
that limit: a verifier refusing it is found by the oracle's judged reasons).  A batch without the hostile one is
taken whole by the compiled path; with it, a correct verifier refuses
exactly that one.  Every attack ends with a second, short doorbell of valid
descriptors hiding one that reads a byte past a run: a batch with a single
hostile descriptor whose slip moves bytes, whatever the first one held.

The edges are computed from the live map (``MemoryMap.pinned_runs``: adjacent
pins merged, so the byte outside a run never carries the access), so the
byte one past an edge is always one the device must not touch.  The
ring-slot edge is covered by varying the batch size, so the ring's wrap
falls anywhere inside a batch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fuzz.arena import MemoryMap
from fuzz.steps import Attack, EveSends, FakeRing, Reg, Rx, Step, Tx, post_and_receive, tx_batch
from fuzz.steps.tx import GOOD
from ring import regs
from ring.descriptors import TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_IFCS, TXD_CMD_RPS, TXD_CMD_RS, TXD_CMD_VLE
from ring.memory import PAGE_SIZE

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
READ, WRITE = 1, 2
#: The verifier's documented limits the edges are aimed at (docs/verifier.md; verifier/rules/policy.py's defaults).
MAX_BUFFER = PAGE_SIZE  # a TX buffer is at most one page
MAX_FRAGMENTS = 18  # AF_XDP multi-buffer: MAX_SKB_FRAGS + 1
MAX_FRAME = 9014  # jumbo frame
RX_BUFFER = 2048  # RCTL.BSIZE as the kernel programs it
MORE = TXD_CMD_IFCS | TXD_CMD_RS  # a fragment that is not the packet's last
UNKNOWN = (TXD_CMD_DEXT, TXD_CMD_RPS, TXD_CMD_VLE)
#: The hostile descriptor's kind (see ``hidden_tx``), those that move bytes past a pin weighted up.
KINDS = np.array([0, 0, 1, 1, 3, 3, 6, 2, 4, 5, 7])


def _runs(m: MemoryMap, access: int) -> tuple[I64, I64]:
    runs = np.array(m.pinned_runs(access), dtype=np.int64)
    return runs[:, 0], runs[:, 1]


def valid_ranges(rng: np.random.Generator, m: MemoryMap, access: int, length: I64) -> U64:
    """Addresses of ``length``-byte buffers wholly inside a pinned run: at its first byte, ending on its last
    byte, at a page start, or anywhere (lengths of at most a page, so every run holds one)."""
    n = length.size
    start, end = _runs(m, access)
    which = rng.integers(0, start.size, n)
    lo, hi = start[which], end[which] - length
    where = rng.integers(0, 4, n)
    anywhere = lo + rng.integers(0, 1 << 40, n) % (hi - lo + 1)
    page = lo + (rng.integers(0, 1 << 40, n) % ((hi - lo) // PAGE_SIZE + 1)) * PAGE_SIZE
    addr = np.where(where == 0, lo, np.where(where == 1, hi, np.where(where == 2, page, anywhere)))
    return addr.astype(np.uint64)


def edge_lengths(rng: np.random.Generator, n: int, most: int) -> I64:
    """Lengths 1..most with the limits over-represented (1, 60, 1514, most - 1, most)."""
    edge = np.array([1, 60, 1514, most - 1, most], dtype=np.int64)
    pick = rng.integers(1, most + 1, n)
    return np.where(rng.random(n) < 0.4, edge[rng.integers(0, edge.size, n)], pick).astype(np.int64)


def _batch_size(rng: np.random.Generator, n: int) -> int:
    """``n`` less a few, so the ring's wrap lands at any slot of a batch over a block."""
    return max(1, n - int(rng.integers(0, min(n, 16))))


def _one_past(rng: np.random.Generator, m: MemoryMap, access: int, length: int) -> int:
    """A ``length``-byte buffer one byte past a run's edge: its last byte just after the run, or its first byte
    just before it."""
    start, end = _runs(m, access)
    k = int(rng.integers(0, start.size))
    return int(end[k]) - length + 1 if rng.random() < 0.6 else int(start[k]) - 1


def across_hole(rng: np.random.Generator, m: MemoryMap) -> tuple[int, int]:
    """A buffer whose first and last frames are pinned and a middle one is not: the hole of ``holey`` (or, by
    device address, alice's frame between the scattered pins).  Longer than a page, so also LEN_TOO_LONG."""
    lo, _, hi = m.holes
    if rng.random() < 0.5:
        first, last = lo.bus, hi.bus
    else:
        first, last = m.scattered_lo.bus, m.scattered_hi.bus
    addr = first + int(rng.integers(0, PAGE_SIZE))
    end = last + int(rng.integers(1, PAGE_SIZE + 1))  # one past the last byte, inside the last page
    return addr, min(end - addr, 0xFFFF)


def hidden_tx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    n = _batch_size(rng, n)
    length = edge_lengths(rng, n, MAX_BUFFER)
    addr = valid_ranges(rng, m, READ, length)
    cmd = np.full(n, GOOD, dtype=np.int64)
    cso = np.zeros(n, dtype=np.int64)
    css = np.zeros(n, dtype=np.int64)
    pick = rng.random()
    if pick < 0.2 and n >= MAX_FRAGMENTS + 2:
        return Attack.of(Tx(_fragment_edge(rng, m, addr, length)))
    kind = int(rng.choice(KINDS))
    if pick >= 0.45:  # else (a quarter) all valid: the batch the compiled path takes whole
        at = int(rng.choice([0, n - 1, int(rng.integers(0, n))]))
        if kind in (0, 1):  # a byte past an edge of a read-pinned run
            length[at] = int(edge_lengths(rng, 1, MAX_BUFFER)[0])
            addr[at] = _one_past(rng, m, READ, int(length[at]))
        elif kind == 2:  # the length limit + 1, every byte pinned (only the length rule refuses it)
            big = np.flatnonzero(np.diff(np.array(m.pinned_runs(READ)), axis=1)[:, 0] > MAX_BUFFER)
            first_byte = int(np.array(m.pinned_runs(READ))[int(rng.choice(big)), 0])
            addr[at], length[at] = first_byte, MAX_BUFFER + 1
        elif kind == 3:  # over a hole: first and last frame pinned, the middle not
            addr[at], length[at] = across_hole(rng, m)
        elif kind == 4:  # beside buffers short of a page and of their run's end: numpy's own fast path meets it
            length[:] = np.minimum(length, MAX_BUFFER - 1)
            addr[:] = valid_ranges(rng, m, READ, length + 1)
            length[at] = 0
        elif kind == 5:
            cmd[at] = GOOD | UNKNOWN[int(rng.integers(0, len(UNKNOWN)))]
        elif kind == 7:  # checksum offload at its edges: CSO + 2 == length and CSS == length - 1 are valid
            short = int(rng.integers(14, 256))
            length[at], addr[at], cmd[at] = short, valid_ranges(rng, m, READ, np.array([short]))[0], GOOD | TXD_CMD_IC
            cso[at] = short - 2 + int(rng.integers(0, 2))
            css[at] = short - 1 + int(rng.integers(0, 2))
        else:  # a whole page one frame off: starts on the run's last page boundary and runs past its end
            ends = _runs(m, READ)[1]
            addr[at], length[at] = int(ends[int(rng.integers(0, ends.size))]) - PAGE_SIZE + 1, MAX_BUFFER
    return Attack.of(Tx(tx_batch(addr, length, cmd, cso, css)))


def _fragment_edge(rng: np.random.Generator, m: MemoryMap, addr: U64, length: I64) -> npt.NDArray[np.void]:
    """Valid single-descriptor packets and one multi-fragment packet exactly at a packet limit or one past it: 18
    fragments (valid) or 19, a 9014-byte frame (valid) or 9015, or checksum offload on a 3-fragment packet with
    CSO + 2 at the packet's end and CSS on its last byte (valid) or one past either (CSO/CSS are one byte each:
    the packet is at most 255 bytes), half the time ending the batch (so its last descriptor asks for IC)."""
    n = addr.size
    cmd = np.full(n, GOOD, dtype=np.int64)
    cso = np.zeros(n, dtype=np.int64)
    css = np.zeros(n, dtype=np.int64)
    which = rng.random()
    if which < 0.35:
        frags = MAX_FRAGMENTS + int(rng.integers(0, 2))
        at = int(rng.integers(0, n - frags + 1))
        length[at : at + frags] = np.minimum(length[at : at + frags], MAX_FRAME // frags)
    elif which < 0.7:
        frags = 3
        at = int(rng.integers(0, n - frags + 1))
        total = MAX_FRAME + int(rng.integers(0, 2))
        length[at : at + frags] = [total // 3, total // 3, total - 2 * (total // 3)]
    else:  # as a driver writes it: IC, CSO and CSS on every fragment (the first's count); often the batch's last
        frags = 3
        at = n - frags if rng.random() < 0.5 else int(rng.integers(0, n - frags + 1))
        length[at : at + frags] = rng.integers(5, 85, frags)
        total = int(length[at : at + frags].sum())
        cso[at : at + frags] = total - 2 + int(rng.integers(0, 2))
        css[at : at + frags] = total - 1 + int(rng.integers(0, 2))
        cmd[at : at + frags] |= TXD_CMD_IC
    addr[at : at + frags] = valid_ranges(rng, m, READ, length[at : at + frags])
    cmd[at : at + frags - 1] &= ~TXD_CMD_EOP
    cmd[at : at + frags - 1] |= MORE
    return tx_batch(addr, length, cmd, cso, css)


def hidden_rx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    n = _batch_size(rng, n)
    addr = valid_ranges(rng, m, WRITE, np.full(n, RX_BUFFER, dtype=np.int64))
    if rng.random() < 0.75:
        at = int(rng.choice([0, n - 1, int(rng.integers(0, n))]))
        addr[at] = np.uint64(_one_past(rng, m, WRITE, RX_BUFFER))
    return Attack.of(*post_and_receive(addr))


def hidden(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Valid traffic at the exact edges of mallory's pins, with (usually) one descriptor one step past an edge;
    then a short second doorbell of valid descriptors with one a byte past a read-pinned run's edge (a batch
    with exactly one hostile descriptor that moves bytes where nothing guards them)."""
    first = hidden_tx(rng, m, n) if rng.random() < 0.7 else hidden_rx(rng, m, n)
    k = 16
    length = edge_lengths(rng, k, MAX_BUFFER)
    addr = valid_ranges(rng, m, READ, length)
    at = int(rng.integers(0, k))
    addr[at] = np.uint64(_one_past(rng, m, READ, int(length[at])))
    return Attack((*first.steps, Tx(tx_batch(addr, length))))


def scattered(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Buffers over pins with holes and scattered frames: first and last frame pinned and a middle one not
    (3+ frames), or running from a pinned page into the hole / alice's frame between mallory's pins, or lying
    in it; TX (lengths up to 16 frames) and RX (a receive buffer from the last half of a page onward)."""
    lo, hole, hi = m.holes
    pins = np.array([lo.bus, hi.bus, m.scattered_lo.bus, m.scattered_hi.bus], dtype=np.int64)
    gaps = np.array([hole.bus, hole.bus, m.alice_gap.bus, m.alice_gap.bus], dtype=np.int64)
    if rng.random() < 0.3:
        which = rng.integers(0, 4, n)
        base = np.where(rng.random(n) < 0.7, pins[which], gaps[which])
        addr = base + rng.integers(RX_BUFFER // 2, PAGE_SIZE, n)
        return Attack.of(*post_and_receive(addr.astype(np.uint64)))
    which = rng.integers(0, 4, n)
    start = pins[which] + rng.integers(0, PAGE_SIZE, n)
    kind = rng.integers(0, 3, n)
    into_gap = gaps[which] + rng.integers(0, PAGE_SIZE, n) + 1 - start  # ends inside the gap page
    three = np.where(
        which % 2 == 0, pins[np.minimum(which + 1, 3)] - start + rng.integers(1, PAGE_SIZE + 1, n), into_gap
    )
    far = rng.integers(3 * PAGE_SIZE, 16 * PAGE_SIZE, n)
    length = np.where(kind == 0, three, np.where(kind == 1, into_gap, far))
    addr = np.where((kind == 1) & (rng.random(n) < 0.3), gaps[which], start)
    length = np.clip(length, 1, 0xFFFF)
    return Attack.of(Tx(tx_batch(addr.astype(np.uint64), length)))


def ring_edge(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Tails at the exact edges of the ring, from a machine as built (tail and done 0).

    TX: tail size - 1, size, size + 1, and the end of the valid descriptors - 1 / 0 / + 1 (after them: a few
    written but never meant to go).  RX, with buffers in flight: a tail a full lap ahead of the consumer
    (= done), one less (the ring exactly full: allowed), one more.
    """
    size = m.ring_size
    if rng.random() < 0.4:  # c valid descriptors, then j written but never meant to go (kernel canary frames)
        c = int(rng.integers(1, max(2, n - 8)))
        j = int(rng.integers(1, 9))
        length = edge_lengths(rng, c + j, MAX_BUFFER)
        addr = valid_ranges(rng, m, READ, length)
        addr[c:] = (m.kernel.phys + rng.integers(0, m.kernel.size // PAGE_SIZE, j) * PAGE_SIZE).astype(np.uint64)
        tail = int(rng.choice([size - 1, size, size + 1, c - 1, c, c + 1, 0]))
        return Attack(tuple([Tx(tx_batch(addr, length), tail=tail)]), fresh=True)
    k = int(rng.integers(1, min(n, 255) + 1))  # rung, in flight: eve sends nothing until the end
    more = int(rng.integers(1, min(n, 255) + 1))  # valid, written, then rung with an edge tail
    first = valid_ranges(rng, m, WRITE, np.full(k, RX_BUFFER, dtype=np.int64))
    extra = valid_ranges(rng, m, WRITE, np.full(more, RX_BUFFER, dtype=np.int64))
    # every other slot of the ring written too, address 0 (a kernel frame): whatever a tail hands over is hers,
    # written in this attack, never a stale slot of an earlier one
    extra = np.concatenate((extra, np.zeros(size - 1 - k - more, dtype=np.uint64)))
    tail = int(rng.choice([size - 1, 0, 1, k + more - 1, k + more + 1, size, size + 1]))
    # eve sends a frame for every slot a tail may hand over (a full ring less one): beyond the valid buffers they
    # land at address 0, or use up the slots a careful kernel refused and neutralised
    steps: list[Step] = [
        Rx(first),
        Rx(extra, doorbell=False),
        Reg(regs.RDT, tail),
        *(EveSends(c) for c in (255, 255, 1)),
    ]
    return Attack(tuple(steps), fresh=True)


def register_fires(rng: np.random.Generator, m: MemoryMap, n: int, writes: list[tuple[int, int]],
                   fake: npt.NDArray[np.void]) -> Attack:  # fmt: skip
    """A ring-base repoint followed by the doorbell that makes the device fetch the fake ring.

    The doorbell is mallory's own, at the natural tail, over a valid descriptor (TX) or buffer (RX, then eve
    sends): a verifier that let the repoint through would ring the device, which fetches slot 0 of the fake
    ring (a machine as built: head 0) -- a kernel address.
    """
    if rng.random() < 0.5:
        length = edge_lengths(rng, 1, MAX_BUFFER)
        doorbell: list[Step] = [Tx(tx_batch(valid_ranges(rng, m, READ, length), length))]
    else:
        doorbell = [*post_and_receive(valid_ranges(rng, m, WRITE, np.full(1, RX_BUFFER, dtype=np.int64)))]
    return Attack((FakeRing(fake), *(Reg(offset, value) for offset, value in writes), *doorbell), fresh=True)
