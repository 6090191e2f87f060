"""Attack classes on virtqueue graphs (issue 16 section 4): each chain rule at its exact boundary.

Every attack runs on the ``virtio`` machine (fuzz/virtio_arena.py; queue
size ``Q`` = 32), fresh (a machine as built: in mode ``none`` a hostile chain
leaves the device broken, and the next attack must not inherit that), and is
one or a few ``virtq`` ops of mallory's own making: a few valid chains with the
hostile one hidden among them, or the hostile one alone.  Each class makes the
hostile value one below the limit (valid: must be accepted, must be safe) or
at and past it (must be refused with its reason in mode ``verifier``; in mode
``none`` the device meets it and the oracle sees a chain that never comes back,
or DMA outside mallory's pins).  The limits and their sources are the
verifier's rules (docs/verifier.md, the virtio section; virtio 1.2 §2.7):

* ``virtio-loop``: a ``next`` back into its own chain (a self-loop, a loop
  through 2..Q descriptors), a ``next`` of Q (Q - 1: valid), a head of Q
  (Q - 1: valid), a chain of exactly Q descriptors (valid);
* ``virtio-indirect``: an indirect table inside an indirect table, INDIRECT
  with NEXT, a table length of 0 or not a multiple of 16, a table of Q + 1
  entries (Q: valid), a chain of Q + 1 buffers through its table (Q: valid),
  a loop or a ``next`` past the end inside the table, a table in the kernel's
  memory or alice's (the device would read it);
* ``virtio-order``: a writable buffer before a readable one (readable first:
  valid), 11 header bytes (12: valid), an unknown flag bit;
* ``virtio-length``: a chain's buffers summed to exactly 2**32 - 1 bytes (fits,
  but runs out of the pins: an address reason, not the overflow) or 2**32 and
  past (overflows the used ring's le32 ``len``);
* ``virtio-avail``: the available index moved by Q (valid), by Q + 1 or far
  past, then moved back to a sane value: the queue must go on;
* ``virtio-used``: the used ring (or the descriptor table, or the available
  ring) repointed by register stores at alice's or the kernel's memory, then a
  valid notify; or at mallory's own used ring (harmless);
* ``virtio-race``: a valid receive chain, notified, then its ``next`` or an
  entry of its indirect table rewritten (to alice's or the kernel's memory, or
  into a loop) before eve's frame arrives: only a device walking the tenant's
  table sees the rewrite.
"""

from __future__ import annotations

import numpy as np

from fuzz.arena import FRAME_LEN, MemoryMap
from fuzz.steps import Attack, EveSends, Reg, Step
from fuzz.steps.virtq import VirtqPost, rows
from ring.memory import PAGE_SIZE
from ring.virtio import (
    QUEUE_DESC_HIGH,
    QUEUE_DESC_LOW,
    QUEUE_DEVICE_HIGH,
    QUEUE_DEVICE_LOW,
    QUEUE_DRIVER_HIGH,
    QUEUE_DRIVER_LOW,
    QUEUE_SEL,
    TRANSMITQ,
    VIRTIO_NET_HDR_SIZE,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_DESC_SIZE,
    VirtqLayout,
)

MACHINE = "virtio"
NEXT, WRITE, INDIRECT = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT
BUF = 2048  # mallory's TX buffers: a zeroed header and a frame head at each 2 KiB of her read pin
TABLE_AT = 1024  # indirect tables: one per KiB of her scratch page (a table of Q + 1 entries is 528 bytes)
Row = tuple[int, int, int, int]  # addr, len, flags, next
Graph = dict[int, Row]  # slot -> descriptor


def attack(*steps: Step) -> Attack:
    return Attack(tuple(steps), fresh=True, machine=MACHINE)


def post(queue: str, graph: Graph, heads: list[int], tables: list[tuple[int, list[Row]]] | None = None,
          jump: int = 0, notify: bool = True) -> VirtqPost:  # fmt: skip
    descs = tuple((s, rows([{"addr": a, "len": n, "flags": f, "next": x}])) for s, (a, n, f, x) in graph.items())
    tabs = tuple(
        (at, rows([{"addr": a, "len": n, "flags": f, "next": x} for a, n, f, x in t])) for at, t in tables or []
    )
    return VirtqPost(queue, descs, tabs, tuple(heads), jump, notify)


