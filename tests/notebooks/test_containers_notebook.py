"""3.2 where no container runtime exists (Binder, a laptop without Docker or podman): the notebook runs to its end,
every container cell says why it skips, its checks pass, and nothing is started (no container appears)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import SOLUTIONS
from slmlab.containers import runtime as runtimes
from slmlab.course.execute import execute_tolerantly

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]
NOTEBOOK = SOLUTIONS / "03-cloud" / "02-containers-and-kubernetes.ipynb"
CONTAINER_CELLS = ("c5-build", "c5-run", "c5-play", "c5-oom", "c5-compose")


def path_without_runtime(folder: Path) -> str:
    """A PATH with this Python's folder and the other programs the notebook uses, but no docker or podman."""
    folder.mkdir()
    for program in ("promtool",):
        found = shutil.which(program)
        if found:
            (folder / program).symlink_to(found)
    return os.pathsep.join([str(folder), str(Path(sys.executable).parent)])


def containers_now() -> set[str]:
    usable, _ = runtimes.availability()
    if not usable:
        return set()
    done = runtimes.find_runtime().run(["ps", "-a", "--format", "{{.Names}}"], check=False)
    return set(done.stdout.split())


def test_without_a_runtime_every_container_cell_says_why_and_nothing_starts(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source += "\nfast = True\nmax_tokens = 16"
    before = containers_now()
    env = {**os.environ, "PATH": path_without_runtime(tmp_path / "bin"), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(runtimes.RUNTIME_ENV, None)
    outcome = execute_tolerantly(nb, cwd=tmp_path, env=env, cell_timeout=300)
    assert not outcome.errors, outcome.errors
    text = {cell.get("id"): "".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in nb.cells}
    assert "No container runtime here, so the container cells below skip" in text["c5-runtime"]
    assert "neither docker nor podman is installed" in text["c5-runtime"]
    for cell in CONTAINER_CELLS:
        assert text[cell].startswith("skipped: no container runtime"), (cell, text[cell])
    assert "checkov" in text["c5-scan"] and "helm" in text["c5-scan"]  # they need no runtime: run, or say why not
    assert containers_now() == before
