"""Where no container runtime exists (Binder, a laptop without Docker): `slmlab doctor` says so in its runtime row,
every container command stops with the same clear message before starting anything, and the doctor row also tells
when podman runs without the course's settings in force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmlab.containers import config, runtime
from slmlab.deploy import DeploymentSpec, render_to
from slmlab.setup.container_checks import check_container_runtime, container_checks

pytestmark = pytest.mark.fast


@pytest.fixture
def no_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with only this Python's folder (no docker, no podman) and an empty cache."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv(runtime.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    return folder


def test_doctor_reports_no_runtime_with_the_install_line(no_runtime: Path) -> None:
    row = check_container_runtime()
    assert not row.ok and "neither docker nor podman" in row.detail
    assert "apt-get install -y podman" in row.fix and "Binder has no container runtime" in row.fix
    assert [c.name for c in container_checks()] == ["container runtime", "helm", "checkov"]


@pytest.mark.parametrize("command", [["run", "--check"], ["play", "--check"], ["compose", "--check"], ["build"]])
def test_every_container_command_stops_with_the_message_before_starting_anything(
        no_runtime: Path, tmp_path: Path, command: list[str]) -> None:
    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path / "bundle")
    done = subprocess.run([sys.executable, "-m", "slmlab.cli", "deploy", command[0], str(tmp_path / "bundle"),
                           *command[1:]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 2, done.stderr
    assert "error: No container runtime: neither docker nor podman is installed." in done.stderr
    assert "Traceback" not in done.stderr and "apt-get install -y podman" in done.stderr


def test_doctor_tells_when_podman_runs_without_the_course_settings(no_runtime: Path) -> None:
    podman = no_runtime / "podman"
    podman.write_text('#!/bin/sh\ncase "$1" in --version) echo podman version 4.3.1;; info) echo crun;; esac\n')
    podman.chmod(0o755)
    config.write_config()
    row = check_container_runtime()
    assert not row.ok and "crun" in row.detail and "slmlab setup containers" in row.fix
    podman.write_text('#!/bin/sh\ncase "$1" in --version) echo podman version 4.3.1;; info) echo runc;; esac\n')
    row = check_container_runtime()
    assert row.ok and row.detail.startswith("podman version 4.3.1, course settings in force (runc")
