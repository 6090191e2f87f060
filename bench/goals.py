"""The performance goals of issue 12, one row each, judged from figures of one ``make bench`` run.

Each bench module measures its own rows and returns them as ``GoalRow``;
``python -m bench`` prints them all in one table at the end, figure,
baseline and ratio side by side with met/missed.  A goal is a ratio
measured in the same run (figures vary about 2x between machines; a ratio
against a baseline from the same minute does not), or an absolute stated
for a quiet bench machine.  No unit test asserts any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Sense(StrEnum):
    """Whether the goal is a floor (``AT_LEAST``) or a ceiling (``AT_MOST``)."""

    AT_LEAST = ">="
    AT_MOST = "<="


@dataclass(frozen=True)
class GoalRow:
    """One row of the goal table: what was measured, against what, and the goal on the ratio or figure."""

    what: str
    figure: str  # the project's figure, with its unit ("0.412 Mpps")
    baseline: str  # what it is compared with in the same run ("4.1 Mpps numpy limit"), or "-" for an absolute
    value: float  # the judged number: a ratio (0.62), a cost (0.08), or an absolute rate
    goal: float
    sense: Sense = Sense.AT_LEAST
    unit: str = "x"  # how ``value`` prints: "x" (ratio), "%" (fraction shown as percent), or a rate unit

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.sense is Sense.AT_LEAST else self.value <= self.goal

    def show(self, number: float) -> str:
        if self.unit == "x":
            return f"{number:.2f}x"
        if self.unit == "%":
            return f"{number * 100:.1f}%"
        return f"{number:,.0f} {self.unit}"

    @property
    def verdict(self) -> str:
        return "met" if self.met else "missed"
