"""slmlab.deploy: one spec -> Dockerfiles, compose, Prometheus, Kubernetes manifests, all validated.

Every engine renders on a CPU preset (and the GPU engines on a GPU preset), and every artifact passes
hadolint, the Compose schema, the Kubernetes schemas (kubernetes-validate, strict) and the policy checker.
Bad specs are rejected with their reason before anything is written; broken artifacts are caught by the
checker that should catch them.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import yaml

from slmlab.deploy import (
    DeploymentSpec,
    SpecError,
    check_dir,
    check_text,
    compose,
    docker,
    k8s,
    load_spec,
    memory_request_mi,
    policy,
    render_all,
    render_to,
)
from slmlab.errors import SlmLabError
from slmlab.monitoring import promtool
from slmlab.monitoring.promtool import promtool_path

pytestmark = pytest.mark.fast

CASES = {
    "llamacpp-server-cpu": dict(engine="llamacpp-server", quantization="Q4_K_M", hardware="laptop-8gb"),
    "llamacpp-server-gpu": dict(engine="llamacpp-server", quantization="Q8_0", hardware="t4"),
    "ollama-cpu": dict(engine="ollama", quantization="Q4_K_M", hardware="raspberry-pi-5", auth="none"),
    "ollama-gpu": dict(engine="ollama", quantization="Q4_K_M", hardware="l4", model="qwen3-1.7b"),
    "vllm-cpu": dict(engine="vllm", quantization="F32", hardware="laptop-16gb"),
    "vllm-gpu": dict(engine="vllm", quantization="BF16", hardware="l4", model="qwen3-4b", context=8192),
    "ort-service-cpu": dict(engine="ort-service", quantization="INT4", hardware="binder-2gb", replicas=1),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case rendered once into its own folder."""
    out = {}
    for case, fields in CASES.items():
        folder = tmp_path_factory.mktemp(case)
        render_to(DeploymentSpec(name="chat", **fields), folder)
        out[case] = folder
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_artifact_passes_every_checker(rendered: dict[str, Path], case: str) -> None:
    report = check_dir(rendered[case])
    assert report.ok, report.summary()
    promtool = {"promtool": 2} if promtool_path() else {}
    assert report.checked == {"hadolint": 2, "compose schema": 1, "kubernetes schemas": 15, "policy": 15, **promtool}


