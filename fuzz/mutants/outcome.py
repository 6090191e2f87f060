"""What happened to one mutant: its verdict, what killed it and when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fuzz.mutants.model import Mutant
from fuzz.mutants.targets import accelerated

KILLED_FUZZ = "killed by fuzzer"
KILLED_TESTS = "killed by tests"
SURVIVED = "survived"
EQUIVALENT = "equivalent"
INVALID = "invalid"
NOT_RUN = "not run"  # interrupted before (or while) it ran
VERDICTS = (KILLED_FUZZ, KILLED_TESTS, SURVIVED, EQUIVALENT, INVALID, NOT_RUN)


@dataclass
class Outcome:
    mutant: Mutant
    verdict: str
    killer: str = ""  # the fuzz class/oracle kind that found it, or the first failing test
    first_seconds: float | None = None  # seconds into the campaign of the first finding
    detail: str = ""  # the finding's one line, why invalid, or the equivalence argument
    fuzz_seconds: float = 0.0  # how long its campaign ran
    iterations: int = 0

    def as_dict(self) -> dict[str, Any]:
        m = self.mutant
        return {
            "id": m.id,
            "file": m.file,
            "line": m.line,
            "function": m.function,
            "operator": m.operator,
            "old": m.old,
            "new": m.new,
            "change": m.change,
            "machine": "compiled" if accelerated(m.file, m.function) else "numpy",  # where it was fuzzed
            "verdict": self.verdict,
            "killer": self.killer,
            "first_finding_seconds": self.first_seconds,
            "detail": self.detail,
            "campaign_seconds": round(self.fuzz_seconds, 3),
            "iterations": self.iterations,
        }
