"""slmlab deploy play, without podman: the played Deployments are the rendered ones but for one replica and
loopback ports; the objects podman does not run are named with the reason; the Secret is written so that podman
mounts the key itself, whatever its version."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest

from slmlab.containers.kube import secret_document
from slmlab.containers.runtime import Runtime
from slmlab.deploy import DeploymentSpec, render_to
from slmlab.deploy.play import BundlePlay, not_played
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


@pytest.fixture
def play(tmp_path: Path) -> BundlePlay:
    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path)
    return BundlePlay(tmp_path, Runtime("podman", "/nonexistent/podman"))


def test_the_played_deployment_changes_only_replicas_and_host_ports(play: BundlePlay) -> None:
    rendered = play._deployment("gateway")
    played = play.played_deployment("gateway")
    ports = played["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports[0]["hostIP"] == "127.0.0.1" and ports[0]["hostPort"] == play.host_ports["gateway"]
    expected = copy.deepcopy(rendered)
    expected["spec"]["replicas"] = 1
    expected["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(ports[0])
    assert played == expected and rendered["spec"]["replicas"] == 2
    assert play.changes == ["chat-gateway: replicas 2 -> 1",
                            f"chat-gateway: port 8080 published on 127.0.0.1:{play.host_ports['gateway']}"]


def test_the_gateway_config_is_the_rendered_one_until_an_engine_pod_exists(play: BundlePlay) -> None:
    config, deployment = play.documents("gateway", first=False)
    assert config["kind"] == "ConfigMap" and deployment["kind"] == "Deployment"
    assert config["data"]["SLMLAB_UPSTREAM_URL"] == "http://chat-engine.slm.svc:8080/v1"


def test_what_podman_does_not_run_is_named_with_the_reason(play: BundlePlay) -> None:
    skipped = dict(not_played(play.manifests))
    assert {"Service/chat-engine", "HorizontalPodAutoscaler/chat-engine", "NetworkPolicy/default-deny",
            "PodDisruptionBudget/chat-engine"} <= set(skipped)
    assert not any(s.startswith(("Deployment/", "ConfigMap/")) for s in skipped)
    assert "no Services" in skipped["Service/chat-engine"]


def test_the_secret_mounts_the_key_itself_on_old_and_new_podman() -> None:
    key = "0123456789abcdef" * 3
    assert secret_document("k", {"api-key": key}, (4, 3))["data"] == {"api-key": key}  # podman#16269
    new = secret_document("k", {"api-key": key}, (4, 9))["data"]["api-key"]
    assert base64.b64decode(new).decode() == key
    with pytest.raises(SlmLabError, match="before 4.4"):
        secret_document("k", {"api-key": "not base64!"}, (4, 3))


def test_docker_has_no_kube_play(tmp_path: Path) -> None:
    from slmlab.containers.kube import KubePlay

    with pytest.raises(SlmLabError, match="no `kube play`") as err:
        KubePlay(Runtime("docker", "/usr/bin/docker"), tmp_path / "x.yaml")
    assert "docker compose up" in err.value.hint
