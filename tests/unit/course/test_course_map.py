"""The course map: generated from the syllabus and the notebooks, in sync, and strict about disagreements."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, SOLUTIONS, TINY_SOLUTION
from slmlab.course.course_map import Entry, load_syllabus, map_problems, notebook_facts, render_map
from slmlab.course.promises import (
    PROMISES_END,
    PROMISES_START,
    Promise,
    load_promises,
    promise_problems,
    render_promises,
    with_promises_block,
)
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def test_every_notebook_is_in_the_syllabus_with_its_titles_number():
    assert map_problems(SOLUTIONS, load_syllabus()) == []


def test_the_committed_map_is_what_the_notebooks_generate():
    table = render_promises(load_promises())
    wanted = render_map(SOLUTIONS, load_syllabus(), table)
    assert (REPO / "docs" / "course-map.md").read_text(encoding="utf-8") == wanted, (
        "docs/course-map.md is stale: run `slmlab course-map` and commit it")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == with_promises_block(readme, table), "README's promises table is stale: run `slmlab course-map`"


def test_every_promise_names_known_notebooks_and_what_is_missing():
    assert promise_problems(load_promises(), {entry.number for entry in load_syllabus()}) == []


def test_promise_problems_are_named():
    rows = [Promise("1", "Quantize", ("1.3", "9.9"), "runs"), Promise("4", "Fly", (), "partly"),
            Promise("2", "Serve", ("2.1",), "maybe")]
    problems = "\n".join(promise_problems(rows, {"1.3", "2.1"}))
    assert "no notebook numbered 9.9" in problems
    assert "section '4' is not one of" in problems
    assert "status 'partly' needs `missing`" in problems and "status 'partly' needs the notebooks" in problems
    assert "status 'maybe' is not one of" in problems


def test_the_promises_block_is_replaced_between_its_markers():
    readme = f"# Title\n\n{PROMISES_START}\nold table\n{PROMISES_END}\n\n## After\n"
    table = render_promises([Promise("3", "Scale", ("3.6",), "partly", "nginx", "GPU HPA")])
    new = with_promises_block(readme, table)
    assert "old table" not in new
    assert "| 3 · Cloud deployment | Scale | 3.6 | ◐ partly | nginx · missing: GPU HPA |" in new
    assert new.endswith(f"{PROMISES_END}\n\n## After\n") and "Of 1 promises: 0 runs, 1 partly, 0 not yet." in new
    with pytest.raises(SlmLabError, match="no promises block"):
        with_promises_block("# no markers\n", table)


def test_objectives_and_the_estimate_come_from_the_notebook():
    facts = notebook_facts(SOLUTIONS / "02-local" / "05-api-integration.ipynb")
    assert facts.title_number == "2.5" and facts.title.startswith("API integration")
    assert len(facts.objectives) >= 3 and facts.objectives[0].startswith("start the service")
    assert facts.exercises >= 1 and facts.minutes % 5 == 0
    longer = facts.__class__(**{**facts.__dict__, "exercises": facts.exercises + 2})
    assert longer.minutes > facts.minutes  # the rule counts exercises


def _one_notebook(tmp_path: Path, title: str) -> Path:
    sols = tmp_path / "solutions" / "01-part"
    sols.mkdir(parents=True)
    nb = nbformat.read(TINY_SOLUTION, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}\n\nYou will\n\n1. do one thing;\n2. do another."))
    nbformat.write(nb, sols / "tiny.ipynb")
    shutil.copy(sols / "tiny.ipynb", sols / "extra.ipynb")
    return sols.parent


def test_disagreements_are_named(tmp_path: Path):
    sols = _one_notebook(tmp_path, "01 · Tiny")
    entries = [Entry("01-part/tiny", "1.1", "tiny things", ("9.9",)), Entry("01-part/gone", "1.2", "x", ())]
    problems = "\n".join(map_problems(sols, entries))
    assert "extra.ipynb: not in syllabus.toml" in problems
    assert "01-part/gone has no notebook" in problems
    assert "1.1 needs 9.9, which is not an earlier notebook" in problems
    assert "numbered 01, the syllabus says 1.1; start the title with '# 1.1 · '" in problems


def test_a_broken_syllabus_is_named(tmp_path: Path):
    bad = tmp_path / "syllabus.toml"
    bad.write_text('[[notebook]]\npath = "00-setup-check"\n', encoding="utf-8")
    with pytest.raises(SlmLabError, match="number 1 lacks number, topics"):
        load_syllabus(bad)
    bad.write_text("[[notebook]\n", encoding="utf-8")
    with pytest.raises(SlmLabError, match="Cannot read the syllabus"):
        load_syllabus(bad)
