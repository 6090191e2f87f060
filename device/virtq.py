"""The device's side of a split virtqueue: fetch new chains, walk them, and publish used elements.

This is what a device model does with the driver's memory (QEMU's
``virtqueue_pop``/``virtqueue_split_read_next_desc``, rust-vmm's
``DescriptorChain``): it trusts nothing and never loops or crashes on a
hostile graph, but it is not the kernel's verifier.  A chain it cannot
follow (a ``next`` outside the table, more steps than the table has entries,
an indirect table inside an indirect table, a bad indirect length) makes the
device mark itself broken (``STATUS_DEVICE_NEEDS_RESET``), as QEMU's
``virtio_error`` does with "Desc next is %u" or "Looped descriptor"; what it
reads or writes stays whatever the buffers name, through the one DMA engine
(invariant 1), so in protection ``none`` a hostile chain moves real bytes.

Every access goes through ``DmaEngine`` in batches: the available ring and
the descriptor table once per kick, each indirect table once, the data of a
whole burst as one access batch, the used ring as one write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from device.dma import DmaEngine, contiguous_runs
from ring import indices
from ring.virtio import (
    AVAIL_HEADER,
    USED_HEADER,
    USED_IDX,
    VIRTQ_DESC,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_DESC_SIZE,
    VIRTQ_USED_ELEM,
    avail_bytes,
)

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


class ChainError(Exception):
    """A chain the device cannot follow: the device marks itself broken (QEMU's virtio_error)."""


@dataclass
class Segment:
    """One buffer of a walked chain."""

    addr: int
    length: int
    write: bool


@dataclass
class DeviceQueue:
    """One virtqueue as the device holds it: the transport's registers and its own last_avail / used idx."""

    index: int
    num: int = 0
    ready: bool = False
    desc: int = 0
    driver: int = 0  # the available ring
    device: int = 0  # the used ring
    last_avail: int = 0  # free-running: the next available entry to take
    used_idx: int = 0  # free-running: the next used entry to write
    purpose: str = field(default="tx")

    def reset(self) -> None:
        self.num, self.ready, self.desc, self.driver, self.device = 0, False, 0, 0, 0
        self.last_avail = self.used_idx = 0


def fetch_heads(dma: DmaEngine, q: DeviceQueue, limit: int | None = None) -> I64:
    """The heads the driver made available since ``last_avail`` (at most ``limit``), read in one access."""
    raw, ok = dma.read(q.index, f"{q.purpose}-desc", np.array([q.driver], dtype=np.uint64),
                       np.array([avail_bytes(q.num)], dtype=np.int64))  # fmt: skip
    if not bool(ok.all()):
        raise ChainError("the available ring is outside memory")
    idx = int(raw[2:4].view("<u2")[0])
    moved = indices.distance16(q.last_avail, idx)
    if moved > q.num:
        raise ChainError(f"Guest moved avail index from {q.last_avail} to {idx}")
    take = moved if limit is None else min(moved, limit)
    ring = raw[AVAIL_HEADER : AVAIL_HEADER + 2 * q.num].view("<u2")
    slots = (q.last_avail + np.arange(take, dtype=np.int64)) & (q.num - 1)
    return ring[slots].astype(np.int64)


def fetch_table(dma: DmaEngine, q: DeviceQueue) -> npt.NDArray[np.void]:
    """The descriptor table, read in one access per kick (a device's descriptor prefetch)."""
    raw, ok = dma.read(q.index, f"{q.purpose}-desc", np.array([q.desc], dtype=np.uint64),
                       np.array([q.num * VIRTQ_DESC_SIZE], dtype=np.int64))  # fmt: skip
    if not bool(ok.all()):
        raise ChainError("the descriptor table is outside memory")
    return raw.view(VIRTQ_DESC)


def walk(dma: DmaEngine, q: DeviceQueue, table: npt.NDArray[np.void], head: int) -> list[Segment]:
    """Follow one chain from ``head``: its buffers in order, an indirect table followed where it is the last."""
    size = q.num
    if head >= size:
        raise ChainError(f"Guest says index {head} > {size} is available")
    segs: list[Segment] = []
    rows, count, i, steps, inside = table, size, head, 0, False
    while True:
        if steps >= count:
            raise ChainError("Looped descriptor")
        steps += 1
        d = rows[i]
        flags, nxt = int(d["flags"]), int(d["next"])
        if flags & VIRTQ_DESC_F_INDIRECT:
            if inside:
                raise ChainError("Nested indirect descriptor")
            if flags & VIRTQ_DESC_F_NEXT:
                raise ChainError("Indirect descriptor with NEXT")
            length = int(d["len"])
            if length == 0 or length % VIRTQ_DESC_SIZE or length // VIRTQ_DESC_SIZE > size:
                raise ChainError("Invalid size for indirect buffer table")
            raw, ok = dma.read(q.index, f"{q.purpose}-desc", np.array([int(d["addr"])], dtype=np.uint64),
                               np.array([length], dtype=np.int64))  # fmt: skip
            if not bool(ok.all()):
                raise ChainError("the indirect table is outside memory")
            rows, count, i, steps, inside = raw.view(VIRTQ_DESC), length // VIRTQ_DESC_SIZE, 0, 0, True
            continue
        segs.append(Segment(int(d["addr"]), int(d["len"]), bool(flags & VIRTQ_DESC_F_WRITE)))
        if len(segs) > size:
            raise ChainError("Looped descriptor")
        if not flags & VIRTQ_DESC_F_NEXT:
            return segs
        if nxt >= count:
            raise ChainError(f"Desc next is {nxt}")
        i = nxt


@dataclass
class Burst:
    """The buffers of a burst of walked chains, as arrays: chain ``c``'s are ``chain == c``, in walk order."""

    chain: I64
    addr: U64
    length: I64
    write: npt.NDArray[np.bool_]
    chains: int  # how many chains were walked (a walk that broke stops the burst)

    def side(self, write: bool) -> tuple[I64, U64, I64]:
        """(chain, address, length) of the buffers the device writes (``write``) or reads."""
        sel = self.write if write else ~self.write
        return self.chain[sel], self.addr[sel], self.length[sel]


def walk_burst(dma: DmaEngine, q: DeviceQueue, table: npt.NDArray[np.void], heads: I64) -> tuple[Burst, str]:
    """Walk every chain at ``heads``; stops at the first chain the device cannot follow (its message, else "").

    A burst of one-descriptor chains (every frame in one buffer, the common
    layout) is read off the table in one step; anything else is walked
    chain by chain.
    """
    if heads.size and int(heads.max()) < q.num:
        rows = table[heads]
        if not bool((rows["flags"] & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)).any()):
            write = (rows["flags"] & VIRTQ_DESC_F_WRITE) != 0
            chain = np.arange(heads.size, dtype=np.int64)
            return Burst(chain, rows["addr"].astype(np.uint64), rows["len"].astype(np.int64), write, heads.size), ""
    segs: list[Segment] = []
    owner: list[int] = []
    error = ""
    walked = 0
    for c, head in enumerate(heads.tolist()):
        try:
            chain_segs = walk(dma, q, table, head)
        except ChainError as err:
            error = str(err)
            break
        segs += chain_segs
        owner += [c] * len(chain_segs)
        walked += 1
    burst = Burst(
        np.array(owner, dtype=np.int64),
        np.array([s.addr for s in segs], dtype=np.uint64),
        np.array([s.length for s in segs], dtype=np.int64),
        np.array([s.write for s in segs], dtype=bool),
        walked,
    )
    return burst, error


def publish_used(dma: DmaEngine, q: DeviceQueue, heads: I64, lengths: I64) -> None:
    """Write ``{id, len}`` for each finished chain, then the new used idx (§2.7.8: elements before idx)."""
    n = heads.size
    if n == 0:
        return
    elems = np.zeros(n, dtype=VIRTQ_USED_ELEM)
    elems["id"], elems["len"] = heads, lengths
    slots = (q.used_idx + np.arange(n, dtype=np.int64)) & (q.num - 1)
    runs = contiguous_runs(slots)
    base = q.device + USED_HEADER
    addrs = (base + slots[runs[:, 0]] * VIRTQ_USED_ELEM.itemsize).astype(np.uint64)
    dma.write(q.index, f"{q.purpose}-wb", addrs, runs[:, 1] * VIRTQ_USED_ELEM.itemsize, elems.view(np.uint8))
    q.used_idx = (q.used_idx + n) & 0xFFFF
    idx = np.array([q.used_idx], dtype="<u2").view(np.uint8)
    dma.write(q.index, f"{q.purpose}-wb", np.array([q.device + USED_IDX], dtype=np.uint64),
              np.array([2], dtype=np.int64), idx)  # fmt: skip
