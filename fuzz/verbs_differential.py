"""The verbs differential: the same work requests posted straight to rxe and through the verifier.

One machine, one set of memory regions (registered through the kernel, so
both runs name the same keys), one generated set of cases
(``fuzz/verbs_cases.py``).  Then:

* **raw**: each case goes straight to the device (``RxeDevice.post_*``, no
  checks).  The outcome is the WR's completion status (or POST_EINVAL when
  the provider refuses the post), plus, for a receive WR, the status of the
  SEND that filled it, and the QP's state afterwards.  An error completion
  moves the QP to the error state, so the harness replaces the QP pair
  after every case that did not succeed.
* **gated**: each case goes through the tenant's ``VerbsTenant`` (the
  verifier in front of the device) on *one* QP pair for the whole run.  The
  outcome is the verdict and reason; an accepted WR must then complete
  successfully and move exactly the bytes it names.  A refused WR must
  leave no completion behind, and the pair must still be in RTS at the end.

``compare`` requires the two to agree under ``verifier/verbs/status.py``'s
mapping, case by case.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from driver.verbs.device import RxeDevice
from driver.verbs.memory import Arena
from fuzz.verbs_cases import ARENA_SIZE, MR_SPECS, VerbsCase, VerbsLayout, generate
from ring.verbs_api import PostError, PostResult
from ring.verbs_format import (
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_WRITE,
    POST_EINVAL,
    status_name,
)
from verifier.audit.memory import MemoryAudit
from verifier.rules import reasons as R
from verifier.verbs.gate import VerbsKernel, VerbsTenant
from verifier.verbs.status import RECV_FAILURE_SENDER_STATUS, expected_status

#: No completion arrived before the deadline (never a real ibv_wc_status).
TIMEOUT = -1
IBV_QPS_RTS, IBV_QPS_ERR = 3, 6


@dataclass
class RawOutcome:
    status: int  # the WR's completion status, POST_EINVAL, or TIMEOUT
    peer_status: int | None = None  # receive cases: the status of the SEND that filled the WR
    qp_state: int | None = None  # the state of the WR's QP after an error


@dataclass
class GatedOutcome:
    reason: int  # the verifier's verdict
    status: int | None = None  # accepted WRs: the completion status
    data_ok: bool | None = None  # accepted WRs: the destination holds exactly the source's bytes
    stray_completions: int = 0  # refused WRs: completions that should not exist


@dataclass
class Row:
    case: VerbsCase
    raw: RawOutcome
    gated: GatedOutcome

    @property
    def expected(self) -> int | None:
        return expected_status(self.gated.reason, self.case.opcode)

    def problems(self) -> list[str]:
        out = []
        if self.expected != self.raw.status:
            want = "no entry" if self.expected is None else status_name(self.expected)
            out.append(f"rxe gave {status_name(self.raw.status)}, mapping of {R.name(self.gated.reason)} says {want}")
        failed_recv = self.case.queue == "recv" and self.raw.status not in (IBV_WC_SUCCESS, POST_EINVAL)
        if failed_recv and self.raw.peer_status != RECV_FAILURE_SENDER_STATUS:
            out.append(f"the filling SEND ended {self.raw.peer_status}, expected REM_OP_ERR")
        if self.gated.reason == R.OK and (self.gated.status != IBV_WC_SUCCESS or self.gated.data_ok is False):
            out.append(f"accepted but completed {self.gated.status} (data ok: {self.gated.data_ok})")
        if self.gated.stray_completions:
            out.append(f"refused but {self.gated.stray_completions} completion(s) appeared")
        return out


@dataclass
class Report:
    rows: list[Row]
    raw_qp_pairs: int  # QP pairs the raw run needed (one per error plus one)
    gated_qp_pairs: int  # QP pairs the gated run needed (1: no accepted WR ever failed)
    gated_qp_state: int  # the gated run's last pair at the end (3 = RTS)
    seconds: float
    by_status: Counter[str] = field(default_factory=Counter)

    @property
    def agreed(self) -> int:
        return sum(1 for r in self.rows if not r.problems())

    def summary(self) -> str:
        refused = sum(1 for r in self.rows if r.gated.reason != R.OK)
        return (
            f"{len(self.rows)} WRs ({refused} refused by the verifier), {self.agreed} agree with rxe; "
            f"raw run used {self.raw_qp_pairs} QP pairs, "
            f"gated run {self.gated_qp_pairs} (last in state {self.gated_qp_state}); "
            f"{self.seconds:.1f} s"
        )


class Lab:
    """Two tenants' arenas and MRs on one device, registered through the kernel."""

    def __init__(self, device: RxeDevice, seed: int) -> None:
        self.device = device
        self.audit = MemoryAudit()
        self.kernel = VerbsKernel(device, self.audit)
        self.tenant = self.kernel.open_tenant("alice")
        self.other = self.kernel.open_tenant("eve")
        rng = np.random.default_rng(seed)
        self.arenas = {"tenant": Arena(ARENA_SIZE), "other": Arena(ARENA_SIZE)}
        for arena in self.arenas.values():
            arena.view[:] = rng.integers(0, 256, arena.size, dtype=np.uint8)
        owners: dict[str, VerbsTenant] = {"tenant": self.tenant, "other": self.other}
        self.owner_of = {s.name: owners[s.owner] for s in MR_SPECS}
        self.mrs = {
            s.name: owners[s.owner].reg_mr(self.arenas[s.owner].addr + s.offset, s.length, s.access) for s in MR_SPECS
        }

    def pair(self) -> tuple[int, int]:
        """A fresh RC pair of the tenant's, connected to each other."""
        return self.device.create_rc_pair(self.tenant.pd)

    def drop(self, a: int, b: int) -> None:
        self.device.destroy_qp(a)
        self.device.destroy_qp(b)

    def renew(self, a: int, b: int) -> tuple[int, int]:
        """Replace a pair an error completion left in the error state (every later WR would be flushed)."""
        self.drop(a, b)
        return self.pair()

    def layout(self, qp: int) -> VerbsLayout:
        info = self.device.qp_info(qp)
        return VerbsLayout(self.mrs, info.max_send_sge, info.max_recv_sge)

    def holds(self, addr: int, length: int) -> bool:
        """Whether ``[addr, addr + length)`` lies inside the tenant's arena."""
        arena = self.arenas["tenant"]
        return arena.addr <= addr and addr + length <= arena.addr + arena.size

    def read(self, addr: int, length: int) -> bytes:
        arena = self.arenas["tenant"]
        off = arena.offset(addr)
        return arena.view[off : off + length].tobytes()

    def close(self) -> None:
        for name, row in self.mrs.items():
            self.owner_of[name].dereg_mr(int(row["lkey"]))
        for arena in self.arenas.values():
            arena.close()


