"""The course's images built and run for real (slmlab.containers, slmlab deploy build / run / play): the local base
image made without a registry, the bundle's images built offline from the Dockerfiles the learner reads, the
engine and the gateway run with the manifests' securityContext and asked through the openai client, the rendered
Deployments played by `podman kube play` with their Secret and ConfigMap; and the failures a learner meets (a
container that exits, a build that fails, a port in use), each a clear message with nothing left running.

Needs a container runtime with the course's settings (`apt-get install podman runc catatonit debootstrap`, then
`slmlab setup containers`); the engine's tests also need llama.cpp's own server (`slmlab setup llamacpp`).
Without them the tests are skipped and say why.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from slmlab.containers import runtime as runtimes
from slmlab.containers.base_image import base_image_ref, ensure_base_image
from slmlab.containers.build import BuildRequest, build_image
from slmlab.containers.run import Container, ContainerSpec, secret_dir
from slmlab.deploy import DeploymentSpec, k8s, render_to
from slmlab.deploy.build import build_bundle
from slmlab.deploy.compose_up import BundleCompose
from slmlab.deploy.observe import bundle_prometheus, load_through
from slmlab.deploy.play import BundlePlay
from slmlab.deploy.run import BundleRun, ask, config_maps, container_spec, deployment
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
USABLE, RUNTIME_LINE = runtimes.availability()
needs_runtime = pytest.mark.skipif(not USABLE, reason=f"no usable container runtime: {RUNTIME_LINE}")
IMAGE_BUDGET_MB = {"gateway": 250, "engine": 300}  # the base is 133 MB; the GGUF 98 MB


def llama_server_missing() -> str:
    """Why the engine image cannot be built here ("" when it can)."""
    try:
        from slmlab.setup.llamacpp import llamacpp_available  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "slmlab.setup.llamacpp is not in this checkout"
    return "" if llamacpp_available() else "llama.cpp's programs are not built (run `slmlab setup llamacpp`)"


needs_engine = pytest.mark.skipif(bool(llama_server_missing()), reason=llama_server_missing() or "built")


@pytest.fixture(scope="module")
def rt() -> runtimes.Runtime:
    found = runtimes.find_runtime()
    ensure_base_image(found)  # cached: made by `slmlab setup containers`, seconds when it is there
    return found


@pytest.fixture(scope="module")
def bundle(rt: runtimes.Runtime, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A llama.cpp bundle (the bundled Q4_1 model) rendered and built offline; the engine only where it can be."""
    folder = tmp_path_factory.mktemp("bundle")
    render_to(DeploymentSpec(name="chat", model=MODEL, quantization="Q4_1", hardware="laptop-8gb"), folder)
    components = ("gateway",) if llama_server_missing() else ("engine", "gateway")
    built = build_bundle(folder, rt, offline=True, components=components, show_progress=False)
    for line in built.lines():
        print(line)
    return folder, {job.component: image for job, image in built.images}


def names_left(rt: runtimes.Runtime, what: list[str]) -> str:
    return rt.run([*what, "--format", "{{.Names}}" if what[0] == "ps" else "{{.Name}}"], check=False).stdout


@needs_runtime
def test_a_second_setup_reuses_everything_in_seconds(rt: runtimes.Runtime) -> None:
    from slmlab.containers.prepare import setup_containers

    begin = time.perf_counter()
    report = setup_containers(install=False, show_progress=False)
    assert time.perf_counter() - begin < 30, report.lines()
    assert report.base is not None and not report.base.built and report.base.ref == base_image_ref()
    assert "uid 10001, read-only" in report.lines()[-1]


