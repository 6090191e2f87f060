"""Refused => the packet-level reason is true: a verifier that refuses a valid packet at a limit is found.

The mirror of tests/fuzz/test_oracle_rules.py for refusals: each test writes
one slip into the verifier for its duration (a limit off by one through the
kernel's Policy, or a comparison flipped in ``check_tx``'s own source, as
``make mutants`` does), runs the ``hidden`` class (valid traffic at the exact
packet limits: 18 fragments, a 9014-byte frame, CSO/CSS at the packet's last
valid bytes) for a small deterministic budget, and requires the oracle's
finding: an ``audit`` "wrong reason" where a valid packet was refused, a
``rule`` finding where one past the limit was let through.  The unmodified
verifier gives none.  Then the packet predicates of fuzz/oracle/reasons.py
on their own.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.campaign import CampaignResult, run_campaign
from fuzz.oracle.reasons import PREDICATES, Reference, Rows, judge
from fuzz.oracle.rules import DEFAULT_RULES
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_IFCS, TXD_CMD_RS
from verifier import kernel as kernel_mod
from verifier.audit.log import AuditLog
from verifier.modes import shadow
from verifier.rules import checks
from verifier.rules.policy import Policy

MORE = TXD_CMD_IFCS | TXD_CMD_RS
LAST = MORE | TXD_CMD_EOP


def campaign(iterations: int = 400, audit: Any = None) -> CampaignResult:
    return run_campaign("verifier", seed=1, classes=["hidden"], iterations=iterations, batch=32, audit=audit)


def kinds(result: CampaignResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in result.findings:
        found.setdefault(f.kind, []).append(f.escape.what)
    for e in result.audit_problems:
        found.setdefault(e.kind, []).append(e.what)
    return found


def slip_check_tx(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    """``check_tx`` with one expression of its source replaced (exactly once), as a mutant would have it."""
    source = textwrap.dedent(inspect.getsource(checks.check_tx))
    assert source.count(old) == 1, old
    space: dict[str, Any] = dict(vars(checks))
    exec(compile(source.replace(old, new), checks.__file__, "exec"), space)
    monkeypatch.setattr(shadow, "check_tx", space["check_tx"])


def test_the_unmodified_verifier_gives_no_finding() -> None:
    assert kinds(campaign()) == {}


@pytest.mark.parametrize(
    ("old", "new", "kind", "says"),
    [
        (
            "pkt_len > policy.max_frame",
            "pkt_len >= policy.max_frame",
            "audit",
            "says PKT_TOO_LONG, but its packet is 9014",
        ),
        ("frags > policy.max_fragments", "frags >= policy.max_fragments", "audit", "says PKT_TOO_MANY_FRAGS, but its"),
        ("(cso + 2 > pkt_len)", "(cso + 2 >= pkt_len)", "audit", "says CSUM_OFFSET, but CSO"),
        ("(css >= pkt_len)", "(css > pkt_len)", "rule", "CSUM_OFFSET"),  # CSS one past the packet let through
        ("(np.arange(npkt) < complete)", "(np.arange(npkt) <= complete)", "audit", "says CSUM_OFFSET, but"),
        ("minlength=npkt) > 0", "minlength=npkt) >= 0", "audit", "says PKT_BAD_FRAGMENT, but no other record"),
        # numpy's own fast path judging [addr, addr + len]: a zero length passes it (beside buffers it still takes)
        ("span = raw_length - _ONE16", "span = (raw_length)", "rule", "which breaks LEN_ZERO"),
    ],
)
def test_a_flipped_packet_rule_is_found(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, kind: str, says: str
) -> None:
    slip_check_tx(monkeypatch, old, new)
    found = kinds(campaign())
    assert any(says in w for w in found.get(kind, [])), found


@pytest.mark.parametrize(
    ("limits", "kind", "says"),
    [
        ({"max_frame": 9013}, "audit", "says PKT_TOO_LONG, but its packet is 9014 bytes"),
        ({"max_frame": 9015}, "rule", "PKT_TOO_LONG"),
        ({"max_fragments": 17}, "audit", "says PKT_TOO_MANY_FRAGS, but its packet has 18 fragments"),
        ({"max_fragments": 19}, "rule", "PKT_TOO_MANY_FRAGS"),
    ],
)
def test_a_packet_limit_off_by_one_is_found(
    monkeypatch: pytest.MonkeyPatch, limits: Mapping[str, int], kind: str, says: str
) -> None:
    monkeypatch.setattr(kernel_mod, "Policy", lambda: Policy(**limits))
    found = kinds(campaign())
    assert any(says in w for w in found.get(kind, [])), found


def test_a_file_backed_log_is_judged_per_packet_as_it_is_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", protection="verifier", fsync="never")
    assert kinds(campaign(audit=log)) == {}
    log.close()
    monkeypatch.setattr(kernel_mod, "Policy", lambda: Policy(max_fragments=17))
    log = AuditLog(tmp_path / "slipped.jsonl", protection="verifier", fsync="never")
    found = kinds(campaign(audit=log))
    log.close()
    assert any("says PKT_TOO_MANY_FRAGS, but its packet has 18 fragments" in w for w in found.get("audit", [])), found


# -- the predicates on their own -----------------------------------------------------------------------
NAMES = {1: "PKT_TOO_LONG", 2: "PKT_TOO_MANY_FRAGS", 3: "CSUM_OFFSET", 4: "PKT_BAD_FRAGMENT", 5: "LEN_ZERO"}
REF = Reference(np.zeros(16, dtype=np.uint8), {}, 1 << 16)


def tx_rows(length: list[int], cmd: list[int], slot: list[int], cso: int = 0, css: int = 0, size: int = 256) -> Rows:
    n = len(length)
    return Rows(
        seq=100,
        nic="nic2",
        kind="tx",
        tenant=1,
        addr=np.zeros(n, dtype=np.uint64),
        length=np.array(length, dtype=np.int64),
        cmd=np.array(cmd, dtype=np.uint8),
        bad_byte=np.full(n, -1, dtype=np.int64),
        ring_size=size,
        slot=np.array(slot, dtype=np.int64),
        cso=np.full(n, cso, dtype=np.int64),
        css=np.full(n, css, dtype=np.int64),
        rules=DEFAULT_RULES,
    )


def wrong(rows: Rows, codes: list[int]) -> list[str]:
    return judge(rows, NAMES, np.array(codes, dtype=np.uint8), REF, limit=64)


def test_packet_reasons_have_predicates() -> None:
    assert {"PKT_TOO_LONG", "PKT_TOO_MANY_FRAGS", "CSUM_OFFSET", "PKT_BAD_FRAGMENT"} <= set(PREDICATES)


def test_too_long_is_true_only_past_the_jumbo_frame() -> None:
    at = tx_rows([3000, 3000, 3014], [MORE, MORE, LAST], [10, 11, 12])
    assert len(wrong(at, [1, 1, 1])) == 3 and "9014 bytes <= 9014" in wrong(at, [1, 1, 1])[0]
    past = tx_rows([3000, 3000, 3015], [MORE, MORE, LAST], [10, 11, 12])
    assert wrong(past, [1, 1, 1]) == []
    # across the ring's end, a fragment with its own reason counted in the packet
    wraps = tx_rows([3000, 0, 3000, 3015], [MORE, MORE, MORE, LAST], [254, 255, 0, 1])
    assert wrong(wraps, [1, 5, 1, 1]) == []


def test_too_many_fragments_counts_the_packet_not_the_batch() -> None:
    eighteen = tx_rows([100] * 18, [MORE] * 17 + [LAST], list(range(18)))
    assert len(wrong(eighteen, [2] * 18)) == 18
    nineteen = tx_rows([100] * 19, [MORE] * 18 + [LAST], list(range(19)))
    assert wrong(nineteen, [2] * 19) == []
    open_packet = tx_rows([100] * 19, [MORE] * 19, list(range(19)))  # refused before its EOP: 19 seen already
    assert wrong(open_packet, [2] * 19) == []
    # two packets of 10 on consecutive slots: the EOP splits them
    two = tx_rows([100] * 20, ([MORE] * 9 + [LAST]) * 2, list(range(20)))
    assert len(wrong(two, [2] * 20)) == 20
    # a gap in the slots splits them too (two refused packets with accepted ones between)
    gap = tx_rows([100] * 20, [MORE] * 20, list(range(10)) + list(range(30, 40)))
    assert len(wrong(gap, [2] * 20)) == 20


def test_csum_offset_is_judged_on_the_whole_packet() -> None:
    ic = MORE | TXD_CMD_IC
    at_edge = tx_rows([100, 100], [ic, LAST], [5, 6], cso=198, css=199)  # CSO + 2 == 200, CSS 199: valid
    assert len(wrong(at_edge, [3, 4])) == 1  # the PKT_BAD_FRAGMENT leans on the CSUM_OFFSET, judged on its own
    cso_past = tx_rows([100, 100], [ic, LAST], [5, 6], cso=199, css=0)
    assert wrong(cso_past, [3, 4]) == []
    css_past = tx_rows([100, 100], [ic, LAST], [5, 6], cso=0, css=200)
    assert wrong(css_past, [3, 4]) == []
    no_ic = tx_rows([100, 100], [MORE, LAST], [5, 6], cso=199, css=0)
    assert "does not ask for checksum insertion" in wrong(no_ic, [3, 4])[0]
    second = tx_rows([100, 100], [ic, LAST | TXD_CMD_IC], [5, 6], cso=0, css=500)
    assert "not its packet's first descriptor" in wrong(second, [4, 3])[0]
    still_open = tx_rows([100, 100], [ic, MORE], [5, 6], cso=300, css=0)
    assert "no EOP yet" in wrong(still_open, [3, 4])[0]


def test_bad_fragment_needs_a_sibling_with_its_own_fault() -> None:
    ok = tx_rows([100, 0, 100], [MORE, MORE, LAST], [1, 2, 3])
    assert wrong(ok, [4, 5, 4]) == []
    alone = tx_rows([100, 0, 100], [LAST, MORE, LAST], [1, 2, 3])
    found = wrong(alone, [4, 5, 4])
    assert len(found) == 1 and "record 100 says PKT_BAD_FRAGMENT" in found[0]


def test_without_a_rule_book_or_a_slot_packet_reasons_are_not_judged_true() -> None:
    rows = tx_rows([100], [LAST], [0])
    rows.rules = None
    assert wrong(rows, [1]) == []  # the kernel claims no packet limit: nothing to judge against
    rows = tx_rows([100], [LAST], [0])
    rows.slot = None
    assert "naming no TX ring slot" in wrong(rows, [1])[0]
