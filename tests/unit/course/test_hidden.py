"""slmlab.course.hidden: an instructor's hidden checks, read from DIR/<lab>.py."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import LABS, REPO
from slmlab.course import check_name
from slmlab.course.grade import plan_lab
from slmlab.course.hidden import hidden_questions, is_hidden, load_hidden, unused_files, without_hidden
from slmlab.course.points import Question
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast

EXAMPLE = REPO / "instructor" / "hidden-tests"


def write(folder: Path, lab: str, text: str) -> Path:
    path = folder / f"{lab}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_shipped_example_fits_the_real_lab():
    plan = plan_lab("00-setup-check", LABS, EXAMPLE)
    assert [(q.name, q.points, q.hidden) for q in plan.questions] == [
        ("messages", 4, False), ("hello", 6, False), ("asks for a greeting", 2, True),
        ("reply is the model's own", 3, True)]
    preamble, *checks = plan.hidden
    assert check_name(preamble) is None and "from slmlab import checks" in preamble.source
    assert all(is_hidden(c) for c in plan.hidden) and "# POINTS" not in checks[0].source


def test_blocks_points_and_a_part_folder(tmp_path: Path):
    write(tmp_path, "01-foundations/01-slm-landscape", "import math\n\n# CHECK: one\n# POINTS: 2.5\nx = 1\n\n"
                                                      "# CHECK: two\ny = 2\n")
    cells = load_hidden(tmp_path, "01-foundations/01-slm-landscape", ["kv cache by hand"])
    assert [c.source for c in cells] == ["import math", "# CHECK: one\nx = 1", "# CHECK: two\ny = 2"]
    assert hidden_questions(cells, "x") == [Question("one", 2.5, True), Question("two", 1.0, True)]
    assert load_hidden(tmp_path, "00-setup-check", []) == []  # no file for that lab: no hidden checks


@pytest.mark.parametrize(("text", "problem"), [
    ("# CHECK: a\nx = (\n", "lab.py, line 2: '(' was never closed"),
    ("import os\n\n# CHECK: a\nx = 1\n\n# CHECK: b\nif True\n", "lab.py, line 7: expected ':'"),
    ("# CHECK: a\nx = 1\n# CHECK: a\ny = 2\n", "lab.py, line 3: the check repeats the name"),
    ("# CHECK: hello\nx = 1\n", "lab.py, line 1: the check repeats the name"),
    ("# CHECK:\nx = 1\n", "lab.py, line 1: the check has no name"),
    ("# CHECK: a\n# POINTS: many\nx = 1\n", "lab.py, line 2: '# POINTS: many' is not a number"),
    ("from slmlab import checks\n", "lab.py has no check"),
])
def test_mistakes_in_a_hidden_file_name_the_line(tmp_path: Path, text: str, problem: str):
    write(tmp_path, "lab", text)
    with pytest.raises(SlmLabError) as err:
        load_hidden(tmp_path, "lab", ["hello"])
    assert problem in err.value.problem


def test_a_missing_folder_and_stray_files(tmp_path: Path):
    with pytest.raises(SlmLabError, match="Hidden-checks folder not found"):
        load_hidden(tmp_path / "nope", "lab", [])
    write(tmp_path, "00-setup-chek", "# CHECK: a\npass\n")
    write(tmp_path, "00-setup-check", "# CHECK: a\npass\n")
    assert unused_files(tmp_path, ["00-setup-check"]) == [
        f"{tmp_path}/00-setup-chek.py Did you mean '00-setup-check'?"]


def test_the_learner_gets_the_notebook_back_without_hidden_cells(tmp_path: Path):
    write(tmp_path, "lab", "# CHECK: secret\npass\n")
    nb = new_notebook(cells=[new_code_cell("x = 1"), *load_hidden(tmp_path, "lab", [])])
    assert [c.source for c in without_hidden(nb).cells] == ["x = 1"] and len(nb.cells) == 2
    assert nbformat.validate(without_hidden(nb)) is None