def tx_rows(rng: np.random.Generator, m: MemoryMap, count: int) -> list[Row]:
    """``count`` readable buffers of one valid TX chain, flags and ``next`` left to the caller: the first a whole
    header and a frame's start at a 2 KiB mark of the read pin, the rest short pieces inside the pin."""
    pin = m.read_pin
    first = (pin.bus + int(rng.integers(0, pin.size // BUF)) * BUF, VIRTIO_NET_HDR_SIZE + int(rng.integers(46, 300)))
    out: list[Row] = [(*first, 0, 0)]
    for _ in range(count - 1):
        n = int(rng.integers(1, 65))
        out.append((pin.bus + int(rng.integers(0, pin.size - n)), n, 0, 0))
    return out


def rx_rows(rng: np.random.Generator, m: MemoryMap, count: int) -> list[Row]:
    """``count`` writable buffers of one valid RX chain with room for eve's frame and its header."""
    pin = m.write_pin
    out: list[Row] = []
    for i in range(count):
        n = BUF if i == count - 1 else int(rng.integers(VIRTIO_NET_HDR_SIZE, 65))
        at = pin.bus + int(rng.integers(0, pin.size // BUF)) * BUF
        out.append((at, n, WRITE, 0))
    return out


def link(slots: list[int], bufs: list[Row]) -> Graph:
    """The buffers as one chain through ``slots`` (NEXT on all but the last)."""
    graph: Graph = {}
    for k, (slot, (a, n, f, _)) in enumerate(zip(slots, bufs, strict=True)):
        last = k == len(slots) - 1
        graph[slot] = (a, n, f if last else f | NEXT, 0 if last else slots[k + 1])
    return graph


def _valid(rng: np.random.Generator, m: MemoryMap, queue: str, free: list[int], chains: int) -> tuple[Graph, list[int]]:
    """``chains`` valid chains of 1..3 descriptors from the ``free`` slots (taken from it): their graph and heads."""
    graph: Graph = {}
    heads: list[int] = []
    for _ in range(chains):
        k = min(int(rng.integers(1, 4)), len(free))
        if k == 0:
            break
        slots = [free.pop() for _ in range(k)]
        bufs = tx_rows(rng, m, k) if queue == "tx" else rx_rows(rng, m, k)
        graph.update(link(slots, bufs))
        heads.append(slots[0])
    return graph, heads


def _slots(rng: np.random.Generator, m: MemoryMap) -> list[int]:
    return [int(s) for s in rng.permutation(m.ring_size)]


def _with_traffic(rng: np.random.Generator, m: MemoryMap, queue: str, free: list[int], graph: Graph,
                  heads: list[int], tables: list[tuple[int, list[Row]]] | None = None) -> list[Step]:  # fmt: skip
    """The hostile chains (``graph``, ``heads``) hidden among a few valid ones, in one notify; RX: eve sends a frame
    for every chain."""
    before, before_heads = _valid(rng, m, queue, free, int(rng.integers(0, 3)))
    after, after_heads = _valid(rng, m, queue, free, int(rng.integers(0, 3)))
    everything = {**before, **after, **graph}
    all_heads = before_heads + heads + after_heads
    steps: list[Step] = [post(queue, everything, all_heads, tables)]
    if queue == "rx":
        steps.append(EveSends(len(all_heads)))
    return steps


# -- virtio-loop -------------------------------------------------------------------------------------------
def virtio_loop(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """A loop through ``next``, a ``next`` or head of Q, or (valid) a chain of exactly Q, Q - 1 as next or head."""
    q = m.ring_size
    queue = "tx" if rng.random() < 0.7 else "rx"
    free = _slots(rng, m)
    variant = int(rng.integers(0, 6))
    make = tx_rows if queue == "tx" else rx_rows
    if variant == 0:  # exactly Q descriptors, every slot once: the longest chain there is, valid
        graph = link(free, make(rng, m, q))
        return attack(*([post(queue, graph, [free[0]])] + ([EveSends(1)] if queue == "rx" else [])))
    if variant <= 2:  # a loop: k descriptors whose last points back at one of them (k = 1: a self-loop; up to Q)
        k = int(rng.choice([1, 2, 3, q - 1, q])) if variant == 1 else int(rng.integers(1, q + 1))
        slots = [free.pop() for _ in range(k)]
        graph = link(slots, make(rng, m, k))
        a, ln, f, _ = graph[slots[-1]]
        graph[slots[-1]] = (a, ln, f | NEXT, slots[int(rng.integers(0, k))])
        return attack(*_with_traffic(rng, m, queue, free, graph, [slots[0]]))
    if variant == 3:  # a next of Q (outside the table) or Q + more; or Q - 1, the last slot: valid
        nxt = int(rng.choice([q - 1, q, q, q + 1, 0xFFFF]))
        head = free.pop()
        bufs = make(rng, m, 2)
        graph = {head: (*bufs[0][:2], bufs[0][2] | NEXT, nxt)}
        if nxt < q:
            if nxt in free:
                free.remove(nxt)
            graph[nxt] = bufs[1] if nxt != head else (*bufs[0][:2], bufs[0][2], 0)
        return attack(*_with_traffic(rng, m, queue, free, graph, [head]))
    # a head of Q or past it (the avail entry names no descriptor); or Q - 1: valid
    head = int(rng.choice([q - 1, q, q + 1, 0xFFFF]))
    graph = {}
    if head < q:
        free.remove(head)
        graph = link([head], make(rng, m, 1))
    return attack(*_with_traffic(rng, m, queue, free, graph, [head]))


# -- virtio-indirect ---------------------------------------------------------------------------------------
def table_rows(rng: np.random.Generator, m: MemoryMap, queue: str, count: int) -> list[Row]:
    """A valid indirect table of ``count`` entries chained 0 -> 1 -> ... (the buffers of one chain)."""
    bufs = tx_rows(rng, m, count) if queue == "tx" else rx_rows(rng, m, count)
    graph = link(list(range(count)), bufs)
    return [graph[i] for i in range(count)]


def virtio_indirect(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """One chain through an indirect table at a boundary (see the module); the table in mallory's scratch page."""
    q = m.ring_size
    queue = "tx" if rng.random() < 0.7 else "rx"
    free = _slots(rng, m)
    slot = int(rng.integers(0, 3))
    at = slot * TABLE_AT
    addr = m.scratch.bus + at
    variant = int(rng.integers(0, 8))
    head = free.pop()
    graph: Graph = {}
    if variant == 0:  # Q entries (valid) or Q + 1
        count = q + int(rng.integers(0, 2))
        table = table_rows(rng, m, queue, count)
    elif variant == 1:  # k direct buffers, then a table: Q buffers in all (valid) or Q + 1
        k = int(rng.integers(1, 4))
        count = q - k + int(rng.integers(0, 2))
        table = table_rows(rng, m, queue, count)
        slots = [head] + [free.pop() for _ in range(k)]  # the last slot: the indirect descriptor
        bufs = tx_rows(rng, m, k) if queue == "tx" else rx_rows(rng, m, k)
        graph = link(slots, [*bufs, (addr, count * VIRTQ_DESC_SIZE, INDIRECT, 0)])
    elif variant == 2:  # an indirect entry inside the table
        count = int(rng.integers(1, 5))
        table = table_rows(rng, m, queue, count)
        i = int(rng.integers(0, count))
        table[i] = (m.scratch.bus + ((slot + 1) % 3) * TABLE_AT, 2 * VIRTQ_DESC_SIZE, INDIRECT, 0)
    elif variant == 3:  # a loop inside the table, or a next past its end (count: the table's own size)
        count = int(rng.integers(1, 6))
        table = table_rows(rng, m, queue, count)
        a, ln, f, _ = table[-1]
        table[-1] = (a, ln, f | NEXT, int(rng.integers(0, count)) if rng.random() < 0.6 else count)
    elif variant == 4:  # the length: 0, or 8 bytes over a multiple of 16 (16-byte multiples: valid)
        count = int(rng.integers(1, 5))
        table = table_rows(rng, m, queue, count)
        length = int(rng.choice([0, count * VIRTQ_DESC_SIZE + 8, count * VIRTQ_DESC_SIZE - 8, count * 16]))
        graph = {head: (addr, length, INDIRECT, 0)}
    elif variant == 5:  # INDIRECT with NEXT
        count = int(rng.integers(1, 5))
        table = table_rows(rng, m, queue, count)
        after = free.pop()
        graph = {head: (addr, count * VIRTQ_DESC_SIZE, INDIRECT | NEXT, after), after: link([after], (
            tx_rows(rng, m, 1) if queue == "tx" else rx_rows(rng, m, 1)))[after]}  # fmt: skip
    else:  # the table itself outside mallory's pins: in the kernel's memory, alice's secret, one byte past scratch
        count = int(rng.integers(1, 5))
        table = table_rows(rng, m, queue, count)
        nbytes = count * VIRTQ_DESC_SIZE
        where = int(rng.integers(0, 3))
        if where == 0:
            target = m.kernel.bus + int(rng.integers(0, m.kernel.size // PAGE_SIZE)) * PAGE_SIZE
        elif where == 1:
            target = m.alice_secret.bus + int(rng.integers(0, m.alice_secret.size // PAGE_SIZE)) * PAGE_SIZE
        else:
            target = m.scratch.end - nbytes + 1
        graph = {head: (target, nbytes, INDIRECT, 0)}
    if head not in graph:
        graph[head] = (addr, len(table) * VIRTQ_DESC_SIZE, INDIRECT, 0)
    return attack(*_with_traffic(rng, m, queue, free, graph, [head], [(at, table)]))


# -- virtio-order ------------------------------------------------------------------------------------------
def virtio_order(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Readable and writable buffers in either order, header bytes at 11 or 12, an unknown flag bit."""
    queue = "tx" if rng.random() < 0.5 else "rx"
    free = _slots(rng, m)
    variant = int(rng.integers(0, 3))
    head, second = free.pop(), free.pop()
    readable = (m.read_pin.bus + int(rng.integers(0, m.read_pin.size // BUF)) * BUF, 0, 0, 0)
    writable = (m.write_pin.bus + int(rng.integers(0, m.write_pin.size // BUF)) * BUF, 0, WRITE, 0)
    mine = readable if queue == "tx" else writable  # the side the header and frame are on
    other = writable if queue == "tx" else readable
    if variant == 0:  # the device's side first and the other after (TX: valid), or the other way round
        first, then = (mine, other) if rng.random() < 0.5 else (other, mine)
        lens = {id(mine): VIRTIO_NET_HDR_SIZE + FRAME_LEN + 64, id(other): int(rng.integers(1, 512))}
        bufs = [(first[0], lens[id(first)], first[2], 0), (then[0], lens[id(then)], then[2], 0)]
        graph = link([head, second], bufs)
    elif variant == 1:  # the header: 11 bytes on the device's side (short) or 12 (valid), over one or two buffers
        total = VIRTIO_NET_HDR_SIZE - int(rng.integers(0, 2))
        split = int(rng.integers(0, total + 1))
        bufs = [(mine[0], split, mine[2], 0), (mine[0] + 64, total - split, mine[2], 0)]
        graph = link([head, second], [b for b in bufs if b[1]] or bufs[:1]) if split not in (0, total) else (
            link([head], [(mine[0], total, mine[2], 0)]))  # fmt: skip
    else:  # a flag bit beyond NEXT, WRITE and INDIRECT (8, or the top bit)
        bit = int(rng.choice([8, 0x10, 0x8000]))
        graph = link([head], [(mine[0], VIRTIO_NET_HDR_SIZE + FRAME_LEN + 64, mine[2] | bit, 0)])
    return attack(*_with_traffic(rng, m, queue, free, graph, [head]))


# -- virtio-length -----------------------------------------------------------------------------------------
#: The used ring's ``len`` is le32 (virtio 1.2 §2.7.8): a chain's buffers summed must fit in 32 bits.
CHAIN_BYTES_MAX = 0xFFFF_FFFF


def virtio_length(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Buffers summed to exactly 2**32 - 1 bytes (the sum fits; the long buffer runs out of mallory's pins: an
    address refusal, and naming the overflow would be a wrong reason) or 2**32 and past (overflows 32 bits): a
    whole header and frame first, the rest in one or two long buffers from the same pin."""
    queue = "tx" if rng.random() < 0.5 else "rx"
    free = _slots(rng, m)
    pin = m.read_pin if queue == "tx" else m.write_pin
    flags = 0 if queue == "tx" else WRITE
    first = VIRTIO_NET_HDR_SIZE + FRAME_LEN + 64
    total = CHAIN_BYTES_MAX + int(rng.choice([0, 1, 2, 4096]))
    rest = total - first
    pieces = [rest] if rest <= CHAIN_BYTES_MAX and rng.random() < 0.5 else [rest // 2, rest - rest // 2]  # le32 each
    slots = [free.pop() for _ in range(1 + len(pieces))]
    bufs: list[Row] = [(pin.bus, first, flags, 0)] + [(pin.bus + BUF, k, flags, 0) for k in pieces]
    return attack(*_with_traffic(rng, m, queue, free, link(slots, bufs), [slots[0]]))


# -- virtio-avail ------------------------------------------------------------------------------------------
def virtio_avail(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """The available index moved by Q (valid: Q one-descriptor chains) or by Q + 1 or far more (refused whole), then
    moved back to a few of the chains already written: the queue must take them."""
    q = m.ring_size
    free = _slots(rng, m)
    graph: Graph = {}
    for s in range(q):
        graph.update(link([s], tx_rows(rng, m, 1)))
    heads = [int(h) for h in free]
    jump = int(rng.choice([0, 1, 1, int(rng.integers(2, 0x10000 - q))]))
    steps: list[Step] = [post("tx", graph, heads, jump=jump)]
    if jump:  # the index back to her last accepted one plus k: the kernel judges those k
        k = int(rng.integers(1, q + 1))
        steps.append(VirtqPost("tx", jump=(0x10000 - q + k) & 0xFFFF))
    return attack(*steps)


# -- virtio-used -------------------------------------------------------------------------------------------
def virtio_used(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Mallory repoints her transmitq's used ring (or descriptor table, or available ring) by register stores, at
    alice's memory or the kernel's (or at her own used ring: harmless), then notifies a valid chain."""
    which = int(rng.integers(0, 5))
    if which <= 1:
        target = m.alice_rx.bus + int(rng.integers(0, m.alice_rx.size // PAGE_SIZE)) * PAGE_SIZE
    elif which == 2:
        target = m.kernel.bus + int(rng.integers(0, m.kernel.size // PAGE_SIZE)) * PAGE_SIZE
    elif which == 3:
        target = m.alice_secret.bus
    else:
        target = m.tx_ring + VirtqLayout.of(m.ring_size).used  # her own used ring, where it already is
    regs = int(rng.choice([0, 0, 0, 1, 2])) if which < 4 else 0
    low, high = ((QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH), (QUEUE_DESC_LOW, QUEUE_DESC_HIGH),
                 (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH))[regs]  # fmt: skip
    steps: list[Step] = [Reg(QUEUE_SEL, TRANSMITQ), Reg(low, target & 0xFFFF_FFFF), Reg(high, target >> 32)]
    free = _slots(rng, m)
    graph, heads = _valid(rng, m, "tx", free, int(rng.integers(1, 4)))
    steps.append(post("tx", graph, heads))
    return attack(*steps)


# -- virtio-race -------------------------------------------------------------------------------------------
def virtio_race(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """A valid receive chain notified, then rewritten before the frame arrives: its ``next`` to a descriptor of
    alice's or the kernel's memory (or into a loop), or an entry of its indirect table; eve's frame follows."""
    free = _slots(rng, m)
    head, second, spare = free.pop(), free.pop(), free.pop()
    where = int(rng.integers(0, 4))
    if where == 0:
        target = m.alice_rx.bus + int(rng.integers(0, m.alice_rx.size // PAGE_SIZE)) * PAGE_SIZE
    elif where == 1:
        target = m.kernel.bus + int(rng.integers(0, m.kernel.size // PAGE_SIZE)) * PAGE_SIZE
    elif where == 2:
        target = m.alice_secret.bus + int(rng.integers(0, m.alice_secret.size // PAGE_SIZE)) * PAGE_SIZE
    else:
        target = m.write_pin.bus + int(rng.integers(0, m.write_pin.size // BUF)) * BUF  # her own: harmless
    first = (m.write_pin.bus, int(rng.integers(VIRTIO_NET_HDR_SIZE, 65)), WRITE | NEXT, second)
    steps: list[Step] = []
    variant = int(rng.integers(0, 3))
    if variant == 0:  # next rewritten to a descriptor she wrote beforehand (not part of the chain judged)
        graph = {head: first, second: (m.write_pin.bus + BUF, BUF, WRITE, 0), spare: (target, BUF, WRITE, 0)}
        steps += [post("rx", graph, [head]), post("rx", {head: (*first[:3], spare)}, [], notify=False)]
    elif variant == 1:  # an indirect table's entry rewritten to point elsewhere
        table = table_rows(rng, m, "rx", 2)
        graph = {head: (m.scratch.bus, 2 * VIRTQ_DESC_SIZE, INDIRECT, 0)}
        _, ln, f, x = table[1]
        steps += [post("rx", graph, [head], [(0, table)]),
                  post("rx", {}, [], [(0, [table[0], (target, ln, f, x)])], notify=False)]  # fmt: skip
    else:  # next rewritten into a loop: the chain's last descriptor points back at its head
        graph = {head: first, second: (m.write_pin.bus + BUF, BUF, WRITE, 0)}
        loop = {second: (m.write_pin.bus + BUF, BUF, WRITE | NEXT, head)}
        steps += [post("rx", graph, [head]), post("rx", loop, [], notify=False)]
    steps.append(EveSends(1))
    return attack(*steps)
