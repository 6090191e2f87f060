"""The ``verbs`` format: RDMA work requests checked against the registered memory regions.

In the verbs world a tenant's pins are memory regions (``ibv_reg_mr``) and
its descriptors are work requests whose scatter/gather elements name
buffers by ``(addr, length, lkey)``.  A real HCA enforces the rules below
itself, when it executes the WR, and reports a violation as an error
completion that also moves the queue pair to the error state.  This module
checks them *before* ``ibv_post_send``/``ibv_post_recv``, vectorised over
the whole post, so a bad WR is refused and audited instead of reaching the
device, and the QP stays usable.

The rules, each mirroring what soft-RoCE (Linux drivers/infiniband/sw/rxe)
checks, in the order it checks them:

* per WR, at post time (rdma-core ``providers/rxe/rxe.c``): ``num_sge``
  at most the QP's ``max_send_sge``/``max_recv_sge``; an opcode the QP type
  supports (RC: SEND, RDMA WRITE, RDMA READ, with or without immediate;
  UD: SEND only); send flags limited to FENCE, SIGNALED and SOLICITED.
* per SGE, in order, as ``copy_data()`` walks the list (``rxe_mr.c``):
  a zero-length SGE is skipped (its lkey is never looked up, so it is
  legal whatever it says); otherwise ``lookup_mr()`` must find an MR with
  exactly that lkey, in the QP's protection domain, with LOCAL_WRITE if the
  device writes there (receive buffers, RDMA READ targets); then
  ``mr_check_range()``: every byte of ``[addr, addr + length)`` inside the
  MR, without 64-bit wrap.  The first bad SGE gives the WR's reason.
* per RDMA WR, at the responder (``rxe_resp.c check_rkey()``): the rkey
  names an MR open to remote access in the responder QP's PD, with
  REMOTE_WRITE (RDMA WRITE) or REMOTE_READ (RDMA READ), and
  ``[remote_addr, remote_addr + message length)`` inside it.  A zero-byte
  RDMA operation carries no address and is not checked, as in rxe.  The
  kernel can check rkeys only because the responder is on this host; across
  a network that check is the remote HCA's alone.

An RDMA READ is judged remote side first (the request reaches the responder
before any data comes back to be written locally); every other WR local
side first (the requester reads its SGEs before the first packet leaves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ring.verbs_api import QpInfo
from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_QPT_RC,
    IBV_SEND_FENCE,
    IBV_SEND_SIGNALED,
    IBV_SEND_SOLICITED,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_RDMA_WRITE_WITH_IMM,
    IBV_WR_SEND,
    IBV_WR_SEND_WITH_IMM,
    MR_RECORD,
    WorkBatch,
)
from verifier.rules import reasons as R

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

RC_OPCODES = (IBV_WR_SEND, IBV_WR_SEND_WITH_IMM, IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_READ)
UD_OPCODES = (IBV_WR_SEND, IBV_WR_SEND_WITH_IMM)
RDMA_OPCODES = (IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_READ)
#: IBV_SEND_INLINE is refused: inline data is copied by the CPU at post time, outside any MR,
#: and this format only models buffers the device reaches through an lkey.
ALLOWED_SEND_FLAGS = IBV_SEND_FENCE | IBV_SEND_SIGNALED | IBV_SEND_SOLICITED

_NO_WRITE = np.uint32(IBV_ACCESS_LOCAL_WRITE)


class MrTable:
    """Every registered MR of the machine, sorted by lkey (and the remote-access ones by rkey).

    Sorted key arrays make "which MR does each lkey name" one ``searchsorted``
    for a whole post.  Rows are ``ring.verbs_format.MR_RECORD``.
    """

    def __init__(self) -> None:
        self.rows = np.zeros(0, dtype=MR_RECORD)
        self._remote = np.zeros(0, dtype=np.int64)  # indices into rows of remote MRs, sorted by rkey

    def __len__(self) -> int:
        return int(self.rows.size)

    def add(self, row: np.void) -> None:
        """Record a registration (``ibv_reg_mr`` succeeded).  Keys are unique, ranges do not wrap."""
        rec = np.asarray(row, dtype=MR_RECORD).reshape(1)
        addr, length = int(rec["addr"][0]), int(rec["length"][0])
        if addr + length > 1 << 64:
            raise ValueError(f"MR [{addr:#x}, +{length:#x}) wraps past 2**64")
        lkey = int(rec["lkey"][0])
        if self.find(lkey) is not None:
            raise ValueError(f"lkey {lkey:#x} is already registered")
        rows = np.concatenate([self.rows, rec])
        self.rows = rows[np.argsort(rows["lkey"], kind="stable")]
        self._reindex_remote()

    def remove(self, lkey: int) -> np.void:
        """Forget a registration (``ibv_dereg_mr``); returns its row."""
        i = self.find(lkey)
        if i is None:
            raise KeyError(f"no MR with lkey {lkey:#x}")
        row = self.rows[i].copy()
        self.rows = np.delete(self.rows, i)
        self._reindex_remote()
        return row

    def find(self, lkey: int) -> int | None:
        i = int(np.searchsorted(self.rows["lkey"], np.uint32(lkey)))
        return i if i < self.rows.size and int(self.rows["lkey"][i]) == lkey else None

    def _reindex_remote(self) -> None:
        remote = np.flatnonzero((self.rows["access"] & np.uint32(IBV_ACCESS_REMOTE)) != 0)
        order = np.argsort(self.rows["rkey"][remote], kind="stable")
        self._remote = remote[order]
        rkeys = self.rows["rkey"][self._remote]
        if rkeys.size > 1 and bool((rkeys[1:] == rkeys[:-1]).any()):
            raise ValueError("two remote-access MRs share an rkey")

    def lookup_lkeys(self, keys: npt.NDArray[np.uint32]) -> tuple[I64, Bools]:
        """Row index of the MR each lkey names (clipped when absent) and whether it exists."""
        return _lookup(self.rows["lkey"], np.arange(self.rows.size, dtype=np.int64), keys)

    def lookup_rkeys(self, keys: npt.NDArray[np.uint32]) -> tuple[I64, Bools]:
        """Row index of the remote-access MR each rkey names and whether it exists."""
        return _lookup(self.rows["rkey"][self._remote], self._remote, keys)


def _lookup(sorted_keys: npt.NDArray[np.uint32], rows: I64, keys: npt.NDArray[np.uint32]) -> tuple[I64, Bools]:
    keys = np.asarray(keys, dtype=np.uint32)
    if sorted_keys.size == 0:
        return np.zeros(keys.size, dtype=np.int64), np.zeros(keys.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return rows[pos], sorted_keys[pos] == keys


@dataclass
class WrVerdicts:
    """One verdict per work request of a post."""

    reason: U8  # reasons.OK or a rejection code
    bad_sge: I64  # index into the batch's SGE array of the offending SGE, -1 if none
    bad_byte: U64  # first offending byte (local or remote address); meaningful for range reasons
    remote: Bools  # the reason is about the responder's side (rkey, remote range)

    @property
    def accepted(self) -> Bools:
        return self.reason == R.OK

    @property
    def rejected(self) -> Bools:
        return self.reason != R.OK

    @classmethod
    def empty(cls, n: int) -> WrVerdicts:
        return cls(
            np.zeros(n, dtype=np.uint8),
            np.full(n, -1, dtype=np.int64),
            np.zeros(n, dtype=np.uint64),
            np.zeros(n, dtype=bool),
        )


def check_sges(sges: npt.NDArray[np.void], table: MrTable, pd: int, need_write: Bools) -> tuple[U8, U64]:
    """Per-SGE reason and first offending byte, in rxe's order: key, PD, access, wrap, range."""
    n = sges.size
    code = np.zeros(n, dtype=np.uint8)
    bad = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return code, bad
    addr = sges["addr"]
    length = sges["length"].astype(np.uint64)
    idx, found = table.lookup_lkeys(sges["lkey"])
    mr = table.rows[idx] if table.rows.size else np.zeros(n, dtype=MR_RECORD)
    live = length > 0
    unknown = live & ~found
    other_pd = live & found & (mr["pd"] != pd)
    no_write = live & found & ~other_pd & need_write & ((mr["access"] & _NO_WRITE) == 0)
    ranged = live & found & ~other_pd & ~no_write
    end = addr + length  # uint64: wraps silently, caught next
    wrap = ranged & (end < addr)
    mr_end = mr["addr"] + mr["length"]
    outside = ranged & ~wrap & ((addr < mr["addr"]) | (end > mr_end))
    code[unknown] = R.VERBS_LKEY_UNKNOWN
    code[other_pd] = R.VERBS_LKEY_OTHER_PD
    code[no_write] = R.VERBS_NO_LOCAL_WRITE
    code[wrap] = R.ADDR_WRAP
    code[outside] = R.VERBS_SGE_OUTSIDE_MR
    # the first byte the device may not touch: the SGE's start if it lies outside, else the MR's end
    beyond = wrap | outside
    starts_inside = (addr >= mr["addr"]) & (addr < mr_end)
    bad[:] = addr
    bad[beyond & starts_inside] = mr_end[beyond & starts_inside]
    return code, bad


