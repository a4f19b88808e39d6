"""slmlab.course.submission and the class-level helpers of slmlab.course.grade (no kernel started)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import LABS
from slmlab.course import check_cells
from slmlab.course.grade import cpu_slices, jobs_for_memory
from slmlab.course.hidden import HIDDEN_TAG
from slmlab.course.limits import SolutionRun
from slmlab.course.points import Question
from slmlab.course.submission import (
    JOB_ENV,
    check_positions,
    checks_from,
    find_submissions,
    load_reference,
    prepare_submission,
    read_cell_log,
    stop_marked,
    submissions_for,
)
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def lab() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        new_code_cell("x = n"),
        new_code_cell("# CHECK: x\nassert x == 3", metadata={"tags": ["check"]}),
        new_markdown_cell("text"),
        new_code_cell("# CHECK: y\nassert y", metadata={"tags": ["check"]}),
    ])


def hidden_cell(name: str) -> nbformat.NotebookNode:
    return new_code_cell(f"# CHECK: {name}\nassert True", metadata={"tags": ["check", HIDDEN_TAG]})


def test_checks_are_restored_hidden_ones_appended_and_impostors_dropped():
    learner = lab()
    learner.cells[2].source = "# CHECK: x\nprint('✓')"  # an edited check
    learner.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old")]
    learner.cells.append(new_code_cell("# CHECK: secret\npass"))  # poses as the hidden check
    learner.cells.append(new_code_cell("print('mine')", metadata={"tags": [HIDDEN_TAG]}))
    prepared = prepare_submission(learner, lab(), {"n": 5}, [hidden_cell("secret")])
    assert prepared.cells[check_positions(prepared)["x"]].source == "# CHECK: x\nassert x == 3"
    assert [c.source for c in prepared.cells if HIDDEN_TAG in c.metadata.get("tags", [])] == [
        "# CHECK: secret\nassert True"]
    assert list(check_positions(prepared)) == ["x", "y", "secret"] and "n = 5" in prepared.cells[1].source
    assert all(not c.get("outputs") for c in prepared.cells)


def test_the_hidden_check_is_found_at_its_own_cell_even_behind_a_same_named_one():
    nb = lab()
    nb.cells.insert(1, new_code_cell("# CHECK: secret\npass"))
    nb.cells.append(hidden_cell("secret"))
    assert check_cells(nb)["secret"] == 1 and check_positions(nb)["secret"] == len(nb.cells) - 1


def test_checks_get_points_time_and_memory_of_the_cells_leading_to_them():
    nb = lab()
    cells = {0: {"seconds": 2.0, "peak_rss": 100}, 1: {"seconds": 1.0, "peak_rss": 300},
             2: {"seconds": 0.5, "peak_rss": 200}, 4: {"error": "AssertionError: ", "seconds": 0.25, "peak_rss": 50}}
    questions = [Question("x", 4), Question("y", 6), Question("z", 1, True)]
    x, y, z = checks_from(nb, questions, cells, "not run: cell 2 timed out")
    assert (x.passed, x.points, x.seconds, x.peak_rss_bytes) == (True, 4, 3.5, 300)
    assert (y.passed, y.points, y.max_points, y.detail, y.seconds) == (False, 0, 6, "AssertionError: ", 0.25)
    assert (z.passed, z.detail, z.hidden) == (False, "check cell missing from the submission", True)
    del cells[4]
    assert checks_from(nb, questions, cells, "not run: the kernel died")[1].detail == "not run: the kernel died"
    assert {c.detail for c in checks_from(None, questions, {}, "unreadable")} == {"unreadable"}


def test_cell_log_survives_a_line_cut_by_a_kill(tmp_path: Path):
    log = tmp_path / "cells.jsonl"
    log.write_text('{"index": 1, "error": null, "seconds": 1}\n{"index": 3, "error": "CheckFailed: x"}\n{"ind')
    cells, status, reason = read_cell_log(log)
    assert sorted(cells) == [1, 3] and cells[3]["error"] == "CheckFailed: x" and (status, reason) == ("", "")
    assert read_cell_log(tmp_path / "missing.jsonl") == ({}, "", "")


def test_submissions_in_both_layouts(tmp_path: Path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "lab1.ipynb").write_text("{}")
    (tmp_path / "ann" / "part").mkdir()
    (tmp_path / "ann" / "part" / "lab2.ipynb").write_text("{}")
    (tmp_path / "ben.ipynb").write_text("{}")
    (tmp_path / "cat").mkdir()  # a folder without the lab: not a submission
    assert find_submissions(tmp_path, "lab1") == {"ann": tmp_path / "ann" / "lab1.ipynb", "ben": tmp_path / "ben.ipynb"}
    both = submissions_for(tmp_path, ["lab1", "part/lab2"])  # several labs: nbgrader's layout only
    assert [(s.learner, s.lab, s.folder) for s in both] == [("ann", "lab1", tmp_path / "ann"),
                                                          ("ann", "part/lab2", tmp_path / "ann")]
    assert [s.folder for s in submissions_for(tmp_path, ["lab1"])] == [tmp_path / "ann", None]
    with pytest.raises(SlmLabError, match="No submissions for lab3"):
        find_submissions(tmp_path / "cat", "lab3")
    with pytest.raises(SlmLabError, match="Submissions folder not found"):
        find_submissions(tmp_path / "missing", "lab1")


def test_unknown_lab_lists_the_labs():
    with pytest.raises(SlmLabError) as err:
        load_reference("99-nope", LABS)
    assert "Lab not found" in str(err.value) and "00-setup-check" in err.value.hint


def test_jobs_follow_the_cores_and_the_memory():
    cores = sorted(os.sched_getaffinity(0))
    assert cpu_slices(1) == [cores]
    assert sum(len(s) for s in cpu_slices(len(cores))) == len(cores) and len(cpu_slices(999)) == len(cores)
    with pytest.raises(SlmLabError, match="--jobs 0"):
        cpu_slices(0)
    run = SolutionRun(10, 2, 1_000_000_000, "t")
    assert jobs_for_memory(8, [run], available=4_000_000_000) == 3  # 80 % of 4 GB holds three 1 GB kernels
    assert jobs_for_memory(8, [run], available=500_000_000) == 1
    assert jobs_for_memory(2, [], available=1) == 2  # flat limits: nothing measured, nothing to cap by


def test_leftovers_are_found_by_their_marker():
    marker = "test-" + str(time.time())
    env = {**os.environ, JOB_ENV: marker}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        time.sleep(0.2)
        stop_marked(marker)
        child.wait(timeout=10)  # gone at once (psutil reaped it, so its status reads 0), not after its 60 s
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
