"""slmlab.course.memory_limit: a notebook's kernel and what it starts run inside a real memory cgroup."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from slmlab.course.execute import run_notebook
from slmlab.course.memory_limit import GB, MemoryCgroup
from slmlab.errors import SlmLabError


def can_limit_memory() -> bool:
    try:
        with MemoryCgroup(GB):
            return True
    except SlmLabError:
        return False


needs_cgroup = pytest.mark.skipif(not can_limit_memory(), reason="needs root and a cgroup memory controller")


def notebook(tmp_path: Path, name: str, code: str) -> Path:
    nb = new_notebook(cells=[new_code_cell("fast = False", metadata={"tags": ["parameters"]}), new_code_cell(code)])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.fast
@needs_cgroup
def test_the_kernel_sees_the_limit_and_runs_within_it(tmp_path):
    path = notebook(tmp_path, "fits", "from slmlab.models import hardware\n"
                                       "print(hardware.cgroup_memory_bytes())\nblock = bytearray(200 * 2**20)")
    result = run_notebook(path, tmp_path / "out.ipynb", progress_bar=False, memory_limit_bytes=GB)
    assert result.ok, result.error
    assert result.memory_limit_bytes == GB and 200 * 2**20 < result.cgroup_peak_bytes <= GB
    printed = nbformat.read(result.output, as_version=4).cells[1].outputs[0]["text"]
    assert int(printed) == GB  # hardware.detect() and require_memory() see the container's limit


@pytest.mark.fast
@needs_cgroup
def test_going_over_the_limit_is_reported_as_the_oom_killer(tmp_path):
    path = notebook(tmp_path, "hog", "block = bytearray(2 * 2**30)")
    result = run_notebook(path, tmp_path / "out.ipynb", progress_bar=False, memory_limit_bytes=GB)
    assert result.status == "crashed" and "out-of-memory killer at the 1.0 GB limit" in result.error


@pytest.mark.fast
@needs_cgroup
def test_a_notebook_that_needs_more_stops_cleanly_as_skipped(tmp_path):
    path = notebook(tmp_path, "big", "from slmlab.models import hardware\n"
                                     "hardware.require_memory(4.5, 'vLLM', 'Codespaces')\nblock = bytearray(2 * 2**30)")
    result = run_notebook(path, tmp_path / "out.ipynb", progress_bar=False, memory_limit_bytes=GB)
    assert result.status == "skipped" and not result.ok
    assert "MachineTooSmall: vLLM needs about 4.5 GB" in result.error and "allows 1.0 GB" in result.error
    assert result.cgroup_peak_bytes < 0.5 * GB  # stopped before anything heavy


@pytest.mark.fast
@needs_cgroup
def test_the_group_is_removed_and_what_outlived_the_run_is_stopped(tmp_path):
    with MemoryCgroup(GB) as group:
        path = group.path
        launcher = [sys.executable, "-m", "slmlab.course.memory_limit", str(path), "--", "sleep", "60"]
        child = subprocess.Popen(launcher)
        for _ in range(50):
            if group.pids():
                break
            time.sleep(0.1)
        assert group.pids() == [child.pid]
    assert child.wait(timeout=10) == -9 and not path.exists()


@pytest.mark.fast
def test_without_a_controller_the_error_says_what_to_do(monkeypatch):
    from slmlab.course import memory_limit

    monkeypatch.setattr(memory_limit, "own_cgroup_dirs", lambda controller="memory": [])
    with pytest.raises(SlmLabError, match="(?s)Cannot create a memory cgroup here.*podman run --memory 2g"):
        MemoryCgroup(GB).__enter__()
