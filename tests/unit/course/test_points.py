"""slmlab.course.points: points per check from the cell's metadata, and the course's own notebooks carry them."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import LABS, SOLUTIONS
from slmlab.course import check_cells
from slmlab.course.build import build_lab, notebooks_in
from slmlab.course.points import Question, cell_points, has_points, max_score, questions_of, set_points
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def notebook(*cells) -> nbformat.NotebookNode:
    return new_notebook(cells=list(cells))


def test_points_come_from_metadata_with_a_default_of_one():
    a = new_code_cell("# CHECK: a\npass", metadata={"tags": ["check"], "slmlab": {"points": 4}})
    b = new_code_cell("# CHECK: b\npass", metadata={"tags": ["check"]})
    c = new_code_cell("# CHECK: c\npass", metadata={"slmlab": {"points": 2.5}})
    nb = notebook(new_code_cell("x = 1"), a, b, c)
    assert questions_of(nb) == [Question("a", 4.0), Question("b", 1.0), Question("c", 2.5)]
    assert max_score(questions_of(nb)) == 7.5
    assert has_points(a) and not has_points(b)


@pytest.mark.parametrize("bad", [-1, "3", True, float("nan"), None])
def test_bad_points_name_the_check_and_the_fix(bad):
    cell = new_code_cell("# CHECK: kv cache\npass", metadata={"slmlab": {"points": bad}})
    with pytest.raises(SlmLabError) as err:
        cell_points(cell, "labs/x.ipynb")
    assert "labs/x.ipynb: check 'kv cache' has points=" in err.value.problem and "build-labs" in err.value.hint


def test_set_points_keeps_other_metadata_and_build_labs_keeps_the_points():
    cell = new_code_cell("# CHECK: a\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata={"tags": ["check"]})
    cell.metadata["slmlab"] = {"note": "kept"}
    set_points(cell, 3.0)
    assert cell.metadata["slmlab"] == {"note": "kept", "points": 3}
    lab = build_lab(notebook(cell))
    assert cell_points(lab.cells[0]) == 3.0 and lab.cells[0].metadata["editable"] is False


def test_every_check_of_the_course_has_explicit_points_and_its_lab_the_same():
    for solution_path in notebooks_in(SOLUTIONS):
        solution = nbformat.read(solution_path, as_version=4)
        lab = nbformat.read(LABS / solution_path.relative_to(SOLUTIONS), as_version=4)
        for name, index in check_cells(solution).items():
            assert has_points(solution.cells[index]), f"{solution_path}: check {name!r} has no points in its metadata"
        assert questions_of(lab) == questions_of(solution), f"{solution_path}: run slmlab build-labs"
        assert all(q.points > 0 for q in questions_of(solution))
