"""RDMA verbs formats: scatter/gather elements, work requests and memory regions as numpy dtypes.

The verbs world's "descriptor" is a work request (WR) naming its buffers
through scatter/gather elements (SGEs), and its "pin" is a memory region
(MR) registered with ``ibv_reg_mr``.  The layouts and constants below are
those of rdma-core's ``libibverbs/verbs.h`` (``struct ibv_sge``,
``struct ibv_send_wr``, ``struct ibv_recv_wr``, ``enum ibv_wr_opcode``,
``enum ibv_send_flags``, ``enum ibv_access_flags``, ``enum ibv_wc_status``),
which number them as the InfiniBand Architecture Specification vol. 1
(chapter 11, "Software Transport Verbs") does.

A batch of WRs travels as two arrays: the WR headers, and every SGE of the
batch back to back, WR by WR (``WorkBatch``).  That replaces the C structs'
``next`` and ``sg_list`` pointers, so a whole post is checked with array
operations rather than by walking a linked list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# -- struct ibv_sge: the one buffer a WR names per element (16 bytes) ----------------------------
SGE = np.dtype(
    [
        ("addr", "<u8"),  # start of the buffer, a virtual address inside the MR
        ("length", "<u4"),  # bytes; 0 is legal and touches nothing
        ("lkey", "<u4"),  # local key of the MR the buffer lies in
    ]
)
SGE_SIZE = 16

#: struct ibv_send_wr without its pointers: the fields a send-queue WR carries.
#: ``remote_addr``/``rkey`` are the ``wr.rdma`` union member, used by RDMA WRITE and READ.
SEND_WR = np.dtype(
    [
        ("wr_id", "<u8"),  # the caller's cookie, returned in the completion
        ("remote_addr", "<u8"),  # RDMA: target virtual address at the responder
        ("opcode", "<u4"),  # enum ibv_wr_opcode
        ("num_sge", "<u4"),  # SGEs of this WR in the batch's SGE array
        ("send_flags", "<u4"),  # enum ibv_send_flags
        ("rkey", "<u4"),  # RDMA: the responder's remote key
    ]
)

#: struct ibv_recv_wr without its pointers.
RECV_WR = np.dtype([("wr_id", "<u8"), ("num_sge", "<u4")])

#: A registered memory region as the kernel records it at ibv_reg_mr: ``struct ibv_mr``'s
#: addr, length, lkey and rkey, plus the access flags and the protection domain (the tenant)
#: the registration was made in (ibv_reg_mr's ``pd`` and ``access`` arguments).
MR_RECORD = np.dtype(
    [
        ("addr", "<u8"),
        ("length", "<u8"),
        ("lkey", "<u4"),
        ("rkey", "<u4"),
        ("access", "<u4"),
        ("pd", "<i4"),
    ]
)

#: A completion, the fields of ``struct ibv_wc`` this project reads.
WORK_COMPLETION = np.dtype(
    [("wr_id", "<u8"), ("status", "<u4"), ("opcode", "<u4"), ("byte_len", "<u4"), ("qp_num", "<u4")]
)

# -- enum ibv_access_flags (verbs.h; ibv_reg_mr(3)) ---------------------------------------------
IBV_ACCESS_LOCAL_WRITE = 1  # the HCA may write here for this process: receive buffers, RDMA READ targets
IBV_ACCESS_REMOTE_WRITE = 2  # a peer may RDMA WRITE here (ibv_reg_mr(3): requires LOCAL_WRITE too)
IBV_ACCESS_REMOTE_READ = 4  # a peer may RDMA READ from here
IBV_ACCESS_REMOTE_ATOMIC = 8
#: Local read is always granted: every MR may be the source of a SEND or RDMA WRITE.
IBV_ACCESS_REMOTE = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC

# -- enum ibv_qp_type ----------------------------------------------------------------------------
IBV_QPT_RC = 2  # reliable connected: SEND, RDMA WRITE/READ, acknowledged, errors reported back
IBV_QPT_UD = 4  # unreliable datagram: SEND only, at most one MTU, each receive buffer starts with a GRH

# -- enum ibv_wr_opcode ------------------------------------------------------------------------
IBV_WR_RDMA_WRITE = 0
IBV_WR_RDMA_WRITE_WITH_IMM = 1
IBV_WR_SEND = 2
IBV_WR_SEND_WITH_IMM = 3
IBV_WR_RDMA_READ = 4
IBV_WR_ATOMIC_CMP_AND_SWP = 5
IBV_WR_ATOMIC_FETCH_AND_ADD = 6
IBV_WR_LOCAL_INV = 7
IBV_WR_BIND_MW = 8
IBV_WR_SEND_WITH_INV = 9

# -- enum ibv_send_flags -----------------------------------------------------------------------
IBV_SEND_FENCE = 1
IBV_SEND_SIGNALED = 2  # ask for a completion even on success
IBV_SEND_SOLICITED = 4
IBV_SEND_INLINE = 8  # the CPU copies the data into the WQE at post time; lkeys are not used

# -- enum ibv_wc_status (IBA 11.6.2 "Completion Return Status") -----------------------------------
IBV_WC_SUCCESS = 0
IBV_WC_LOC_LEN_ERR = 1
IBV_WC_LOC_QP_OP_ERR = 2
IBV_WC_LOC_EEC_OP_ERR = 3
IBV_WC_LOC_PROT_ERR = 4
IBV_WC_WR_FLUSH_ERR = 5
IBV_WC_MW_BIND_ERR = 6
IBV_WC_BAD_RESP_ERR = 7
IBV_WC_LOC_ACCESS_ERR = 8
IBV_WC_REM_INV_REQ_ERR = 9
IBV_WC_REM_ACCESS_ERR = 10
IBV_WC_REM_OP_ERR = 11
IBV_WC_RETRY_EXC_ERR = 12
IBV_WC_RNR_RETRY_EXC_ERR = 13
IBV_WC_GENERAL_ERR = 21

WC_STATUS_NAMES: dict[int, str] = {
    IBV_WC_SUCCESS: "IBV_WC_SUCCESS",
    IBV_WC_LOC_LEN_ERR: "IBV_WC_LOC_LEN_ERR",
    IBV_WC_LOC_QP_OP_ERR: "IBV_WC_LOC_QP_OP_ERR",
    IBV_WC_LOC_EEC_OP_ERR: "IBV_WC_LOC_EEC_OP_ERR",
    IBV_WC_LOC_PROT_ERR: "IBV_WC_LOC_PROT_ERR",
    IBV_WC_WR_FLUSH_ERR: "IBV_WC_WR_FLUSH_ERR",
    IBV_WC_MW_BIND_ERR: "IBV_WC_MW_BIND_ERR",
    IBV_WC_BAD_RESP_ERR: "IBV_WC_BAD_RESP_ERR",
    IBV_WC_LOC_ACCESS_ERR: "IBV_WC_LOC_ACCESS_ERR",
    IBV_WC_REM_INV_REQ_ERR: "IBV_WC_REM_INV_REQ_ERR",
    IBV_WC_REM_ACCESS_ERR: "IBV_WC_REM_ACCESS_ERR",
    IBV_WC_REM_OP_ERR: "IBV_WC_REM_OP_ERR",
    IBV_WC_RETRY_EXC_ERR: "IBV_WC_RETRY_EXC_ERR",
    IBV_WC_RNR_RETRY_EXC_ERR: "IBV_WC_RNR_RETRY_EXC_ERR",
    IBV_WC_GENERAL_ERR: "IBV_WC_GENERAL_ERR",
}

#: Sandbox-defined outcome: ibv_post_send/ibv_post_recv itself failed with EINVAL, so the WR
#: never reached the queue and no completion exists (rdma-core providers/rxe/rxe.c rejects
#: num_sge > max_sge this way).  Negative, so it never clashes with a real ibv_wc_status.
POST_EINVAL = -22

# -- limits ------------------------------------------------------------------------------------
#: The largest message rxe accepts (rxe_param.h RXE_PORT_MAX_MSG_SZ): 2^31 bytes.
MAX_MESSAGE = 1 << 31
#: The Global Route Header at the start of every UD receive buffer (ibv_post_recv(3): 40 bytes).
GRH_SIZE = 40


def status_name(status: int) -> str:
    """``IBV_WC_LOC_PROT_ERR`` for 4, ``POST_EINVAL`` for a refused post."""
    if status == POST_EINVAL:
        return "POST_EINVAL"
    return WC_STATUS_NAMES.get(status, f"IBV_WC_{status}")


@dataclass
class WorkBatch:
    """WRs (``SEND_WR`` or ``RECV_WR`` rows) and all their SGEs back to back, WR by WR.

    WR i's SGEs are ``sges[first_sge[i] : first_sge[i] + wrs["num_sge"][i]]``.
    """

    wrs: npt.NDArray[np.void]
    sges: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, dtype=SGE))

    def __post_init__(self) -> None:
        if self.wrs.dtype not in (SEND_WR, RECV_WR):
            raise ValueError(f"WRs must be SEND_WR or RECV_WR rows, got {self.wrs.dtype}")
        if self.sges.dtype != SGE:
            raise ValueError(f"SGEs must be SGE rows, got {self.sges.dtype}")
        total = int(self.wrs["num_sge"].sum(dtype=np.int64))
        if total != self.sges.size:
            raise ValueError(f"the WRs name {total} SGEs but the batch holds {self.sges.size}")

    def __len__(self) -> int:
        return int(self.wrs.size)

    @property
    def is_send(self) -> bool:
        return self.wrs.dtype == SEND_WR

    @property
    def first_sge(self) -> npt.NDArray[np.int64]:
        """Index in ``sges`` of each WR's first SGE."""
        counts = self.wrs["num_sge"].astype(np.int64)
        return np.cumsum(counts) - counts

    @property
    def wr_of_sge(self) -> npt.NDArray[np.int64]:
        """The WR each SGE belongs to."""
        return np.repeat(np.arange(self.wrs.size, dtype=np.int64), self.wrs["num_sge"].astype(np.int64))

    @property
    def position(self) -> npt.NDArray[np.int64]:
        """Each SGE's position inside its WR (0 for the first)."""
        return np.arange(self.sges.size, dtype=np.int64) - np.repeat(
            self.first_sge, self.wrs["num_sge"].astype(np.int64)
        )

    def message_length(self) -> npt.NDArray[np.int64]:
        """Bytes each WR moves: the sum of its SGE lengths."""
        return np.bincount(self.wr_of_sge, weights=self.sges["length"], minlength=self.wrs.size).astype(np.int64)

    def sges_of(self, i: int) -> npt.NDArray[np.void]:
        start = int(self.first_sge[i])
        return self.sges[start : start + int(self.wrs["num_sge"][i])]

    def select(self, mask: npt.NDArray[np.bool_]) -> WorkBatch:
        """The WRs picked by ``mask`` with their SGEs (copies)."""
        return WorkBatch(self.wrs[mask].copy(), self.sges[mask[self.wr_of_sge]].copy())

    @classmethod
    def concat(cls, batches: list[WorkBatch]) -> WorkBatch:
        if not batches:
            raise ValueError("nothing to concatenate")
        return cls(np.concatenate([b.wrs for b in batches]), np.concatenate([b.sges for b in batches]))


