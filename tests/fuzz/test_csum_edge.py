"""Class ``csum-edge`` and the oracle's precedence check of CSUM_OFFSET (fuzz/csum_edges.py, fuzz/oracle/reasons.py).

Each edge is made as documented; the unmodified kernel gives no finding in
any protection mode; a slip in the checksum rule of the numpy reference
(verifier/rules/checks.py, the ``numpy`` machine's path) is found -- the CSS
bound one byte late, an open packet judged before its EOP, CSUM_OFFSET put
before the descriptor's own reason -- as the same slips in the compiled
classification are (tests/fuzz/mutants/test_killed.py runs those through the
real harness); and the oracle's judge refuses a CSUM_OFFSET record whose
descriptor breaks a rule that comes first.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import CampaignResult, run_campaign
from fuzz.csum_edges import EDGES, csum_edge
from fuzz.oracle.reasons import PREDICATES, Rows
from fuzz.oracle.rules import DEFAULT_RULES
from fuzz.steps import Tx
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_SUPPORTED
from verifier.audit.memory import MemoryAudit
from verifier.modes import inplace, shadow
from verifier.rules import checks


def campaign(mode: str, iterations: int = 64) -> CampaignResult:
    """Blocks of 8 batches: under ``verifier`` every other block runs on the ``numpy`` machine."""
    return run_campaign(mode, seed=1, classes=["csum-edge"], iterations=iterations, batch=32, arena_every=8)


def found(result: CampaignResult) -> list[str]:
    return [f"{f.kind}: {f.escape.what}" for f in result.findings] + [e.what for e in result.audit_problems]


def batches(edge: str, seed: int) -> list[np.ndarray]:
    m = Arena.build("verifier", 1, MemoryAudit()).map
    attack = csum_edge(np.random.default_rng(seed), m, 32, edge)
    assert attack.fresh
    steps = [s for s in attack.steps if isinstance(s, Tx)]
    assert len(steps) == len(attack.steps)
    return [s.descs for s in steps]


def ic_packet(descs: np.ndarray) -> tuple[int, int]:
    """The first and one past the last descriptor of the batch's IC packet."""
    ic = np.flatnonzero(descs["cmd"] & TXD_CMD_IC)
    assert ic.size and np.all(np.diff(ic) == 1), descs
    return int(ic[0]), int(ic[-1]) + 1


@pytest.mark.parametrize("seed", range(12))
def test_each_edge_is_made_as_documented(seed: int) -> None:
    (end,) = batches("end", seed)
    lo, hi = ic_packet(end)
    total = int(end["length"][lo:hi].sum())
    assert end["cmd"][hi - 1] & TXD_CMD_EOP and not np.any(end["cmd"][lo : hi - 1] & TXD_CMD_EOP)
    assert int(end["cso"][lo]) in (total - 2, total - 1) and int(end["css"][lo]) in (total - 1, total)

    first, rest = batches("open", seed)
    lo, hi = ic_packet(first)
    assert hi == first.size and not np.any(first["cmd"][lo:] & TXD_CMD_EOP)  # it ends the doorbell open
    assert int(first["cso"][lo]) + 2 > int(first["length"][lo:].sum())  # past what is posted so far
    r_lo, r_hi = ic_packet(rest)
    assert r_lo == 0 and rest["cmd"][r_hi - 1] & TXD_CMD_EOP
    whole = int(first["length"][lo:].sum() + rest["length"][:r_hi].sum())
    assert int(first["cso"][lo]) + 2 in (whole, whole + 1)

    (out,) = batches("outranked", seed)
    lo, hi = ic_packet(out)
    total = int(out["length"][lo:hi].sum())
    assert int(out["cso"][lo]) + 2 > total
    assert out["length"][lo] == 0 or int(out["cmd"][lo]) & ~TXD_CMD_SUPPORTED & 0xFF


def test_every_edge_is_chosen() -> None:
    m = Arena.build("verifier", 1, MemoryAudit()).map
    rng = np.random.default_rng(1)
    kinds = {len(csum_edge(rng, m, 32).steps) for _ in range(40)}
    assert kinds == {1, 2} and len(EDGES) == 3


@pytest.mark.parametrize("mode", ["verifier", "unsafe-inplace", "iommu", "none"])
def test_the_unmodified_kernel_gives_no_finding(mode: str) -> None:
    result = campaign(mode)
    assert found(result) == []
    assert result.stats["csum-edge"].batches == 64
    if mode in ("verifier", "unsafe-inplace"):
        assert result.stats["csum-edge"].rejected > 0


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("(css >= pkt_len)", "(css > pkt_len)", "CSUM_OFFSET"),
        (" & (np.arange(npkt) < complete)", "", "its packet has no EOP yet"),
        (
            "np.where(own[csum_first] == R.OK, R.CSUM_OFFSET, own[csum_first])",
            "R.CSUM_OFFSET",
            "which comes before CSUM_OFFSET",
        ),
    ],
)
def test_a_checksum_rule_slip_in_the_numpy_reference_is_found(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, says: str
) -> None:
    source = textwrap.dedent(inspect.getsource(checks.check_tx))
    assert source.count(old) == 1, old
    space: dict[str, Any] = dict(vars(checks))
    exec(compile(source.replace(old, new), inspect.getfile(checks), "exec"), space)
    for module in (checks, shadow, inplace):  # every caller's name for it, as a mutant of checks.py would be
        monkeypatch.setattr(module, "check_tx", space["check_tx"])
    lines = found(campaign("verifier"))
    assert any(says in line for line in lines), lines


def rows(length: list[int], cmd: list[int], cso: int, css: int) -> Rows:
    n = len(length)
    return Rows(
        seq=0,
        nic="nic0",
        kind="tx",
        tenant=1,
        addr=np.full(n, 0x10000, dtype=np.int64).view(np.uint64),
        length=np.array(length, dtype=np.int64),
        slot=np.arange(n, dtype=np.int64),
        cmd=np.array(cmd, dtype=np.uint8),
        cso=np.full(n, cso, dtype=np.int64),
        css=np.full(n, css, dtype=np.int64),
        rules=DEFAULT_RULES,
    )


@pytest.mark.parametrize(
    ("length", "cmd0", "ok", "says"),
    [
        (40, TXD_CMD_EOP | TXD_CMD_IC, True, ""),
        (0, TXD_CMD_EOP | TXD_CMD_IC, False, "breaks LEN_ZERO, which comes before CSUM_OFFSET"),
        (40, TXD_CMD_EOP | TXD_CMD_IC | 0x20, False, "breaks CMD_UNSUPPORTED, which comes before CSUM_OFFSET"),
    ],
)
def test_csum_offset_must_be_the_first_reason(length: int, cmd0: int, ok: bool, says: str) -> None:
    r = rows([length], [cmd0], cso=60, css=0)
    good, fact = PREDICATES["CSUM_OFFSET"](r, np.array([0]), None)  # type: ignore[arg-type]
    assert bool(good[0]) is ok
    if not ok:
        assert says in fact(0)
