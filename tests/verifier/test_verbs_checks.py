"""The ``verbs`` rules at their exact boundaries, and the vectorised checks against a one-WR-at-a-time reference.

No device is needed: the MR table holds rows as ibv_reg_mr would report
them (rxe-style keys, ``index << 8 | key``).  What rxe actually does with the
same WRs is the lab's differential test (tests/lab/test_verbs_lab.py).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from fuzz.verbs_cases import generate
from ring.verbs_api import QpInfo
from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_QPT_RC,
    IBV_QPT_UD,
    IBV_SEND_INLINE,
    IBV_SEND_SIGNALED,
    IBV_WR_ATOMIC_FETCH_AND_ADD,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    MR_RECORD,
    WorkBatch,
    recv_batch,
    send_batch,
)
from tests.verbs_layout import example_layout
from verifier.rules import reasons as R
from verifier.rules.verbs import MrTable, check_work

LW, RW, RR = IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_READ
PD, OTHER = 1, 2
BASE = 0x7F00_0000_1000  # start of the MR under test
SIZE = 0x1000
LKEY = 0x0133
U64 = 1 << 64


def mr_row(addr: int, length: int, lkey: int, access: int, pd: int = PD, rkey: int | None = None) -> np.void:
    row = np.zeros(1, dtype=MR_RECORD)
    remote = access & (RW | RR)
    row[0] = (addr, length, lkey, (lkey if remote else 0) if rkey is None else rkey, access, pd)
    return row[0]


@pytest.fixture
def table() -> MrTable:
    t = MrTable()
    t.add(mr_row(BASE, SIZE, LKEY, LW | RW | RR))  # the MR under test
    t.add(mr_row(BASE + 0x2000, SIZE, 0x0244, 0))  # local read only: no LOCAL_WRITE, rkey 0
    t.add(mr_row(BASE + 0x4000, SIZE, 0x0355, LW | RR))  # remote read only
    t.add(mr_row(BASE + 0x6000, SIZE, 0x0466, LW | RW))  # remote write only
    t.add(mr_row(0x7F10_0000_0000, SIZE, 0x0577, LW | RW | RR, pd=OTHER))  # another tenant's
    return t


RC = QpInfo(qp_num=17, pd=PD, qp_type=IBV_QPT_RC, max_send_sge=4, max_recv_sge=3, peer_pd=PD)
UD = QpInfo(qp_num=18, pd=PD, qp_type=IBV_QPT_UD, max_send_sge=4, max_recv_sge=3)


def send1(addr: int, length: int, lkey: int = LKEY, opcode: int = IBV_WR_SEND, rdma: tuple[int, int] | None = None,
          flags: int = IBV_SEND_SIGNALED) -> WorkBatch:  # fmt: skip
    return send_batch([(1, opcode, [(addr, length, lkey)])], rdma=[rdma] if rdma else None, send_flags=flags)


def verdict(batch: WorkBatch, table: MrTable, qp: QpInfo = RC) -> int:
    return int(check_work(batch, table, PD, qp).reason[0])


# -- local SGE range, exact ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("addr", "length", "expected"),
    [
        (BASE, SIZE, R.OK),  # the whole MR
        (BASE, 1, R.OK),  # its first byte
        (BASE + SIZE - 1, 1, R.OK),  # its last byte
        (BASE - 1, 2, R.VERBS_SGE_OUTSIDE_MR),  # one byte before the start
        (BASE - 1, 1, R.VERBS_SGE_OUTSIDE_MR),  # only the byte before
        (BASE, SIZE + 1, R.VERBS_SGE_OUTSIDE_MR),  # one byte past the end
        (BASE + SIZE, 1, R.VERBS_SGE_OUTSIDE_MR),  # the first byte after
        (BASE + 1, SIZE, R.VERBS_SGE_OUTSIDE_MR),  # shifted by one
        (U64 - 16, 16, R.ADDR_WRAP),  # end is exactly 2**64: not representable
        (U64 - 16, 17, R.ADDR_WRAP),  # wraps to 0
        (U64 - 17, 16, R.VERBS_SGE_OUTSIDE_MR),  # ends at 2**64 - 1: no wrap, just outside
        (BASE, 0xFFFF_FFFF, R.VERBS_SGE_OUTSIDE_MR),  # the largest u32 length
    ],
)
def test_local_range_boundaries(table: MrTable, addr: int, length: int, expected: int) -> None:
    assert verdict(send1(addr, length), table) == expected
    recv = recv_batch([(1, [(addr, length, LKEY)])])
    assert verdict(recv, table) == expected


def test_first_bad_byte_is_exact(table: MrTable) -> None:
    v = check_work(send1(BASE + SIZE - 4, 8), table, PD, RC)
    assert int(v.bad_byte[0]) == BASE + SIZE and int(v.bad_sge[0]) == 0
    v = check_work(send1(BASE - 3, 8), table, PD, RC)
    assert int(v.bad_byte[0]) == BASE - 3


# -- keys, PDs, access ----------------------------------------------------------------------------
def test_unknown_lkey_and_a_stale_key_byte(table: MrTable) -> None:
    assert verdict(send1(BASE, 8, lkey=0xDEAD_BEEF), table) == R.VERBS_LKEY_UNKNOWN
    assert verdict(send1(BASE, 8, lkey=LKEY ^ 0x01), table) == R.VERBS_LKEY_UNKNOWN  # same index, other key


def test_other_pd_lkey_is_refused_even_inside_its_mr(table: MrTable) -> None:
    assert verdict(send1(0x7F10_0000_0000, 8, lkey=0x0577), table) == R.VERBS_LKEY_OTHER_PD


def test_key_is_judged_before_range(table: MrTable) -> None:
    assert verdict(send1(BASE - 100, 8, lkey=0x0577), table) == R.VERBS_LKEY_OTHER_PD
    assert verdict(send1(U64 - 4, 8, lkey=0x1234), table) == R.VERBS_LKEY_UNKNOWN


def test_local_write_is_needed_only_where_the_device_writes(table: MrTable) -> None:
    ro = BASE + 0x2000
    assert verdict(send1(ro, 64, lkey=0x0244), table) == R.OK  # a SEND reads its source
    assert verdict(recv_batch([(1, [(ro, 64, 0x0244)])]), table) == R.VERBS_NO_LOCAL_WRITE
    read = send1(ro, 64, lkey=0x0244, opcode=IBV_WR_RDMA_READ, rdma=(BASE, LKEY))
    assert verdict(read, table) == R.VERBS_NO_LOCAL_WRITE  # an RDMA READ writes its local SGE
    write = send1(ro, 64, lkey=0x0244, opcode=IBV_WR_RDMA_WRITE, rdma=(BASE, LKEY))
    assert verdict(write, table) == R.OK


def test_access_is_judged_before_range(table: MrTable) -> None:
    recv = recv_batch([(1, [(BASE + 0x2000 - 1, 64, 0x0244)])])
    assert verdict(recv, table) == R.VERBS_NO_LOCAL_WRITE


def test_zero_length_sge_names_nothing_and_passes_whatever_it_says(table: MrTable) -> None:
    junk = (0xFFFF_FFFF_FFFF_FFF0, 0, 0xDEAD_BEEF)
    batch = send_batch([(1, IBV_WR_SEND, [(BASE, 8, LKEY), junk, (BASE + 8, 8, LKEY)])])
    assert verdict(batch, table) == R.OK
    assert verdict(recv_batch([(1, [junk])]), table) == R.OK


def test_first_bad_sge_gives_the_reason(table: MrTable) -> None:
    sges = [(BASE, 8, LKEY), (BASE + SIZE - 1, 2, LKEY), (BASE, 8, 0x9999)]
    v = check_work(send_batch([(1, IBV_WR_SEND, sges)]), table, PD, RC)
    assert int(v.reason[0]) == R.VERBS_SGE_OUTSIDE_MR and int(v.bad_sge[0]) == 1


# -- num_sge, opcode, flags -------------------------------------------------------------------------
def test_num_sge_limit_is_per_queue(table: MrTable) -> None:
    four = [(BASE + 16 * i, 16, LKEY) for i in range(4)]
    assert verdict(send_batch([(1, IBV_WR_SEND, four)]), table) == R.OK
    assert verdict(send_batch([(1, IBV_WR_SEND, [*four, (BASE, 16, LKEY)])]), table) == R.VERBS_TOO_MANY_SGE
    assert verdict(recv_batch([(1, four[:3])]), table) == R.OK
    assert verdict(recv_batch([(1, four)]), table) == R.VERBS_TOO_MANY_SGE


def test_too_many_sge_wins_over_a_bad_sge(table: MrTable) -> None:
    sges = [(BASE - 1, 16, LKEY)] * 5
    assert verdict(send_batch([(1, IBV_WR_SEND, sges)]), table) == R.VERBS_TOO_MANY_SGE


def test_opcodes_and_flags(table: MrTable) -> None:
    assert verdict(send1(BASE, 8, opcode=IBV_WR_ATOMIC_FETCH_AND_ADD, rdma=(BASE, LKEY)), table) == (
        R.VERBS_OPCODE_UNSUPPORTED
    )
    assert verdict(send1(BASE, 8, opcode=IBV_WR_RDMA_WRITE, rdma=(BASE, LKEY)), table, UD) == (
        R.VERBS_OPCODE_UNSUPPORTED
    )
    assert verdict(send1(BASE, 8), table, UD) == R.OK
    assert verdict(send1(BASE, 8, flags=IBV_SEND_SIGNALED | IBV_SEND_INLINE), table) == R.CMD_UNSUPPORTED


# -- the remote side --------------------------------------------------------------------------------
def rdma(opcode: int, remote_addr: int, rkey: int, length: int = 64) -> WorkBatch:
    return send1(BASE, length, opcode=opcode, rdma=(remote_addr, rkey))


@pytest.mark.parametrize("opcode", [IBV_WR_RDMA_WRITE, IBV_WR_RDMA_READ])
@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, R.OK), (SIZE - 64, R.OK), (SIZE - 63, R.VERBS_REMOTE_OUTSIDE_MR), (-1, R.VERBS_REMOTE_OUTSIDE_MR)],
)
def test_remote_range_boundaries(table: MrTable, opcode: int, offset: int, expected: int) -> None:
    assert verdict(rdma(opcode, BASE + offset, LKEY), table) == expected


def test_remote_wrap(table: MrTable) -> None:
    assert verdict(rdma(IBV_WR_RDMA_WRITE, U64 - 8, LKEY), table) == R.VERBS_REMOTE_OUTSIDE_MR


def test_rkey_rules(table: MrTable) -> None:
    assert verdict(rdma(IBV_WR_RDMA_WRITE, BASE, 0xBAD0_0001), table) == R.VERBS_RKEY_UNKNOWN
    assert verdict(rdma(IBV_WR_RDMA_WRITE, BASE + 0x2000, 0), table) == R.VERBS_RKEY_UNKNOWN  # no remote access
    assert verdict(rdma(IBV_WR_RDMA_WRITE, 0x7F10_0000_0000, 0x0577), table) == R.VERBS_RKEY_OTHER_PD
    assert verdict(rdma(IBV_WR_RDMA_WRITE, BASE + 0x4000, 0x0355), table) == R.VERBS_RKEY_NO_ACCESS
    assert verdict(rdma(IBV_WR_RDMA_READ, BASE + 0x4000, 0x0355), table) == R.OK
    assert verdict(rdma(IBV_WR_RDMA_READ, BASE + 0x6000, 0x0466), table) == R.VERBS_RKEY_NO_ACCESS
    assert verdict(rdma(IBV_WR_RDMA_WRITE, BASE + 0x6000, 0x0466), table) == R.OK


def test_zero_byte_rdma_carries_no_address(table: MrTable) -> None:
    batch = send_batch([(1, IBV_WR_RDMA_WRITE, [(BASE, 0, LKEY)])], rdma=[(0, 0xBAD)])
    assert verdict(batch, table) == R.OK


def test_read_is_judged_remote_first_and_write_local_first(table: MrTable) -> None:
    bad_both = {"addr": BASE - 1, "rkey": 0xBAD0_0001}
    read = send1(bad_both["addr"], 64, opcode=IBV_WR_RDMA_READ, rdma=(BASE, bad_both["rkey"]))
    write = send1(bad_both["addr"], 64, opcode=IBV_WR_RDMA_WRITE, rdma=(BASE, bad_both["rkey"]))
    rv, wv = check_work(read, table, PD, RC), check_work(write, table, PD, RC)
    assert int(rv.reason[0]) == R.VERBS_RKEY_UNKNOWN and bool(rv.remote[0])
    assert int(wv.reason[0]) == R.VERBS_SGE_OUTSIDE_MR and not bool(wv.remote[0])


def test_rkeys_are_not_checked_when_the_responder_is_elsewhere(table: MrTable) -> None:
    far = QpInfo(qp_num=19, pd=PD, qp_type=IBV_QPT_RC, max_send_sge=4, max_recv_sge=4, peer_pd=None)
    assert verdict(rdma(IBV_WR_RDMA_WRITE, BASE, 0xBAD0_0001), table, far) == R.OK


# -- the MR table ------------------------------------------------------------------------------------
def test_mr_table_refuses_duplicates_and_wrapping_regions() -> None:
    t = MrTable()
    t.add(mr_row(BASE, SIZE, LKEY, LW))
    with pytest.raises(ValueError, match="already registered"):
        t.add(mr_row(BASE + SIZE, SIZE, LKEY, LW))
    with pytest.raises(ValueError, match="wraps"):
        t.add(mr_row(U64 - 16, 32, 0x999, LW))
    removed = t.remove(LKEY)
    assert int(removed["addr"]) == BASE and len(t) == 0
    with pytest.raises(KeyError):
        t.remove(LKEY)


def test_deregistered_mr_is_unknown_at_once(table: MrTable) -> None:
    table.remove(LKEY)
    assert verdict(send1(BASE, 8), table) == R.VERBS_LKEY_UNKNOWN


def test_empty_table_and_empty_batch() -> None:
    t = MrTable()
    assert verdict(send1(BASE, 8), t) == R.VERBS_LKEY_UNKNOWN
    empty = send_batch([])
    assert check_work(empty, t, PD, RC).reason.size == 0


# -- vectorised == reference ---------------------------------------------------------------------
def reference(batch: WorkBatch, table: MrTable, pd: int, qp: QpInfo) -> list[int]:
    """One WR at a time, one SGE at a time, in Python ints: the rules of verifier/rules/verbs.py read literally."""
    mrs = [{k: int(r[k]) for k in ("addr", "length", "lkey", "rkey", "access", "pd")} for r in table.rows]
    out = []
    for i in range(len(batch)):
        wr = {k: int(batch.wrs[k][i]) for k in batch.wrs.dtype.names or ()}
        sges = [(int(s["addr"]), int(s["length"]), int(s["lkey"])) for s in batch.sges_of(i)]
        send = batch.is_send
        max_sge = qp.max_send_sge if send else qp.max_recv_sge
        if wr["num_sge"] > max_sge:
            out.append(R.VERBS_TOO_MANY_SGE)
            continue
        opcode = wr.get("opcode")
        if send:
            allowed = (0, 1, 2, 3, 4) if qp.qp_type == IBV_QPT_RC else (2, 3)
            if opcode not in allowed:
                out.append(R.VERBS_OPCODE_UNSUPPORTED)
                continue
            if wr["send_flags"] & ~(1 | 2 | 4):
                out.append(R.CMD_UNSUPPORTED)
                continue
        writes = not send or opcode == IBV_WR_RDMA_READ
        local = R.OK
        for addr, length, lkey in sges:
            if length == 0:
                continue
            mr = next((m for m in mrs if m["lkey"] == lkey), None)
            if mr is None:
                local = R.VERBS_LKEY_UNKNOWN
            elif mr["pd"] != pd:
                local = R.VERBS_LKEY_OTHER_PD
            elif writes and not mr["access"] & LW:
                local = R.VERBS_NO_LOCAL_WRITE
            elif addr + length >= U64:
                local = R.ADDR_WRAP
            elif addr < mr["addr"] or addr + length > mr["addr"] + mr["length"]:
                local = R.VERBS_SGE_OUTSIDE_MR
            if local != R.OK:
                break
        remote = R.OK
        total = sum(length for _, length, _ in sges)
        if send and opcode in (0, 1, 4) and total > 0 and qp.peer_pd is not None:
            need = RR if opcode == IBV_WR_RDMA_READ else RW
            mr = next((m for m in mrs if m["access"] & (RW | RR | 8) and m["rkey"] == wr["rkey"]), None)
            start = wr["remote_addr"]
            if mr is None:
                remote = R.VERBS_RKEY_UNKNOWN
            elif mr["pd"] != qp.peer_pd:
                remote = R.VERBS_RKEY_OTHER_PD
            elif not mr["access"] & need:
                remote = R.VERBS_RKEY_NO_ACCESS
            elif start + total > U64 - 1 or start < mr["addr"] or start + total > mr["addr"] + mr["length"]:
                remote = R.VERBS_REMOTE_OUTSIDE_MR
        if opcode == IBV_WR_RDMA_READ and remote != R.OK:
            out.append(remote)
        else:
            out.append(local if local != R.OK else remote)
    return out


def random_batch(rng: random.Random, table: MrTable, send: bool, n: int) -> WorkBatch:
    rows = table.rows
    keys = [int(k) for k in rows["lkey"]] + [0xDEAD_BEEF, 0]
    wrs: list = []
    rdma_args = []
    for wr_id in range(n):
        sges = []
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            r = rows[rng.randrange(rows.size)]
            edge = rng.choice([int(r["addr"]), int(r["addr"]) + int(r["length"]), rng.getrandbits(64)])
            addr = max(0, min(U64 - 1, edge + rng.randint(-3, 3)))
            length = rng.choice([0, 1, 2, 63, 64, 4095, 4096, 4097, rng.getrandbits(32)])
            sges.append((addr, length, rng.choice(keys)))
        if send:
            opcode = rng.choice([IBV_WR_SEND, IBV_WR_RDMA_WRITE, IBV_WR_RDMA_READ, IBV_WR_RDMA_WRITE,
                                 IBV_WR_ATOMIC_FETCH_AND_ADD])  # fmt: skip
            r = rows[rng.randrange(rows.size)]
            rdma_args.append((int(r["addr"]) + rng.randint(-2, int(r["length"])), rng.choice(keys)))
            wrs.append((wr_id, opcode, sges))
        else:
            wrs.append((wr_id, sges))
    return send_batch(wrs, rdma=rdma_args) if send else recv_batch(wrs)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_agrees_with_reference(table: MrTable, seed: int) -> None:
    rng = random.Random(seed)
    for send in (True, False):
        for qp in (RC, UD):
            batch = random_batch(rng, table, send, 200)
            got = check_work(batch, table, PD, qp).reason.tolist()
            assert got == reference(batch, table, PD, qp)


def test_generator_intent_agrees_with_the_checks() -> None:
    layout = example_layout()
    table = MrTable()
    for row in layout.mrs.values():
        table.add(row)
    qp = QpInfo(qp_num=1, pd=1, qp_type=IBV_QPT_RC, max_send_sge=4, max_recv_sge=4, peer_pd=1)
    cases = generate(layout, seed=11, per_class=5)
    for case in cases:
        v = check_work(case.batch, table, 1, qp)
        assert bool(v.accepted[0]) == case.valid, case.name
        if case.companion is not None:
            assert bool(check_work(case.companion, table, 1, qp).accepted.all()), case.name
    sends = [c for c in cases if c.queue == "send"]
    whole_post = check_work(WorkBatch.concat([c.batch for c in sends]), table, 1, qp).reason.tolist()
    assert whole_post == [int(check_work(c.batch, table, 1, qp).reason[0]) for c in sends]