def sge_rows(items: list[tuple[int, int, int]]) -> npt.NDArray[np.void]:
    """SGE rows from ``(addr, length, lkey)`` tuples."""
    out = np.zeros(len(items), dtype=SGE)
    for i, (addr, length, lkey) in enumerate(items):
        out[i] = (addr, length, lkey)
    return out


def send_batch(
    wrs: list[tuple[int, int, list[tuple[int, int, int]]]],
    *,
    send_flags: int = IBV_SEND_SIGNALED,
    rdma: list[tuple[int, int]] | None = None,
) -> WorkBatch:
    """A send batch from ``(wr_id, opcode, [(addr, length, lkey), ...])``; ``rdma`` gives (remote_addr, rkey)."""
    rows = np.zeros(len(wrs), dtype=SEND_WR)
    sges: list[tuple[int, int, int]] = []
    for i, (wr_id, opcode, sg) in enumerate(wrs):
        remote_addr, rkey = rdma[i] if rdma is not None else (0, 0)
        rows[i] = (wr_id, remote_addr, opcode, len(sg), send_flags, rkey)
        sges.extend(sg)
    return WorkBatch(rows, sge_rows(sges))


def recv_batch(wrs: list[tuple[int, list[tuple[int, int, int]]]]) -> WorkBatch:
    """A receive batch from ``(wr_id, [(addr, length, lkey), ...])``."""
    rows = np.zeros(len(wrs), dtype=RECV_WR)
    sges: list[tuple[int, int, int]] = []
    for i, (wr_id, sg) in enumerate(wrs):
        rows[i] = (wr_id, len(sg))
        sges.extend(sg)
    return WorkBatch(rows, sge_rows(sges))
