"""Inside the lab VM: the verbs back end on real soft-RoCE, and the differential against the verifier.

Runs only in the guest (marker ``lab``; ``python -m lab test``).  The
guest's init created ``rxe0`` on the virtio-net; pyverbs is Debian's
python3-pyverbs (rdma-core 44).  Inside the lab a missing device is a
failure, never a skip.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from driver.verbs.device import CompletionQueue, RawPoster, RxeDevice
from driver.verbs.memory import Arena
from driver.verbs.queue import SlotRegion, VerbsRxQueue, VerbsTxQueue
from fuzz.verbs_cases import CLASSES
from fuzz.verbs_differential import IBV_QPS_ERR, IBV_QPS_RTS, run_differential
from lab.guest.env import run_dir, rxe_device
from ring.frames import FrameBatch
from ring.verbs_format import GRH_SIZE, IBV_ACCESS_LOCAL_WRITE, POST_EINVAL, status_name
from verifier.audit.memory import MemoryAudit
from verifier.rules import reasons as R
from verifier.verbs.gate import VerbsKernel

pytestmark = pytest.mark.lab

SEED = 1
PER_CLASS = 4


@pytest.fixture
def device() -> Iterator[RxeDevice]:
    name = rxe_device()
    if not name:
        pytest.fail("the lab's init did not create the rxe device (see console.log: rdma link add)")
    dev = RxeDevice(name)
    try:
        yield dev
    finally:
        dev.close()


def test_differential_raw_rxe_and_the_verifier_agree(device: RxeDevice) -> None:
    report = run_differential(device, seed=SEED, per_class=PER_CLASS)
    print(report.summary())
    rows = [
        {
            "case": r.case.name,
            "valid": r.case.valid,
            "verdict": R.name(r.gated.reason),
            "rxe": status_name(r.raw.status),
            "expected": None if r.expected is None else status_name(r.expected),
            "sender": None if r.raw.peer_status is None else status_name(r.raw.peer_status),
            "qp_state_after": r.raw.qp_state,
            "gated_status": None if r.gated.status is None else status_name(r.gated.status),
            "data_ok": r.gated.data_ok,
            "problems": r.problems(),
        }
        for r in report.rows
    ]
    (run_dir() / "verbs_differential.json").write_text(
        json.dumps({"summary": report.summary(), "rows": rows}, indent=1) + "\n"
    )
    by_pair = Counter((row["verdict"], row["rxe"]) for row in rows)
    for (verdict, status), n in sorted(by_pair.items()):
        print(f"  {n:4d}  {verdict:26s} -> {status}")
    problems = [f"{r.case.name}: {p}" for r in report.rows for p in r.problems()]
    assert problems == [], "\n".join(problems)
    assert len(rows) == PER_CLASS * len(CLASSES)
    assert report.gated_qp_pairs == 1 and report.gated_qp_state == IBV_QPS_RTS  # refusals never broke the pair
    errors = [r for r in report.rows if r.raw.status not in (0, POST_EINVAL)]
    assert errors and all(r.raw.qp_state == IBV_QPS_ERR for r in errors)  # every error completion killed its QP
    assert all(r.gated.data_ok is not False for r in report.rows)


def test_rc_tx_burst_rx_burst_through_the_gate(device: RxeDevice) -> None:
    audit = MemoryAudit()
    kernel = VerbsKernel(device, audit)
    alice = kernel.open_tenant("alice")
    arena = Arena(0x40000)
    tx_mr = alice.reg_mr(arena.addr + 0x1000, 0x10000, 0)
    rx_mr = alice.reg_mr(arena.addr + 0x20000, 0x10000, IBV_ACCESS_LOCAL_WRITE)
    a, b = device.create_rc_pair(alice.pd)
    try:
        tx_slots = SlotRegion(arena, arena.addr + 0x1000, 2048, 32, int(tx_mr["lkey"]))
        rx_slots = SlotRegion(arena, arena.addr + 0x20000, 2048, 32, int(rx_mr["lkey"]))
        txq = VerbsTxQueue(alice, a, CompletionQueue(device, a, recv=False), tx_slots)
        rxq = VerbsRxQueue(alice, b, CompletionQueue(device, b, recv=True), rx_slots)
        assert rxq.fill() == 32
        rng = np.random.default_rng(5)
        frames = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(60, 1515, 200)]
        got: list[bytes] = []
        sent = 0
        for _ in range(20000):
            if sent < len(frames):
                sent += txq.tx_burst(FrameBatch.from_frames(frames[sent : sent + 16]))
            got.extend(rxq.rx_burst(32))
            if len(got) == len(frames):
                break
        assert got == frames
        assert txq.stats.errors == 0 and rxq.stats.errors == 0
        # a queue whose slots run one byte past its MR: that WR is refused and audited, the pair lives on
        past_end = SlotRegion(arena, arena.addr + 0x1000 + 0x10000 - 100, 101, 1, int(tx_mr["lkey"]))
        bad = VerbsTxQueue(alice, a, CompletionQueue(device, a, recv=False), past_end)
        assert bad.tx_burst(FrameBatch.from_frames([b"x" * 101])) == 0
        assert [r["reason"] for r in audit.records] == ["VERBS_SGE_OUTSIDE_MR"]
        assert txq.tx_burst(FrameBatch.from_frames([frames[0]])) == 1
        for _ in range(20000):
            more = rxq.rx_burst(1)
            if len(more):
                assert list(more) == [frames[0]]
                break
        else:
            pytest.fail("the frame after the refusal never arrived")
        for _ in range(20000):  # let txq reap its last completion: the next queue shares the send CQ
            txq.reap()
            if not txq.busy.any():
                break
        # the same WR with protection off: the device takes it, fails it, and the QP is dead
        raw = VerbsTxQueue(RawPoster(device), a, CompletionQueue(device, a, recv=False), past_end)
        assert raw.tx_burst(FrameBatch.from_frames([b"x" * 101])) == 1
        for _ in range(20000):
            raw.reap()
            if raw.stats.errors:
                break
        assert raw.stats.errors == 1 and device.qp_state(a) == IBV_QPS_ERR
    finally:
        device.destroy_qp(a)
        device.destroy_qp(b)
        alice.dereg_mr(int(tx_mr["lkey"]))
        alice.dereg_mr(int(rx_mr["lkey"]))
        del txq, rxq
        arena.close()


def test_ud_datagrams_through_the_gate(device: RxeDevice) -> None:
    kernel = VerbsKernel(device, MemoryAudit())
    alice = kernel.open_tenant("alice")
    arena = Arena(0x20000)
    mr = alice.reg_mr(arena.addr, 0x20000, IBV_ACCESS_LOCAL_WRITE)
    lkey = int(mr["lkey"])
    s, r = device.create_ud(alice.pd), device.create_ud(alice.pd)
    device.connect_ud(s, r)
    try:
        tx_slots = SlotRegion(arena, arena.addr, 1024, 16, lkey)
        rx_slots = SlotRegion(arena, arena.addr + 0x10000, 1024 + GRH_SIZE, 16, lkey)
        txq = VerbsTxQueue(alice, s, CompletionQueue(device, s, recv=False), tx_slots)
        rxq = VerbsRxQueue(alice, r, CompletionQueue(device, r, recv=True), rx_slots, header=GRH_SIZE)
        rxq.fill()
        frames = [bytes([i]) * (64 + 7 * i) for i in range(40)]
        got: list[bytes] = []
        sent = 0
        for _ in range(20000):
            if sent < len(frames) and sent - len(got) < 8:  # UD drops what finds no receive WR: stay within 16
                sent += txq.tx_burst(FrameBatch.from_frames(frames[sent : sent + 8]))
            got.extend(rxq.rx_burst(16))
            if len(got) == len(frames):
                break
        assert got == frames
    finally:
        device.destroy_qp(s)
        device.destroy_qp(r)
        alice.dereg_mr(lkey)
        del txq, rxq
        arena.close()
