"""Grading a class: the right points for every learner, whatever individual learners hand in."""

from __future__ import annotations

import argparse
import copy
import csv
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from conftest import CI_PARAMETERS, FIXTURES, LABS, REPO, SOLUTIONS, TINY_SOLUTION
from slmlab.cli.course import register
from slmlab.course.build import build_lab
from slmlab.course.grade import grade_folder

MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$|^\s*# HINT:.*$")
HIDDEN_EXAMPLE = REPO / "instructor" / "hidden-tests"
TINY_HIDDEN = FIXTURES / "hidden"


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


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def set_check(nb: nbformat.NotebookNode, name: str, source: str) -> None:
    """Overwrite a check cell as a learner who edits it would (its first line kept)."""
    for cell in nb.cells:
        if cell.source.startswith(f"# CHECK: {name}\n"):
            cell.source = f"# CHECK: {name}\n{source}"
            return
    raise AssertionError(f"no check {name!r}")


# ----------------------------------------------------------------------------- the real lab, a planted class

ASK = "reply = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)\n"


def plant_class(folder: Path) -> None:
    """Seven learners of 00-setup-check, each handing in one kind of submission."""
    lab = nbformat.read(LABS / "00-setup-check.ipynb", as_version=4)
    solution = nbformat.read(SOLUTIONS / "00-setup-check.ipynb", as_version=4)
    folder.mkdir()
    nbformat.write(completed(lab, solution), folder / "correct.ipynb")
    # Right code, but asks something else: only the instructor's hidden "asks for a greeting" sees it.
    other = 'messages = [{"role": "user", "content": "What is the capital of France?"}]'
    nbformat.write(completed(lab, solution, {"Say hello to the class": other}), folder / "partly.ipynb")
    # Keeps the whole reply dict instead of its text.
    nbformat.write(completed(lab, solution, {"create_chat_completion": ASK + "answer = reply"}), folder / "wrong.ipynb")
    text = nbformat.writes(completed(lab, solution))
    (folder / "malformed.ipynb").write_text(text[: len(text) // 2])  # the JSON stops halfway
    nbformat.write(completed(lab, solution, {"create_chat_completion": "while True:\n    pass"}),
                   folder / "hanging.ipynb")
    nbformat.write(completed(lab, solution, {"create_chat_completion": "import os\nos._exit(1)"}),
                   folder / "crashing.ipynb")
    # Types the answer in, makes the visible check print a tick, and adds a cell posing as a hidden check.
    tampered = completed(lab, solution, {"create_chat_completion": ASK + 'answer = "I typed this in myself."'})
    set_check(tampered, "hello", 'print("✓ all good")')
    tampered.cells.append(new_code_cell("# CHECK: reply is the model's own\nprint('✓')"))
    nbformat.write(tampered, folder / "tampered.ipynb")


@pytest.mark.slow
def test_a_planted_class_of_00_setup_check_gets_the_expected_points(tmp_path: Path):
    plant_class(tmp_path / "class")
    out = tmp_path / "grades"
    lines: list[str] = []
    book = grade_folder(tmp_path / "class", "00-setup-check", labs_dir=LABS, solutions_dir=SOLUTIONS,
                        hidden_dir=HIDDEN_EXAMPLE, out=out, min_timeout=15, jobs=2, parameters=CI_PARAMETERS,
                        remeasure=True, echo=lines.append)

    rows = read_csv(out / "gradebook.csv")
    checks = ["messages", "hello", "asks for a greeting", "reply is the model's own"]  # 4 + 6 visible, 2 + 3 hidden
    assert list(rows[0]) == ["assignment", "student_id", "file", "timestamp", *checks,
                             "score", "max_score", "percent_correct", "grading_status"]
    got = {r["student_id"]: ([r[c] for c in checks], r["score"], r["grading_status"].split(":")[0]) for r in rows}
    assert got == {
        "correct": (["4", "6", "2", "3"], "15", "ok"),
        "crashing": (["4", "0", "0", "0"], "4", "crashed"),
        "hanging": (["4", "0", "2", "0"], "6", "timeout"),
        "malformed": (["0", "0", "0", "0"], "0", "malformed"),
        "partly": (["4", "6", "0", "3"], "13", "ok"),
        "tampered": (["4", "0", "2", "0"], "6", "ok"),
        "wrong": (["4", "0", "2", "0"], "6", "ok"),
    }
    assert set(book["max_score"]) == {"15"} and book["assignment"].tolist() == ["00-setup-check"] * 7

    # The limit came from the solution (5 x its time, at least 15 s), not a flat ten minutes; hanging was cut there.
    assert any("5 × the solution's" in line and "measured now" in line for line in lines), lines
    feedback = (out / "feedback" / "hanging.md").read_text()
    assert re.search(r"Run status: \*\*timeout\*\* \(cell \d+ timed out\)", feedback) and "6 / 15 points" in feedback
    wrong = (out / "feedback" / "wrong.md").read_text()
    assert "| hello | 0 / 6 | ✗ fail |" in wrong and "expected answer to be a string, got a dict" in wrong
    assert "| asks for a greeting (hidden) | 2 / 2 | ✓ pass |" in wrong and " MB |" in wrong
    assert "| asks for a greeting (hidden) | 0 / 2 | ✗ fail |" in (out / "feedback" / "partly.md").read_text()
    assert "could not be read" in (out / "feedback" / "malformed.md").read_text()
    summary = (out / "summary.md").read_text()
    assert "| hello | 6 | 2 / 7 |" in summary and "7 submissions" in summary and "the notebook could not" in summary
    print("\n".join(lines))  # the limits and each learner's time, for the record

    executed = nbformat.read(out / "executed" / "00-setup-check" / "correct.ipynb", as_version=4)
    assert "asks for a greeting" not in nbformat.writes(executed)  # the hidden checks stay with the instructor
    assert not (out / "executed" / "00-setup-check" / "malformed.ipynb").exists()
    assert [r["score"] for r in read_csv(out / "totals.csv")] == ["15", "4", "6", "0", "13", "6", "6"]


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
        # Starts a process in a session of its own, then kills the worker: no cleanup in the worker runs, yet the
        # grader finds the orphaned kernel and that process by the marker in their environment and stops them.
        "spawner": {"squares": "import os, signal, subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(300)'], start_new_session=True)\n"
                               "os.kill(os.getppid(), signal.SIGKILL)"},
    }
    for name, answers in learners.items():
        nbformat.write(completed(lab, solution, answers), subs / f"{name}.ipynb")
    tampered = completed(lab, solution, {"return x * x": "def square(x):\n    return 0"})
    set_check(tampered, "square", "print('✓ all good')")  # the grader puts the real check back
    nbformat.write(tampered, subs / "tamper.ipynb")
    (subs / "zoe").mkdir()  # nbgrader's layout: the learner's own files travel with the notebook
    nbformat.write(completed(lab, solution), subs / "zoe" / "tiny.ipynb")
    (subs / "zoe" / "notes.txt").write_text("a learner's own file")

    out = tmp_path / "out"
    grade_folder(subs, "tiny", labs_dir=labs_dir, hidden_dir=TINY_HIDDEN, out=out, timeout=30, cell_timeout=3,
                 jobs=2, echo=None)
    rows = {r["student_id"]: (r["square"], r["squares"], r["square of negatives"], r["grading_status"].split(":")[0])
            for r in read_csv(out / "gradebook.csv")}
    assert rows == {
        "crash": ("1", "0", "0", "crashed"),
        "deleter": ("1", "1", "2", "ok"),
        "killer": ("1", "0", "0", "crashed"),
        "spawner": ("1", "0", "0", "crashed"),
        "stubborn": ("1", "0", "0", "timeout"),
        "tamper": ("0", "0", "0", "ok"),
        "zoe": ("1", "1", "2", "ok"),
    }
    assert "kernel died" in (out / "feedback" / "crash.md").read_text()
    assert "ignored the interrupt" in (out / "feedback" / "stubborn.md").read_text()
    assert "expected square(n) to be 9, got 0" in (out / "feedback" / "tamper.md").read_text()
    assert TINY_SOLUTION.exists() and (subs / "deleter.ipynb").exists()  # deletions stayed in the sandbox
    import psutil

    sleepers = [p for p in psutil.process_iter(["cmdline"]) if "time.sleep(300)" in " ".join(p.info["cmdline"] or [])]
    assert not sleepers, "a process the spawner started outlived its grading"


@pytest.mark.slow
def test_grade_cli_measures_the_solution_once_and_writes_everything(tiny_lab, tmp_path: Path, capsys):
    labs_dir, lab, solution = tiny_lab
    subs = tmp_path / "subs"
    (subs / "ada").mkdir(parents=True)
    nbformat.write(completed(lab, solution), subs / "ada" / "tiny.ipynb")
    (subs / "bob").mkdir()
    nbformat.write(lab, subs / "bob" / "tiny.ipynb")  # handed in untouched
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    argv = ["grade", str(subs), "--lab", "tiny", "--labs", str(labs_dir), "--solutions", str(TINY_SOLUTION.parent),
            "--hidden", str(TINY_HIDDEN), "--min-timeout", "60", "-j", "2", "-p", "n=4", "--out", str(tmp_path / "g")]
    args = parser.parse_args([*argv, "--remeasure"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "tiny: 4 checks (2 hidden), 5 points; limit 60 s per notebook" in printed and "measured now" in printed
    assert "[2/2] tiny" in printed and "ada: 5/5 points" in printed and "bob: 0/5 points" in printed
    rows = read_csv(tmp_path / "g" / "gradebook.csv")
    assert [(r["student_id"], r["file"], r["score"], r["max_score"]) for r in rows] == [
        ("ada", "ada/tiny.ipynb", "5", "5"), ("bob", "bob/tiny.ipynb", "0", "5")]
    assert (tmp_path / "g" / "feedback" / "bob.md").read_text().count("✗ fail") == 4
    executed = nbformat.read(tmp_path / "g" / "executed" / "tiny" / "ada.ipynb", as_version=4)
    assert any("n = 4" in c.source for c in executed.cells)  # -p reached the learner's notebook

    args = parser.parse_args(argv)  # again: the solution's time comes from the cache
    assert args.func(args) == 0
    assert "(cached)" in capsys.readouterr().out


@pytest.mark.fast
def test_malformed_notebooks_score_zero_without_a_kernel(tiny_lab, tmp_path: Path):
    labs_dir, _, _ = tiny_lab
    (tmp_path / "json.ipynb").write_text('{"cells": [')
    bad_schema = '{"cells": "not a list", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (tmp_path / "schema.ipynb").write_text(bad_schema)
    (tmp_path / "empty.ipynb").write_text("")
    book = grade_folder(tmp_path, "tiny", labs_dir=labs_dir, out=tmp_path / "out", timeout=60, echo=None)
    assert [s.split(":")[0] for s in book["grading_status"]] == ["malformed"] * 3
    assert book["score"].tolist() == ["0", "0", "0"] and book["max_score"].tolist() == ["2", "2", "2"]
