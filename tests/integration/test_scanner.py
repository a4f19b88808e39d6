"""checkov, the field's IaC scanner, over every rendered bundle (each engine, with and without a GPU and auth): it
fails nothing, and every check it skips is skipped on the object with the course's written reason; the same
checkov fails an insecure manifest and a bundle whose skip annotation was removed, so the clean result means
something. Needs `slmlab setup checkov` (skipped, saying so, without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec, check_dir, render_to
from slmlab.deploy.scanner import SKIP_REASONS, ScanReport, scan_dir
from slmlab.setup.checkov_env import checkov_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not checkov_available(), reason="checkov is not set up (slmlab setup checkov)")]
BASE = DeploymentSpec(name="chat", model="smollm2-135m-instruct", quantization="Q4_K_M", hardware="laptop-16gb")
BUNDLES = {
    "llamacpp-server": {}, "llamacpp-server-gpu": dict(hardware="t4", gpus=1),
    "llamacpp-server-no-auth": dict(auth="none"), "vllm": dict(engine="vllm", quantization="F32"),
    "vllm-gpu": dict(engine="vllm", quantization="F16", hardware="t4", gpus=1), "ollama": dict(engine="ollama"),
    "ort-service": dict(engine="ort-service", quantization="INT4"),
}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> ScanReport:
    """Every bundle rendered side by side and scanned by one checkov run (its start-up is most of its time)."""
    root = tmp_path_factory.mktemp("bundles")
    for name, changes in BUNDLES.items():
        render_to(BASE.replace(**changes), root / name)
    return scan_dir(root)


@pytest.mark.parametrize("name", list(BUNDLES))
def test_every_bundle_passes_checkov_and_every_skip_says_why(scanned: ScanReport, name: str) -> None:
    assert not [f for f in scanned.failed if f.file.startswith(name + "/")], scanned.summary()
    assert scanned.passed > 250 * len(BUNDLES)  # it did scan the manifests and the Dockerfiles
    skipped = {(f.rule, f.subject or f.file.removeprefix(name + "/")) for f in scanned.skipped
               if f.file.startswith(name + "/")}
    expected = {("CKV_DOCKER_7", "docker/engine.Dockerfile"), ("CKV_DOCKER_7", "docker/gateway.Dockerfile")}
    expected |= {(check, f"Deployment/chat-{c}") for check in ("CKV_K8S_43", "CKV_K8S_15")
                 for c in ("engine", "gateway")}
    if name.startswith("vllm"):  # vLLM reads its key only from the environment
        expected.add(("CKV_K8S_35", "Deployment/chat-engine"))
    assert skipped == expected
    assert all(f.message == SKIP_REASONS[f.rule] for f in scanned.skipped)  # the reason the learner reads


def test_checkov_fails_an_insecure_manifest_and_a_removed_skip(tmp_path: Path) -> None:
    render_to(BASE, tmp_path)
    path = tmp_path / "k8s" / "02-engine-deployment.yaml"
    engine = yaml.safe_load(path.read_text())
    del engine["metadata"]["annotations"]  # no written reason: the digest check fails again
    pod = engine["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["containers"][0]["securityContext"] = {"privileged": True, "runAsUser": 0}
    path.write_text(yaml.safe_dump(engine))
    report = check_dir(tmp_path, scan=True)
    failed = {f.rule for f in report.scanner}
    assert {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_16", "CKV_K8S_19", "CKV_K8S_20"} <= failed, failed
    assert all(f.subject == "Deployment/chat-engine" and f.file == "k8s/02-engine-deployment.yaml"
               for f in report.scanner)
    assert not report.ok and "✗ checkov:" in report.summary()
    assert {f.rule for f in report.policy} >= {"privileged", "host-namespaces"}  # our checker agrees
