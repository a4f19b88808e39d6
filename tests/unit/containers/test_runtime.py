"""Which container CLI: a docker CLI whose daemon does not answer is not used; podman gets the course's
settings through CONTAINERS_CONF; no runtime at all is a clear error with the apt line."""

from __future__ import annotations

import stat

import pytest

from slmlab.containers import config, runtime
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def executable(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv(runtime.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    return folder


def test_no_runtime_at_all_says_how_to_install_one(bin_dir):
    with pytest.raises(SlmLabError, match="neither docker nor podman") as err:
        runtime.find_runtime()
    assert "apt-get install -y podman runc catatonit debootstrap" in err.value.hint


def test_a_docker_cli_without_a_daemon_is_skipped_for_podman(bin_dir):
    executable(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    with pytest.raises(SlmLabError, match="daemon does not answer"):
        runtime.find_runtime()
    executable(bin_dir, "podman", "echo podman version 4.3.1")
    assert runtime.detect() == ("podman", str(bin_dir / "podman"))


def test_docker_is_preferred_when_its_daemon_answers_unless_podman_is_asked_for(bin_dir, monkeypatch):
    executable(bin_dir, "docker", "echo 28.2.2")
    executable(bin_dir, "podman", "echo podman version 4.3.1")
    assert runtime.find_runtime().name == "docker"
    monkeypatch.setenv(runtime.RUNTIME_ENV, "podman")
    assert runtime.detect() == ("podman", str(bin_dir / "podman"))
    monkeypatch.setenv(runtime.RUNTIME_ENV, "nerdctl")
    with pytest.raises(SlmLabError, match="not a container CLI"):
        runtime.detect()


def test_podman_needs_the_course_settings_and_every_command_gets_them(bin_dir):
    executable(bin_dir, "podman", 'echo "conf=$CONTAINERS_CONF"')
    with pytest.raises(SlmLabError, match="slmlab setup containers"):
        runtime.find_runtime()
    config.write_config()
    found = runtime.find_runtime()
    assert found.output(["info"]) == f"conf={config.config_path()}"
    assert runtime.availability() == (True, f"conf={config.config_path()} (settings: {config.config_path()})")


def test_a_failing_command_names_what_failed_and_shows_its_last_lines(bin_dir):
    podman = executable(bin_dir, "podman", "echo 'Error: no such image' >&2; exit 125")
    rt = runtime.Runtime("podman", str(podman))
    with pytest.raises(SlmLabError, match="(?s)Starting x failed \\(exit 125\\).*no such image"):
        rt.run(["run", "x"], what="Starting x")
    assert rt.run(["run", "x"], check=False).returncode == 125
