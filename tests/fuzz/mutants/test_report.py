"""Verdicts from a campaign's JSON report, and the two percentages over the mutants that can matter."""

from __future__ import annotations

from fuzz.mutants import outcome as O
from fuzz.mutants.model import FLIP, Mutant
from fuzz.mutants.report import summarize
from fuzz.mutants.run import judge_report

M = Mutant("verifier/x.py", "f", FLIP, 0, "<", "<=", 1)


def test_the_earliest_finding_kills() -> None:
    report = {
        "seconds": 9.5,
        "iterations": 100,
        "findings": [
            {"class": "straddle", "kind": "dma", "what": "late", "seconds": 4.0},
            {"class": "kernel-tx", "kind": "pin", "what": "early", "seconds": 0.5},
        ],
        "audit_problems": [],
    }
    o = judge_report(M, report)
    assert (o.verdict, o.killer, o.first_seconds, o.detail) == (O.KILLED_FUZZ, "kernel-tx/pin", 0.5, "early")


def test_an_audit_problem_kills_at_the_end_and_nothing_survives() -> None:
    o = judge_report(M, {"seconds": 9.5, "findings": [], "audit_problems": ["chain broken"]})
    assert (o.verdict, o.killer, o.first_seconds) == (O.KILLED_FUZZ, "(audit end check)", 9.5)
    assert judge_report(M, {"seconds": 9.5, "findings": [], "audit_problems": []}).verdict == O.SURVIVED


def test_percentages_leave_out_equivalent_invalid_and_not_run() -> None:
    verdicts = [O.KILLED_FUZZ] * 3 + [O.KILLED_TESTS, O.SURVIVED, O.EQUIVALENT, O.INVALID, O.NOT_RUN]
    s = summarize([O.Outcome(M, v) for v in verdicts])
    assert s.judged == 5
    assert s.fuzzer_pct == 60.0 and s.with_tests_pct == 80.0 and not s.goals_met
