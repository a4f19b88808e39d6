"""The bundle's Helm chart with the official helm (`slmlab setup helm`): `helm lint` passes, and `helm template`
gives back the rendered manifests (Helm's own labels added) for every engine, which then pass the same checks:
the Kubernetes schemas, the course's policy and checkov. Values reach the objects (replicas, an image digest)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec, k8s, render_to
from slmlab.deploy.helm_chart import chart_dir
from slmlab.deploy.helm_check import check_chart, lint_chart, template_chart
from slmlab.deploy.render import bundle_plan
from slmlab.setup.checkov_env import checkov_available
from slmlab.setup.helm import helm_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not helm_available(), reason="helm is not set up (slmlab setup helm)")]
BASE = DeploymentSpec(name="chat", model="smollm2-135m-instruct", quantization="Q4_K_M", hardware="laptop-16gb")
BUNDLES = {"llamacpp-server": {}, "llamacpp-server-no-auth": dict(auth="none", name="open"),
           "vllm-gpu": dict(engine="vllm", quantization="F16", hardware="t4", gpus=1, namespace="inference"),
           "ollama": dict(engine="ollama"), "ort-service": dict(engine="ort-service", quantization="INT4"),
           "scale-on-requests": dict(scale_on="requests")}
HELM_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")


def without_helm_labels(data: dict) -> dict:
    data = copy.deepcopy(data)
    labels = (data.get("metadata") or {}).get("labels") or {}
    for key in HELM_LABELS:
        labels.pop(key, None)
    return data


@pytest.mark.parametrize("name", list(BUNDLES))
def test_helm_template_gives_back_the_rendered_manifests_and_they_pass_every_check(tmp_path: Path, name: str) -> None:
    render_to(BASE.replace(**BUNDLES[name]), tmp_path)
    plan = bundle_plan(tmp_path)
    scan = name in ("llamacpp-server", "vllm-gpu") and checkov_available()  # checkov takes seconds: two of them
    report = check_chart(tmp_path, scan=scan)
    assert report.ok, report.summary()
    assert report.checked["kubernetes schemas"] == len(k8s.load_dir(tmp_path))
    rendered = {m.subject: m.data for m in k8s.load_dir(tmp_path)}
    templated = k8s.load_manifests(template_chart(tmp_path / chart_dir(plan), plan.spec.name, plan.spec.namespace))
    assert {m.subject for m in templated} == set(rendered)
    for manifest in templated:
        labels = (manifest.data["metadata"].get("labels") or {})
        if "app.kubernetes.io/managed-by" in labels:
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == f"{plan.spec.name}-0.1.0"
        assert without_helm_labels(manifest.data) == without_helm_labels(rendered[manifest.subject]), manifest.subject


def test_lint_finds_a_broken_chart_and_values_reach_the_objects(tmp_path: Path) -> None:
    render_to(BASE, tmp_path)
    chart = tmp_path / "helm" / "chat"
    digest = "sha256:" + "ab" * 32
    text = template_chart(chart, "chat", "slm", {"engine.image.digest": digest, "engine.replicas": "3"})
    engine = next(m.data for m in k8s.load_manifests(text) if m.subject == "Deployment/chat-engine")
    assert engine["spec"]["replicas"] == 3
    box = engine["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == f"registry.example.com/slm/chat-engine@{digest}"
    assert yaml.safe_load((chart / "values.yaml").read_text())["engine"]["resources"] == box["resources"]
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: chat\n")  # no version
    assert any(f.severity == "error" and "version" in f.message for f in lint_chart(chart))
