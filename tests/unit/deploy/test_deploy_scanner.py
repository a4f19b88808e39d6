"""slmlab.deploy.scanner without running checkov: its JSON (one framework or several) read into Findings, a skip's
reason kept, the templates writing every reason they skip with, and a clear message where checkov is not set up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec, render_to
from slmlab.deploy.scanner import SKIP_REASONS, parse_results, scan_dir
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast

FAILED = {"check_id": "CKV_K8S_16", "check_name": "Container should not be privileged", "file_path": "/k8s/a.yaml",
          "resource": "Deployment.slm.chat-engine", "file_line_range": [4, 40], "check_result": {"result": "FAILED"}}
SKIPPED = {"check_id": "CKV_DOCKER_7", "check_name": "Ensure the base image uses a non latest version tag",
           "file_path": "/docker/x.Dockerfile", "resource": "/docker/x.Dockerfile.FROM", "file_line_range": [9, 9],
           "check_result": {"result": "SKIPPED", "suppress_comment": "the default is pinned"}}


def test_checkovs_json_becomes_findings_and_skips_keep_their_reason(tmp_path: Path) -> None:
    one = {"check_type": "kubernetes", "summary": {"checkov_version": "3.3.30"},
           "results": {"failed_checks": [FAILED], "skipped_checks": [], "passed_checks": [{}, {}]}}
    two = {"check_type": "dockerfile", "summary": {}, "results": {"failed_checks": [], "skipped_checks": [SKIPPED]}}
    report = parse_results(json.dumps([one, two]), tmp_path)
    assert [str(f) for f in report.failed] == [
        "k8s/a.yaml: Deployment/chat-engine: lines 4-40: Container should not be privileged [CKV_K8S_16]"]
    assert report.skipped[0].message == "the default is pinned" and report.skipped[0].where == "line 9"
    assert report.passed == 2 and report.version == "3.3.30" and not report.ok
    assert parse_results(json.dumps({"check_type": "kubernetes", "summary": {}}), tmp_path).ok  # nothing to scan
    with pytest.raises(SlmLabError, match="did not answer JSON"):
        parse_results("Traceback (most recent call last): ...", tmp_path)


def test_the_templates_write_each_skip_with_its_reason(tmp_path: Path) -> None:
    render_to(DeploymentSpec(name="chat", engine="vllm", quantization="F32", hardware="laptop-16gb"), tmp_path)
    engine = yaml.safe_load((tmp_path / "k8s" / "02-engine-deployment.yaml").read_text())
    written = dict(value.split("=", 1) for key, value in engine["metadata"]["annotations"].items()
                   if key.startswith("checkov.io/skip"))
    assert written == {check: SKIP_REASONS[check] for check in ("CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35")}
    dockerfile = (tmp_path / "docker" / "gateway.Dockerfile").read_text()
    assert f"# checkov:skip=CKV_DOCKER_7:{SKIP_REASONS['CKV_DOCKER_7']}" in dockerfile


def test_without_checkov_the_message_names_the_set_up_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMLAB_CHECKOV", str(tmp_path / "no-checkov"))
    with pytest.raises(SlmLabError, match="checkov is not set up") as err:
        scan_dir(tmp_path)
    assert "slmlab setup checkov" in err.value.hint

