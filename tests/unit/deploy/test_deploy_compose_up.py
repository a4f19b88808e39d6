"""slmlab deploy compose, without a runtime: the compose file's ports and Prometheus image are variables with the
rendered defaults, the key file is made readable for the containers' users inside its private folder, and a
missing podman-compose or a port in use is a clear message before anything starts."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import yaml

from slmlab.containers.runtime import Runtime
from slmlab.deploy import DeploymentSpec, render_to
from slmlab.deploy.compose_up import BundleCompose, compose_command, readable_key_file
from slmlab.deploy.images import PROMETHEUS_IMAGE
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def test_ports_and_the_prometheus_image_are_the_compose_files_own_variables(tmp_path: Path) -> None:
    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path)
    services = yaml.safe_load((tmp_path / "compose.yaml").read_text())["services"]
    assert services["gateway"]["ports"] == ["127.0.0.1:${GATEWAY_PORT:-8080}:8080"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"]
    assert services["prometheus"]["image"] == "${PROMETHEUS_IMAGE:-" + PROMETHEUS_IMAGE + "}"
    assert "ports" not in services["engine"]  # reachable only on the internal network


def test_the_key_file_is_readable_by_the_containers_users_in_a_private_folder(tmp_path: Path) -> None:
    key, path = readable_key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert readable_key_file(tmp_path) == (key, path)


def test_without_podman_compose_the_message_says_what_to_install(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no podman-compose beside this Python
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlmLabError, match="podman-compose is not installed") as err:
        compose_command(Runtime("podman", "/usr/bin/podman"))
    assert "podman-compose==" in err.value.hint


def test_a_gateway_port_in_use_is_refused_before_compose_starts(tmp_path: Path) -> None:
    import socket

    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = BundleCompose(tmp_path, Runtime("podman", "/nonexistent/podman"), services=("gateway",),
                           gateway_port=port)
        with pytest.raises(SlmLabError, match=f"Port {port} on 127.0.0.1 is already in use"):
            up._environment()
