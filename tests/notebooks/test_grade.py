"""Grading: the right gradebook for a class, whatever individual learners hand in."""

from __future__ import annotations

import argparse
import copy
import csv
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from conftest import CI_PARAMETERS, LABS, SOLUTIONS, TINY_SOLUTION
from slmlab.cli.course import register
from slmlab.course import check_cells
from slmlab.course.build import build_lab
from slmlab.course.grade import (
    CheckResult,
    LearnerGrade,
    _read_cell_log,
    find_submissions,
    grade_folder,
    learner_report,
    load_reference,
    prepare_submission,
)
from slmlab.errors import SlmLabError

MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$|^\s*# HINT:.*$")


def completed(lab: nbformat.NotebookNode, solution: nbformat.NotebookNode,
              answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """What a learner hands in: the lab with each exercise cell filled in (the solution's code by default).

    ``answers`` maps a snippet of a solution cell to the code the learner wrote instead.
    """
    nb = copy.deepcopy(lab)
    for cell, model in zip(nb.cells, solution.cells, strict=True):
        if "raise NotImplementedError" not in cell.source:
            continue
        cell.source = "\n".join(line for line in model.source.split("\n") if not MARKER.match(line))
        for snippet, code in (answers or {}).items():
            if snippet in model.source:
                cell.source = code
    return nb


def read_gradebook(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- the real lab


@pytest.mark.slow
def test_grading_a_class_of_00_setup_check(tmp_path: Path):
    lab = nbformat.read(LABS / "00-setup-check.ipynb", as_version=4)
    solution = nbformat.read(SOLUTIONS / "00-setup-check.ipynb", as_version=4)
    subs = tmp_path / "submissions"
    subs.mkdir()
    nbformat.write(completed(lab, solution), subs / "correct.ipynb")
    # Keeps the whole reply dict instead of its text: the hello check must say so.
    wrong = ("reply = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)\n"
             "answer = reply")
    nbformat.write(completed(lab, solution, {"create_chat_completion": wrong}), subs / "wrong.ipynb")
    hanging = completed(lab, solution, {"create_chat_completion": "while True:\n    pass"})
    nbformat.write(hanging, subs / "hanging.ipynb")
    text = nbformat.writes(completed(lab, solution))
    (subs / "malformed.ipynb").write_text(text[: len(text) // 2])

    out = tmp_path / "grades"
    book = grade_folder(subs, "00-setup-check", labs_dir=LABS, out=out, timeout=120, cell_timeout=10,
                        parameters=CI_PARAMETERS, echo=None)

    rows = read_gradebook(out / "gradebook.csv")
    assert list(rows[0]) == ["learner", "messages", "hello", "total", "status"]
    assert [list(r.values()) for r in rows] == [
        ["correct", "1", "1", "2", "ok"],
        ["hanging", "1", "0", "1", "timeout"],
        ["malformed", "0", "0", "0", "malformed"],
        ["wrong", "1", "0", "1", "ok"],
    ]
    assert book["total"].tolist() == [2, 1, 0, 1]
    wrong_report = (out / "reports" / "wrong.md").read_text()
    assert "Score: **1/2**" in wrong_report
    assert "expected answer to be a string, got a dict" in wrong_report
    assert "timed out" in (out / "reports" / "hanging.md").read_text()
    assert "could not be read" in (out / "reports" / "malformed.md").read_text()
    assert (out / "executed" / "correct.ipynb").exists() and not (out / "executed" / "malformed.ipynb").exists()


# ----------------------------------------------------------------------------- robustness (model-free)


@pytest.fixture(scope="module")
def tiny_lab(tmp_path_factory) -> tuple[Path, nbformat.NotebookNode, nbformat.NotebookNode]:
    labs_dir = tmp_path_factory.mktemp("labs")
    solution = nbformat.read(TINY_SOLUTION, as_version=4)
    lab = build_lab(solution)
    nbformat.write(lab, labs_dir / "tiny.ipynb")
    return labs_dir, lab, solution


@pytest.mark.slow
def test_crashes_hangs_deletions_and_tampering_cost_only_that_learner(tiny_lab, tmp_path: Path):
    labs_dir, lab, solution = tiny_lab
    subs = tmp_path / "subs"
    subs.mkdir()
    learners = {
        "crash": {"squares": "import os\nos._exit(1)"},
        "killer": {"squares": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"},  # kills the grader's worker
        "stubborn": {"squares": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"},
        "deleter": {"squares": "import os, shutil\nshutil.rmtree(os.path.expanduser('~'))\n"
                               "shutil.rmtree(os.path.dirname(os.getcwd()))\n"
                               "squares = [square(i) for i in range(n)]"},
    }
    for name, answers in learners.items():
        nbformat.write(completed(lab, solution, answers), subs / f"{name}.ipynb")
    tampered = completed(lab, solution, {"return x * x": "def square(x):\n    return 0"})
    tampered.cells[3].source = "# CHECK: square\nprint('✓ all good')"  # the grader puts the real check back
    nbformat.write(tampered, subs / "tamper.ipynb")
    (subs / "zoe").mkdir()  # nbgrader's layout, graded last: the class run went on
    nbformat.write(completed(lab, solution), subs / "zoe" / "tiny.ipynb")
    (subs / "zoe" / "notes.txt").write_text("a learner's own file travels with the notebook")

    out = tmp_path / "out"
    grade_folder(subs, "tiny", labs_dir=labs_dir, out=out, timeout=30, cell_timeout=3, echo=None)
    rows = {r["learner"]: (r["square"], r["squares"], r["status"]) for r in read_gradebook(out / "gradebook.csv")}
    assert rows == {
        "crash": ("1", "0", "crashed"),
        "deleter": ("1", "1", "ok"),
        "killer": ("1", "0", "crashed"),
        "stubborn": ("1", "0", "timeout"),
        "tamper": ("0", "0", "ok"),
        "zoe": ("1", "1", "ok"),
    }
    assert "kernel died" in (out / "reports" / "crash.md").read_text()
    assert "ignored the interrupt" in (out / "reports" / "stubborn.md").read_text()
    assert "expected square(n) to be 9, got 0" in (out / "reports" / "tamper.md").read_text()
    assert TINY_SOLUTION.exists() and (subs / "deleter.ipynb").exists()  # deletions stayed in the sandbox


@pytest.mark.slow
def test_grade_cli_writes_gradebook_and_reports(tiny_lab, tmp_path: Path, capsys):
    labs_dir, lab, solution = tiny_lab
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(completed(lab, solution), subs / "ada.ipynb")
    nbformat.write(lab, subs / "bob.ipynb")  # handed in untouched
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["grade", str(subs), "--lab", "tiny", "--labs", str(labs_dir), "--timeout", "60",
                              "-p", "n=4", "--out", str(tmp_path / "g")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "ada: 2/2 (ok" in printed and "bob: 0/2 (error" in printed
    rows = read_gradebook(tmp_path / "g" / "gradebook.csv")
    assert [(r["learner"], r["total"], r["status"]) for r in rows] == [("ada", "2", "ok"), ("bob", "0", "error")]
    assert (tmp_path / "g" / "reports" / "bob.md").read_text().count("✗ fail") == 2
    executed = nbformat.read(tmp_path / "g" / "executed" / "ada.ipynb", as_version=4)
    assert any("n = 4" in c.source for c in executed.cells)  # -p reached the learner's notebook


# ----------------------------------------------------------------------------- unit tests


@pytest.mark.fast
def test_submissions_in_both_layouts(tmp_path: Path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "lab1.ipynb").write_text("{}")
    (tmp_path / "ben.ipynb").write_text("{}")
    (tmp_path / "cat").mkdir()  # a folder without the lab: not a submission
    (tmp_path / "notes.txt").write_text("")
    assert find_submissions(tmp_path, "lab1") == {"ann": tmp_path / "ann" / "lab1.ipynb", "ben": tmp_path / "ben.ipynb"}
    with pytest.raises(SlmLabError, match="No submissions for lab2"):
        find_submissions(tmp_path / "cat", "lab2")
    with pytest.raises(SlmLabError, match="Submissions folder not found"):
        find_submissions(tmp_path / "missing", "lab1")


@pytest.mark.fast
def test_unknown_lab_lists_the_labs(tmp_path: Path):
    with pytest.raises(SlmLabError) as err:
        load_reference("99-nope", LABS)
    assert "Lab not found" in str(err.value) and "00-setup-check" in err.value.hint


@pytest.mark.fast
def test_malformed_notebooks_score_zero_without_a_kernel(tiny_lab, tmp_path: Path):
    labs_dir, _, _ = tiny_lab
    (tmp_path / "json.ipynb").write_text('{"cells": [')
    bad_schema = '{"cells": "not a list", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (tmp_path / "schema.ipynb").write_text(bad_schema)
    (tmp_path / "empty.ipynb").write_text("")
    book = grade_folder(tmp_path, "tiny", labs_dir=labs_dir, out=tmp_path / "out", echo=None)
    assert book["status"].tolist() == ["malformed"] * 3 and book["total"].tolist() == [0, 0, 0]


@pytest.mark.fast
def test_prepare_submission_restores_checks_and_clears_outputs(tiny_lab):
    _, lab, solution = tiny_lab
    nb = completed(lab, solution)
    nb.cells[5].source = "# CHECK: squares\npass"
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old")]
    nb.cells.append(new_code_cell("# CHECK: my own\npass"))
    prepared = prepare_submission(nb, lab, {"n": 5})
    assert list(check_cells(prepared)) == ["square", "squares", "my own"]
    assert prepared.cells[check_cells(prepared)["squares"]].source == lab.cells[5].source
    assert all(not c.get("outputs") for c in prepared.cells)
    assert "n = 5" in prepared.cells[2].source  # papermill's injected-parameters cell, after `parameters`


@pytest.mark.fast
def test_cell_log_survives_a_line_cut_by_a_kill(tmp_path: Path):
    log = tmp_path / "cells.jsonl"
    log.write_text('{"index": 1, "error": null}\n{"index": 3, "error": "CheckFailed: x"}\n{"ind')
    assert _read_cell_log(log) == ({1, 3}, {3: "CheckFailed: x"}, "", "")
    assert _read_cell_log(tmp_path / "missing.jsonl") == (set(), {}, "", "")


@pytest.mark.fast
def test_learner_report_is_short_markdown():
    grade = LearnerGrade("ada", [CheckResult("a", True), CheckResult("b", False, "CheckFailed: ✗ x | y")], "ok")
    report = learner_report(grade, "lab1")
    assert report.startswith("# lab1: ada\n") and "Score: **1/2** checks passed. Run status: **ok**." in report
    assert "| b | ✗ fail | CheckFailed: ✗ x \\| y |" in report
