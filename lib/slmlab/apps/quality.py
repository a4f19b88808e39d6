"""Quality checks for an SLM app: a labelled regression eval, golden files, latency percentiles.

- :func:`load_cases` reads labelled tickets (``data/testing/tickets.jsonl``);
- :func:`run_eval` runs an app over them and scores it (:class:`EvalReport`);
- :func:`record_golden` / :func:`load_golden` write and read a golden file: the exact replies and
  results of a known-good version, for "same input → same output" tests under greedy decoding;
- :func:`time_calls`, :func:`percentile` and :func:`latency_budget` turn timings into a budget with a margin.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from slmlab.apps.triage import Ticket, TriageApp
from slmlab.errors import SlmLabError
from slmlab.textfiles import bad_record, json_records

if TYPE_CHECKING:
    import pandas as pd

TESTING_DIR = Path(__file__).resolve().parents[3] / "data" / "testing"
CASES_FILE = TESTING_DIR / "tickets.jsonl"


@dataclass(frozen=True)
class Case:
    """One labelled ticket."""

    id: str
    text: str
    expected: Ticket


TICKET_SHAPE = '{"id": "t01", "text": "...", "urgency": "low|high", "category": "billing|technical|account|shipping"}'


def load_cases(path: str | Path = CASES_FILE, limit: int | None = None) -> list[Case]:
    """Labelled tickets from a JSON-lines file (id, text, urgency, category), the first `limit` of them."""
    cases = []
    for number, row in json_records(path, "labelled ticket", TICKET_SHAPE):
        try:
            cases.append(Case(str(row["id"]), str(row["text"]),
                              Ticket(urgency=row["urgency"], category=row["category"])))
        except (KeyError, TypeError, ValidationError) as err:
            raise bad_record(path, number, "labelled ticket", TICKET_SHAPE, err) from None
    return cases[:limit] if limit is not None else cases


@dataclass(frozen=True)
class EvalRow:
    """One ticket: what the app answered against the label."""

    case: Case
    predicted: Ticket
    reply: str

    @property
    def correct(self) -> bool:
        """The category is right (the field that routes the ticket)."""
        return self.predicted.category == self.case.expected.category


@dataclass(frozen=True)
class EvalReport:
    """An app version scored on labelled tickets."""

    version: str
    rows: list[EvalRow]
    seconds: float

    @property
    def correct(self) -> list[bool]:
        """Per ticket: was the category right?"""
        return [row.correct for row in self.rows]

    @property
    def accuracy(self) -> float:
        """Share of tickets with the right category."""
        return sum(self.correct) / len(self.rows) if self.rows else 0.0

    @property
    def urgency_accuracy(self) -> float:
        """Share of tickets with the right urgency."""
        hits = [row.predicted.urgency == row.case.expected.urgency for row in self.rows]
        return sum(hits) / len(hits) if hits else 0.0

    @property
    def needs_review(self) -> float:
        """Share of tickets the app sent to a human ("other")."""
        return sum(row.predicted.needs_review for row in self.rows) / len(self.rows) if self.rows else 0.0

    def table(self) -> pd.DataFrame:
        """One row per ticket: id, expected and predicted labels, right or wrong, the raw reply."""
        import pandas as pd

        return pd.DataFrame([{"id": r.case.id, "expected": r.case.expected.category,
                              "predicted": r.predicted.category, "correct": r.correct,
                              "urgency": r.predicted.urgency, "reply": r.reply} for r in self.rows])

    def summary(self) -> dict[str, Any]:
        """The headline figures, for a comparison table."""
        return {"version": self.version, "tickets": len(self.rows), "accuracy": round(self.accuracy, 3),
                "urgency_accuracy": round(self.urgency_accuracy, 3), "sent_to_review": round(self.needs_review, 3),
                "seconds": round(self.seconds, 2)}


def run_eval(app: TriageApp, cases: Sequence[Case]) -> EvalReport:
    """Triage every case with `app` and score the answers."""
    start, rows = time.perf_counter(), []
    for case in cases:
        reply = app.reply(case.text).text
        rows.append(EvalRow(case, app.parse(reply), reply))
    return EvalReport(app.version, rows, time.perf_counter() - start)


def record_golden(app: TriageApp, texts: Iterable[str], path: str | Path) -> dict[str, Any]:
    """Run `app` on `texts` and write each exact reply and result to a JSON golden file; returns its content."""
    entries = []
    for text in texts:
        ticket = app.triage(text)
        entries.append({"text": text, "reply": app.last.text if app.last else "", "ticket": ticket.model_dump()})
    golden = {"model": getattr(app.backend, "model_name", ""), "version": app.version,
              "max_tokens": app.max_tokens, "entries": entries}
    Path(path).write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return golden


def load_golden(path: str | Path) -> dict[str, Any]:
    """A golden file written by :func:`record_golden`."""
    path = Path(path)
    try:
        golden = json.loads(path.read_text(encoding="utf-8"))
        golden["entries"][0]["ticket"]
    except FileNotFoundError:
        raise SlmLabError(f"No golden file at {path}.",
                          "Record one first with record_golden(app, texts, path).") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise SlmLabError(f"{path} is not a golden file.",
                          "Record it again with record_golden(app, texts, path).") from None
    return golden


def time_calls(call: Callable[[str], Any], inputs: Sequence[str], repeats: int = 1, warmup: int = 1) -> list[float]:
    """Seconds per call of `call` on each input, `repeats` times, after `warmup` untimed calls."""
    if not inputs:
        raise SlmLabError("No inputs to time.", "Pass at least one input.")
    for i in range(warmup):
        call(inputs[i % len(inputs)])
    seconds = []
    for _ in range(repeats):
        for item in inputs:
            start = time.perf_counter()
            call(item)
            seconds.append(time.perf_counter() - start)
    return seconds


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, linear interpolation (numpy's default)."""
    import numpy as np

    if not values:
        raise SlmLabError("No timings to summarise.", "Time at least one call.")
    if not 0 <= q <= 100:
        raise SlmLabError(f"Percentile {q} is out of range.", "Use a number from 0 to 100, e.g. 95.")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def latency_budget(baseline_s: float, factor: float = 3.0, floor_s: float = 0.5) -> float:
    """A budget from a measured baseline: `factor` times it, and never under `floor_s` (noise on a busy CPU)."""
    if not (isinstance(baseline_s, int | float) and math.isfinite(baseline_s) and baseline_s > 0):
        raise SlmLabError(f"A baseline of {baseline_s!r} s cannot set a budget.", "Measure a positive time first.")
    return max(baseline_s * factor, floor_s)