@needs_runtime
def test_the_gateway_image_is_small_has_curl_and_no_compiler(rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    folder, images = bundle
    for component, image in images.items():
        assert image.size_mb < IMAGE_BUDGET_MB[component], (component, image.size_mb)
        assert rt.image_exists(image.tag)
    probe = rt.run(["run", "--rm", "--read-only", "--user", "10001:10001", "--entrypoint", "sh",
                    images["gateway"].tag, "-c", "curl --version | head -1; command -v gcc cc || echo no-compiler"])
    assert probe.stdout.startswith("curl ") and "no-compiler" in probe.stdout


@needs_runtime
def test_the_gateway_runs_hardened_and_reports_a_missing_engine(rt: runtimes.Runtime, bundle: tuple[Path, dict],
                                                                tmp_path: Path) -> None:
    folder, images = bundle
    manifests = k8s.load_dir(folder)
    keys = secret_dir(tmp_path / "private" / "secret", {"api-key": "k" * 32})
    spec = container_spec(deployment(manifests, "chat-gateway"), images["gateway"].tag, "slmlab-test-gateway",
                          keys, config_maps(manifests), {})
    with Container(rt, spec, ready_path="/healthz") as box:
        assert httpx.get(box.url() + "/readyz").status_code == 503  # no engine behind it
        asked = httpx.post(box.url() + "/v1/chat/completions", headers={"Authorization": "Bearer " + "k" * 32},
                           json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        assert asked.status_code in (502, 503), asked.text  # the engine is missing, not the request wrong
        info = box.inspect()
        assert info["HostConfig"]["ReadonlyRootfs"] and info["Config"]["User"] == "10001:10001"
        bindings = [b for ports in info["HostConfig"]["PortBindings"].values() for b in ports]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
        assert rt.run(["exec", box.name, "sh", "-c", "touch /x"], check=False).returncode != 0
    assert "slmlab-test-gateway" not in names_left(rt, ["ps", "-a"])


@needs_runtime
@needs_engine
def test_engine_and_gateway_answer_the_openai_client_hardened_as_the_manifests_say(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    folder, _ = bundle
    with BundleRun(folder, rt) as run:
        answer = ask(run.base_url, run.api_key, MODEL)
        assert answer["text"] and answer["completion_tokens"] > 0
        assert httpx.get(run.base_url + "/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert run.engine is not None
        info = run.engine.inspect()
        assert info["HostConfig"]["Memory"] == run.plan.memory_mi * 2**20
        assert info["HostConfig"]["NanoCpus"] == run.plan.cpu_millis * 10**6
        status = rt.output(["exec", run.engine.name, "sh", "-c", "id -u; grep CapEff /proc/1/status; "
                            "cat /run/secrets/slmlab/api-key; echo; touch /models/x 2>&1 || true"])
        assert status.splitlines()[:3] == ["10001", "CapEff:\t0000000000000000", run.api_key]
        assert "Read-only file system" in status
        names = (run.engine.name, run.gateway.name if run.gateway else "")
    left = names_left(rt, ["ps", "-a"])
    assert not any(name in left for name in names)


@needs_runtime
@needs_engine
def test_load_and_prometheus_go_through_the_gateway_container_to_the_engine_container(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    folder, _ = bundle
    with BundleRun(folder, rt) as run:
        assert ask(run.base_url, run.api_key, MODEL)["text"]  # the openai client, through the gateway
        with bundle_prometheus(run) as prom:  # the host's Prometheus, with the bundle's own scrape jobs
            load = load_through(run, prom, concurrency=2, num_requests=4, max_tokens=8)
            prometheus = prom
        print("\n".join(load.lines()))
        assert load.ok == 4, load.result.errors()
        assert sorted(load.targets["job"]) == ["gateway", "llamacpp-server"] and (load.targets["health"] == "up").all()
        assert load.counted["gateway chat requests (200)"] == 4  # Prometheus saw every request of the load
        generated = load.counted["engine generated tokens"]
        assert generated == load.counted["gateway completion tokens"] == load.result.requests["output_tokens"].sum()
        assert generated > 0
        # every image that carries the weights carries their licence (SmolLM2: Apache-2.0, its full text)
        assert "Apache License" in rt.output(["exec", run.engine.name if run.engine else "", "head", "-3",
                                              "/licenses/model/LICENSE"])
    assert not prometheus.running  # stopped, its config and data removed
    assert "chat-engine" not in names_left(rt, ["ps", "-a"])


@needs_runtime
@needs_engine
def test_kube_play_runs_the_rendered_deployments_with_the_key_from_the_secret(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    folder, _ = bundle
    with BundlePlay(folder, rt) as play:
        assert play.healthcheck("engine") == play.healthcheck("gateway") == "healthy"  # probes run as curl inside
        assert httpx.get(play.url("gateway") + "/readyz").status_code == 200  # the readiness probe's path
        assert ask(play.base_url, play.api_key, MODEL)["text"]
        engine = play.pods["engine"].containers[0]
        assert rt.output(["exec", engine, "cat", "/run/secrets/slmlab/api-key"]) == play.api_key
        info = play.inspect("engine")
        assert info["HostConfig"]["ReadonlyRootfs"] and info["Config"]["User"] == "10001:10001"
        assert info["HostConfig"]["Memory"] == play.plan.memory_mi * 2**20
        assert sorted(c.split(":")[0] for c in play.changes) == ["chat-engine", "chat-engine", "chat-gateway",
                                                                 "chat-gateway", "chat-gateway-config"]
    assert "chat-engine-pod" not in names_left(rt, ["pod", "ps"])
    assert "chat-api-keys" not in names_left(rt, ["secret", "ls"])
    assert "chat-api-keys" not in rt.run(["volume", "ls", "--format", "{{.Name}}"]).stdout


@needs_runtime
@needs_engine
def test_the_rendered_compose_file_runs_hardened_with_its_own_prometheus(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    folder, _ = bundle
    with BundleCompose(folder, rt) as up:  # podman-compose here, docker compose where a Docker daemon answers
        print("\n".join(up.notes))
        boxes = up.containers()
        assert sorted(boxes) == ["engine", "gateway", "prometheus"] and {b["state"] for b in boxes.values()} == {
            "running"}
        assert ask(up.base_url, up.api_key, MODEL)["text"]
        assert {row["job"]: row["health"] for row in up.prometheus_targets()} == {"gateway": "up",
                                                                                  "llamacpp-server": "up"}
        engine = rt.run(["inspect", boxes["engine"]["name"]]).stdout
        info = json.loads(engine)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] and info["Config"]["User"] == "10001:10001"
        assert info["HostConfig"]["Memory"] == up.plan.memory_mi * 2**20
        assert not [b for ports in (info["HostConfig"].get("PortBindings") or {}).values() for b in ports or []]
        inside = rt.output(["exec", boxes["engine"]["name"], "sh", "-c", "grep CapEff /proc/1/status; "
                            "curl -sS --max-time 3 http://deb.debian.org >/dev/null 2>&1 && echo out || echo no-route"])
        assert inside.splitlines() == ["CapEff:\t0000000000000000", "no-route"]  # compose's internal network
        project = up.project
    assert project + "_engine_1" not in names_left(rt, ["ps", "-a"])
    assert project + "_internal" not in rt.run(["network", "ls", "--format", "{{.Name}}"]).stdout
    assert project + "_prometheus-data" not in rt.run(["volume", "ls", "--format", "{{.Name}}"]).stdout


@needs_runtime
def test_a_container_that_exits_is_reported_with_its_output_and_removed(rt: runtimes.Runtime) -> None:
    spec = ContainerSpec(image=base_image_ref(), name="slmlab-test-exits", ports={8080: None},
                         args=["python3", "-c", "print('model file not found'); raise SystemExit(3)"])
    with pytest.raises(SlmLabError, match=r"(?s)exited \(code 3\).*model file not found"):
        Container(rt, spec, ready_path="/").start()
    assert "slmlab-test-exits" not in names_left(rt, ["ps", "-a"])


@needs_runtime
def test_an_unbuilt_bundle_says_to_build_it_first(rt: runtimes.Runtime, tmp_path: Path) -> None:
    render_to(DeploymentSpec(name="nobuild", quantization="Q4_1", image_tag="0.0.1-never-built"), tmp_path)
    with pytest.raises(SlmLabError, match="not built here") as err:
        BundleRun(tmp_path, rt).__enter__()
    assert f"slmlab deploy build {tmp_path}" in err.value.hint


@needs_runtime
def test_a_port_in_use_is_refused_before_anything_starts(rt: runtimes.Runtime) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ContainerSpec(image=base_image_ref(), name="slmlab-test-port", ports={8080: port})
        with pytest.raises(SlmLabError, match=f"Port {port} on 127.0.0.1 is already in use"):
            Container(rt, spec, ready_path="/").start()
    assert "slmlab-test-port" not in names_left(rt, ["ps", "-a"])


@needs_runtime
def test_a_failing_build_names_its_step_and_its_last_lines(rt: runtimes.Runtime, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image_ref()}\nRUN echo compiling the model server && "
                                         "echo 'error: no such file' && false\n")
    with pytest.raises(SlmLabError, match=r"(?s)failed at .*RUN echo compiling.*error: no such file") as err:
        build_image(rt, BuildRequest("localhost/slmlab-test-fails:1", tmp_path / "Dockerfile", tmp_path),
                    show_progress=False)
    assert "The whole log is" in err.value.hint


@needs_runtime
def test_the_ort_service_image_builds_offline_and_answers(rt: runtimes.Runtime,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    from slmlab.convert.onnx_quantize import expected_folder

    if not (expected_folder("int4", MODEL) / "genai_config.json").is_file():
        pytest.skip("the int4 ONNX folder is not built (run `slmlab setup onnx int4`)")
    folder = tmp_path_factory.mktemp("ort")
    render_to(DeploymentSpec(name="ort", engine="ort-service", model=MODEL, quantization="INT4",
                             hardware="laptop-8gb", replicas=1), folder)
    built = build_bundle(folder, rt, offline=True, components=("engine",), show_progress=False)
    print(built.lines())
    with BundleRun(folder, rt, components=("engine",)) as run:
        assert run.engine is not None
        answer = ask(run.engine.url() + "/v1", run.api_key, MODEL)
        assert answer["text"]
        assert json.loads(rt.output(["inspect", "--format", "{{json .HostConfig.ReadonlyRootfs}}", run.engine.name]))


@needs_runtime
@needs_engine
def test_memory_drill_the_computed_limit_holds_and_too_little_is_an_oom_kill(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    from slmlab.deploy.drills import memory_drill

    folder, _ = bundle
    trials = memory_drill(folder, rt, prompt_tokens=1000)
    for trial in trials:
        print(trial.line(), trial.kernel)
    computed, below, anonymous = trials
    assert computed.held and computed.load_peak_mi is not None and computed.load_peak_mi < computed.limit_mi
    assert computed.process_peak_mi is not None and computed.process_peak_mi < computed.limit_mi
    # 30 % below the footprint: held (the kernel takes back the mapped model's pages) or OOM-killed, and said so
    assert below.held or (below.oom_killed and below.exit_code == 137)
    # killed while the model loads or under the long request: when depends on how busy the machine is
    assert anonymous.oom_killed and anonymous.exit_code == 137, anonymous.outcome
    assert "killed by the kernel's OOM killer" in anonymous.outcome


@needs_runtime
@needs_engine
def test_fault_drill_the_engine_comes_back_and_a_retrying_client_loses_nothing(
        rt: runtimes.Runtime, bundle: tuple[Path, dict]) -> None:
    from slmlab.deploy.drills import fault_drill

    folder, _ = bundle
    drill = fault_drill(folder, rt, requests=6, kill_after=2)
    print("\n".join(drill.lines()))
    assert drill.restarts >= 1 and drill.down_seconds is not None and drill.down_seconds < 60
    assert drill.lost == 0
    assert drill.probe_statuses and drill.probe_statuses.get(502, 0) >= 1 and drill.retry_after == {"1"}