def _wait(device: RxeDevice, qp: int, wr_id: int, *, recv: bool, deadline: float) -> int:
    while time.monotonic() < deadline:
        wcs = device.poll(qp, recv=recv, max_entries=16)
        for wr, status in zip(wcs["wr_id"].tolist(), wcs["status"].tolist(), strict=True):
            if wr == wr_id:
                return int(status)
        if wcs.size == 0:
            time.sleep(0.0005)
    return TIMEOUT


def _drain(device: RxeDevice, qp: int) -> int:
    return int(device.poll(qp, recv=False, max_entries=64).size + device.poll(qp, recv=True, max_entries=64).size)


def run_raw(lab: Lab, cases: list[VerbsCase], timeout: float = 5.0) -> tuple[list[RawOutcome], int]:
    """Every case straight to the device; a fresh QP pair after every case that did not succeed."""
    dev = lab.device
    a, b = lab.pair()
    pairs = 1
    out = []
    for case in cases:
        wr_id, deadline = case.wr_id, time.monotonic() + timeout
        outcome = RawOutcome(TIMEOUT)
        try:
            if case.queue == "send":
                if case.companion is not None:
                    dev.post_recv(b, case.companion)
                dev.post_send(a, case.batch)
                outcome.status = _wait(dev, a, wr_id, recv=False, deadline=deadline)
                if outcome.status == IBV_WC_SUCCESS and case.companion is not None:
                    _wait(dev, b, wr_id, recv=True, deadline=deadline)
            else:
                dev.post_recv(b, case.batch)
                assert case.companion is not None
                dev.post_send(a, case.companion)
                outcome.status = _wait(dev, b, wr_id, recv=True, deadline=deadline)
                outcome.peer_status = _wait(dev, a, wr_id, recv=False, deadline=deadline)
        except PostError:
            outcome.status = POST_EINVAL
        if outcome.status != IBV_WC_SUCCESS:
            if outcome.status != POST_EINVAL:
                outcome.qp_state = dev.qp_state(a if case.queue == "send" else b)
            a, b = lab.renew(a, b)
            pairs += 1
        out.append(outcome)
    lab.drop(a, b)
    return out, pairs


