"""slmlab.course.feedback and slmlab.course.gradebook: what the learners and the instructor get back."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from slmlab.course.feedback import class_summary, learner_feedback, split_detail
from slmlab.course.gradebook import write_gradebook
from slmlab.course.points import Question
from slmlab.course.results import CheckResult, LearnerGrade

pytestmark = pytest.mark.fast

FAILED = "CheckFailed: ✗ expected square(n) to be 9, got 0 — return x * x"


def grades() -> list[LearnerGrade]:
    ada = LearnerGrade("ada", [CheckResult("a", True, 4, seconds=1.25, peak_rss_bytes=250_000_000),
                               CheckResult("b", False, 6, FAILED, seconds=0.5),
                               CheckResult("h", True, 2, hidden=True)], "ok", lab="lab1", seconds=9.0,
                       peak_rss_bytes=260_000_000, submitted_at="2026-12-01T10:00:00+00:00",
                       executed=Path("out/executed/lab1/ada.ipynb"))
    bob = LearnerGrade("bob", [CheckResult("a", False, 4, "not run: the notebook could not be read"),
                               CheckResult("b", False, 6, "not run: the notebook could not be read"),
                               CheckResult("h", False, 2, "not run: the notebook could not be read", hidden=True)],
                       "malformed", "the notebook could not be read", lab="lab1")
    ada2 = LearnerGrade("ada", [CheckResult("c", True, 1)], "timeout", "cell 3 timed out", lab="lab2")
    return [ada, bob, ada2]


def test_messages_and_hints_come_apart():
    assert split_detail(FAILED) == ("expected square(n) to be 9, got 0", "return x * x")
    assert split_detail("SetupProblem: This check cannot judge x.\nWhat to do: run the cells above") == (
        "This check cannot judge x.", "run the cells above")
    assert split_detail("NameError: name 'llm' is not defined") == ("NameError: name 'llm' is not defined", "")
    assert split_detail("CheckFailed: ✗ answer is a string") == ("answer is a string", "")


def test_a_learner_sees_each_check_with_points_message_hint_time_and_memory():
    text = learner_feedback("ada", [g for g in grades() if g.learner == "ada"])
    assert "**7 / 13 points** in 2 notebooks." in text
    assert "## lab1: 6 / 12 points" in text and "## lab2: 1 / 1 points" in text
    assert "| a | 4 / 4 | ✓ pass | 1.2 s | 250 MB |  |  |" in text
    assert "| b | 0 / 6 | ✗ fail | 0.5 s |  | expected square(n) to be 9, got 0 | return x * x |" in text
    assert "| h (hidden) | 2 / 2 | ✓ pass |" in text
    assert "Run status: **ok**; ran in 9.0 s, peak memory 260 MB. 2 of 3 checks passed." in text
    assert "Run status: **timeout** (cell 3 timed out)" in text
    assert "`executed/lab1/ada.ipynb`" in text


def test_the_class_summary_shows_where_learners_got_stuck():
    text = class_summary(grades())
    assert "## lab1\n\n2 submissions, mean 3.0 / 12 points; 1 ok, 1 malformed." in text
    assert ("| b | 6 | 0 / 2 | expected square(n) to be 9, got 0 (1×); not run: the notebook could not be read (1×) |"
            in text)
    assert "| h (hidden) | 2 | 1 / 2 |" in text


def test_gradebook_has_nbgrader_and_otter_columns_one_row_per_learner_and_assignment(tmp_path: Path):
    questions = {"lab1": [Question("a", 4), Question("b", 6), Question("h", 2, True)], "lab2": [Question("c", 1)]}
    files = {("lab1", "ada"): "ada/lab1.ipynb", ("lab1", "bob"): "bob/lab1.ipynb", ("lab2", "ada"): "ada/lab2.ipynb"}
    write_gradebook(tmp_path, grades(), questions, files)
    with open(tmp_path / "gradebook.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["assignment", "student_id", "file", "timestamp", "a", "b", "h", "c", "score", "max_score", "percent_correct",
         "grading_status"],
        ["lab1", "ada", "ada/lab1.ipynb", "2026-12-01T10:00:00+00:00", "4", "0", "2", "", "6", "12", "0.5", "ok"],
        ["lab1", "bob", "bob/lab1.ipynb", "", "0", "0", "0", "", "0", "12", "0",
         "malformed: the notebook could not be read"],
        ["lab2", "ada", "ada/lab2.ipynb", "", "", "", "", "1", "1", "1", "1", "timeout: cell 3 timed out"],
    ]
    assert (tmp_path / "totals.csv").read_text().splitlines() == [
        "student_id,lab1,lab2,score,max_score,percent_correct", "ada,6,1,7,13,0.5385", "bob,0,,0,12,0"]
    assert (tmp_path / "points.csv").read_text().splitlines() == [
        "assignment,question,points,hidden", "lab1,a,4,false", "lab1,b,6,false", "lab1,h,2,true", "lab2,c,1,false"]
