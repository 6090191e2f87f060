"""Class ``jumbo``: buffers over three or more frames, on a kernel configured with the 8254x's own limits.

Why a machine of its own: under the default policy a TX buffer is at most a
page and an RX buffer 2048 bytes, so no buffer spans more than two frames,
and a kernel that judges a buffer by its first and last frame (the two-frame
fast paths: numpy's ``pinned_mask``, the compiled ``range_ok``) is exact.
The 8254x itself takes TX buffers and frames up to 16288 bytes (manual
3.3.3) and receive buffers of 4096 to 16384 bytes (RCTL.BSIZE with BSEX,
table 13-66); the kernel's ``jumbo`` configuration (docs/verifier.md,
"Policy limits") allows them, and then only the full range rule -- every
frame of ``[addr, addr + len)`` pinned -- keeps a buffer out of a hole.  The
attacks run on ``MACHINES["jumbo"]`` (fuzz/arena.py): the kernel built with
that policy, the oracle judging with its own ``JUMBO_RULES`` and the RX size
read from the device's RCTL (8192).

Each attack is one doorbell of valid long buffers at the edges of
mallory's pinned runs (a run's first byte, ending on its last byte), with a
few hostile ones of one kind hidden in it: a buffer whose first and last
frames are pinned and a middle one is not (``holey``'s hole, or alice's
frame between ``scattered_lo`` and ``scattered_hi``), a long buffer one
byte past a run's end, or (TX) a two-fragment packet of exactly 16288 bytes
(valid) or 16289.  The hostile ones are of one kind per batch, so a batch
whose every buffer passes a first-and-last-frame test exists: the batch a
two-frame fast path would take whole.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fuzz.arena import MemoryMap
from fuzz.edges import MORE
from fuzz.steps import Attack, Tx, post_and_receive, tx_batch
from fuzz.steps.tx import GOOD
from ring.descriptors import TXD_CMD_EOP
from ring.memory import PAGE_SIZE

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
READ, WRITE = 1, 2
#: The ``jumbo`` configuration's limits (docs/verifier.md, "Policy limits"; 8254x manual 3.3.3, table 13-66).
MAX_BUFFER = 16288
MAX_FRAME = 16288
RX_BUFFER = 8192
MACHINE = "jumbo"


def _long_runs(m: MemoryMap, access: int, length: int) -> I64:
    """Mallory's pinned runs (``MemoryMap.pinned_runs``) that hold a ``length``-byte buffer, as (start, end) rows."""
    runs = np.array(m.pinned_runs(access), dtype=np.int64)
    return runs[runs[:, 1] - runs[:, 0] >= length]


def in_runs(rng: np.random.Generator, m: MemoryMap, access: int, length: I64) -> U64:
    """Addresses of ``length``-byte buffers wholly inside runs long enough: at a run's first byte, ending on its
    last byte, or anywhere."""
    addr = np.zeros(length.size, dtype=np.uint64)
    for i, n in enumerate(length.tolist()):
        runs = _long_runs(m, access, n)
        lo, end = (int(x) for x in runs[int(rng.integers(0, len(runs)))])
        hi = end - n
        where = int(rng.integers(0, 3))
        addr[i] = lo if where == 0 else hi if where == 1 else lo + int(rng.integers(0, hi - lo + 1))
    return addr


def over_gap(rng: np.random.Generator, m: MemoryMap, n: int, length: int | None = None) -> tuple[I64, I64]:
    """``n`` buffers whose first and last frames are pinned read-write and whose middle frame is not: across
    ``holey``'s hole or alice's frame between the scattered pins.  ``length``: fixed (RX), else to somewhere in
    the last pinned page (TX)."""
    lo, _, hi = m.holes
    firsts = np.array([lo.bus, m.scattered_lo.bus], dtype=np.int64)
    lasts = np.array([hi.bus, m.scattered_hi.bus], dtype=np.int64)
    which = rng.integers(0, 2, n)
    if length is not None:  # from byte 1 of the first page on, so the buffer's last byte is in the last page
        addr = firsts[which] + rng.integers(1, PAGE_SIZE, n)
        return addr, np.full(n, length, dtype=np.int64)
    addr = firsts[which] + rng.integers(0, PAGE_SIZE, n)
    end = lasts[which] + rng.integers(1, PAGE_SIZE + 1, n)
    return addr, end - addr