def _moves(case: VerbsCase, lab: Lab) -> tuple[Callable[[], bytes], Callable[[], bytes]] | None:
    """(source bytes, destination bytes) readers for a valid case, or None if the ranges overlap."""
    sg = [(int(s["addr"]), int(s["length"])) for s in case.batch.sges if int(s["length"]) > 0]
    if case.queue == "send" and case.companion is not None:  # SEND: SGEs -> the companion receive
        dst = [(int(s["addr"]), int(s["length"])) for s in case.companion.sges]
        src = sg
    elif case.queue == "recv":
        assert case.companion is not None
        src = [(int(s["addr"]), int(s["length"])) for s in case.companion.sges]
        dst = sg
    else:
        remote = (int(case.batch.wrs["remote_addr"][0]), case.message_length)
        src, dst = (sg, [remote]) if case.opcode == IBV_WR_RDMA_WRITE else ([remote], sg)
    if not all(lab.holds(addr, n) for addr, n in src + dst):
        return None  # an invalid case: it names bytes outside the tenant's arena
    spans = sorted(src + dst)
    if any(s2 < s1 + n1 for (s1, n1), (s2, _) in itertools.pairwise(spans)):
        return None

    def read(ranges: list[tuple[int, int]]) -> bytes:
        return b"".join(lab.read(addr, n) for addr, n in ranges)

    return (lambda: read(src)), (lambda: read(dst))


def run_gated(lab: Lab, cases: list[VerbsCase], timeout: float = 5.0) -> tuple[list[GatedOutcome], int, int]:
    """Every case through the verifier on one QP pair; accepted WRs must complete and move their bytes.

    Returns the outcomes, the QP pairs used (1 unless an accepted WR failed: a verifier hole) and
    the state of the last pair at the end.
    """
    dev, tenant = lab.device, lab.tenant
    a, b = lab.pair()
    pairs = 1
    out = []
    for case in cases:
        wr_id, deadline = case.wr_id, time.monotonic() + timeout
        moves = _moves(case, lab)
        before = moves[0]() if moves else None
        if case.queue == "send":
            result: PostResult = tenant.post_send(a, case.batch)
            if result.count == 1 and case.companion is not None:  # the SEND waits (RNR) for its receive
                companion = tenant.post_recv(b, case.companion)
                if companion.count != 1:
                    raise RuntimeError(f"{case.name}: companion receive refused")
        else:
            result = tenant.post_recv(b, case.batch)
            if result.count == 1:
                assert case.companion is not None
                tenant.post_send(a, case.companion)
        outcome = GatedOutcome(int(result.reason[0]))
        if result.count == 1:
            queue_qp, recv = (a, False) if case.queue == "send" else (b, True)
            outcome.status = _wait(dev, queue_qp, wr_id, recv=recv, deadline=deadline)
            if case.companion is not None:  # the other half completes too
                _wait(dev, b if case.queue == "send" else a, wr_id, recv=case.queue == "send", deadline=deadline)
            if moves is not None and before is not None:
                outcome.data_ok = moves[1]() == before
            if outcome.status != IBV_WC_SUCCESS:  # a hole: replace the pair so later cases stand alone
                a, b = lab.renew(a, b)
                pairs += 1
        else:
            time.sleep(0.002)  # a refused WR never reached the device: nothing may complete
            outcome.stray_completions = _drain(dev, a) + _drain(dev, b)
        out.append(outcome)
    state = dev.qp_state(a)
    lab.drop(a, b)
    return out, pairs, state


def run_differential(device: RxeDevice, seed: int = 1, per_class: int = 4) -> Report:
    """Generate, run raw, run gated, and pair the outcomes up case by case."""
    start = time.monotonic()
    lab = Lab(device, seed)
    try:
        a, b = lab.pair()
        layout = lab.layout(a)
        lab.drop(a, b)
        cases = generate(layout, seed, per_class)
        raw, pairs = run_raw(lab, cases)
        gated, gated_pairs, state = run_gated(lab, cases)
    finally:
        lab.close()
    rows = [Row(c, r, g) for c, r, g in zip(cases, raw, gated, strict=True)]
    report = Report(rows, pairs, gated_pairs, state, time.monotonic() - start)
    report.by_status.update(status_name(r.raw.status) for r in rows)
    return report