def check_remote(
    wrs: npt.NDArray[np.void], msg_len: I64, table: MrTable, peer_pd: int, active: Bools
) -> tuple[U8, U64]:
    """Per-WR reason for the responder's rkey check of RDMA WRITE/READ (``active`` selects them)."""
    n = wrs.size
    code = np.zeros(n, dtype=np.uint8)
    if n == 0 or not bool(active.any()):
        return code, np.zeros(n, dtype=np.uint64)
    idx, found = table.lookup_rkeys(wrs["rkey"])
    mr = table.rows[idx] if table.rows.size else np.zeros(n, dtype=MR_RECORD)
    need = np.where(wrs["opcode"] == IBV_WR_RDMA_READ, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE)
    unknown = active & ~found
    other_pd = active & found & (mr["pd"] != peer_pd)
    no_access = active & found & ~other_pd & ((mr["access"] & need.astype(np.uint32)) == 0)
    start = wrs["remote_addr"]
    end = start + msg_len.astype(np.uint64)
    mr_end = mr["addr"] + mr["length"]
    ranged = active & found & ~other_pd & ~no_access
    outside = ranged & ((end < start) | (start < mr["addr"]) | (end > mr_end))
    code[unknown] = R.VERBS_RKEY_UNKNOWN
    code[other_pd] = R.VERBS_RKEY_OTHER_PD
    code[no_access] = R.VERBS_RKEY_NO_ACCESS
    code[outside] = R.VERBS_REMOTE_OUTSIDE_MR
    starts_inside = (start >= mr["addr"]) & (start < mr_end)
    bad = start.copy()
    bad[outside & starts_inside] = mr_end[outside & starts_inside]
    return code, bad


