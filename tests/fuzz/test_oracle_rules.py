"""Accepted => every rule holds: a verifier slip that moves no byte outside the pins is still found.

Each test writes one plausible slip into the verifier for its duration
(monkeypatch), runs the attack classes that reach the rule through the real
campaign for a small deterministic budget, and requires the oracle's ``rule``
finding (and that its reproducer replays as reproducing while the slip is in
place); and the same campaign against the unmodified verifier finds nothing.
Where no default class reaches the rule's boundary, the test brings its own
class (``AttackClass``), aimed from the arena's live memory map as the
default ones are; docs/fuzzing.md says which.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.arena import MemoryMap
from fuzz.campaign import CampaignResult, run_campaign
from fuzz.case import Case, replay
from fuzz.classes import CLASSES, AttackClass
from fuzz.classes import overrun as ring_overrun
from fuzz.log_follow import LogFollower
from fuzz.oracle.geometry import RingModel
from fuzz.oracle.rules import DEFAULT_RULES, OpenPacket, packet_atomicity, packet_rules
from fuzz.steps import Attack, EveSends, Rx, Tx, tx_batch
from fuzz.steps.tx import GOOD
from ring.descriptors import TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PAGE_SIZE
from verifier import kernel as kernel_mod
from verifier import pins, queue_state
from verifier.audit.log import AuditLog, read_pruned
from verifier.modes import shadow
from verifier.rules import reasons as R
from verifier.rules.checks import Verdicts
from verifier.rules.policy import Policy

MORE = TXD_CMD_IFCS | TXD_CMD_RS


def three_fragment_packets(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Packets of three fragments from mallory's read pin; in each, one fragment (by seed) runs past the pin's
    end or has length 0: the packet must be refused whole (PKT_BAD_FRAGMENT for the good two)."""
    k = max(1, n // 3)
    length = rng.integers(60, 600, 3 * k)
    addr = (m.read_pin.bus + rng.integers(0, m.read_pin.size - 600, 3 * k)).astype(np.uint64)
    cmd = np.tile(np.array([MORE, MORE, GOOD]), k)
    bad = np.arange(k) * 3 + rng.integers(0, 3, k)
    zero = rng.random(k) < 0.5
    length[bad] = np.where(zero, 0, 600)
    addr[bad] = np.where(zero, addr[bad], np.uint64(m.read_pin.end - 300))
    return Attack.of(Tx(tx_batch(addr, length, cmd)))


def long_packets(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Packets of three 3000..4000-byte fragments from mallory's read pin: 9000..12000 bytes, around 9014."""
    k = max(1, n // 3)
    length = rng.integers(3000, 4001, 3 * k)
    addr = (m.read_pin.bus + rng.integers(0, m.read_pin.size - 4000, 3 * k)).astype(np.uint64)
    cmd = np.tile(np.array([MORE, MORE, GOOD]), k)
    return Attack.of(Tx(tx_batch(addr, length, cmd)))


def rx_over_pin_end(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """RX buffers whose first byte lies in mallory's read-write pin and whose 2048-byte buffer runs past its
    end into her unpinned pages (eve's 256-byte frames land inside the pin: no byte escapes)."""
    k = max(1, min(n, 16))
    addr = (m.rw_pin.end - 2048 + rng.integers(1, 2048 - 256, k)).astype(np.uint64)
    return Attack((Rx(addr), EveSends(k)), fresh=True)


PACKETS = AttackClass("test-bad-fragment", "a bad fragment in a 3-fragment packet", frozenset(), three_fragment_packets)
LONG = AttackClass("test-long-packet", "3 big fragments", frozenset(), long_packets)
RX_END = AttackClass("test-rx-over-pin-end", "RX buffer running past a pin", frozenset(), rx_over_pin_end)


def campaign(classes: list[AttackClass], iterations: int = 8, batch: int = 32) -> CampaignResult:
    return run_campaign("verifier", seed=1, classes=classes, iterations=iterations, batch=batch)


def rules_found(result: CampaignResult) -> list[str]:
    return [f.escape.what for f in result.findings if f.kind == "rule"]


def assert_found_and_reproduced(result: CampaignResult, rule: str) -> None:
    found = [f for f in result.findings if f.kind == "rule"]
    assert found, [(f.cls, f.kind, f.escape.what) for f in result.findings]
    assert any(rule in f.escape.what for f in found), [f.escape.what for f in found]
    case = Case.from_finding(found[0], 1, result.protection)
    assert "rule" in replay(Case.from_dict(case.as_dict())).kinds()


def weaken_verdicts(monkeypatch: pytest.MonkeyPatch, forget: int, to: int = R.OK) -> None:
    """A slip in the TX rules: descriptors whose verdict is ``forget`` are accepted after all (or get ``to``)."""
    real: Callable[..., Verdicts | None] = shadow.check_tx

    def slipped(*args: Any) -> Verdicts | None:
        v = real(*args)
        if v is not None:
            v.reason[v.reason == forget] = to
        return v

    monkeypatch.setattr(shadow, "check_tx", slipped)


# -- the slips -----------------------------------------------------------------------------------
def test_a_limit_off_by_one_is_found_by_bad_length(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not rules_found(campaign([CLASSES["bad-length"]]))
    monkeypatch.setattr(kernel_mod, "Policy", lambda: Policy(max_buffer=PAGE_SIZE + 1))
    assert_found_and_reproduced(campaign([CLASSES["bad-length"]]), "LEN_TOO_LONG")


def test_an_allowed_command_bit_too_many_is_found_by_bad_cmd(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not rules_found(campaign([CLASSES["bad-cmd"]]))
    slack = Policy().tx_cmd_allowed | TXD_CMD_DEXT
    monkeypatch.setattr(kernel_mod, "Policy", lambda: Policy(tx_cmd_allowed=slack))
    assert_found_and_reproduced(campaign([CLASSES["bad-cmd"]]), "CMD_UNSUPPORTED")


def test_good_fragments_of_a_doomed_packet_let_through_are_found(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    assert not rules_found(campaign([PACKETS]))
    weaken_verdicts(monkeypatch, R.PKT_BAD_FRAGMENT)
    assert_found_and_reproduced(campaign([PACKETS]), "PKT_BAD_FRAGMENT")


def test_a_packet_length_rule_dropped_is_found(monkeypatch: pytest.MonkeyPatch, numpy_path: None) -> None:
    assert not rules_found(campaign([LONG]))
    weaken_verdicts(monkeypatch, R.PKT_TOO_LONG)
    assert_found_and_reproduced(campaign([LONG]), "PKT_TOO_LONG")


def test_too_many_fragments_let_through_is_found_by_fragments(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    assert not rules_found(campaign([CLASSES["fragments"]]))
    weaken_verdicts(monkeypatch, R.PKT_TOO_MANY_FRAGS)
    assert_found_and_reproduced(campaign([CLASSES["fragments"]]), "PKT_TOO_MANY_FRAGS")


def test_rx_checked_for_fewer_bytes_than_the_buffer_is_found(monkeypatch: pytest.MonkeyPatch, numpy_path: None) -> None:
    assert not rules_found(campaign([RX_END]))
    real = shadow.check_rx

    def first_frame(addr: Any, pins: Any, owners: Any, size: int, policy: Policy) -> Verdicts | None:
        return real(addr, pins, owners, size, Policy(rx_buffer_size=256))  # the frame's length, not the buffer's

    monkeypatch.setattr(shadow, "check_rx", first_frame)
    assert_found_and_reproduced(campaign([RX_END]), "ADDR_NOT_PINNED")


# -- the rule functions on their own ---------------------------------------------------------------
def test_packet_rules_carry_an_open_packet_across_fetches() -> None:
    cmd = np.array([MORE] * 10, dtype=np.uint8)
    length = np.full(10, 100, dtype=np.int64)
    zero = np.zeros(10, dtype=np.int64)
    found, carry = packet_rules(DEFAULT_RULES, OpenPacket(), length, cmd, zero, zero)
    assert not found and carry.fragments == 10 and carry.length == 1000
    cmd[-1] = TXD_CMD_EOP | TXD_CMD_IFCS
    found, carry = packet_rules(DEFAULT_RULES, carry, length, cmd, zero, zero)
    assert [f[2] for f in found] == ["PKT_TOO_MANY_FRAGS"] and found[0][0] == -1 and carry.fragments == 0


def test_packet_atomicity_follows_a_packet_across_the_ring_end() -> None:
    eop = np.zeros(8, dtype=bool)
    eop[[2, 5]] = True
    assert packet_atomicity(eop, np.array([0]), np.array([7]), 8) == [(7, 0)]  # 7 (no EOP) sent, 0 refused
    assert not packet_atomicity(eop, np.array([3]), np.array([2]), 8)  # 2 ends its packet
    assert not packet_atomicity(eop, np.array([6]), np.array([7]), 8)  # refused, then sent: not judged


# -- lifetime: a deferred unpin that completes while the device still holds a buffer -----------------
def test_a_deferred_unpin_that_settles_too_early_is_an_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slip (verifier/pins.py ``settle``): a releasing pin is finished at the next completion whether or not
    in-flight descriptors still reference it.  The freed frame goes to alice; the device's late write lands in
    it: the oracle judges by who owns the frame now, whatever the kernel's bookkeeping says.  The default
    use-after-unpin class finds it (its variant 3 puts a completion between the unpin and the free)."""
    assert not campaign([CLASSES["use-after-unpin"]], iterations=16).findings

    def settle_all(self: pins.PinTable) -> list[pins.Pin]:
        done = [p for p in self.pins.values() if p.state == pins.RELEASING]
        for pin in done:
            self._finish(pin)
        return done

    monkeypatch.setattr(pins.PinTable, "settle", settle_all)
    result = campaign([CLASSES["use-after-unpin"]], iterations=16)
    kinds = {f.kind for f in result.findings}
    assert {"dma", "integrity"} <= kinds, [(f.kind, f.escape.what) for f in result.findings]
    dma = next(f for f in result.findings if f.kind == "dma")
    assert "owned by alice" in dma.escape.what
    assert "dma" in replay(Case.from_finding(dma, 1, result.protection)).kinds()


# -- ring geometry at its exact edges --------------------------------------------------------------
def test_a_tail_equal_to_the_ring_size_taken_is_found_by_ring_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slip (verifier/queue_state.py ``judge_tail``): ``0 <= new_tail <= size``, an off-by-one.  No byte
    moves outside the pins; the oracle requires the refusal: the device's tail unmoved and one record."""
    assert not campaign([CLASSES["ring-index"]], iterations=64).findings
    real = queue_state.judge_tail

    def off_by_one(new_tail: int, tail: int, done: int, size: int) -> int:
        return R.OK if new_tail == size else real(new_tail, tail, done, size)

    monkeypatch.setattr(queue_state, "judge_tail", off_by_one)
    result = campaign([CLASSES["ring-index"]], iterations=64)
    ring = [f for f in result.findings if f.kind == "ring"]
    assert ring and "RING_TAIL_BEYOND" in ring[0].escape.what, [(f.kind, f.escape.what) for f in result.findings]
    assert "ring" in replay(Case.from_finding(ring[0], 1, result.protection)).kinds()


# -- audit slips, found as they happen in the on-disk log, and reproduced ------------------------------
def test_a_wrong_reason_in_the_on_disk_log_is_a_finding_with_a_reproducer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, numpy_path: None
) -> None:
    """The slip: zero-length descriptors refused (rightly) but recorded as LEN_TOO_LONG.  The campaign writes
    its log to disk; the watch reads each step's records back from the file and judges them, so the slip is a
    finding of the batch that caused it (not only an end-of-campaign problem), and its case replays."""
    with AuditLog(tmp_path / "ok.jsonl", "verifier") as log:
        clean = run_campaign("verifier", 1, classes=["bad-length"], iterations=8, batch=32, audit=log)
    assert not clean.findings and not clean.audit_problems
    weaken_verdicts(monkeypatch, R.LEN_ZERO, to=R.LEN_TOO_LONG)
    with AuditLog(tmp_path / "slip.jsonl", "verifier") as log:
        result = run_campaign("verifier", 1, classes=["bad-length"], iterations=8, batch=32, audit=log)
    wrong = [f for f in result.findings if f.kind == "audit" and "wrong reason" in f.escape.what]
    assert wrong and "LEN_TOO_LONG" in wrong[0].escape.what, [(f.kind, f.escape.what) for f in result.findings]
    assert wrong[0].block == 0 and wrong[0].iteration == 0  # the first batch with a zero length, as it happened
    again = replay(Case.from_dict(Case.from_finding(wrong[0], 1, result.protection).as_dict()))
    assert any(e.kind == "audit" and "wrong reason" in e.what for e in again.escapes)


def test_an_overrun_taken_is_found_by_ring_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slip: ``judge_tail`` forgets the overrun (a tail claiming more new slots than are free, over RX
    buffers the device still holds, is taken).  The oracle's own account of what is in flight demands it."""
    overrun = AttackClass("test-overrun", "ring-index's overrun", frozenset(), ring_overrun)
    assert not campaign([overrun], iterations=4).findings
    real = queue_state.judge_tail

    def no_overrun(new_tail: int, tail: int, done: int, size: int) -> int:
        reason = real(new_tail, tail, done, size)
        return R.OK if reason == R.RING_OVERRUN else reason

    monkeypatch.setattr(queue_state, "judge_tail", no_overrun)
    result = campaign([overrun], iterations=4)
    ring = [f for f in result.findings if f.kind == "ring"]
    assert ring and "RING_OVERRUN" in ring[0].escape.what, [(f.kind, f.escape.what) for f in result.findings]
    assert "ring" in replay(Case.from_finding(ring[0], 1, result.protection)).kinds()


def test_the_ring_model_demands_the_documented_verdicts() -> None:
    """docs/verifier.md's example: size 64, done 14, tail 54."""
    model = RingModel(64, tail=54)
    assert [model.required(t, 14) for t in (54, 13, 14, 22, 23, 53, 64)] == [
        None, None, "RING_OVERRUN", "RING_OVERRUN", "RING_TAIL_BACKWARDS", "RING_TAIL_BACKWARDS", "RING_TAIL_BEYOND"
    ]  # fmt: skip


def test_checksum_offsets_outside_the_packet_let_through_are_found_by_bad_cmd(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    weaken_verdicts(monkeypatch, R.CSUM_OFFSET)
    assert_found_and_reproduced(campaign([CLASSES["bad-cmd"]]), "CSUM_OFFSET")


def test_an_unpin_released_at_once_while_in_flight_is_found_by_use_after_unpin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slip (verifier/pins.py ``release``): an unpin never asks the queues what is in flight."""

    def release_now(self: pins.PinTable, handle: int) -> str:
        pin = self.pins.get(handle)
        if pin is None or pin.state != pins.ACTIVE:
            raise pins.PinError(f"no active pin with handle {handle}")
        self.access[pin.frames] = 0
        self._rebuild()
        self._finish(pin)
        return "released"

    monkeypatch.setattr(pins.PinTable, "release", release_now)
    result = campaign([CLASSES["use-after-unpin"]], iterations=16)
    assert {"dma", "integrity"} <= {f.kind for f in result.findings}, [(f.kind, f.escape.what) for f in result.findings]


def test_a_refused_first_fragment_with_its_packet_sent_is_found_within_the_doorbell(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    """The order the ring alone cannot judge (a refused fragment, then sent ones): the oracle sees where each of
    mallory's doorbells ends (``Oracle.tail_written``) and judges each doorbell's packets exactly."""
    first_bad = AttackClass("test-first-fragment-bad", "first of 3 bad", frozenset(), first_fragment_bad)
    assert not rules_found(campaign([first_bad]))
    weaken_verdicts(monkeypatch, R.PKT_BAD_FRAGMENT)
    result = campaign([first_bad])
    assert any("one doorbell's packet" in w for w in rules_found(result)), rules_found(result)


def first_fragment_bad(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """Packets of three fragments from mallory's read pin whose first fragment has length 0."""
    k = max(1, n // 3)
    length = rng.integers(60, 600, 3 * k)
    length[::3] = 0
    addr = (m.read_pin.bus + rng.integers(0, m.read_pin.size - 600, 3 * k)).astype(np.uint64)
    return Attack.of(Tx(tx_batch(addr, length, np.tile(np.array([MORE, MORE, GOOD]), k))))


def test_the_log_is_followed_across_rotations(tmp_path: Path) -> None:
    """Every record of every step is read back, in order, while the writer rotates its file many times."""
    with AuditLog(tmp_path / "r.jsonl", "verifier", rotate_bytes=20_000, max_bytes=None) as log:
        result = run_campaign("verifier", 1, classes=["kernel-tx", "bad-length"], iterations=12, batch=32, audit=log)
    assert len(list(tmp_path.glob("r.jsonl.*"))) > 3
    assert not result.findings and not result.audit_problems
    follower = LogFollower(tmp_path / "r.jsonl")
    assert follower() == []  # a new follower starts at the end
    follower.close()


@pytest.mark.parametrize("schema", [1, 2])
def test_files_the_disk_budget_deletes_before_they_are_followed_are_no_finding(tmp_path: Path, schema: int) -> None:
    """A budget smaller than a step's records deletes rotated files before the oracle reads them (``fuzz
    --audit-max-bytes 256K``): not records the kernel lost, as a full in-memory store's evicted ones are not."""
    path = tmp_path / "r.jsonl"
    with AuditLog(path, "verifier", fsync="never", rotate_bytes=5_000, max_bytes=20_000, schema=schema) as log:
        result = run_campaign("verifier", 1, classes=["kernel-tx", "bad-length"], iterations=8, batch=64, audit=log)
        pruned = read_pruned(path)
    assert pruned is not None and pruned[0] > 64  # more than a step's records were deleted
    assert not result.findings and not result.audit_problems


def test_a_schema_v2_log_is_followed_without_its_checkpoints(tmp_path: Path) -> None:
    """A v2 log's checkpoint lines are the chain's: the oracle follows the records only, across rotations, and a
    campaign judged through it finds nothing (a checkpoint taken for a record would be a record without a reason)."""
    with AuditLog(tmp_path / "r.jsonl", "verifier", rotate_bytes=20_000, max_bytes=None, schema=2) as log:
        follower = LogFollower(tmp_path / "r.jsonl")
        result = run_campaign("verifier", 1, classes=["kernel-tx", "bad-length"], iterations=12, batch=32, audit=log)
        records = follower()  # one read across every rotation of the campaign
        written = log.next_seq
    rotated = sorted(tmp_path.glob("r.jsonl.*"))
    assert len(rotated) > 3
    assert not result.findings and not result.audit_problems
    assert records and all("checkpoint" not in r and r["v"] == 2 for r in records)
    assert [r["seq"] for r in records] == list(range(written))  # the files rotated between two reads too
    assert follower.holds([*rotated, tmp_path / "r.jsonl"])
    follower.close()
