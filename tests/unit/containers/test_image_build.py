"""Building an image: the CLI arguments (host network and CA mounts for podman, plain progress for docker) and the
progress read from both builders' step lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmlab.containers import build
from slmlab.containers.runtime import Runtime

pytestmark = pytest.mark.fast


def test_podman_builds_use_the_host_network_and_its_ca_bundle(tmp_path: Path) -> None:
    request = build.BuildRequest("t:1", Path("/b/Dockerfile"), Path("/b"), {"WEIGHTS": "context"})
    mounts = build.build_mounts(tmp_path)
    args = build.build_args(Runtime("podman", "podman"), request, mounts)
    assert args[:5] == ["build", "-f", "/b/Dockerfile", "-t", "t:1"] and args[-1] == "/b"
    assert "--network host" in " ".join(args) and "--build-arg WEIGHTS=context" in " ".join(args)
    if build.HOST_CA_BUNDLE.is_file():
        assert f"{build.HOST_CA_BUNDLE}:{build.HOST_CA_BUNDLE}:ro" in mounts
        assert (tmp_path / "pip.conf").read_text() == f"[global]\ncert = {build.HOST_CA_BUNDLE}\n"
    docker = build.build_args(Runtime("docker", "docker"), request, [])
    assert "--progress plain" in " ".join(docker) and "--network" not in docker


def test_progress_lines_of_podman_and_buildkit() -> None:
    assert build._step("[2/4] STEP 3/5: RUN pip install x") == (1, 4, "[2/4] STEP 3/5: RUN pip install x")
    assert build._step("STEP 3/7: COPY lib ./lib") == (3, 7, "STEP 3/7: COPY lib ./lib")
    assert build._step("#7 [app 3/5] RUN python3 -m venv /opt/venv") == (3, None,
                                                                         "[app 3/5] RUN python3 -m venv /opt/venv")
    assert build._step("Collecting fastapi==0.165.0") is None
