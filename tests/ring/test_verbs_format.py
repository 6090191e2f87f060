"""The verbs formats match rdma-core's verbs.h, and a WorkBatch keeps WRs and their SGEs together."""

from __future__ import annotations

import numpy as np
import pytest

from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WC_LOC_PROT_ERR,
    IBV_WC_LOC_QP_OP_ERR,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_WR_FLUSH_ERR,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    MR_RECORD,
    RECV_WR,
    SEND_WR,
    SGE,
    SGE_SIZE,
    WorkBatch,
    recv_batch,
    send_batch,
)


def test_struct_ibv_sge_layout() -> None:
    """struct ibv_sge { uint64_t addr; uint32_t length; uint32_t lkey; }: 16 bytes, no padding."""
    assert SGE.itemsize == SGE_SIZE == 16
    assert SGE.fields is not None
    assert [SGE.fields[n][1] for n in ("addr", "length", "lkey")] == [0, 8, 12]
    raw = np.array([(0x1122334455667788, 0x99AABBCC, 0xDDEEFF00)], dtype=SGE).tobytes()
    assert raw == bytes.fromhex("8877665544332211ccbbaa9900ffeedd")


def test_enum_values_are_verbs_h() -> None:
    assert (IBV_WR_RDMA_WRITE, IBV_WR_SEND, IBV_WR_RDMA_READ) == (0, 2, 4)
    assert (IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_READ) == (1, 2, 4)
    assert (IBV_WC_LOC_QP_OP_ERR, IBV_WC_LOC_PROT_ERR, IBV_WC_WR_FLUSH_ERR, IBV_WC_REM_ACCESS_ERR) == (2, 4, 5, 10)
    assert SEND_WR.itemsize == 32 and RECV_WR.itemsize == 12 and MR_RECORD.itemsize == 32


def test_batch_indexing() -> None:
    b = send_batch(
        [(7, IBV_WR_SEND, [(0x1000, 10, 1), (0x2000, 20, 1)]), (8, IBV_WR_SEND, [(0x3000, 30, 2)]),
         (9, IBV_WR_SEND, [(0x4000, 1, 3), (0x5000, 2, 3), (0x6000, 4, 3)])]
    )  # fmt: skip
    assert len(b) == 3 and b.is_send
    assert b.first_sge.tolist() == [0, 2, 3]
    assert b.wr_of_sge.tolist() == [0, 0, 1, 2, 2, 2]
    assert b.position.tolist() == [0, 1, 0, 0, 1, 2]
    assert b.message_length().tolist() == [30, 30, 7]
    assert b.sges_of(2)["addr"].tolist() == [0x4000, 0x5000, 0x6000]
    picked = b.select(np.array([True, False, True]))
    assert picked.wrs["wr_id"].tolist() == [7, 9] and picked.sges.size == 5
    joined = WorkBatch.concat([b, picked])
    assert len(joined) == 5 and joined.sges.size == 11


def test_batch_refuses_inconsistent_arrays() -> None:
    r = recv_batch([(1, [(0x1000, 64, 1)])])
    assert not r.is_send
    with pytest.raises(ValueError, match="name 2 SGEs"):
        WorkBatch(np.array([(1, 2)], dtype=RECV_WR), r.sges)
    with pytest.raises(ValueError, match="SEND_WR or RECV_WR"):
        WorkBatch(np.zeros(1, dtype=SGE), r.sges)


def test_huge_addresses_and_lengths_survive() -> None:
    b = send_batch([(1, IBV_WR_SEND, [((1 << 64) - 1, 0xFFFF_FFFF, 0xFFFF_FFFF)])])
    assert int(b.sges["addr"][0]) == (1 << 64) - 1 and int(b.message_length()[0]) == 0xFFFF_FFFF
