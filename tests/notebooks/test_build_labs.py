"""build-labs: labs/ is exactly what the solutions generate, and the generator does what it says."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import LABS, REPO, SOLUTIONS, TINY_SOLUTION, labs, solutions
from slmlab.cli.course import register
from slmlab.course import check_cells
from slmlab.course.build import build_lab, build_labs, lab_text, solution_problems
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def cli(*argv: str) -> int:
    """Run a course subcommand the way slmlab.cli does."""
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_code_cell("n = 1", metadata={"tags": ["parameters"]}), *cells]
    return nb


def test_there_is_a_lab_for_every_solution_and_no_other():
    assert solutions(), "solutions/ holds no notebook"
    assert [p.relative_to(LABS) for p in labs()] == [p.relative_to(SOLUTIONS) for p in solutions()]


@pytest.mark.parametrize("solution", solutions(), ids=lambda p: p.stem)
def test_lab_is_in_sync_with_its_solution(solution: Path):
    lab = LABS / solution.relative_to(SOLUTIONS)
    assert lab.read_text(encoding="utf-8") == lab_text(solution), (
        f"{lab} is stale: run `slmlab build-labs` and commit the result"
    )


def test_build_labs_check_reports_the_repository_in_sync(capsys):
    assert cli("build-labs", "--solutions", str(SOLUTIONS), "--labs", str(LABS), "--check") == 0
    assert "in sync" in capsys.readouterr().out


@pytest.mark.parametrize("solution", solutions(), ids=lambda p: p.stem)
def test_solution_follows_the_notebook_conventions(solution: Path):
    assert solution_problems(solution) == []
    assert check_cells(nbformat.read(solution, as_version=4)), f"{solution.name} has no check cell"


def test_a_changed_solution_makes_its_lab_stale(tmp_path: Path, capsys):
    sols, built = tmp_path / "solutions", tmp_path / "labs"
    sols.mkdir()
    shutil.copy(TINY_SOLUTION, sols / "tiny.ipynb")
    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built)) == 0
    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built), "--check") == 0

    nb = nbformat.read(sols / "tiny.ipynb", as_version=4)
    nb.cells[0].source += "\nOne more sentence."
    nbformat.write(nb, sols / "tiny.ipynb")
    capsys.readouterr()
    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built), "--check") == 1
    assert f"{built / 'tiny.ipynb'}: out of date" in capsys.readouterr().out
    assert build_labs(sols, built, check=True).changed == [built / "tiny.ipynb"]  # --check wrote nothing

    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built)) == 0
    assert "One more sentence." in (built / "tiny.ipynb").read_text()
    assert build_labs(sols, built, check=True).in_sync


def test_a_lab_without_solution_is_reported(tmp_path: Path, capsys):
    sols, built = tmp_path / "solutions", tmp_path / "labs"
    sols.mkdir()
    shutil.copy(TINY_SOLUTION, sols / "tiny.ipynb")
    build_labs(sols, built)
    shutil.copy(built / "tiny.ipynb", built / "old.ipynb")
    report = build_labs(sols, built, check=True)
    assert report.orphans == [built / "old.ipynb"] and not report.in_sync
    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built), "--check") == 1
    assert "old.ipynb: no solution" in capsys.readouterr().out


def test_solution_code_becomes_notimplementederror_with_its_hint():
    lab = build_lab(nbformat.read(TINY_SOLUTION, as_version=4))
    sources = [c.source for c in lab.cells]
    assert sources[2] == 'def square(x):\n    raise NotImplementedError(\'multiply x by itself\')'
    assert sources[4] == (
        "raise NotImplementedError('build the list of square(i) for i in range(n)')\nprint(len(squares))"
    )
    assert "So the two cannot drift apart." not in sources[6] and "_Write your answer here._" in sources[6]
    assert all("BEGIN SOLUTION" not in s and "END SOLUTION" not in s and "HINT" not in s for s in sources)


def test_several_blocks_multiline_hints_and_no_hint():
    cell = new_code_cell(
        "# HINT: first line\n# HINT: second line\n### BEGIN SOLUTION\na = 1\n### END SOLUTION\n"
        "b = 2\n### BEGIN SOLUTION\nc = 3\n### END SOLUTION"
    )
    lab = build_lab(notebook(cell))
    assert lab.cells[1].source == (
        "raise NotImplementedError('first line second line')\nb = 2\n"
        "raise NotImplementedError('Write your solution here.')"
    )


def test_lab_has_no_outputs_state_or_test_markers_and_locks_check_cells():
    exercise = new_code_cell("# NBVAL_CHECK_OUTPUT\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION\nprint(x)",
                             execution_count=3, outputs=[new_output("stream", name="stdout", text="2\n")],
                             metadata={"scrolled": True, "execution": {"iopub.status.busy": "now"}})
    check = new_code_cell("# CHECK: x\nassert x == 2", metadata={"tags": ["check"]})
    solution = notebook(exercise, check)
    solution.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    lab = build_lab(solution)
    assert "widgets" not in lab.metadata
    assert all(c.outputs == [] and c.execution_count is None for c in lab.cells if c.cell_type == "code")
    assert lab.cells[1].source == "raise NotImplementedError('Write your solution here.')\nprint(x)"
    assert lab.cells[1].metadata == {}
    assert lab.cells[2].metadata == {"tags": ["check"], "editable": False, "deletable": False}
    assert solution.cells[1].outputs, "build_lab must not modify the solution it reads"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("### BEGIN SOLUTION\nx = 1", "'### BEGIN SOLUTION' on line 1 has no '### END SOLUTION'"),
        ("x = 1\n### END SOLUTION", "'### END SOLUTION' on line 2 has no '### BEGIN SOLUTION' above it"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "is not closed before"),
    ],
)
def test_unbalanced_markers_name_the_file_and_cell(tmp_path: Path, source: str, message: str):
    path = tmp_path / "solutions" / "broken.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook(new_markdown_cell("intro"), new_code_cell(source)), path)
    with pytest.raises(SlmLabError) as err:
        lab_text(path)
    assert f"{path}, cell 3" in str(err.value) and message in str(err.value)
    assert err.value.hint


def test_solution_problems_are_found(tmp_path: Path):
    nb = new_notebook(cells=[
        new_code_cell("x = 1"),  # first code cell without the parameters tag
        new_code_cell("print(x)", outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_code_cell("# CHECK: x\nassert x", metadata={}),  # check cell without its tag
    ])
    nb.metadata["widgets"] = {}
    path = tmp_path / "s.ipynb"
    nbformat.write(nb, path)
    problems = "\n".join(solution_problems(path))
    assert "widget state" in problems
    assert "not tagged 'parameters'" in problems
    assert "cell 2: has outputs but no '# NBVAL_CHECK_OUTPUT'" in problems
    assert "cell 3: a check cell needs both" in problems


def test_missing_solutions_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SlmLabError, match="Solutions folder not found"):
        build_labs(tmp_path / "nope", tmp_path / "labs")


def test_slmlab_command_has_the_course_subcommands():
    """The real `slmlab` entry point (slmlab.cli) registers build-labs, run and grade."""
    done = subprocess.run([sys.executable, "-m", "slmlab.cli", "build-labs", "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in sync" in done.stdout
    for command, option in [("run", "--cell-timeout"), ("grade", "--lab")]:
        help_text = subprocess.run([sys.executable, "-m", "slmlab.cli", command, "--help"], cwd=REPO,
                                   capture_output=True, text=True).stdout
        assert option in help_text, f"slmlab {command} --help lacks {option}"


@pytest.mark.fast
def test_part_folders_are_mirrored_from_solutions_to_labs(tmp_path: Path):
    sols, labs_dir = tmp_path / "solutions", tmp_path / "labs"
    (sols / "01-foundations").mkdir(parents=True)
    shutil.copy(TINY_SOLUTION, sols / "01-foundations" / "tiny.ipynb")
    report = build_labs(sols, labs_dir)
    assert report.changed == [labs_dir / "01-foundations" / "tiny.ipynb"]
    assert build_labs(sols, labs_dir, check=True).in_sync
    (labs_dir / "02-local").mkdir()
    shutil.copy(TINY_SOLUTION, labs_dir / "02-local" / "stray.ipynb")
    assert build_labs(sols, labs_dir, check=True).orphans == [labs_dir / "02-local" / "stray.ipynb"]


def _edit_first_cell(path: Path, text: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += text
    nbformat.write(nb, path)


def test_build_labs_never_overwrites_a_lab_somebody_edited(tmp_path: Path, capsys):
    sols, built = tmp_path / "solutions", tmp_path / "labs"
    sols.mkdir()
    shutil.copy(TINY_SOLUTION, sols / "tiny.ipynb")
    build_labs(sols, built)
    _edit_first_cell(built / "tiny.ipynb", "\nMy own notes.")  # a learner's work
    _edit_first_cell(sols / "tiny.ipynb", "\nA fix upstream.")
    capsys.readouterr()

    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built)) == 1
    out = capsys.readouterr().out
    assert f"{built / 'tiny.ipynb'}: kept" in out and "slmlab copy-labs" in out and "--force" in out
    assert "My own notes." in (built / "tiny.ipynb").read_text()
    assert not build_labs(sols, built, check=True).in_sync

    assert cli("build-labs", "--solutions", str(sols), "--labs", str(built), "--force") == 0
    text = (built / "tiny.ipynb").read_text()
    assert "A fix upstream." in text and "My own notes." not in text


def test_running_a_lab_is_not_editing_it(tmp_path: Path):
    sols, built = tmp_path / "solutions", tmp_path / "labs"
    sols.mkdir()
    shutil.copy(TINY_SOLUTION, sols / "tiny.ipynb")
    build_labs(sols, built)
    nb = nbformat.read(built / "tiny.ipynb", as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs, code.execution_count = [new_output("stream", name="stdout", text="ran\n")], 3
    nbformat.write(nb, built / "tiny.ipynb")
    _edit_first_cell(sols / "tiny.ipynb", "\nA fix upstream.")
    assert build_labs(sols, built).changed == [built / "tiny.ipynb"]
