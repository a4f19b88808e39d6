"""What grading found: each check of each learner, with its points, message, time and memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# How a submission's run ended. "error": a cell other than a check raised (the run went on); "timeout": a cell
# or the notebook overran its limit; "crashed": the kernel or the grading worker died; "malformed": unreadable.
STATUSES = ("ok", "error", "timeout", "crashed", "malformed")


@dataclass
class CheckResult:
    """One check of one learner."""

    name: str
    passed: bool
    max_points: float = 1.0
    detail: str = ""  # the error the check cell raised ("CheckFailed: ✗ expected … — hint"), or why it did not run
    hidden: bool = False
    seconds: float | None = None  # the cells since the previous check, this one included
    peak_rss_bytes: int | None = None  # the kernel's peak memory over those cells

    @property
    def points(self) -> float:
        """Points earned: all of them when the check passed, none otherwise."""
        return self.max_points if self.passed else 0.0


@dataclass
class LearnerGrade:
    """A learner's checks in one lab, how the run went, and where their executed notebook went."""

    learner: str
    checks: list[CheckResult]
    status: str
    reason: str = ""
    seconds: float = 0.0
    executed: Path | None = None
    lab: str = ""
    peak_rss_bytes: int | None = None
    submitted_at: str = ""  # the submission file's modification time (ISO 8601, UTC)
    slowest_cell_s: float = 0.0

    @property
    def score(self) -> float:
        """Points earned."""
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        """Points possible."""
        return sum(c.max_points for c in self.checks)

    @property
    def total(self) -> int:
        """Number of checks passed."""
        return sum(c.passed for c in self.checks)

    @property
    def percent(self) -> float:
        """Score over maximum, 0..1, rounded to 4 places (otter-grader's percent_correct)."""
        return round(self.score / self.max_score, 4) if self.max_score else 0.0


def number(value: float) -> str:
    """Points as people write them: 4, 2.5."""
    return f"{value:g}"
