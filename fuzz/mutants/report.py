"""The figures of a mutation run: counts per verdict and the two percentages of issue 13, with their goals.

Both percentages are over the mutants that can matter: equivalent ones are
argued out (equivalent.toml), invalid ones never ran, and "not run" ones (an
interrupted run) are unknown; all three are left out of the denominator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fuzz.mutants import outcome as O

GOAL_FUZZER = 95.0  # % of non-equivalent mutants the fuzzer alone kills within the budget
GOAL_WITH_TESTS = 100.0  # % killed by the fuzzer or, failing that, the test suite


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    judged: int  # non-equivalent mutants that ran to a verdict

    @property
    def fuzzer_pct(self) -> float:
        return 100.0 * self.counts.get(O.KILLED_FUZZ, 0) / self.judged if self.judged else 0.0

    @property
    def with_tests_pct(self) -> float:
        killed = self.counts.get(O.KILLED_FUZZ, 0) + self.counts.get(O.KILLED_TESTS, 0)
        return 100.0 * killed / self.judged if self.judged else 0.0

    @property
    def goals_met(self) -> bool:
        return self.judged > 0 and self.fuzzer_pct >= GOAL_FUZZER and self.with_tests_pct >= GOAL_WITH_TESTS

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": {v: self.counts.get(v, 0) for v in O.VERDICTS},
            "judged": self.judged,
            "killed_by_fuzzer_pct": round(self.fuzzer_pct, 1),
            "killed_by_fuzzer_or_tests_pct": round(self.with_tests_pct, 1),
            "goals": {"fuzzer_pct": GOAL_FUZZER, "fuzzer_or_tests_pct": GOAL_WITH_TESTS},
            "goals_met": self.goals_met,
        }


def summarize(outcomes: list[O.Outcome]) -> Summary:
    counts = Counter(o.verdict for o in outcomes)
    judged = counts[O.KILLED_FUZZ] + counts[O.KILLED_TESTS] + counts[O.SURVIVED]
    return Summary(dict(counts), judged)


def as_json(outcomes: list[O.Outcome], budget: dict[str, Any], stopped: bool) -> dict[str, Any]:
    return {
        "version": 1,
        "budget": budget,
        "interrupted": stopped,
        "summary": summarize(outcomes).as_dict(),
        "mutants": [o.as_dict() for o in outcomes],
    }
