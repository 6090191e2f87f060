"""The rules for virtio split-virtqueue chains, judged on the kernel's snapshot, vectorised over a notify's chains.

A virtqueue's descriptors form a graph: each chain starts at a head the
available ring names and follows ``next`` while ``VIRTQ_DESC_F_NEXT`` is
set; a descriptor with ``VIRTQ_DESC_F_INDIRECT`` points at a table of
further descriptors (virtio 1.2 §2.7.5.3).  The walk here steps every chain
of a notify at once (one numpy step per chain *position*, never a Python
iteration per descriptor: invariant 8), over copies the kernel made once:
the descriptor table, and each indirect table a chain reaches.

The rules, in the order a chain is judged (the first broken one is its reason):

1. every head and every ``next`` lies inside its table: ``< queue size`` in the
   descriptor table, ``< entry count`` in an indirect table
   (``VIRTQ_HEAD_BEYOND``, ``VIRTQ_NEXT_BEYOND``; QEMU's "Desc next is %u");
2. flags are NEXT, WRITE and INDIRECT only (``VIRTQ_FLAGS_UNKNOWN``); INDIRECT
   never with NEXT (``VIRTQ_INDIRECT_WITH_NEXT``, §2.7.5.3.1) and never inside
   an indirect table (``VIRTQ_INDIRECT_NESTED``, §2.7.5.3.1);
3. no chain revisits a descriptor: a walk that takes more steps than its table
   has entries loops (``VIRTQ_CHAIN_LOOP``, Linux vhost's count-based "Loop
   detected"); a chain of exactly the table's size is accepted;
4. an indirect table's length is a non-zero multiple of 16 (``VIRTQ_INDIRECT_LEN``),
   it has at most queue-size entries (``VIRTQ_INDIRECT_TOO_BIG``) and its whole
   range lies in the owner's pins with read access (the device reads it:
   ``ADDR_*``, ``ACCESS_NO_READ``, ``PIN_RELEASED``);
5. the whole chain, its indirect descriptors included, is at most the queue
   size (``VIRTQ_CHAIN_TOO_LONG``, §2.7.5.3.1);
6. device-readable buffers precede device-writable ones (``VIRTQ_WRITE_BEFORE_READ``, §2.7.4.2);
7. the chain's lengths summed fit in 32 bits (``VIRTQ_LEN_OVERFLOW``: the used ring's len is le32);
8. a TX chain's readable bytes hold a whole 12-byte ``virtio_net_hdr``, an RX
   chain's writable bytes likewise (``VIRTQ_NET_HDR_SHORT``, §5.1.6);
9. each buffer's whole range lies in the owner's pins, with read access when
   the device reads it and write access when it writes it (the e1000 range rule,
   verifier/rules/checks.py ``check_ranges``).

The result is the chain flattened: the buffers in walk order with the
indirect pointer dropped, which is what the kernel copies into its shadow
table for the device (verifier/virtio/shadow.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ring.frames import gather
from ring.virtio import (
    VIRTIO_NET_HDR_SIZE,
    VIRTQ_DESC,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_KNOWN,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_DESC_SIZE,
)
from verifier.pins import Access, PinTable
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, check_ranges

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Descs = npt.NDArray[np.void]

#: The used ring's ``len`` is le32: a chain's summed length must fit.
MAX_CHAIN_BYTES = 0xFFFF_FFFF


@dataclass
class ChainVerdicts:
    """One verdict per chain of a notify, and the chains flattened (every chain's buffers, in walk order)."""

    heads: I64  # the head each available entry named
    reason: U8  # reasons.OK or the chain's first broken rule
    bad_index: I64  # the descriptor that broke it: its index in its table (-1: none, or the avail entry itself)
    bad_indirect: Mask  # ... that index is in the chain's indirect table, not the descriptor table
    bad_desc: Descs  # ... and its 16 bytes as judged
    bad_byte: I64  # first offending byte for address reasons, else -1
    owner: npt.NDArray[np.int32]  # owner of the offending frame for address reasons
    buffers: Descs  # every walked buffer (indirect pointers dropped), chains back to back
    chain_of: I64  # the chain of each buffer
    starts: I64  # chain c's buffers are buffers[starts[c]:starts[c + 1]]

    @property
    def accepted(self) -> Mask:
        return self.reason == R.OK

    def chain(self, c: int) -> Descs:
        return self.buffers[int(self.starts[c]) : int(self.starts[c + 1])]


@dataclass
class _Walk:
    """What one walk over a pool of tables visited, per visited descriptor and per chain."""

    chain: I64
    index: I64  # the descriptor's index inside its table
    order: I64  # its position in its chain's walk
    rows: Descs
    reason: U8
    bad: I64
    steps: I64
    last: I64  # position in ``rows`` of each chain's last visited descriptor (-1: none)


def _walk(pool: Descs, base: I64, count: I64, start: I64, live: Mask, *, indirect: bool) -> _Walk:
    """Follow every live chain from ``start`` through its table ``pool[base : base + count]``, all at once."""
    k = base.size
    reason = np.zeros(k, dtype=np.uint8)
    bad = np.full(k, -1, dtype=np.int64)
    steps = np.zeros(k, dtype=np.int64)
    last = np.full(k, -1, dtype=np.int64)
    cur = start.astype(np.int64).copy()
    active = live.copy()
    chains: list[I64] = []
    idx: list[I64] = []
    rows: list[Descs] = []
    seen = 0
    for _ in range(int(count.max()) + 1 if k else 0):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        looped = steps[act] >= count[act]  # every entry visited and still a next: one is visited twice
        if bool(looped.any()):
            hit = act[looped]
            reason[hit], bad[hit] = R.VIRTQ_CHAIN_LOOP, cur[hit]
            active[hit] = False
            act = act[~looped]
            if act.size == 0:
                break
        here = cur[act]
        d = pool[base[act] + here]
        chains.append(act)
        idx.append(here)
        rows.append(d)
        last[act] = seen + np.arange(act.size)
        seen += act.size
        steps[act] += 1
        flags = d["flags"].astype(np.int64)
        nxt = d["next"].astype(np.int64)
        has_next = (flags & VIRTQ_DESC_F_NEXT) != 0
        is_ind = (flags & VIRTQ_DESC_F_INDIRECT) != 0
        code = np.zeros(act.size, dtype=np.uint8)
        code[has_next & (nxt >= count[act])] = R.VIRTQ_NEXT_BEYOND
        code[is_ind & has_next] = R.VIRTQ_INDIRECT_WITH_NEXT
        if indirect:
            code[is_ind] = R.VIRTQ_INDIRECT_NESTED
        code[(flags & ~VIRTQ_DESC_F_KNOWN) != 0] = R.VIRTQ_FLAGS_UNKNOWN
        broken = code != R.OK
        reason[act[broken]], bad[act[broken]] = code[broken], here[broken]
        stop = broken | is_ind | ~has_next
        active[act[stop]] = False
        go = act[~stop]
        cur[go] = nxt[~stop]
    cat = np.concatenate
    return _Walk(
        cat(chains) if chains else np.zeros(0, dtype=np.int64),
        cat(idx) if idx else np.zeros(0, dtype=np.int64),
        (cat([np.full(c.size, i) for i, c in enumerate(chains)]) if chains else np.zeros(0, dtype=np.int64)),
        cat(rows) if rows else np.zeros(0, dtype=VIRTQ_DESC),
        reason,
        bad,
        steps,
        last,
    )


def check_chains(
    table: Descs,
    heads: I64,
    memory: U8,
    pins: PinTable,
    owners: npt.NDArray[np.int32],
    *,
    tx: bool,
) -> ChainVerdicts:
    """Judge the chains at ``heads`` over the snapshot ``table`` (the kernel's copy of the descriptor table).

    ``memory`` is what the kernel reads indirect tables from, once each, after
    their range passed the pin rule.  Nothing here reads the tenant's table.
    """
    size = table.size
    k = heads.size
    heads = heads.astype(np.int64)
    head_ok = heads < size
    rows = table[np.where(head_ok, heads, 0)]
    if bool(head_ok.all()) and not bool((rows["flags"] & np.uint16(0xFFFF & ~VIRTQ_DESC_F_WRITE)).any()):
        # every chain one descriptor (the common burst): the walk is the heads themselves
        one = np.arange(k, dtype=np.int64)
        main = _Walk(one, heads, np.zeros(k, dtype=np.int64), rows, np.zeros(k, dtype=np.uint8),
                     np.full(k, -1, dtype=np.int64), np.ones(k, dtype=np.int64), one)  # fmt: skip
    else:
        main = _walk(table, np.zeros(k, dtype=np.int64), np.full(k, size, dtype=np.int64),
                     np.where(head_ok, heads, 0), head_ok, indirect=False)  # fmt: skip
    reason = main.reason.copy()
    reason[~head_ok] = R.VIRTQ_HEAD_BEYOND
    bad_index = main.bad.copy()
    bad_index[~head_ok] = heads[~head_ok]
    bad_ind = np.zeros(k, dtype=bool)
    bad_byte = np.full(k, -1, dtype=np.int64)
    owner = np.full(k, NO_OWNER, dtype=np.int32)

    # -- indirect tables: the last descriptor of a chain that passed the walk may point at one ---------------
    ends = np.where(main.last >= 0, main.last, 0)
    last_rows = main.rows[ends] if main.rows.size else np.zeros(k, dtype=VIRTQ_DESC)
    has_ind = (reason == R.OK) & head_ok & ((last_rows["flags"] & VIRTQ_DESC_F_INDIRECT) != 0)
    ind = np.flatnonzero(has_ind)
    ind_walk: _Walk | None = None
    ind_chain = np.zeros(0, dtype=np.int64)
    if ind.size:
        t_addr = last_rows["addr"][ind].astype(np.uint64)
        t_len = last_rows["len"][ind].astype(np.int64)
        code = np.zeros(ind.size, dtype=np.uint8)
        code[t_len // VIRTQ_DESC_SIZE > size] = R.VIRTQ_INDIRECT_TOO_BIG
        code[(t_len == 0) | (t_len % VIRTQ_DESC_SIZE != 0)] = R.VIRTQ_INDIRECT_LEN
        fine = code == R.OK
        pinned = check_ranges(t_addr[fine], t_len[fine], pins, owners, memory.size, Access.READ)
        if pinned is not None:
            sub = np.flatnonzero(fine)
            code[sub] = pinned.reason
            bad_byte[ind[sub]] = pinned.bad_byte
            owner[ind[sub]] = pinned.owner
        broken = code != R.OK
        reason[ind[broken]] = code[broken]
        bad_index[ind[broken]] = main.index[main.last[ind[broken]]]
        ind_chain = ind[~broken]
        if ind_chain.size:
            good = ~broken
            counts = t_len[good] // VIRTQ_DESC_SIZE
            pool = gather(memory, t_addr[good].astype(np.int64), t_len[good]).view(VIRTQ_DESC)  # the one copy
            bases = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
            n = ind_chain.size
            ind_walk = _walk(pool, bases, counts, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), indirect=True)
            broken2 = ind_walk.reason != R.OK
            reason[ind_chain[broken2]] = ind_walk.reason[broken2]
            bad_index[ind_chain[broken2]] = ind_walk.bad[broken2]
            bad_ind[ind_chain[broken2]] = True

    # -- flatten: the buffers of every chain in walk order, indirect pointers dropped ------------------------
    keep = (main.rows["flags"] & VIRTQ_DESC_F_INDIRECT) == 0
    parts_chain = [main.chain[keep]]
    parts_order = [main.order[keep]]
    parts_index = [main.index[keep]]
    parts_ind = [np.zeros(int(keep.sum()), dtype=bool)]
    parts_rows = [main.rows[keep]]
    if ind_walk is not None:
        chain = ind_chain[ind_walk.chain]
        parts_chain.append(chain)
        parts_order.append(main.steps[chain] + ind_walk.order)
        parts_index.append(ind_walk.index)
        parts_ind.append(np.ones(chain.size, dtype=bool))
        parts_rows.append(ind_walk.rows)
    chain_of = np.concatenate(parts_chain)
    by = np.lexsort((np.concatenate(parts_order), chain_of))
    chain_of = chain_of[by]
    index = np.concatenate(parts_index)[by]
    in_ind = np.concatenate(parts_ind)[by]
    buffers = np.concatenate(parts_rows)[by]
    counts = np.bincount(chain_of, minlength=k)
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    pos = np.arange(chain_of.size, dtype=np.int64) - starts[chain_of]

    def first_bad(mask: Mask, code: int) -> None:
        """Chains still OK with a buffer in ``mask`` take ``code``, naming their first such buffer."""
        hit = np.flatnonzero(mask & (reason[chain_of] == R.OK))
        if hit.size == 0:
            return
        chains, first = np.unique(chain_of[hit], return_index=True)
        at = hit[first]
        reason[chains], bad_index[chains], bad_ind[chains] = code, index[at], in_ind[at]

    # 5. the whole chain is at most the queue size (only an indirect table can make it longer)
    first_bad(pos >= size, R.VIRTQ_CHAIN_TOO_LONG)
    # 6. readable before writable
    w = (buffers["flags"] & VIRTQ_DESC_F_WRITE) != 0
    writes = np.cumsum(w) - w  # writable buffers before each one, over all chains
    writes_before = writes - writes[starts[chain_of]] if chain_of.size else writes
    first_bad(~w & (writes_before > 0), R.VIRTQ_WRITE_BEFORE_READ)
    # 7. the summed length fits 32 bits
    lens = buffers["len"].astype(np.int64)
    total = np.cumsum(lens)
    upto = total - (total[starts[chain_of]] - lens[starts[chain_of]]) if chain_of.size else total
    first_bad(upto > MAX_CHAIN_BYTES, R.VIRTQ_LEN_OVERFLOW)
    # 8. a whole virtio-net header where the device reads (TX) or writes (RX) it first
    side = ~w if tx else w
    hdr_bytes = np.bincount(chain_of, weights=np.where(side, lens, 0), minlength=k)
    short = np.flatnonzero((hdr_bytes < VIRTIO_NET_HDR_SIZE) & (reason == R.OK))
    if short.size:
        reason[short] = R.VIRTQ_NET_HDR_SHORT
        first = np.minimum(starts[short], max(chain_of.size - 1, 0))
        empty = counts[short] == 0
        bad_index[short] = np.where(empty, -1, index[first] if index.size else -1)
        bad_ind[short] = np.where(empty, False, in_ind[first] if in_ind.size else False)
    # 9. every buffer in the owner's pins, with the access the device needs
    for need, sel in ((Access.READ, ~w), (Access.WRITE, w)):
        picked = np.flatnonzero(sel & (reason[chain_of] == R.OK))
        v = check_ranges(buffers["addr"][picked], lens[picked], pins, owners, memory.size, need)
        if v is None:
            continue
        refused = v.reason != R.OK
        hit = picked[refused]
        chains, first = np.unique(chain_of[hit], return_index=True)
        still = reason[chains] == R.OK
        chains, first = chains[still], first[still]
        at = hit[first]
        reason[chains], bad_index[chains], bad_ind[chains] = v.reason[refused][first], index[at], in_ind[at]
        bad_byte[chains], owner[chains] = v.bad_byte[refused][first], v.owner[refused][first]

    bad_desc = np.zeros(k, dtype=VIRTQ_DESC)
    named = np.flatnonzero(bad_index >= 0)
    direct = named[~bad_ind[named] & (bad_index[named] < size)]
    bad_desc[direct] = table[bad_index[direct]]
    if ind_walk is not None and ind_chain.size:
        row_of = {int(c): j for j, c in enumerate(ind_chain.tolist())}
        for c in named[bad_ind[named]].tolist():  # refusals only: a handful per notify
            j = row_of[c]
            hit = np.flatnonzero((ind_walk.chain == j) & (ind_walk.index == bad_index[c]))
            if hit.size:
                bad_desc[c] = ind_walk.rows[hit[0]]
    return ChainVerdicts(heads, reason, bad_index, bad_ind, bad_desc, bad_byte, owner, buffers, chain_of, starts)
