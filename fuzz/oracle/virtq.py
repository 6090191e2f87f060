"""The oracle's own reading of a tenant's virtqueues: which chains keep the rules, and which ones came back.

Judged from ground truth and the format alone (ring/virtio.py; nothing of the
kernel's walker, verifier/rules/virtq.py, nor of the device's, device/virtq.py):

* *the rules* (virtio 1.2 §2.7.4-§2.7.5, §5.1.6; docs/verifier.md, the virtio
  section): before each notify the oracle reads the tenant's available ring,
  descriptor table and the indirect tables a chain reaches, straight from
  memory, and walks each new chain itself -- a chain that revisits a
  descriptor loops (a seen-set, not the kernel's step counter), a ``next``
  or head outside its table, an INDIRECT with NEXT or inside an indirect
  table, an indirect table whose length is no multiple of 16 or that holds
  more than queue-size entries or is not pinned for device read, more than
  queue-size buffers in all, a readable buffer after a writable one, fewer
  than 12 header bytes on the device's side, a buffer outside the tenant's
  pins with the access the device needs (the oracle's pin reference);
* *the answers*: after the notify, the tenant's used ring.  Every chain made
  available (while the available index moved by at most the queue size, less
  the chains still out) must come back: a TX chain at once (the device runs
  inline), an RX chain once a frame that fits it arrived.  A chain that never
  comes back is a liveness failure (``liveness``): the device gave up on the
  queue, as QEMU's ``virtio_error`` does on a looped descriptor.  Where a
  kernel claims the rules (mode ``verifier``), a chain that breaks one must come
  back at once with ``VIRTQ_USED_LEN_REFUSED`` and one audit record whose reason
  is one it breaks, and a chain that keeps every rule must not (``rule``).

Reason names are the documented ones (docs/verifier.md), as strings: the
oracle compares names, it imports no reason table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fuzz.oracle.escape import Escape
from ring import indices
from ring.virtio import (
    VIRTIO_NET_HDR_SIZE,
    VIRTQ_DESC,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_KNOWN,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_DESC_SIZE,
    VIRTQ_USED_LEN_REFUSED,
    VirtqLayout,
    avail_bytes,
    avail_dtype,
    used_bytes,
    used_dtype,
)

#: The address reasons: a refusal of a range outside the pins may name any of them (which one depends on the
#: frame's state, judged for e1000 rings by fuzz/oracle/reasons.py); here they count as one family.
ADDRESS = frozenset(
    {"ADDR_WRAP", "ADDR_BEYOND_MEMORY", "ADDR_NOT_PINNED", "ACCESS_NO_READ", "ACCESS_NO_WRITE", "PIN_RELEASED"}
)
PINS = "ADDRESS"  # the family's name in a chain's broken set
MAX_CHAIN_BYTES = 0xFFFF_FFFF  # the used ring's len is le32
READ, WRITE = 1, 2

#: (addr, length, need) -> whether the range is outside the owner's pins with ``need`` (the oracle's reference)
RangeBad = Callable[[int, int, int], bool]
Reader = Callable[[int, int], npt.NDArray[np.uint8]]


def chain_rules(table: npt.NDArray[np.void], head: int, tx: bool, read: Reader, range_bad: RangeBad) -> set[str]:
    """The rules the chain at ``head`` breaks (empty: it keeps them all), walked once from the tenant's memory.

    A walk that cannot go on (a loop, a ``next`` outside the table, a bad
    indirect table) names that one rule; a chain walked to its end names every
    rule its buffers break, since a kernel may judge them in any order.
    """
    size = int(table.size)
    if not 0 <= head < size:
        return {"VIRTQ_HEAD_BEYOND"}
    rows, i, inside = table, head, False
    seen: set[int] = set()
    bufs: list[tuple[int, int, bool]] = []
    while True:
        if i in seen:
            return {"VIRTQ_CHAIN_LOOP"}
        seen.add(i)
        d = rows[i]
        flags, nxt = int(d["flags"]), int(d["next"])
        if flags & ~VIRTQ_DESC_F_KNOWN:
            return {"VIRTQ_FLAGS_UNKNOWN"}
        if flags & VIRTQ_DESC_F_INDIRECT:
            if inside:
                return {"VIRTQ_INDIRECT_NESTED"}
            if flags & VIRTQ_DESC_F_NEXT:
                return {"VIRTQ_INDIRECT_WITH_NEXT"}
            addr, length = int(d["addr"]), int(d["len"])
            if length == 0 or length % VIRTQ_DESC_SIZE:
                return {"VIRTQ_INDIRECT_LEN"}
            if length // VIRTQ_DESC_SIZE > size:
                return {"VIRTQ_INDIRECT_TOO_BIG"}
            if range_bad(addr, length, READ):
                return {PINS}
            rows, i, inside, seen = read(addr, length).view(VIRTQ_DESC), 0, True, set()
            continue
        bufs.append((int(d["addr"]), int(d["len"]), bool(flags & VIRTQ_DESC_F_WRITE)))
        if not flags & VIRTQ_DESC_F_NEXT:
            break
        if nxt >= rows.size:
            return {"VIRTQ_NEXT_BEYOND"}
        i = nxt
    broken: set[str] = set()
    if len(bufs) > size:
        broken.add("VIRTQ_CHAIN_TOO_LONG")
    writes = [w for _, _, w in bufs]
    if any(w and not later for k, w in enumerate(writes) for later in writes[k + 1 :]):
        broken.add("VIRTQ_WRITE_BEFORE_READ")
    if sum(n for _, n, _ in bufs) > MAX_CHAIN_BYTES:
        broken.add("VIRTQ_LEN_OVERFLOW")
    if sum(n for _, n, w in bufs if w != tx) < VIRTIO_NET_HDR_SIZE:
        broken.add("VIRTQ_NET_HDR_SHORT")
    if any(n > 0 and range_bad(a, n, WRITE if w else READ) for a, n, w in bufs):
        broken.add(PINS)
    return broken


def room(table: npt.NDArray[np.void], head: int, read: Reader) -> int:
    """Bytes a device may write into the chain at ``head`` (its writable buffers), for a chain that keeps the
    structural rules; -1 when the walk cannot finish (the device cannot use it either)."""
    rows, i, total, seen, steps = table, head, 0, set(), 0
    while 0 <= i < rows.size and i not in seen and steps <= 2 * table.size:
        seen.add(i)
        steps += 1
        d = rows[i]
        flags = int(d["flags"])
        if flags & VIRTQ_DESC_F_INDIRECT:
            length = int(d["len"])
            if length == 0 or length % VIRTQ_DESC_SIZE or rows is not table:
                return -1
            raw = read(int(d["addr"]), length)
            if raw.size != length:
                return -1
            rows, i, seen = raw.view(VIRTQ_DESC), 0, set()
            continue
        if flags & VIRTQ_DESC_F_WRITE:
            total += int(d["len"])
        if not flags & VIRTQ_DESC_F_NEXT:
            return total
        i = int(d["next"])
    return -1


@dataclass
class QueueView:
    """One of the tenant's virtqueues as the oracle reads it: its three areas in memory, and what it expects."""

    nic: str
    index: int  # the virtqueue's number (receiveq1 0, transmitq1 1)
    kind: str  # "tx" or "rx"
    data: npt.NDArray[np.uint8]
    phys: int
    size: int
    last_avail: int = 0  # the oracle's own account: the next available entry it has not judged
    last_used: int = 0  # ... the next used entry it has not read
    #: RX chains accepted and not yet back: (head, writable bytes; -1 a chain the device cannot finish)
    waiting: list[tuple[int, int]] = field(default_factory=list)

    def areas(self) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void], npt.NDArray[np.void]]:
        lay = VirtqLayout.of(self.size)
        p, n = self.phys, self.size
        desc = self.data[p + lay.desc : p + lay.desc + n * VIRTQ_DESC_SIZE].view(VIRTQ_DESC)
        avail = self.data[p + lay.avail : p + lay.avail + avail_bytes(n)].view(avail_dtype(n))
        used = self.data[p + lay.used : p + lay.used + used_bytes(n)].view(used_dtype(n))
        return desc, avail, used

    def take_used(self) -> tuple[list[int], list[int]]:
        """The (head, len) entries the tenant's used ring gained since the last call."""
        _, _, used = self.areas()
        ready = indices.distance16(self.last_used, int(used["idx"][0]))
        slots = (self.last_used + np.arange(ready, dtype=np.int64)) & (self.size - 1)
        elems = used["ring"][0][slots]
        self.last_used = (self.last_used + ready) & 0xFFFF
        return elems["id"].astype(np.int64).tolist(), elems["len"].astype(np.int64).tolist()


