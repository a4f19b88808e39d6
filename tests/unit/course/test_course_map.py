"""The course map: generated from the syllabus and the notebooks, in sync, and strict about disagreements."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, SOLUTIONS, TINY_SOLUTION
from slmlab.course.course_map import Entry, load_syllabus, map_problems, notebook_facts, render_map
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def test_every_notebook_is_in_the_syllabus_with_its_titles_number():
    assert map_problems(SOLUTIONS, load_syllabus()) == []


def test_the_committed_map_is_what_the_notebooks_generate():
    assert (REPO / "docs" / "course-map.md").read_text(encoding="utf-8") == render_map(SOLUTIONS, load_syllabus()), (
        "docs/course-map.md is stale: run `slmlab course-map` and commit it")


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
