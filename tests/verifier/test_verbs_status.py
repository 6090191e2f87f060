"""The expected-status mapping: every verbs reason, every operation class, and the facts measured on rxe."""

from __future__ import annotations

import pytest

from ring.verbs_format import (
    IBV_WC_LOC_PROT_ERR,
    IBV_WC_LOC_QP_OP_ERR,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    IBV_WR_SEND_WITH_IMM,
    POST_EINVAL,
    status_name,
)
from verifier.rules import reasons as R
from verifier.verbs.status import EXPECTED_STATUS, OP_CLASSES, RECV, expected_status, op_class


def test_the_measured_rxe_facts() -> None:
    """docs/verbs.md and issue 6: outside an MR is LOC_PROT_ERR, a bad lkey LOC_QP_OP_ERR, a bad rkey REM_ACCESS_ERR."""
    assert expected_status(R.VERBS_SGE_OUTSIDE_MR, IBV_WR_SEND) == IBV_WC_LOC_PROT_ERR == 4
    assert expected_status(R.VERBS_LKEY_UNKNOWN, IBV_WR_SEND) == IBV_WC_LOC_QP_OP_ERR == 2
    assert expected_status(R.VERBS_RKEY_UNKNOWN, IBV_WR_RDMA_WRITE) == IBV_WC_REM_ACCESS_ERR == 10
    assert expected_status(R.VERBS_TOO_MANY_SGE, None) == POST_EINVAL


@pytest.mark.parametrize("op", OP_CLASSES)
def test_every_local_reason_has_a_status_in_every_class(op: str) -> None:
    local = [R.VERBS_LKEY_UNKNOWN, R.VERBS_LKEY_OTHER_PD, R.VERBS_SGE_OUTSIDE_MR, R.ADDR_WRAP, R.VERBS_TOO_MANY_SGE]
    for reason in [R.OK, *local]:
        assert (reason, op) in EXPECTED_STATUS
    assert EXPECTED_STATUS[(R.OK, op)] == IBV_WC_SUCCESS


def test_remote_reasons_only_for_rdma() -> None:
    remote = [R.VERBS_RKEY_UNKNOWN, R.VERBS_RKEY_OTHER_PD, R.VERBS_RKEY_NO_ACCESS, R.VERBS_REMOTE_OUTSIDE_MR]
    for reason in remote:
        assert expected_status(reason, IBV_WR_RDMA_WRITE) == IBV_WC_REM_ACCESS_ERR
        assert expected_status(reason, IBV_WR_RDMA_READ) == IBV_WC_REM_ACCESS_ERR
        assert expected_status(reason, IBV_WR_SEND) is None
        assert expected_status(reason, None) is None


def test_receive_and_read_failures_are_rxe_specific() -> None:
    for reason in (R.VERBS_LKEY_UNKNOWN, R.VERBS_NO_LOCAL_WRITE, R.VERBS_SGE_OUTSIDE_MR):
        assert expected_status(reason, None) == IBV_WC_LOC_QP_OP_ERR  # RESPST_ERR_MALFORMED_WQE
        assert expected_status(reason, IBV_WR_RDMA_READ) == IBV_WC_LOC_PROT_ERR  # rxe_comp.c do_read


def test_every_mapped_reason_is_a_published_code() -> None:
    for reason, _ in EXPECTED_STATUS:
        assert reason in R.BY_CODE
    assert op_class(None) == RECV and op_class(IBV_WR_SEND_WITH_IMM) == "send"
    assert status_name(POST_EINVAL) == "POST_EINVAL" and status_name(4) == "IBV_WC_LOC_PROT_ERR"
