"""The bundle's Helm chart, without running helm: made from the rendered manifests, one template per manifest,
the values the operator sets (images, replicas, resources) with the bundle's own values as defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec, render_to

pytestmark = pytest.mark.fast


def test_the_bundle_carries_a_helm_chart_made_from_its_manifests(tmp_path: Path) -> None:
    from slmlab.deploy.helm_chart import chart_dir
    from slmlab.deploy.render import bundle_plan

    render_to(DeploymentSpec(name="chat", quantization="Q4_1"), tmp_path)
    chart = tmp_path / chart_dir(bundle_plan(tmp_path))
    templates = sorted(p.name for p in (chart / "templates").iterdir())
    assert templates == sorted(p.name for p in (tmp_path / "k8s").iterdir())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["engine"]["image"] == {"repository": "registry.example.com/slm/chat-engine", "tag": "0.1.0",
                                         "digest": "", "pullPolicy": "IfNotPresent"}
    assert values["engine"]["replicas"] == 2 and values["namespace"] == {"create": True}
    engine = (chart / "templates" / "02-engine-deployment.yaml").read_text()
    assert "__HELM_" not in engine and "replicas: {{ .Values.engine.replicas }}" in engine
    assert "resources: {{- toYaml .Values.engine.resources | nindent 10 }}" in engine
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"] == "0.1.0"
