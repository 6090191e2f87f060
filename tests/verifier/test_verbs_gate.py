"""The kernel's gate in front of ibv_post_send/ibv_post_recv: refused WRs are audited and never reach the device.

The device here is a recording stand-in with rxe's key scheme: rxe itself
runs only in the lab (tests/lab/test_verbs_lab.py repeats the important
claims against the real device).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from driver.verbs.memory import Arena
from driver.verbs.queue import SlotRegion, VerbsTxQueue
from ring.frames import FrameBatch
from ring.verbs_api import PostResult, QpInfo
from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_QPT_RC,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    MR_RECORD,
    SGE,
    WorkBatch,
    recv_batch,
    send_batch,
)
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import verify
from verifier.rules import reasons as R
from verifier.verbs.gate import VerbsKernel

LW = IBV_ACCESS_LOCAL_WRITE
ALL = LW | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ


class RecordingDevice:
    """A VerbsDevice that assigns rxe-style keys and records every post it is handed."""

    name = "rxe-test"

    def __init__(self) -> None:
        self.pds = 0
        self.next_index = 1
        self.qps: dict[int, QpInfo] = {}
        self.sent: list[tuple[int, WorkBatch]] = []
        self.received: list[tuple[int, WorkBatch]] = []
        self.deregistered: list[int] = []

    def alloc_pd(self) -> int:
        self.pds += 1
        return self.pds

    def reg_mr(self, pd: int, addr: int, length: int, access: int) -> np.void:
        lkey = self.next_index << 8 | 0x42
        self.next_index += 1
        row = np.zeros(1, dtype=MR_RECORD)
        row[0] = (addr, length, lkey, lkey if access & 6 else 0, access, pd)
        return row[0]

    def dereg_mr(self, lkey: int) -> None:
        self.deregistered.append(lkey)

    def qp_info(self, qp_num: int) -> QpInfo:
        return self.qps[qp_num]

    def post_send(self, qp_num: int, batch: WorkBatch) -> None:
        self.sent.append((qp_num, batch))

    def post_recv(self, qp_num: int, batch: WorkBatch) -> None:
        self.received.append((qp_num, batch))

    def add_qp(self, qp_num: int, pd: int) -> None:
        self.qps[qp_num] = QpInfo(qp_num, pd, IBV_QPT_RC, max_send_sge=4, max_recv_sge=4, peer_pd=pd)


@pytest.fixture
def rig() -> tuple[VerbsKernel, RecordingDevice, MemoryAudit]:
    device = RecordingDevice()
    audit = MemoryAudit()
    return VerbsKernel(device, audit), device, audit


def test_refused_wrs_never_reach_the_device_and_each_has_one_record(
    rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit],
) -> None:
    kernel, device, audit = rig
    alice = kernel.open_tenant("alice")
    mr = alice.reg_mr(0x10000, 0x1000, ALL)
    device.add_qp(7, alice.pd)
    addr, lkey = int(mr["addr"]), int(mr["lkey"])
    batch = send_batch(
        [
            (1, IBV_WR_SEND, [(addr, 64, lkey)]),
            (2, IBV_WR_SEND, [(addr + 0xFC0, 65, lkey)]),  # one byte past the MR
            (3, IBV_WR_SEND, [(addr, 64, lkey ^ 1)]),  # a stale key
            (4, IBV_WR_SEND, [(addr + 64, 64, lkey), (addr, 0, 0xBAD)]),  # a zero-length SGE names nothing
        ]
    )
    result = alice.post_send(7, batch)
    assert result.posted.tolist() == [True, False, False, True]
    assert [R.name(int(c)) for c in result.reason] == ["OK", "VERBS_SGE_OUTSIDE_MR", "VERBS_LKEY_UNKNOWN", "OK"]
    [(qp, posted)] = device.sent
    assert qp == 7 and posted.wrs["wr_id"].tolist() == [1, 4] and posted.sges.size == 3
    records = list(audit.records)
    assert [r["reason"] for r in records] == ["VERBS_SGE_OUTSIDE_MR", "VERBS_LKEY_UNKNOWN"]
    first = records[0]
    assert first["kind"] == "tx" and first["nic"] == "rxe-test" and first["queue"] == 7 and first["ring_index"] == 1
    sge = np.frombuffer(bytes.fromhex(first["desc_hex"]), dtype=SGE)[0]
    assert (int(sge["addr"]), int(sge["length"]), int(sge["lkey"])) == (addr + 0xFC0, 65, lkey)
    assert first["detail"]["first_bad_byte"] == f"{addr + 0x1000:#x}"
    assert first["detail"]["rxe_would_give"] == "IBV_WC_LOC_PROT_ERR"
    assert records[1]["detail"]["rxe_would_give"] == "IBV_WC_LOC_QP_OP_ERR"
    assert result.audit_seqs == [0, 1] and audit.commits == 1


def test_a_post_with_nothing_accepted_reaches_nothing(rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]) -> None:
    kernel, device, audit = rig
    alice = kernel.open_tenant("alice")
    device.add_qp(7, alice.pd)
    result = alice.post_recv(7, recv_batch([(1, [(0x1000, 64, 0x1234)])]))
    assert result.count == 0 and device.received == []
    assert [r["kind"] for r in audit.records] == ["rx"]


def test_another_tenants_mr_is_refused(rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]) -> None:
    kernel, device, audit = rig
    alice, eve = kernel.open_tenant("alice"), kernel.open_tenant("eve")
    theirs = eve.reg_mr(0x20000, 0x1000, ALL)
    mine = alice.reg_mr(0x10000, 0x1000, ALL)
    device.add_qp(7, alice.pd)
    read_theirs = send_batch([(1, IBV_WR_SEND, [(0x20000, 64, int(theirs["lkey"]))])])
    write_theirs = send_batch(
        [(2, IBV_WR_RDMA_WRITE, [(0x10000, 64, int(mine["lkey"]))])], rdma=[(0x20000, int(theirs["rkey"]))]
    )
    assert alice.post_send(7, read_theirs).reason.tolist() == [R.VERBS_LKEY_OTHER_PD]
    assert alice.post_send(7, write_theirs).reason.tolist() == [R.VERBS_RKEY_OTHER_PD]
    assert device.sent == []
    assert audit.records[-1]["detail"]["side"] == "remote"


def test_queue_pairs_and_mrs_of_other_tenants_are_off_limits(
    rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit],
) -> None:
    kernel, device, _ = rig
    alice, eve = kernel.open_tenant("alice"), kernel.open_tenant("eve")
    device.add_qp(9, eve.pd)
    with pytest.raises(PermissionError):
        alice.post_send(9, send_batch([]))
    theirs = eve.reg_mr(0x20000, 0x1000, LW)
    with pytest.raises(PermissionError):
        alice.dereg_mr(int(theirs["lkey"]))
    assert len(kernel.mrs) == 1 and device.deregistered == []


def test_dereg_forgets_first(rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]) -> None:
    kernel, device, _ = rig
    alice = kernel.open_tenant("alice")
    mr = alice.reg_mr(0x10000, 0x1000, LW)
    device.add_qp(7, alice.pd)
    alice.dereg_mr(int(mr["lkey"]))
    assert device.deregistered == [int(mr["lkey"])]
    result = alice.post_recv(7, recv_batch([(1, [(0x10000, 64, int(mr["lkey"]))])]))
    assert result.reason.tolist() == [R.VERBS_LKEY_UNKNOWN]


def test_the_gate_judges_a_copy(rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]) -> None:
    kernel, device, _ = rig
    alice = kernel.open_tenant("alice")
    mr = alice.reg_mr(0x10000, 0x1000, LW)
    device.add_qp(7, alice.pd)
    batch = send_batch([(1, IBV_WR_SEND, [(0x10000, 64, int(mr["lkey"]))])])
    alice.post_send(7, batch)
    batch.sges["addr"][0] = 0xDEAD_0000  # the tenant rewrites its WR after the post
    assert int(device.sent[0][1].sges["addr"][0]) == 0x10000


def test_enforce_off_posts_everything(rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]) -> None:
    _, device, audit = rig
    kernel = VerbsKernel(device, audit, enforce=False)
    alice = kernel.open_tenant("alice")
    device.add_qp(7, alice.pd)
    result = alice.post_send(7, send_batch([(1, IBV_WR_SEND, [(0x1, 64, 0xBAD)])]))
    assert result.count == 1 and len(device.sent) == 1 and len(audit.records) == 0


def test_records_go_into_a_real_audit_log(
    tmp_path: Path, rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit]
) -> None:
    _, device, _ = rig
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, protection="verifier", fsync="never") as log:
        kernel = VerbsKernel(device, log)
        alice = kernel.open_tenant("alice")
        device.add_qp(7, alice.pd)
        batch = send_batch([(1, IBV_WR_SEND, [(0x1000, 8, 0x1)] * 5), (2, IBV_WR_SEND, [((1 << 64) - 4, 8, 0x1)])])
        alice.post_send(7, batch)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["reason"] for r in lines] == ["VERBS_TOO_MANY_SGE", "VERBS_LKEY_UNKNOWN"]
    assert lines[0]["desc_hex"] is None and lines[0]["detail"]["rxe_would_give"] == "POST_EINVAL"
    assert verify([path]).ok


def test_tx_burst_posts_through_the_gate_and_frees_refused_slots(
    rig: tuple[VerbsKernel, RecordingDevice, MemoryAudit],
) -> None:
    kernel, device, audit = rig
    alice = kernel.open_tenant("alice")
    arena = Arena(0x4000)
    mr = alice.reg_mr(arena.addr + 0x1000, 0x1000, LW)
    device.add_qp(7, alice.pd)

    class NoCompletions:
        def poll(self, max_entries: int) -> np.ndarray:
            return np.zeros(0, dtype=[("wr_id", "<u8"), ("status", "<u4")])

    region = SlotRegion(arena, arena.addr + 0x1000, 0x400, 4, int(mr["lkey"]))
    txq = VerbsTxQueue(alice, 7, NoCompletions(), region)
    frames = FrameBatch.from_frames([bytes([i]) * (60 + i) for i in range(3)])
    assert txq.tx_burst(frames) == 3
    [(_, posted)] = device.sent
    assert posted.sges["length"].tolist() == [60, 61, 62]
    assert posted.sges["addr"].tolist() == [arena.addr + 0x1000 + 0x400 * i for i in range(3)]
    assert bytes(arena.view[0x1400 : 0x1400 + 61]) == bytes([1]) * 61
    # a region that runs past its MR: the last slot's WR is refused, audited, and its slot stays free
    bad = SlotRegion(arena, arena.addr + 0x1000, 0x400, 5, int(mr["lkey"]))
    txq2 = VerbsTxQueue(alice, 7, NoCompletions(), bad)
    txq2.busy[:4] = True
    assert txq2.tx_burst(FrameBatch.from_frames([b"x" * 64])) == 0
    assert txq2.stats.refused == 1 and not bool(txq2.busy[4])
    assert audit.records[-1]["reason"] == "VERBS_SGE_OUTSIDE_MR"
    assert isinstance(PostResult.all_posted(2), PostResult)
    del txq, txq2, region, bad
    arena.close()
