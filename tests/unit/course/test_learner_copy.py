"""slmlab copy-labs: the learner's own copy is made once and updated without losing their work."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import TINY_SOLUTION
from slmlab.course.build import build_labs
from slmlab.course.learner_copy import copy_labs
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def _course(tmp_path: Path) -> tuple[Path, Path]:
    sols, labs = tmp_path / "solutions" / "01-part", tmp_path / "labs"
    sols.mkdir(parents=True)
    shutil.copy(TINY_SOLUTION, sols / "tiny.ipynb")
    shutil.copy(TINY_SOLUTION, sols / "other.ipynb")
    build_labs(sols.parent, labs)
    return sols, labs


def _append(path: Path, text: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += text
    nbformat.write(nb, path)


def test_first_copy_then_updates_keep_the_learners_edits(tmp_path: Path):
    sols, labs = _course(tmp_path)
    mine = tmp_path / "my-labs"
    first = copy_labs(labs, mine)
    assert sorted(p.name for p in first.copied) == ["other.ipynb", "tiny.ipynb"]
    assert copy_labs(labs, mine).kept == first.copied  # nothing new: nothing touched

    _append(mine / "01-part" / "tiny.ipynb", "\nMy answer.")  # the learner works on one lab
    for name in ("tiny.ipynb", "other.ipynb"):
        _append(sols / name, "\nFixed upstream.")  # the course updates both
    build_labs(sols.parent, labs)

    report = copy_labs(labs, mine)
    assert report.updated == [mine / "01-part" / "other.ipynb"]  # untouched: now the new version
    assert report.beside == [mine / "01-part" / "tiny.ipynb"]
    assert "My answer." in (mine / "01-part" / "tiny.ipynb").read_text()
    assert "Fixed upstream." in (mine / "01-part" / "tiny.new.ipynb").read_text()
    assert "Fixed upstream." in (mine / "01-part" / "other.ipynb").read_text()
    assert any("tiny.new.ipynb next to it" in line for line in report.lines())


def test_a_broken_notebook_in_the_copy_is_never_overwritten(tmp_path: Path):
    sols, labs = _course(tmp_path)
    mine = tmp_path / "my-labs"
    copy_labs(labs, mine)
    (mine / "01-part" / "tiny.ipynb").write_text("{ half saved", encoding="utf-8")
    _append(sols / "tiny.ipynb", "\nFixed upstream.")
    build_labs(sols.parent, labs)
    assert copy_labs(labs, mine).beside == [mine / "01-part" / "tiny.ipynb"]
    assert (mine / "01-part" / "tiny.ipynb").read_text() == "{ half saved"


def test_bad_folders_are_named(tmp_path: Path):
    with pytest.raises(SlmLabError, match="Labs folder not found"):
        copy_labs(tmp_path / "nowhere", tmp_path / "mine")
    _, labs = _course(tmp_path)
    with pytest.raises(SlmLabError, match="--to"):
        copy_labs(labs, labs)