@dataclass
class VirtqJudge:
    """The oracle's account of one tenant's virtqueues (``watch``), judged around each notify and each frame."""

    read: Reader
    range_bad: RangeBad
    #: the kernel claims the rules (mode ``verifier``): refusals and their reasons are judged too
    rules: bool = False
    #: (nic, queue index, kind) -> per-reason record counts (the audit sink's statistics), when reasons are judged
    counts: Callable[[str, int, str], Mapping[str, int]] | None = None
    queues: dict[tuple[str, int], QueueView] = field(default_factory=dict)

    def watch(self, view: QueueView) -> None:
        self.queues[(view.nic, view.index)] = view

    def notified(self, nic: str, index: int, write: Callable[[], object]) -> list[Escape]:
        """The tenant notifies queue ``index`` of ``nic`` (``write`` does it); what the oracle saw go wrong."""
        q = self.queues.get((nic, index))
        if q is None:
            write()
            return []
        desc, avail, _ = q.areas()
        idx = int(avail["idx"][0])
        moved = indices.distance16(q.last_avail, idx)
        out = len(q.waiting) if self.rules else 0  # the kernel holds at most queue-size chains
        before = self._counts(q)
        found: list[Escape] = []
        if moved > q.size - out:  # more than the queue holds: no chain of it may be taken
            write()
            back, _ = q.take_used()
            if back:
                found.append(Escape("rule", f"{nic} {q.kind}q: the avail index moved by {moved} (queue {q.size}, "
                                    f"{out} out) and {len(back)} chain(s) came back", nic))  # fmt: skip
            if self.rules:
                found += self._reasons(q, before, [{"VIRTQ_AVAIL_JUMP"}])
            return found
        slots = (q.last_avail + np.arange(moved, dtype=np.int64)) & (q.size - 1)
        heads = avail["ring"][0][slots].astype(np.int64).tolist()
        table = desc.copy()
        tx = q.kind == "tx"
        verdicts = [chain_rules(table, h, tx, self.read, self.range_bad) for h in heads]
        rooms = [room(table, h, self.read) if not v else -1 for h, v in zip(heads, verdicts, strict=True)]
        q.last_avail = idx
        write()
        ids, lens = q.take_used()
        refused = Counter(i for i, n in zip(ids, lens, strict=True) if n == VIRTQ_USED_LEN_REFUSED)
        returned = Counter(ids)
        if self.rules:
            broken = Counter(h for h, v in zip(heads, verdicts, strict=True) if v)
            found += self._verdicts(q, heads, verdicts, refused, broken)
            found += self._reasons(q, before, [v for v in verdicts if v])
            taken = [(h, r) for h, v, r in zip(heads, verdicts, rooms, strict=True) if not v]
        else:  # no kernel in front: the device takes every chain, and must finish it or stop honestly
            taken = [(h, r if not v else room(table, h, self.read)) for h, v, r in
                     zip(heads, verdicts, rooms, strict=True)]  # fmt: skip
        if tx:
            missing = Counter(h for h, _ in taken) - (returned - refused)
            if missing:
                n = sum(missing.values())
                found.append(Escape("liveness", f"{nic} transmitq: {n} of {len(heads)} chain(s) made available "
                                    f"never came back (heads {sorted(missing)[:8]})", nic))  # fmt: skip
        else:
            q.waiting += taken
            extra = returned - refused
            if extra:
                found.append(Escape("rule", f"{nic} receiveq: chain(s) {sorted(extra)[:8]} came back before any "
                                    "frame arrived", nic))  # fmt: skip
        return found

    def frames(self, nic: str, index: int, lengths: list[int], write: Callable[[], object]) -> list[Escape]:
        """Frames of ``lengths`` bytes arrive for receive queue ``index`` of ``nic`` (``write`` sends them): each
        takes the first waiting chain with room for it and its 12-byte header, or is dropped (the chain waits)."""
        q = self.queues.get((nic, index))
        if q is None:
            write()
            return []
        expect: list[int] = []
        waiting = list(q.waiting)
        for n in lengths:
            if not waiting:
                break
            head, space = waiting[0]
            if space < 0 or space >= n + VIRTIO_NET_HDR_SIZE:  # a chain it cannot finish still takes the frame
                expect.append(head)
                waiting.pop(0)
        write()
        ids, lens = q.take_used()
        got = Counter(ids)
        found: list[Escape] = []
        missing = Counter(expect) - got
        if missing:
            found.append(Escape("liveness", f"{nic} receiveq: {sum(missing.values())} of {len(expect)} chain(s) "
                                f"given a frame never came back (heads {sorted(missing)[:8]})", nic))  # fmt: skip
        bad = [i for i, n in zip(ids, lens, strict=True) if n == VIRTQ_USED_LEN_REFUSED]
        if bad:
            found.append(Escape("rule", f"{nic} receiveq: chain(s) {bad[:8]} refused when a frame arrived", nic))
        done = Counter(ids)
        left: list[tuple[int, int]] = []
        for head, space in q.waiting:
            if done[head]:
                done[head] -= 1
            else:
                left.append((head, space))
        q.waiting = left
        return found

    def forget(self, nic: str, index: int) -> None:
        """The queue was reset (the device's broken state is gone with the machine)."""
        q = self.queues.get((nic, index))
        if q is not None:
            q.last_avail = q.last_used = 0
            q.waiting = []

    # -- the kernel's verdicts ----------------------------------------------------------------------------
    def _verdicts(
        self, q: QueueView, heads: list[int], verdicts: list[set[str]], refused: Counter[int], broken: Counter[int]
    ) -> list[Escape]:
        found = []
        for h, v in zip(heads, verdicts, strict=True):
            if v and refused[h] < broken[h]:
                rule = " or ".join(sorted(v))
                found.append(Escape("rule", f"{q.nic} {q.kind}q: chain at head {h} was not refused, which breaks "
                                    f"{rule}", q.nic))  # fmt: skip
                broken[h] = refused[h]
        kept = refused - broken
        if kept:
            found.append(Escape("rule", f"{q.nic} {q.kind}q: chain(s) at heads {sorted(kept)[:8]} keep every rule "
                                "but were refused", q.nic))  # fmt: skip
        return found

    def _counts(self, q: QueueView) -> Mapping[str, int]:
        return dict(self.counts(q.nic, q.index, q.kind)) if self.counts is not None and self.rules else {}

    def _reasons(self, q: QueueView, before: Mapping[str, int], expected: list[set[str]]) -> list[Escape]:
        """The audit records this notify added name, one per refused chain, a rule that chain breaks."""
        if self.counts is None:
            return []
        now = self.counts(q.nic, q.index, q.kind)
        added = Counter({k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)})
        named = Counter(PINS if k in ADDRESS else k for k in added.elements())
        want: set[str] = set().union(*expected) if expected else set()
        stray = [k for k in named if k not in want]
        if sum(named.values()) != len(expected) or stray:
            return [Escape("audit", f"{q.nic} {q.kind}q: {len(expected)} chain(s) break rules "
                           f"({', '.join(sorted(want)) or 'none'}), records added: {dict(added) or 'none'}",
                           q.nic)]  # fmt: skip
        return []
