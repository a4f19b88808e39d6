"""The class's grades as CSV, in the shape nbgrader's and otter-grader's exports have.

``gradebook.csv``: one row per learner and assignment (nbgrader's ``nbgrader export``: ``assignment``,
``student_id``, ``timestamp``, ``score``, ``max_score``), one column per question with the points earned
(otter-grader's ``final_grades.csv``: a column per question, ``percent_correct``, ``grading_status``), and
``file``, the notebook graded. A question of another assignment is left empty in a row.

``totals.csv``: one row per learner: the score of each assignment and the sum. ``points.csv``: the points of
every question, hidden ones marked (otter puts these in a first "points-per-question" row; here they stay out
of the learners' rows so that every row is a learner).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from slmlab.course.points import Question
from slmlab.course.results import LearnerGrade, number

GRADEBOOK = "gradebook.csv"
TOTALS = "totals.csv"
POINTS = "points.csv"
LEADING = ["assignment", "student_id", "file", "timestamp"]
TRAILING = ["score", "max_score", "percent_correct", "grading_status"]


def _status(grade: LearnerGrade) -> str:
    return grade.status if not grade.reason or grade.status == "ok" else f"{grade.status}: {grade.reason}"


def question_columns(questions: dict[str, list[Question]]) -> list[str]:
    """Every question of every assignment, in notebook order, each once."""
    return list(dict.fromkeys(q.name for lab in questions.values() for q in lab))


def gradebook_rows(grades: Sequence[LearnerGrade], columns: list[str], files: dict[tuple[str, str], str]
                   ) -> list[dict[str, str]]:
    """The rows of gradebook.csv, by assignment then learner."""
    rows = []
    for grade in grades:
        earned = {c.name: number(c.points) for c in grade.checks}
        rows.append({
            "assignment": grade.lab, "student_id": grade.learner, "file": files.get((grade.lab, grade.learner), ""),
            "timestamp": grade.submitted_at, **{name: earned.get(name, "") for name in columns},
            "score": number(grade.score), "max_score": number(grade.max_score),
            "percent_correct": f"{grade.percent:.4g}", "grading_status": _status(grade),
        })
    return rows


def totals_rows(grades: Sequence[LearnerGrade], labs: list[str]) -> list[dict[str, str]]:
    """The rows of totals.csv: per learner, each assignment's score and the sum."""
    by_learner: dict[str, dict[str, LearnerGrade]] = {}
    for grade in grades:
        by_learner.setdefault(grade.learner, {})[grade.lab] = grade
    rows = []
    for learner in sorted(by_learner):
        done = by_learner[learner]
        score = sum(g.score for g in done.values())
        possible = sum(g.max_score for g in done.values())
        rows.append({"student_id": learner, **{lab: number(done[lab].score) if lab in done else "" for lab in labs},
                     "score": number(score), "max_score": number(possible),
                     "percent_correct": f"{round(score / possible, 4) if possible else 0:.4g}"})
    return rows


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def write_gradebook(out: Path, grades: Sequence[LearnerGrade], questions: dict[str, list[Question]],
                    files: dict[tuple[str, str], str]) -> Path:
    """Write gradebook.csv, totals.csv and points.csv into ``out``; the gradebook's path."""
    labs = list(questions)
    order = {lab: i for i, lab in enumerate(labs)}
    ordered = sorted(grades, key=lambda g: (order.get(g.lab, len(order)), g.learner))
    columns = question_columns(questions)
    _write(out / GRADEBOOK, [*LEADING, *columns, *TRAILING], gradebook_rows(ordered, columns, files))
    _write(out / TOTALS, ["student_id", *labs, "score", "max_score", "percent_correct"], totals_rows(ordered, labs))
    _write(out / POINTS, ["assignment", "question", "points", "hidden"],
           [{"assignment": lab, "question": q.name, "points": number(q.points), "hidden": str(q.hidden).lower()}
            for lab, lab_questions in questions.items() for q in lab_questions])
    return out / GRADEBOOK
