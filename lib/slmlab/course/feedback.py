"""Feedback in Markdown: one file per learner (each check, pass/fail, its message and hint, time and memory),
and one for the instructor (per check, how many passed and the messages that stopped the others)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from slmlab.course.results import CheckResult, LearnerGrade, number

WHAT_TO_DO = "\nWhat to do: "  # how a SlmLabError (e.g. checks.SetupProblem) separates its problem from its hint
HINT_SEPARATOR = " — "  # how slmlab.checks separates a failure's message from its hint
TOP_FAILURES = 3


def split_detail(detail: str) -> tuple[str, str]:
    """(message, hint) of a check's error text: ``CheckFailed: ✗ expected 9, got 0 — return x * x`` →
    (``expected 9, got 0``, ``return x * x``). Errors that are not check failures keep their type name."""
    kind, sep, rest = detail.partition(": ")
    if sep and kind in ("CheckFailed", "SetupProblem"):
        detail = rest
    if WHAT_TO_DO in detail:
        message, _, hint = detail.partition(WHAT_TO_DO)
    else:
        message, _, hint = detail.partition(HINT_SEPARATOR)
    return message.removeprefix("✗").strip(), hint.strip()


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _megabytes(value: int | None) -> str:
    return f"{value / 1e6:.0f} MB" if value else ""


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else ""


def _check_row(check: CheckResult) -> str:
    message, hint = split_detail(check.detail) if not check.passed else ("", "")
    name = f"{check.name} (hidden)" if check.hidden else check.name
    result = "✓ pass" if check.passed else "✗ fail"
    return (f"| {_cell(name)} | {number(check.points)} / {number(check.max_points)} | {result} | "
            f"{_seconds(check.seconds)} | {_megabytes(check.peak_rss_bytes)} | {_cell(message)} | {_cell(hint)} |")


def lab_section(grade: LearnerGrade) -> str:
    """One lab's part of a learner's feedback."""
    how = f"Run status: **{grade.status}**" + (f" ({grade.reason})" if grade.reason else "")
    usage = f"ran in {grade.seconds:.1f} s" + (f", peak memory {_megabytes(grade.peak_rss_bytes)}"
                                             if grade.peak_rss_bytes else "")
    lines = [
        f"## {grade.lab}: {number(grade.score)} / {number(grade.max_score)} points",
        "",
        f"{how}; {usage}. {grade.total} of {len(grade.checks)} checks passed.",
        "",
        "| check | points | result | time | memory | message | hint |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(_check_row(check) for check in grade.checks),
    ]
    if grade.executed is not None:
        lines += ["", f"Your notebook as it ran: `executed/{grade.lab}/{grade.executed.name}`."]
    return "\n".join(lines)


def learner_feedback(learner: str, grades: Sequence[LearnerGrade]) -> str:
    """A learner's feedback for every lab graded in this run."""
    score = sum(g.score for g in grades)
    possible = sum(g.max_score for g in grades)
    lines = [f"# Feedback for {learner}", "", f"**{number(score)} / {number(possible)} points** in "
             f"{len(grades)} notebook{'s' if len(grades) != 1 else ''}.", "",
             "Time and memory are per check: the cells since the previous check, this one included. A hidden check "
             "is one your instructor added; its code is not in your notebook.", ""]
    for grade in grades:
        lines += [lab_section(grade), ""]
    return "\n".join(lines)


def _stuck_row(name: str, results: list[CheckResult]) -> str:
    failures = Counter(split_detail(r.detail)[0] for r in results if not r.passed)
    common = "; ".join(f"{_cell(message)} ({count}×)" for message, count in failures.most_common(TOP_FAILURES))
    passed = sum(r.passed for r in results)
    points = number(results[0].max_points) if results else ""
    hidden = " (hidden)" if results and results[0].hidden else ""
    return f"| {_cell(name)}{hidden} | {points} | {passed} / {len(results)} | {common} |"


def class_summary(grades: Iterable[LearnerGrade]) -> str:
    """Where the class got stuck: per lab and check, how many passed and the most common failure messages."""
    by_lab: dict[str, list[LearnerGrade]] = {}
    for grade in grades:
        by_lab.setdefault(grade.lab, []).append(grade)
    lines = ["# Class summary", ""]
    for lab, lab_grades in by_lab.items():
        mean = sum(g.score for g in lab_grades) / len(lab_grades)
        statuses = Counter(g.status for g in lab_grades)
        lines += [f"## {lab}", "",
                  f"{len(lab_grades)} submissions, mean {mean:.1f} / {number(lab_grades[0].max_score)} points; "
                  + ", ".join(f"{count} {status}" for status, count in statuses.most_common()) + ".", "",
                  "| check | points | passed | most common failures |", "| --- | --- | --- | --- |"]
        names = [c.name for c in lab_grades[0].checks]
        for index, name in enumerate(names):
            lines.append(_stuck_row(name, [g.checks[index] for g in lab_grades]))
        lines.append("")
    return "\n".join(lines)