def past_run(rng: np.random.Generator, m: MemoryMap, access: int, length: int, n: int) -> I64:
    """``n`` buffers of ``length`` bytes (longer than a page) ending one byte past a run that holds ``length``."""
    runs = _long_runs(m, access, length)
    return runs[rng.integers(0, len(runs), n), 1] - length + 1


def jumbo_tx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    n = max(4, n - int(rng.integers(0, min(n, 16))))
    runs = _long_runs(m, READ, 1)
    most = int((runs[:, 1] - runs[:, 0]).max())  # the longest read run (device addresses: IOVAs under iommu)
    edge = np.minimum(np.array([1, 1514, PAGE_SIZE, PAGE_SIZE + 1, 2 * PAGE_SIZE + 1, most], dtype=np.int64), most)
    length = np.where(rng.random(n) < 0.5, edge[rng.integers(0, edge.size, n)], rng.integers(1, most + 1, n))
    addr = in_runs(rng, m, READ, length).astype(np.int64)
    cmd = np.full(n, GOOD, dtype=np.int64)
    k = int(rng.integers(1, 4))
    at = rng.choice(n - 1, size=k, replace=False)
    kind = int(rng.integers(0, 4))
    if kind <= 1:  # over a hole: first and last frame pinned, the middle not (within every length limit)
        addr[at], length[at] = over_gap(rng, m, k)
    elif kind == 2:  # a long buffer one byte past a read run's end
        size = min(int(rng.choice([PAGE_SIZE + 1, 2 * PAGE_SIZE, most])), most)
        addr[at], length[at] = past_run(rng, m, READ, size, k), size
    elif 2 * most >= MAX_FRAME + 1:  # a two-fragment packet of exactly the frame limit (valid) or one byte more
        p = int(at[0])
        total = MAX_FRAME + int(rng.integers(0, 2))
        length[p : p + 2] = (total // 2, total - total // 2)
        addr[p : p + 2] = in_runs(rng, m, READ, length[p : p + 2]).astype(np.int64)
        cmd[p] = (GOOD & ~TXD_CMD_EOP) | MORE
    return Attack.of(Tx(tx_batch(addr.astype(np.uint64), length, cmd)), machine=MACHINE)


def jumbo_rx(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    n = max(2, n // 4 - int(rng.integers(0, 8)))
    if not len(_long_runs(m, WRITE, RX_BUFFER)):  # no write run holds a whole buffer: only the hostile ones
        return Attack.of(*post_and_receive(over_gap(rng, m, n, RX_BUFFER)[0].astype(np.uint64)), machine=MACHINE)
    addr = in_runs(rng, m, WRITE, np.full(n, RX_BUFFER, dtype=np.int64)).astype(np.int64)
    k = int(rng.integers(1, 3))
    at = rng.choice(n, size=k, replace=False)
    if rng.random() < 0.7:  # first and last frame pinned for writing, the middle one not
        addr[at] = over_gap(rng, m, k, RX_BUFFER)[0]
    else:  # one byte past a write run's end
        addr[at] = past_run(rng, m, WRITE, RX_BUFFER, k)
    return Attack.of(*post_and_receive(addr.astype(np.uint64)), machine=MACHINE)


def jumbo(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Valid long buffers at the edges of mallory's runs, with a few hostile ones of one kind hidden among them:
    over a hole (first and last frame pinned), one byte past a run, a packet at the frame limit or one over."""
    return jumbo_tx(rng, m, n) if rng.random() < 0.6 else jumbo_rx(rng, m, n)
