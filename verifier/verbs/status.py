"""What soft-RoCE does with a work request the verifier refuses: the expected-status mapping.

The verifier refuses a WR before the device sees it.  Posted straight to
rxe instead, the same WR ends in an error completion (or a refused post).
This table says which, for every ``verbs`` reason code, so the differential
test (tests/lab/test_verbs_lab.py) can require the two to agree and a
reader of the audit log can tell what the refusal saved them from.

The statuses are those of Linux 6.1's rxe, not those the InfiniBand
specification would suggest.  The differences are rxe-specific and were
measured in the lab (docs/verbs.md):

* An lkey that names no MR, an MR of another PD, or (for a receive) an MR
  without LOCAL_WRITE, on the requester's side: ``lookup_mr()`` returns
  NULL, ``copy_data()`` returns -EINVAL and rxe_req.c completes the WR with
  ``IBV_WC_LOC_QP_OP_ERR`` (2), not ``IBV_WC_LOC_PROT_ERR``.  Only a range
  violation (``mr_check_range()`` is -EFAULT) gives ``LOC_PROT_ERR`` (4).
* A receive WR: any bad SGE makes rxe_resp.c's ``send_data_in()`` return
  RESPST_ERR_MALFORMED_WQE, so the receive completes with
  ``IBV_WC_LOC_QP_OP_ERR`` whatever the SGE's fault, and the sender's SEND
  completes with ``IBV_WC_REM_OP_ERR`` (11) after the NAK.  rxe checks a
  receive SGE only when data reaches it, so the differential sends messages
  that fill every receive buffer exactly.
* An RDMA READ's local SGEs are written by the completer (rxe_comp.c
  ``do_read()``), which reports every failure of ``copy_data()`` as
  ``IBV_WC_LOC_PROT_ERR``.
* Every rkey problem (unknown, other PD, missing REMOTE_WRITE/READ, range)
  is RESPST_ERR_RKEY_VIOLATION at the responder, a NAK, and
  ``IBV_WC_REM_ACCESS_ERR`` (10) at the requester.
* Too many SGEs never becomes a completion: rdma-core's rxe provider fails
  the post with EINVAL (``POST_EINVAL``).

After any error completion the QP is in the error state: every later WR on
it completes with ``IBV_WC_WR_FLUSH_ERR``.  A refused WR leaves the QP
untouched, which is the practical gain of checking before the post.
"""

from __future__ import annotations

from ring.verbs_format import (
    IBV_WC_LOC_PROT_ERR,
    IBV_WC_LOC_QP_OP_ERR,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_REM_OP_ERR,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_RDMA_WRITE_WITH_IMM,
    POST_EINVAL,
)
from verifier.rules import reasons as R

#: Operation classes: where rxe checks a WR's SGEs decides the status it reports.
SEND, RDMA_WRITE, RDMA_READ, RECV = "send", "rdma_write", "rdma_read", "recv"
OP_CLASSES = (SEND, RDMA_WRITE, RDMA_READ, RECV)

_LOOKUP = (R.VERBS_LKEY_UNKNOWN, R.VERBS_LKEY_OTHER_PD, R.VERBS_NO_LOCAL_WRITE)
_RANGE = (R.VERBS_SGE_OUTSIDE_MR, R.ADDR_WRAP)
_REMOTE = (R.VERBS_RKEY_UNKNOWN, R.VERBS_RKEY_OTHER_PD, R.VERBS_RKEY_NO_ACCESS, R.VERBS_REMOTE_OUTSIDE_MR)


def _table() -> dict[tuple[int, str], int]:
    t: dict[tuple[int, str], int] = {}
    for op in OP_CLASSES:
        t[(R.OK, op)] = IBV_WC_SUCCESS
        t[(R.VERBS_TOO_MANY_SGE, op)] = POST_EINVAL
    for op in (SEND, RDMA_WRITE):  # rxe_req.c finish_packet -> copy_data: -EINVAL vs -EFAULT
        t.update({(r, op): IBV_WC_LOC_QP_OP_ERR for r in _LOOKUP})
        t.update({(r, op): IBV_WC_LOC_PROT_ERR for r in _RANGE})
    t.update({(r, RDMA_READ): IBV_WC_LOC_PROT_ERR for r in _LOOKUP + _RANGE})  # rxe_comp.c do_read
    t.update({(r, RECV): IBV_WC_LOC_QP_OP_ERR for r in _LOOKUP + _RANGE})  # RESPST_ERR_MALFORMED_WQE
    for op in (RDMA_WRITE, RDMA_READ):  # rxe_resp.c check_rkey -> RESPST_ERR_RKEY_VIOLATION
        t.update({(r, op): IBV_WC_REM_ACCESS_ERR for r in _REMOTE})
    return t


#: ``(reason code, operation class) -> the status rxe gives that WR`` (ibv_wc_status or POST_EINVAL).
#: Reasons with no rxe counterpart in a class (an rkey on a SEND, an unsupported opcode) are absent.
EXPECTED_STATUS: dict[tuple[int, str], int] = _table()

#: A receive WR that fails also fails the SEND that filled it, at the sender.
RECV_FAILURE_SENDER_STATUS = IBV_WC_REM_OP_ERR


def op_class(opcode: int | None) -> str:
    """The operation class of a send-queue opcode, or ``RECV`` for ``None`` (a receive WR)."""
    if opcode is None:
        return RECV
    if opcode == IBV_WR_RDMA_READ:
        return RDMA_READ
    if opcode in (IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM):
        return RDMA_WRITE
    return SEND


def expected_status(reason: int, opcode: int | None) -> int | None:
    """The status rxe gives a WR the verifier judged ``reason``; None if the table has no entry."""
    return EXPECTED_STATUS.get((reason, op_class(opcode)))