def _first_bad_per_wr(code: U8, wr_of: I64, n: int) -> tuple[U8, I64]:
    """Reason and SGE index of each WR's first bad SGE (SGEs are in WR order)."""
    reason = np.zeros(n, dtype=np.uint8)
    first = np.full(n, -1, dtype=np.int64)
    bad = np.flatnonzero(code != 0)
    if bad.size:
        owners, at = np.unique(wr_of[bad], return_index=True)
        first[owners] = bad[at]
        reason[owners] = code[bad[at]]
    return reason, first


def _check_local(batch: WorkBatch, table: MrTable, pd: int, device_writes: Bools) -> tuple[U8, I64, U64]:
    """Per WR: the reason of its first bad SGE, that SGE's index in the batch, its first offending byte.

    ``device_writes`` (per WR): the device writes this WR's SGEs, so each needs LOCAL_WRITE."""
    wr_of = batch.wr_of_sge
    code, bad_byte = check_sges(batch.sges, table, pd, device_writes[wr_of])
    reason, first = _first_bad_per_wr(code, wr_of, batch.wrs.size)
    byte = np.zeros(batch.wrs.size, dtype=np.uint64)
    has_bad = first >= 0
    byte[has_bad] = bad_byte[first[has_bad]]
    return reason, first, byte


def check_send(batch: WorkBatch, table: MrTable, pd: int, qp: QpInfo) -> WrVerdicts:
    """Every rule for a post to a send queue; one verdict per WR."""
    wrs = batch.wrs
    n = wrs.size
    v = WrVerdicts.empty(n)
    if n == 0:
        return v
    opcode = wrs["opcode"]
    supported = np.isin(opcode, RC_OPCODES if qp.qp_type == IBV_QPT_RC else UD_OPCODES)
    wr_level = np.select(
        [
            wrs["num_sge"] > qp.max_send_sge,
            ~supported,
            (wrs["send_flags"] & np.uint32(~ALLOWED_SEND_FLAGS & 0xFFFFFFFF)) != 0,
        ],
        [R.VERBS_TOO_MANY_SGE, R.VERBS_OPCODE_UNSUPPORTED, R.CMD_UNSUPPORTED],
        default=R.OK,
    ).astype(np.uint8)
    is_read = opcode == IBV_WR_RDMA_READ
    local, local_sge, local_byte = _check_local(batch, table, pd, is_read)
    msg_len = batch.message_length()
    rdma = np.isin(opcode, RDMA_OPCODES) & supported & (msg_len > 0) & (qp.peer_pd is not None)
    remote, remote_byte = check_remote(wrs, msg_len, table, qp.peer_pd if qp.peer_pd is not None else -1, rdma)
    remote_first = is_read & (remote != R.OK)
    use_remote = (wr_level == R.OK) & (remote_first | ((local == R.OK) & (remote != R.OK)))
    use_local = (wr_level == R.OK) & ~use_remote & (local != R.OK)
    v.reason[:] = np.where(wr_level != R.OK, wr_level, np.where(use_remote, remote, local))
    v.remote[:] = use_remote
    v.bad_sge[use_local] = local_sge[use_local]
    v.bad_byte[use_local] = local_byte[use_local]
    v.bad_byte[use_remote] = remote_byte[use_remote]
    return v


def check_recv(batch: WorkBatch, table: MrTable, pd: int, qp: QpInfo) -> WrVerdicts:
    """Every rule for a post to a receive queue: the device writes every SGE, so all need LOCAL_WRITE."""
    wrs = batch.wrs
    n = wrs.size
    v = WrVerdicts.empty(n)
    if n == 0:
        return v
    wr_level = np.where(wrs["num_sge"] > qp.max_recv_sge, R.VERBS_TOO_MANY_SGE, R.OK).astype(np.uint8)
    local, local_sge, local_byte = _check_local(batch, table, pd, np.ones(n, dtype=bool))
    use_local = (wr_level == R.OK) & (local != R.OK)
    v.reason[:] = np.where(wr_level != R.OK, wr_level, local)
    v.bad_sge[use_local] = local_sge[use_local]
    v.bad_byte[use_local] = local_byte[use_local]
    return v


def check_work(batch: WorkBatch, table: MrTable, pd: int, qp: QpInfo) -> WrVerdicts:
    """``check_send`` or ``check_recv``, by the batch's WR format."""
    return check_send(batch, table, pd, qp) if batch.is_send else check_recv(batch, table, pd, qp)