@pytest.mark.parametrize("case", list(CASES))
def test_bundle_has_every_artifact(rendered: dict[str, Path], case: str) -> None:
    folder = rendered[case]
    kinds = sorted(m.kind for m in k8s.load_dir(folder))
    assert kinds == sorted(["Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Deployment", "Service",
                            "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodDisruptionBudget",
                            "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "Role", "RoleBinding"])
    role = next(m.data for m in k8s.load_dir(folder) if m.kind == "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    compose_file = yaml.safe_load((folder / "compose.yaml").read_text())
    assert set(compose_file["services"]) == {"engine", "gateway", "prometheus"}
    prom = yaml.safe_load((folder / "prometheus" / "prometheus.yml").read_text())
    assert "gateway" in [job["job_name"] for job in prom["scrape_configs"]]
    assert (folder / "docker" / "Modelfile").exists() == case.startswith("ollama")


def test_engine_facts_in_the_artifacts(rendered: dict[str, Path]) -> None:
    vllm = (rendered["vllm-gpu"] / "docker" / "engine.Dockerfile").read_text()
    assert "FROM vllm/vllm-openai:v" in vllm and "--gpu-memory-utilization" in vllm and ":latest" not in vllm
    vllm_cpu = (rendered["vllm-cpu"] / "docker" / "engine.Dockerfile").read_text()
    assert "vllm-cpu-release-repo:v" in vllm_cpu and "VLLM_CPU_KVCACHE_SPACE=" in vllm_cpu
    ollama = (rendered["ollama-cpu"] / "docker" / "engine.Dockerfile").read_text()
    assert "FROM ollama/ollama:0." in ollama and "EXPOSE 11434" in ollama
    llama = (rendered["llamacpp-server-gpu"] / "docker" / "engine.Dockerfile").read_text()
    assert "ARG SERVER_IMAGE=ghcr.io/ggml-org/llama.cpp:server-cuda-b" in llama and "/health" in llama
    assert "\nFROM ${SERVER_IMAGE}\n" in llama
    for case, folder in rendered.items():
        deployment = next(m for m in k8s.load_dir(folder) if m.kind == "Deployment" and m.name == "chat-engine")
        container = deployment.data["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] in ("/health", "/", "/healthz"), case
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == case.endswith("-gpu"), case


def test_api_keys_are_secret_references_never_values(rendered: dict[str, Path]) -> None:
    text = "\n".join(p.read_text() for p in sorted((rendered["vllm-gpu"] / "k8s").glob("*.yaml")))
    assert "secretKeyRef" in text and "kind: Secret\n" not in text  # vLLM reads its key only from VLLM_API_KEY
    for case in ("llamacpp-server-cpu", "vllm-gpu"):
        env = next(m for m in k8s.load_dir(rendered[case]) if m.name == "chat-engine" and m.kind == "Deployment")
        variables = env.data["spec"]["template"]["spec"]["containers"][0].get("env", [])
        assert all("value" not in v for v in variables if v["name"].endswith("API_KEY"))


def test_llama_server_reads_its_key_from_the_mounted_secret_file(rendered: dict[str, Path]) -> None:
    engine = next(m for m in k8s.load_dir(rendered["llamacpp-server-cpu"])
                  if m.name == "chat-engine" and m.kind == "Deployment").data["spec"]["template"]["spec"]
    container = engine["containers"][0]
    assert "env" not in container and container["args"] == ["--api-key-file", "/run/secrets/slmlab/api-key"]
    mount = next(v for v in container["volumeMounts"] if v["mountPath"] == "/run/secrets/slmlab")
    volume = next(v for v in engine["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["secret"]["secretName"] == "chat-api-keys"
    service = yaml.safe_load((rendered["llamacpp-server-cpu"] / "compose.yaml").read_text())["services"]["engine"]
    assert service["command"] == ["--api-key-file", "/run/secrets/api_keys"] and service["secrets"] == ["api_keys"]
    assert "environment" not in service


def test_memory_request_is_sized_from_the_footprint() -> None:
    plan = DeploymentSpec(engine="llamacpp-server", quantization="Q4_K_M", hardware="laptop-8gb", context=4096,
                          parallel=2).plan()
    fp = plan.footprint
    expected = memory_request_mi(fp.weights_gb + 2 * fp.kv_cache_gb + fp.overhead_gb)
    assert plan.memory_mi == expected and plan.memory_mi % 64 == 0
    assert expected * 2**20 >= (fp.weights_gb + 2 * fp.kv_cache_gb + fp.overhead_gb) * 1e9 * 1.2
    # more parallel requests need more KV cache, so more memory
    assert DeploymentSpec(engine="llamacpp-server", quantization="Q4_K_M", hardware="laptop-8gb",
                          parallel=8).plan().memory_mi > plan.memory_mi
    manifest = render_all(plan)["k8s/02-engine-deployment.yaml"]
    resources = yaml.safe_load(manifest)["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == f"{plan.memory_mi}Mi"


BAD_SPECS = {
    "memory beyond the preset": (dict(model="qwen3-8b", engine="llamacpp-server", quantization="F16",
                                      hardware="binder-2gb", cpus=1), "hardware", "binder-2gb has 2048 MiB"),
    "GPU engine on a CPU preset": (dict(engine="vllm", quantization="F16", hardware="laptop-8gb", gpus=1),
                                   "gpus", "CPU-only preset"),
    "missing model": (dict(model="smollm9-1b"), "model", "not in the catalog"),
    "unknown engine": (dict(engine="tgi"), "engine", "unknown engine 'tgi'"),
    "GPU model beyond VRAM": (dict(engine="vllm", model="qwen3-14b", quantization="BF16", hardware="l4"),
                              "hardware", "of GPU memory"),
    "GGUF quant for vLLM": (dict(engine="vllm", quantization="Q4_K_M", hardware="laptop-16gb"),
                            "quantization", "not a quantization"),
    "bf16 on a T4": (dict(engine="vllm", quantization="BF16", hardware="t4"), "quantization", "bfloat16"),
    "Apple GPU in a container": (dict(hardware="mac-m2-16gb", gpus=1), "gpus", "Metal"),
    "privileged port": (dict(port=80), "port", "non-root"),
    "latest tag": (dict(image_tag="latest"), "image_tag", "not a pinned image tag"),
    "scale on requests without metrics": (dict(engine="ollama", scale_on="requests"), "scale_on", "exports no metrics"),
    "unknown scaling signal": (dict(scale_on="queue"), "scale_on", "unknown 'queue'"),
    "zero requests per pod": (dict(scale_on="requests", target_requests=0), "target_requests", "must be a number > 0"),
    "scale on the GPU of a CPU deployment": (dict(scale_on="gpu"), "scale_on", "needs a GPU deployment"),
    "GPU target above 100": (dict(target_gpu_percent=120), "target_gpu_percent", "whole number 1-100"),
    "unknown VPA mode": (dict(vpa_mode="Sometimes"), "vpa_mode", "unknown updateMode 'Sometimes'"),
    "VPA and CPU HPA fighting": (dict(vpa_mode="Recreate"), "vpa_mode", "would fight"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_rejected_with_reason_before_rendering(case: str, tmp_path: Path) -> None:
    fields, field, reason = BAD_SPECS[case]
    spec = DeploymentSpec(**fields)
    with pytest.raises(SpecError) as info:
        render_to(spec, tmp_path / "out")
    assert any(p.field == field and reason in p.reason for p in info.value.problems), info.value.problems
    assert reason in str(info.value) and "What to do:" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing rendered
    assert spec.problems() == info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    problems = DeploymentSpec(engine="tgi", model="nope", port=22, replicas=0).problems()
    assert {p.field for p in problems} == {"engine", "model", "port", "replicas"}


def test_spec_yaml_rejects_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("engine: ollama\nquantisation: Q4_K_M\n")
    with pytest.raises(SpecError, match="quantisation: unknown field") as info:
        load_spec(path)
    assert "Did you mean 'quantization'" in str(info.value)
    with pytest.raises(SlmLabError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def windows_text(text: str) -> bytes:
    """`text` as Windows Notepad saves it: a UTF-8 byte-order mark, CRLF line ends."""
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")


def test_a_spec_written_on_windows_loads_like_a_plain_one(tmp_path: Path) -> None:
    text = "# my deployment\nname: chat\nengine: ollama\nquantization: Q4_K_M\nhardware: raspberry-pi-5\nauth: none\n"
    plain, windows = tmp_path / "plain.yaml", tmp_path / "windows.yaml"
    plain.write_text(text, encoding="utf-8")
    windows.write_bytes(windows_text(text))
    assert windows.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in windows.read_bytes()
    assert load_spec(windows) == load_spec(plain) == DeploymentSpec(**CASES["ollama-cpu"], name="chat")
    assert render_all(load_spec(windows)) == render_all(load_spec(plain))
    windows.write_bytes(windows_text("engine: ollama\nquantisation: Q4_K_M\n"))  # a typo still names its field
    with pytest.raises(SpecError, match="quantisation: unknown field"):
        load_spec(windows)
    windows.write_bytes("name: chat\r\nregistry: registry.example.com/größe\r\n".encode("cp1252"))  # "ANSI"
    with pytest.raises(SlmLabError, match=r"windows.yaml is not UTF-8 text \(line 2") as info:
        load_spec(windows)
    assert "Save it as UTF-8" in str(info.value)


def test_a_bundle_edited_on_windows_checks_like_the_rendered_one(rendered: dict[str, Path], tmp_path: Path) -> None:
    source = rendered["llamacpp-server-cpu"]
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        copy_to = tmp_path / path.relative_to(source)
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        copy_to.write_bytes(windows_text(path.read_text(encoding="utf-8")))
    report = check_dir(tmp_path)
    assert report.ok, report.summary()
    assert report.checked == check_dir(source).checked


def test_serving_images_are_looked_up_by_engine_name() -> None:
    from slmlab.deploy import SERVING_IMAGES, get_serving_image

    assert get_serving_image(" Ollama ") is SERVING_IMAGES["ollama"]
    with pytest.raises(SlmLabError, match="Did you mean 'llamacpp-server'") as info:
        get_serving_image("llamacpp-servr")
    assert "Engines: vllm, ollama, llamacpp-server, ort-service." in str(info.value)
    problems = DeploymentSpec(engine="olama").problems()
    assert [(p.field, p.hint) for p in problems] == [
        ("engine", "Did you mean 'ollama'? Engines: vllm, ollama, llamacpp-server, ort-service")]


def test_every_checker_reports_the_same_finding_record(tmp_path: Path) -> None:
    from slmlab.deploy import Finding

    files = render_all(DeploymentSpec(name="chat", **CASES["llamacpp-server-cpu"]))
    files["docker/gateway.Dockerfile"] = files["docker/gateway.Dockerfile"].replace("HEALTHCHECK", "# HEALTHCHECK")
    compose_doc = yaml.safe_load(files["compose.yaml"])
    compose_doc["services"]["engine"]["read_onyl"] = True
    files["compose.yaml"] = yaml.safe_dump(compose_doc)
    from slmlab.deploy import write_bundle

    write_bundle(files, tmp_path)
    report = check_dir(tmp_path)
    found = [f for checker in report.findings.values() for f in checker]
    assert found and all(isinstance(f, Finding) for f in found)
    assert [str(f) for f in report.compose] == [
        "compose.yaml: services.engine: Unevaluated properties are not allowed ('read_onyl' was unexpected) "
        "[unevaluatedProperties]"]
    assert "docker/gateway.Dockerfile: the final stage needs a HEALTHCHECK [SLM002]" in [str(f) for f in report.lint]
    table = report.table()
    assert list(table.columns) == ["checker", "file", "object", "where", "rule", "severity", "message"]
    assert set(table["checker"]) == {"hadolint", "compose schema"} and len(table) == len(found)
    assert "✗ compose schema: 1 file(s), 1 problem(s)" in report.summary()


INSECURE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: chat
  namespace: slm
spec:
  replicas: 1
  selector:
    matchLabels: {app: chat}
  template:
    metadata:
      labels: {app: chat}
    spec:
      hostNetwork: true
      containers:
        - name: ollama
          image: ollama/ollama:latest
          ports:
            - containerPort: 11434
              hostPort: 11434
          env:
            - name: OLLAMA_API_KEY
              value: sk-not-a-real-key
          securityContext:
            privileged: true
            runAsUser: 0
            capabilities:
              add: ["SYS_ADMIN"]
          volumeMounts:
            - {name: models, mountPath: /root/.ollama}
      volumes:
        - name: models
          hostPath: {path: /var/lib/ollama}
"""

INSECURE_VIOLATIONS = {
    ("spec.template.spec.hostNetwork", "host-namespaces"),
    ("spec.template.spec.automountServiceAccountToken", "service-account-token"),
    ("spec.template.spec.volumes[0].hostPath", "host-path"),
    ("spec.template.spec.containers[0].image", "image-pinned"),
    ("spec.template.spec.containers[0].securityContext.privileged", "privileged"),
    ("spec.template.spec.containers[0].securityContext.runAsNonRoot", "run-as-non-root"),
    ("spec.template.spec.containers[0].securityContext.runAsUser", "run-as-root-uid"),
    ("spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation", "privilege-escalation"),
    ("spec.template.spec.containers[0].securityContext.capabilities.drop", "drop-all-capabilities"),
    ("spec.template.spec.containers[0].securityContext.capabilities.add", "added-capabilities"),
    ("spec.template.spec.containers[0].securityContext.seccompProfile.type", "seccomp"),
    ("spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem", "read-only-root-fs"),
    ("spec.template.spec.containers[0].resources.requests.cpu", "resources"),
    ("spec.template.spec.containers[0].resources.requests.memory", "resources"),
    ("spec.template.spec.containers[0].resources.limits.memory", "resources"),
    ("spec.template.spec.containers[0].livenessProbe", "probes"),
    ("spec.template.spec.containers[0].readinessProbe", "probes"),
    ("spec.template.spec.containers[0].env[0].value", "secret-in-env"),
    ("spec.template.spec.containers[0].ports[0].hostPort", "host-port"),
    ("spec.template.metadata.labels", "network-policy"),
}


def test_insecure_manifest_yields_exactly_its_violations() -> None:
    violations = check_text(INSECURE, "insecure.yaml", with_bundle_rules=True)
    assert {(v.where, v.rule) for v in violations} == INSECURE_VIOLATIONS
    assert len(violations) == len(INSECURE_VIOLATIONS)
    assert all(v.file == "insecure.yaml" and v.subject == "Deployment/chat" and v.severity == "error"
               for v in violations)
    text = policy.report(violations)
    assert "insecure.yaml: Deployment/chat: spec.template.spec.containers[0].securityContext.runAsNonRoot" in text
    # the schema accepts it: a valid manifest can still be an insecure one
    assert k8s.validate_all(k8s.load_manifests(INSECURE, "insecure.yaml")) == []


def test_pod_level_security_context_counts_for_its_containers(rendered: dict[str, Path]) -> None:
    engine = next(m for m in k8s.load_dir(rendered["ollama-cpu"]) if m.kind == "Deployment")
    data = copy.deepcopy(engine.data)
    container_sc = data["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    del container_sc["runAsNonRoot"], container_sc["seccompProfile"]  # still set at pod level
    assert policy.check_manifest(k8s.Manifest("x.yaml", 0, data)) == []
    data["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    assert [v.rule for v in policy.check_manifest(k8s.Manifest("x.yaml", 0, data))] == ["run-as-non-root"]


def test_check_dir_names_the_file_of_a_tampered_manifest(rendered: dict[str, Path], tmp_path: Path) -> None:
    files = render_all(DeploymentSpec(name="chat", **CASES["llamacpp-server-cpu"]))
    config, doc = yaml.safe_load_all(files["k8s/03-gateway-deployment.yaml"])  # the gateway's ConfigMap, Deployment
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    files["k8s/03-gateway-deployment.yaml"] = yaml.safe_dump_all([config, doc])
    files["docker/engine.Dockerfile"] = files["docker/engine.Dockerfile"].replace("USER 10001:10001", "USER root")
    from slmlab.deploy import write_bundle

    write_bundle(files, tmp_path)
    report = check_dir(tmp_path)
    assert not report.ok
    assert [str(v) for v in report.policy] == [
        "k8s/03-gateway-deployment.yaml: Deployment/chat-gateway: "
        "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem: must be true "
        "(write only to mounted volumes) [read-only-root-fs]"]
    assert {f.rule for f in report.lint} == {"DL3002", "DL3066", "SLM001"}
    assert all(f.file == "docker/engine.Dockerfile" and f.where.startswith("line ") for f in report.lint)
    assert report.kubernetes == [] and report.compose == []


def test_hadolint_and_course_rules_catch_a_bad_dockerfile() -> None:
    bad = "FROM python:latest\nENV OPENAI_API_KEY=sk-abc\nRUN pip install fastapi\nCMD [\"python\"]\n"
    codes = {f.rule for f in docker.lint(bad)}
    assert {"DL3007", "DL3013", "DL3042", "DL3064", "SLM001", "SLM002"} <= codes
    assert docker.hadolint_path().name.startswith("hadolint")


def test_schemas_catch_typos() -> None:
    errors = compose.validate_compose({"services": {"engine": {"image": "x:1", "read_onyl": True}}})
    assert errors and errors[0].where == "services.engine" and "read_onyl" in errors[0].message
    assert errors[0].rule == "unevaluatedProperties" and str(errors[0]).startswith("compose.yaml: services.engine: ")
    data = yaml.safe_load(INSECURE)
    data["spec"]["replica"] = 2  # a typo of "replicas": strict schemas reject unknown fields
    problems = k8s.validate_manifest(k8s.Manifest("d.yaml", 0, data))
    assert len(problems) == 1 and problems[0].where == "spec" and "'replica' was unexpected" in problems[0].message
    assert problems[0].subject == "Deployment/chat" and problems[0].file == "d.yaml"


@pytest.mark.skipif(promtool_path() is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_catches_a_broken_prometheus_config(tmp_path: Path) -> None:
    files = render_all(DeploymentSpec(name="chat", **CASES["vllm-cpu"]))
    files["prometheus/prometheus.yml"] = files["prometheus/prometheus.yml"].replace("scrape_interval", "scrape_intervl")
    from slmlab.deploy import write_bundle

    write_bundle(files, tmp_path)
    report = check_dir(tmp_path)
    assert not report.ok and report.policy == [] and report.lint == []
    assert len(report.prometheus) == 1 and report.prometheus[0].file == "prometheus/prometheus.yml"
    assert "scrape_intervl" in report.prometheus[0].message and report.prometheus[0].rule == "promtool"


def test_cli_render_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from slmlab.cli.deploy import register

    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(DeploymentSpec(name="chat", **CASES["ollama-cpu"]).to_dict()))
    args = parser.parse_args(["deploy", "render", str(spec), "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert "✓ policy: 15 object(s), 0 problem(s)" in capsys.readouterr().out
    args = parser.parse_args(["deploy", "check", str(tmp_path / "out")])
    assert args.func(args) == 0
    with pytest.raises(SlmLabError, match="not a folder"):
        check_dir(tmp_path / "nowhere")


SCALE_ON_REQUESTS = {
    "llamacpp-server-cpu": ("llamacpp:requests_processing", "llamacpp:requests_deferred"),
    "vllm-cpu": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "ort-service-cpu": ("slmlab_generations_running", "slmlab_generations_waiting"),
}


@pytest.mark.parametrize("case", list(SCALE_ON_REQUESTS))
def test_scaling_on_requests_renders_a_pods_metric_hpa_and_its_adapter_rule(case: str, tmp_path: Path) -> None:
    from slmlab.deploy.spec import LOAD_METRIC

    render_to(DeploymentSpec(name="chat", scale_on="requests", target_requests=1.5, **CASES[case]), tmp_path)
    report = check_dir(tmp_path)
    assert report.ok, report.summary()
    hpa = next(m.data for m in k8s.load_dir(tmp_path) if m.kind == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": LOAD_METRIC},
                                                                "target": {"type": "AverageValue",
                                                                           "averageValue": "1500m"}}}]
    values = yaml.safe_load((tmp_path / "helm" / "prometheus-adapter-values.yaml").read_text())
    rule = values["rules"]["custom"][0]
    assert rule["name"]["as"] == LOAD_METRIC and values["rules"]["default"] is False
    assert all(f"{gauge}{{<<.LabelMatchers>>}}" in rule["metricsQuery"] for gauge in SCALE_ON_REQUESTS[case])
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    # the adapter needs namespace and pod labels: Prometheus scrapes each engine pod and labels it so
    prom = yaml.safe_load((tmp_path / "prometheus" / "prometheus-kubernetes.yml").read_text())
    engine_job = next(job for job in prom["scrape_configs"] if job["job_name"] != "gateway")
    assert {r.get("target_label") for r in engine_job["relabel_configs"]} >= {"namespace", "pod"}
    assert LOAD_METRIC in (tmp_path / "NOTES.md").read_text()


def test_scaling_on_the_gpu_renders_a_dcgm_hpa_and_an_adapter_rule_on_exported_pod_labels(tmp_path: Path) -> None:
    from slmlab.deploy.spec import GPU_METRIC

    render_to(DeploymentSpec(name="chat", scale_on="gpu", target_gpu_percent=80, **CASES["vllm-gpu"]), tmp_path)
    report = check_dir(tmp_path)
    assert report.ok, report.summary()
    hpa = next(m.data for m in k8s.load_dir(tmp_path) if m.kind == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": GPU_METRIC},
                                                                "target": {"type": "AverageValue",
                                                                           "averageValue": "80"}}}]
    rule = yaml.safe_load((tmp_path / "helm" / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"][0]
    assert rule["seriesQuery"] == '{__name__="DCGM_FI_DEV_GPU_UTIL",exported_namespace="slm",exported_pod!=""}'
    assert rule["resources"]["overrides"] == {"exported_namespace": {"resource": "namespace"},
                                              "exported_pod": {"resource": "pod"}}
    assert rule["name"]["as"] == GPU_METRIC
    notes = (tmp_path / "NOTES.md").read_text()
    assert "DCGM_EXPORTER_KUBERNETES=true" in notes and GPU_METRIC in notes


def test_a_vpa_is_rendered_only_on_request_and_checked_against_its_crd_schema(tmp_path: Path) -> None:
    assert not any("vpa" in path for path in render_all(DeploymentSpec(name="chat")))
    spec = DeploymentSpec(name="chat", scale_on="requests", vpa_mode="InPlaceOrRecreate")
    render_to(spec, tmp_path)
    assert check_dir(tmp_path).ok, check_dir(tmp_path).summary()
    vpa = next(m for m in k8s.load_dir(tmp_path) if m.kind == "VerticalPodAutoscaler")
    assert vpa.path == "k8s/09-vpa.yaml" and k8s.validate_manifest(vpa) == []
    policy = vpa.data["spec"]["resourcePolicy"]["containerPolicies"][0]
    assert policy["minAllowed"]["memory"] == spec.plan().memory  # never below the model's footprint
    assert vpa.data["spec"]["updatePolicy"]["updateMode"] == "InPlaceOrRecreate"
    misspelt = copy.deepcopy(vpa.data)
    misspelt["spec"]["updatePolicy"] = {"updatemode": "Off"}  # strict, as kubectl --validate=strict
    misspelt["spec"]["resourcePolicy"]["containerPolicies"][0]["controlledValues"] = "Everything"
    found = k8s.validate_manifest(k8s.Manifest("vpa.yaml", 0, misspelt))
    assert len(found) == 2 and any("updatemode" in f.message for f in found), found
    assert any("Everything" in f.message for f in found), found
    # a CPU HPA and a VPA that only recommends (Off) may live together
    assert DeploymentSpec(vpa_mode="Off").problems() == []


def test_scaling_on_cpu_renders_no_adapter_and_parallel_is_the_default_target() -> None:
    files = render_all(DeploymentSpec(name="chat", **CASES["vllm-cpu"]))
    assert not any(path.startswith("helm/prometheus-adapter") for path in files)  # (the bundle's chart is there)
    assert "averageUtilization: 70" in files["k8s/05-hpa.yaml"]
    assert DeploymentSpec(scale_on="requests", parallel=3).plan().target_requests == 3.0


@pytest.mark.skipif(promtool_path() is None, reason="promtool not installed (apt-get install prometheus)")
def test_adapter_check_catches_a_broken_query_and_a_missing_rule() -> None:
    from slmlab.deploy.adapter import VALUES_PATH, check_adapter_values

    text = render_all(DeploymentSpec(name="chat", scale_on="requests"))[VALUES_PATH]
    assert check_adapter_values(text) == []
    broken = text.replace("sum by (<<.GroupBy>>) (llamacpp:requests_deferred",
                          "sum by (<<.GroupBy>> (llamacpp:requests_deferred")
    assert broken != text
    problems = check_adapter_values(broken)
    assert len(problems) == 1 and problems[0].file == VALUES_PATH and "parse error" in problems[0].message
    assert problems[0].where == "rules.custom[0].metricsQuery" and problems[0].rule == "promql"
    missing = check_adapter_values("rules: {default: false}")
    assert missing[0].where == "rules.custom" and "lists no rule" in missing[0].message
    gpu = render_all(DeploymentSpec(name="chat", scale_on="gpu", **CASES["vllm-gpu"]))[VALUES_PATH]
    assert check_adapter_values(gpu) == []
    broken_gpu = check_adapter_values(gpu.replace("avg by (<<.GroupBy>>)", "avg by (<<.GroupBy>>"))
    assert [p.where for p in broken_gpu] == ["rules.custom[0].metricsQuery"]


@pytest.mark.skipif(promtool_path() is None, reason="promtool not installed (apt-get install prometheus)")
def test_kubernetes_prometheus_config_is_checked_even_where_promtool_lacks_kubernetes_discovery(tmp_path: Path) -> None:
    files = render_all(DeploymentSpec(name="chat", **CASES["vllm-cpu"]))
    path = "prometheus/prometheus-kubernetes.yml"
    files[path] = files[path].replace("action: keep", "action: keepit")  # an error outside kubernetes_sd_configs
    from slmlab.deploy import write_bundle

    write_bundle(files, tmp_path)
    report = check_dir(tmp_path)
    assert len(report.prometheus) == 1 and report.prometheus[0].file == path
    assert "keepit" in report.prometheus[0].message
    lacks_kubernetes_sd = promtool.K8S_SD_MISSING in " ".join(
        promtool.complaints(promtool.run_promtool("check", "config", "--syntax-only", str(tmp_path / path)),
                            tmp_path / path))
    assert any(note == f"{path}: {promtool.K8S_SD_NOTE}" for note in report.notes) == lacks_kubernetes_sd
