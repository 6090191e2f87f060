"""The kernel in front of an RDMA device: MR registration (the pin) and a checked ibv_post_send/ibv_post_recv.

A tenant never holds the device.  It holds a ``VerbsTenant``, which

* registers memory regions through the kernel (``reg_mr`` is the verbs
  pin: the kernel records every MR's range, keys, access and PD in one
  ``MrTable``), and
* posts work requests through ``post_send``/``post_recv``: the whole post
  is checked at once (``verifier/rules/verbs.py``), every refused WR becomes
  exactly one audit record (invariant 6) and never reaches the device,
  and the accepted WRs go to the device in their original order as one
  post (one doorbell).

The shape follows the e1000 path's "snapshot, check, post": the batch the
tenant hands over is copied before it is judged, so changing it afterwards
changes nothing.  With ``enforce=False`` the gate still records MRs but
posts everything unchecked: the raw device, for comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ring.verbs_api import PostResult, QpInfo, VerbsDevice
from ring.verbs_format import SGE_SIZE, WorkBatch, status_name
from verifier.audit.record import AuditRecord
from verifier.audit.rejections import AuditSink
from verifier.rules import reasons as R
from verifier.rules.verbs import MrTable, WrVerdicts, check_work
from verifier.verbs.status import expected_status


class VerbsKernel:
    """One RDMA device, the machine-wide MR table, and the audit sink refusals go to."""

    def __init__(self, device: VerbsDevice, audit: AuditSink, *, enforce: bool = True) -> None:
        self.device = device
        self.audit = audit
        self.enforce = enforce
        self.mrs = MrTable()
        self.tenants: dict[int, VerbsTenant] = {}

    def open_tenant(self, name: str) -> VerbsTenant:
        """A new tenant with its own protection domain."""
        tenant = VerbsTenant(self, self.device.alloc_pd(), name)
        self.tenants[tenant.pd] = tenant
        return tenant


class VerbsTenant:
    """A tenant's handle on the verbs device: its PD, its MRs and the checked posts."""

    def __init__(self, kernel: VerbsKernel, pd: int, name: str) -> None:
        self.kernel = kernel
        self.pd = pd
        self.name = name

    # -- the pin --------------------------------------------------------------------------
    def reg_mr(self, addr: int, length: int, access: int) -> np.void:
        """``ibv_reg_mr`` through the kernel: the device registers, the kernel records."""
        row = self.kernel.device.reg_mr(self.pd, addr, length, access)
        self.kernel.mrs.add(row)
        return row

    def dereg_mr(self, lkey: int) -> None:
        """``ibv_dereg_mr``: the kernel forgets the MR first, so no new WR can name it."""
        row = self.kernel.mrs.remove(lkey)
        if int(row["pd"]) != self.pd:
            self.kernel.mrs.add(row)
            raise PermissionError(f"MR {lkey:#x} belongs to another protection domain")
        self.kernel.device.dereg_mr(lkey)

    # -- the posts ------------------------------------------------------------------------
    def post_send(self, qp_num: int, batch: WorkBatch) -> PostResult:
        return self._post(qp_num, batch, send=True)

    def post_recv(self, qp_num: int, batch: WorkBatch) -> PostResult:
        return self._post(qp_num, batch, send=False)

    def _post(self, qp_num: int, batch: WorkBatch, *, send: bool) -> PostResult:
        if batch.is_send != send:
            raise ValueError("post_send takes SEND_WR rows, post_recv RECV_WR rows")
        qp = self.kernel.device.qp_info(qp_num)
        if qp.pd != self.pd:
            raise PermissionError(f"QP {qp_num} belongs to another protection domain")
        snap = WorkBatch(batch.wrs.copy(), batch.sges.copy())  # judge a copy: no TOCTOU
        device = self.kernel.device
        post = device.post_send if send else device.post_recv
        if not self.kernel.enforce:
            if len(snap):
                post(qp_num, snap)
            return PostResult.all_posted(len(snap))
        verdicts = check_work(snap, self.kernel.mrs, self.pd, qp)
        accepted = verdicts.accepted
        seqs = self._audit(qp, snap, verdicts, send) if not bool(accepted.all()) else []
        if bool(accepted.any()):
            post(qp_num, snap if bool(accepted.all()) else snap.select(accepted))
        return PostResult(accepted.copy(), verdicts.reason.copy(), seqs)

    def _audit(self, qp: QpInfo, batch: WorkBatch, v: WrVerdicts, send: bool) -> list[int]:
        """One record per refused WR; the offending SGE's 16 bytes are the record's raw descriptor."""
        audit = self.kernel.audit
        first = batch.first_sge
        picked = np.flatnonzero(v.rejected)
        rows = batch.wrs[picked].tolist()
        names = batch.wrs.dtype.names or ()
        sge_raw = batch.sges.view(np.uint8).reshape(-1, SGE_SIZE) if batch.sges.size else None
        seqs = []
        for j, i in enumerate(picked.tolist()):
            code = int(v.reason[i])
            fields: dict[str, Any] = dict(zip(names, rows[j], strict=True))
            opcode = fields.get("opcode") if send else None
            detail: dict[str, Any] = {"rule": R.BY_CODE[code].rule, "format": "verbs"}
            raw = None
            k = int(v.bad_sge[i])
            if k >= 0 and sge_raw is not None:
                raw = sge_raw[k].tobytes()
                sge = batch.sges[k]
                fields.update(sge_addr=int(sge["addr"]), sge_length=int(sge["length"]), sge_lkey=int(sge["lkey"]))
                detail["sge_index"] = k - int(first[i])
            if code in _RANGE_REASONS:
                detail["first_bad_byte"] = f"{int(v.bad_byte[i]):#x}"
            if bool(v.remote[i]):
                detail["side"] = "remote"
            status = expected_status(code, opcode)
            if status is not None:
                detail["rxe_would_give"] = status_name(status)
            seqs.append(
                audit.record(
                    AuditRecord(
                        tenant=self.pd,
                        tenant_name=self.name,
                        nic=self.kernel.device.name,
                        queue=qp.qp_num,
                        kind="tx" if send else "rx",
                        ring_index=i,
                        raw=raw,
                        fields=fields,
                        reason=R.name(code),
                        detail=detail,
                    )
                )
            )
        audit.commit()
        return seqs


_RANGE_REASONS = frozenset({R.VERBS_SGE_OUTSIDE_MR, R.ADDR_WRAP, R.VERBS_REMOTE_OUTSIDE_MR})
