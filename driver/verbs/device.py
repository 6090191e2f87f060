"""The verbs back end: a real RDMA device (soft-RoCE, ``rdma_rxe``) driven through pyverbs.

``RxeDevice`` implements ``ring.verbs_api.VerbsDevice`` on top of rdma-core's
Python bindings (Debian's ``python3-pyverbs``, rdma-core 44): it opens the
device, allocates protection domains, registers memory regions
(``ibv_reg_mr``: the verbs pin), creates completion queues, connects RC
queue pairs to each other through the device's own GID (loopback: both ends
live on this host), creates UD queue pairs, and turns a ``WorkBatch`` into
a chain of ``ibv_send_wr``/``ibv_recv_wr`` posted with one call (one
doorbell).  It trusts every WR: checking is the kernel's job
(``verifier/verbs/gate.py``), which sits in front of it.

pyverbs is imported lazily, on first use, so the rest of the project
imports on a host without it; a host without an RDMA device gets a
one-line ``VerbsUnavailable`` instead of a traceback.

The device itself (``rdma link add rxe0 type rxe netdev eth0``, which needs
the crc32 modules) is created by the lab guest's init (lab/init.sh).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from ring.verbs_api import PostError, PostResult, QpInfo
from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_QPT_RC,
    IBV_QPT_UD,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_RDMA_WRITE_WITH_IMM,
    MR_RECORD,
    WORK_COMPLETION,
    WorkBatch,
)

#: enum ibv_mtu: IBV_MTU_1024.  Messages above it travel as several packets (FIRST/MIDDLE/LAST).
PATH_MTU_1024 = 3
UD_QKEY = 0x11111111
#: RC timers.  Loopback loses nothing, so two transport retries suffice (local ACK timeout
#: 4.096 us * 2**14 = 67 ms); an RNR NAK (a SEND before its receive WR) is retried without limit
#: (rnr_retry 7, as ibv_rc_pingpong), every 10 us at least one jiffy (min_rnr_timer 1).
RC_TIMEOUT, RC_RETRY_CNT, RC_RNR_RETRY, RC_MIN_RNR_TIMER = 14, 2, 7, 1


class VerbsUnavailable(RuntimeError):
    """pyverbs is not installed, or no RDMA device of that name exists."""


#: What this module uses of pyverbs: ``name -> (module, attribute)``; ``e`` is the enums module.
_PYVERBS_NAMES = {
    "e": ("pyverbs.enums", None),
    "AH": ("pyverbs.addr", "AH"),
    "AHAttr": ("pyverbs.addr", "AHAttr"),
    "GlobalRoute": ("pyverbs.addr", "GlobalRoute"),
    "CQ": ("pyverbs.cq", "CQ"),
    "Context": ("pyverbs.device", "Context"),
    "MR": ("pyverbs.mr", "MR"),
    "PD": ("pyverbs.pd", "PD"),
    "PyverbsRDMAError": ("pyverbs.pyverbs_error", "PyverbsRDMAError"),
    "QP": ("pyverbs.qp", "QP"),
    "QPAttr": ("pyverbs.qp", "QPAttr"),
    "QPCap": ("pyverbs.qp", "QPCap"),
    "QPInitAttr": ("pyverbs.qp", "QPInitAttr"),
    "SGE": ("pyverbs.wr", "SGE"),
    "RecvWR": ("pyverbs.wr", "RecvWR"),
    "SendWR": ("pyverbs.wr", "SendWR"),
}


def _pyverbs() -> SimpleNamespace:
    """Import pyverbs on first use (a host without it still imports this module)."""
    found: dict[str, Any] = {}
    try:
        for name, (module, attr) in _PYVERBS_NAMES.items():
            mod = importlib.import_module(module)
            found[name] = mod if attr is None else getattr(mod, attr)
    except ImportError as exc:
        raise VerbsUnavailable(f"pyverbs is not installed ({exc}); apt-get install python3-pyverbs") from exc
    return SimpleNamespace(**found)


@dataclass
class _Qp:
    qp: Any
    info: QpInfo
    send_cq: Any
    recv_cq: Any
    ud_peer: tuple[Any, int] | None = None  # UD: (address handle, remote QP number)


@dataclass
class RxeDevice:
    """One RDMA device and everything created on it, keyed by small integers the kernel can record."""

    name: str = "rxe0"
    port: int = 1
    _pv: SimpleNamespace = field(init=False, repr=False)
    ctx: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pv = _pyverbs()
        try:
            self.ctx = self._pv.Context(name=self.name)
        except self._pv.PyverbsRDMAError as exc:
            raise VerbsUnavailable(f"cannot open RDMA device {self.name}: {exc}") from exc
        self.port_attr = self.ctx.query_port(self.port)
        self.gid_index, self.gid = self._pick_gid()
        self._pds: dict[int, Any] = {}
        self._mrs: dict[int, Any] = {}
        self._qps: dict[int, _Qp] = {}
        self._closed = False

    def _pick_gid(self) -> tuple[int, Any]:
        """The first non-zero GID (rxe fills one RoCE v1 and one v2 entry per IP address of the netdev)."""
        for index in range(max(1, int(self.port_attr.gid_tbl_len))):
            try:
                gid = self.ctx.query_gid(self.port, index)
            except self._pv.PyverbsRDMAError:
                continue
            if str(gid) not in ("", "0000:0000:0000:0000:0000:0000:0000:0000", "::"):
                return index, gid
        raise VerbsUnavailable(f"{self.name} has no GID: is its netdev up with an address?")

    # -- VerbsDevice --------------------------------------------------------------------------
    def alloc_pd(self) -> int:
        handle = len(self._pds) + 1
        self._pds[handle] = self._pv.PD(self.ctx)
        return handle

    def reg_mr(self, pd: int, addr: int, length: int, access: int) -> np.void:
        mr = self._pv.MR(self._pds[pd], length, access, address=addr)
        self._mrs[int(mr.lkey)] = mr
        row = np.zeros(1, dtype=MR_RECORD)
        row[0] = (addr, length, int(mr.lkey), int(mr.rkey), access, pd)
        return row[0]

    def dereg_mr(self, lkey: int) -> None:
        self._mrs.pop(lkey).close()

    def qp_info(self, qp_num: int) -> QpInfo:
        return self._qps[qp_num].info

    def post_send(self, qp_num: int, batch: WorkBatch) -> None:
        entry = self._qps[qp_num]
        chain = self._send_chain(batch, entry)
        if chain:
            self._post(lambda: entry.qp.post_send(chain[0], None))

    def post_recv(self, qp_num: int, batch: WorkBatch) -> None:
        entry = self._qps[qp_num]
        chain = self._recv_chain(batch)
        if chain:
            self._post(lambda: entry.qp.post_recv(chain[0], None))

    def _post(self, call: Callable[[], None]) -> None:
        try:
            call()
        except self._pv.PyverbsRDMAError as exc:
            raise PostError(int(getattr(exc, "error_code", 0) or 0), -1, str(exc)) from exc

    # -- work requests -------------------------------------------------------------------------
    def _sges(self, batch: WorkBatch) -> list[Any]:
        pv = self._pv
        return [pv.SGE(a, n, k) for a, n, k in batch.sges[["addr", "length", "lkey"]].tolist()]

    def _send_chain(self, batch: WorkBatch, entry: _Qp) -> list[Any]:
        pv, sges = self._pv, self._sges(batch)
        chain: list[Any] = []
        start = 0
        for wr_id, remote_addr, opcode, num_sge, flags, rkey in batch.wrs.tolist():
            wr = pv.SendWR(wr_id=wr_id, opcode=opcode, num_sge=num_sge, sg=sges[start : start + num_sge],
                           send_flags=flags)  # fmt: skip
            start += num_sge
            if opcode in (IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_READ):
                wr.set_wr_rdma(rkey, remote_addr)
            if entry.ud_peer is not None:
                wr.set_wr_ud(entry.ud_peer[0], entry.ud_peer[1], UD_QKEY)
            if chain:
                chain[-1].next_wr = wr
            chain.append(wr)
        return chain  # the caller keeps the list alive: next_wr holds raw pointers into these objects

    def _recv_chain(self, batch: WorkBatch) -> list[Any]:
        pv, sges = self._pv, self._sges(batch)
        chain: list[Any] = []
        start = 0
        for wr_id, num_sge in batch.wrs.tolist():
            wr = pv.RecvWR(wr_id=wr_id, num_sge=num_sge, sg=sges[start : start + num_sge])
            start += num_sge
            if chain:
                chain[-1].next_wr = wr
            chain.append(wr)
        return chain

    # -- queue pairs ---------------------------------------------------------------------------
    def _create_qp(self, pd: int, qp_type: int, depth: int, max_send_sge: int, max_recv_sge: int) -> _Qp:
        pv = self._pv
        send_cq = pv.CQ(self.ctx, depth, None, None, 0)
        recv_cq = pv.CQ(self.ctx, depth, None, None, 0)
        cap = pv.QPCap(max_send_wr=depth, max_recv_wr=depth, max_send_sge=max_send_sge, max_recv_sge=max_recv_sge)
        qp = pv.QP(self._pds[pd], pv.QPInitAttr(qp_type=qp_type, scq=send_cq, rcq=recv_cq, cap=cap))
        attr, _ = qp.query(pv.e.IBV_QP_CAP)  # rxe may grant more SGEs than asked: the kernel needs the truth
        info = QpInfo(int(qp.qp_num), pd, qp_type, int(attr.cap.max_send_sge), int(attr.cap.max_recv_sge))
        entry = _Qp(qp, info, send_cq, recv_cq)
        self._qps[info.qp_num] = entry
        return entry

    def _route(self) -> Any:
        pv = self._pv
        gr = pv.GlobalRoute(dgid=self.gid, sgid_index=self.gid_index)
        return pv.AHAttr(port_num=self.port, is_global=1, gr=gr, dlid=self.port_attr.lid)

    def create_rc_pair(
        self, pd_a: int, pd_b: int | None = None, *, depth: int = 64, max_send_sge: int = 4, max_recv_sge: int = 4
    ) -> tuple[int, int]:
        """Two RC QPs on this device connected to each other (loopback through the device's GID)."""
        pd_b = pd_a if pd_b is None else pd_b
        a = self._create_qp(pd_a, IBV_QPT_RC, depth, max_send_sge, max_recv_sge)
        b = self._create_qp(pd_b, IBV_QPT_RC, depth, max_send_sge, max_recv_sge)
        for me, peer in ((a, b), (b, a)):
            attr = self._pv.QPAttr(port_num=self.port)
            attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ
            attr.path_mtu = PATH_MTU_1024
            attr.max_dest_rd_atomic = 1
            attr.max_rd_atomic = 1
            attr.min_rnr_timer = RC_MIN_RNR_TIMER
            attr.timeout = RC_TIMEOUT
            attr.retry_cnt = RC_RETRY_CNT
            attr.rnr_retry = RC_RNR_RETRY
            attr.ah_attr = self._route()
            attr.dest_qp_num = peer.info.qp_num
            attr.rq_psn = 0
            attr.sq_psn = 0
            me.qp.to_rts(attr)
        a.info = replace(a.info, peer_pd=pd_b)
        b.info = replace(b.info, peer_pd=pd_a)
        return a.info.qp_num, b.info.qp_num

    def create_ud(self, pd: int, *, depth: int = 64, max_send_sge: int = 4, max_recv_sge: int = 4) -> int:
        """A UD QP in RTS; ``connect_ud`` names the peer its SENDs go to."""
        entry = self._create_qp(pd, IBV_QPT_UD, depth, max_send_sge, max_recv_sge)
        attr = self._pv.QPAttr(port_num=self.port)
        attr.qkey = UD_QKEY
        attr.pkey_index = 0
        entry.qp.to_rts(attr)
        return entry.info.qp_num

    def connect_ud(self, qp_num: int, peer_qp_num: int) -> None:
        entry = self._qps[qp_num]
        ah = self._pv.AH(self._pds[entry.info.pd], attr=self._route())
        entry.ud_peer = (ah, peer_qp_num)

    def destroy_qp(self, qp_num: int) -> None:
        entry = self._qps.pop(qp_num)
        entry.qp.close()
        entry.send_cq.close()
        entry.recv_cq.close()

    def qp_state(self, qp_num: int) -> int:
        """``enum ibv_qp_state`` of the QP (IBV_QPS_ERR = 6 after an error completion)."""
        attr, _ = self._qps[qp_num].qp.query(self._pv.e.IBV_QP_STATE)
        return int(attr.qp_state)

    # -- completions ---------------------------------------------------------------------------
    def poll(self, qp_num: int, *, recv: bool, max_entries: int = 64) -> npt.NDArray[np.void]:
        """Completions of the QP's send (or receive) queue, as ``WORK_COMPLETION`` rows."""
        entry = self._qps[qp_num]
        cq = entry.recv_cq if recv else entry.send_cq
        _, wcs = cq.poll(max_entries)
        out = np.zeros(len(wcs), dtype=WORK_COMPLETION)
        for i, wc in enumerate(wcs):
            out[i] = (wc.wr_id, wc.status, wc.opcode, wc.byte_len, wc.qp_num)
        return out

    def close(self) -> None:
        """Destroy every QP, MR and PD, then close the device context.  Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for qp_num in list(self._qps):
            self.destroy_qp(qp_num)
        for mr in self._mrs.values():
            mr.close()
        self._mrs.clear()
        for pd in self._pds.values():
            pd.close()
        self._pds.clear()
        self.ctx.close()


class RawPoster:
    """The device as a ``WorkPoster`` with no kernel in front: protection off."""

    def __init__(self, device: RxeDevice) -> None:
        self.device = device

    def post_send(self, qp_num: int, batch: WorkBatch) -> PostResult:
        self.device.post_send(qp_num, batch)
        return PostResult.all_posted(len(batch))

    def post_recv(self, qp_num: int, batch: WorkBatch) -> PostResult:
        self.device.post_recv(qp_num, batch)
        return PostResult.all_posted(len(batch))


class CompletionQueue:
    """One queue's completions as a ``ring.verbs_api.CompletionSource``."""

    def __init__(self, device: RxeDevice, qp_num: int, *, recv: bool) -> None:
        self.device, self.qp_num, self.recv = device, qp_num, recv

    def poll(self, max_entries: int) -> npt.NDArray[np.void]:
        return self.device.poll(self.qp_num, recv=self.recv, max_entries=max_entries)
