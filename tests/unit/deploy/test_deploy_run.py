"""slmlab deploy run, without a runtime: the container flags come from the rendered manifests (securityContext,
volumes, limits, args, the ConfigMap), quantities are read as Kubernetes reads them, the key file is private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from slmlab.containers.run import ContainerSpec, run_args
from slmlab.deploy import DeploymentSpec, k8s, render_to
from slmlab.deploy.run import bundle_api_key, config_maps, container_spec, cores, deployment, mebibytes, ready_path
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def test_quantities() -> None:
    assert [mebibytes(q) for q in ("896Mi", "1Gi", "512M", "1048576")] == [896, 1024, 489, 1]
    assert [cores(q) for q in ("1500m", "2", "0.5")] == [1.5, 2.0, 0.5]
    for bad, read in (("1500m", mebibytes), ("lots", mebibytes), ("2Gi", cores)):
        with pytest.raises(SlmLabError):
            read(bad)


def test_the_flags_are_the_manifests_own(tmp_path: Path) -> None:
    spec = DeploymentSpec(name="chat", quantization="Q4_1")
    render_to(spec, tmp_path)
    plan, manifests = spec.plan(), k8s.load_dir(tmp_path)
    secret = tmp_path / "secret"
    engine = container_spec(deployment(manifests, "chat-engine"), "img:1", "chat-engine", secret,
                            config_maps(manifests), {"api-key": "k"})
    assert (engine.user, engine.read_only, engine.cap_drop_all, engine.no_new_privileges) == ("10001:10001", True,
                                                                                              True, True)
    assert engine.tmpfs == {"/tmp": "256m"} and engine.binds == {str(secret): "/run/secrets/slmlab"}
    assert engine.args == ["--api-key-file", "/run/secrets/slmlab/api-key"] and engine.env == {}
    assert (engine.memory_mb, engine.cpus, engine.ports) == (plan.memory_mi, plan.cpu_millis / 1000, {8080: None})
    gateway = container_spec(deployment(manifests, "chat-gateway"), "img:2", "chat-gateway", secret,
                             config_maps(manifests), {})
    assert gateway.env["SLMLAB_UPSTREAM_URL"] == "http://chat-engine.slm.svc:8080/v1"  # from the ConfigMap
    assert gateway.env["SLMLAB_API_KEYS_FILE"] == "/run/secrets/slmlab/api-key"
    assert ready_path(deployment(manifests, "chat-gateway")) == "/readyz"
    with pytest.raises(SlmLabError, match="no Deployment chat-nothing"):
        deployment(manifests, "chat-nothing")


def test_ports_are_published_on_loopback_only() -> None:
    args = run_args(ContainerSpec(image="img", name="x", ports={8080: None}, memory_mb=448, cpus=2,
                                  tmpfs={"/tmp": "64m"}, network="n", aliases=("a.b.svc",)), {8080: 40001})
    line = " ".join(args)
    assert "-p 127.0.0.1:40001:8080" in line and "--read-only" in line and "--cap-drop ALL" in line
    assert "--memory 448m --memory-swap 448m" in line and "--network-alias a.b.svc" in line
    assert args[-1] == "img" and "--tmpfs /tmp:rw,size=64m,mode=1777" in line


def test_the_bundle_key_file_is_private_and_reused(tmp_path: Path) -> None:
    key, path = bundle_api_key(tmp_path)
    assert len(key) == 48 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert bundle_api_key(tmp_path) == (key, path)


def test_prometheus_scrapes_the_containers_with_the_bundles_own_jobs(tmp_path: Path) -> None:
    from slmlab.deploy.observe import bundle_scrape_targets

    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path)
    addresses = {"gateway": "127.0.0.1:40001", "engine": "127.0.0.1:40002"}
    targets = {t.job: t for t in bundle_scrape_targets(tmp_path, addresses, "/run/key")}
    assert set(targets) == {"gateway", "llamacpp-server"}
    assert targets["gateway"].addresses == ("127.0.0.1:40001",) and not targets["gateway"].credentials_file
    engine = targets["llamacpp-server"].config()
    assert engine["authorization"] == {"type": "Bearer", "credentials_file": "/run/key"}  # /metrics needs the key
    assert engine["static_configs"] == [{"targets": ["127.0.0.1:40002"],
                                         "labels": {"deployment": "chat", "model": "smollm2-135m-instruct"}}]
    assert [t.job for t in bundle_scrape_targets(tmp_path, {"gateway": "127.0.0.1:1"})] == ["gateway"]
    with pytest.raises(SlmLabError, match="needs the API key as a file"):
        bundle_scrape_targets(tmp_path, addresses)
