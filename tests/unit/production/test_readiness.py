"""slmlab.production.readiness on rendered bundles: the full bundle passes, each planted gap fails exactly its own
item, three planted gaps fail exactly three items; the bare render fails what the production layer adds."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec, check_dir, render_to
from slmlab.errors import SlmLabError
from slmlab.production import layer, readiness
from slmlab.production.readiness import FAIL, NA, PASS

pytestmark = pytest.mark.fast

SPEC = DeploymentSpec(name="chat", rate_limit="60/minute")
SCAN_WORKFLOW = """name: ci
on: push
permissions: {}
jobs:
  image:
    runs-on: ubuntu-latest
    steps:
      - run: trivy image registry.example.com/slm/chat-gateway:0.1.0
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service folder: the bundle in deploy/, the production layer, a workflow that scans the images."""
    root = tmp_path_factory.mktemp("service")
    render_to(SPEC, root / "deploy")
    layer.add_production_layer(root / "deploy")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text(SCAN_WORKFLOW)
    return root


def copy_of(service: Path, tmp_path: Path) -> Path:
    target = tmp_path / "service"
    shutil.copytree(service, target)
    return target / "deploy"


def edit_yaml(path: Path, change: Callable[[list[dict]], None]) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def by_kind(docs: list[dict], kind: str, component: str) -> dict:
    return next(d for d in docs if d["kind"] == kind
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == component)


def pdb_blocks_drains(bundle: Path) -> None:
    edit_yaml(bundle / "k8s/06-pdb.yaml", lambda docs: by_kind(docs, "PodDisruptionBudget", "engine")["spec"].update(
        maxUnavailable=0))


def ingress_without_tls(bundle: Path) -> None:
    edit_yaml(bundle / layer.INGRESS_FILE, lambda docs: docs[0]["spec"].pop("tls"))


def state_without_backup(bundle: Path) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "chat-cache", "namespace": "slm"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    (bundle / "k8s/10-cache.yaml").write_text(yaml.safe_dump(claim))


def memory_limit_above_request(bundle: Path) -> None:
    def change(docs: list[dict]) -> None:
        container = by_kind(docs, "Deployment", "engine")["spec"]["template"]["spec"]["containers"][0]
        container["resources"]["limits"]["memory"] = "4Gi"
    edit_yaml(bundle / "k8s/02-engine-deployment.yaml", change)


def no_rate_limit(bundle: Path) -> None:
    edit_yaml(bundle / "k8s/03-gateway-deployment.yaml",
              lambda docs: docs[0]["data"].pop("SLMLAB_RATE_LIMIT"))


def alert_without_runbook(bundle: Path) -> None:
    path = bundle / layer.RULES_FILE
    data = yaml.safe_load(path.read_text())
    del data["groups"][0]["rules"][1]["annotations"]["runbook_url"]
    path.write_text(yaml.safe_dump(data))


def no_dashboard(bundle: Path) -> None:
    (bundle / layer.DASHBOARD_FILE).unlink()


def unpinned_image(bundle: Path) -> None:
    def change(docs: list[dict]) -> None:
        container = by_kind(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
        container["image"] = "registry.example.com/slm/chat-gateway:latest"
    edit_yaml(bundle / "k8s/03-gateway-deployment.yaml", change)


def no_readiness_probe(bundle: Path) -> None:
    edit_yaml(bundle / "k8s/03-gateway-deployment.yaml", lambda docs: by_kind(docs, "Deployment", "gateway")[
        "spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"))


GAPS = {"pdb": pdb_blocks_drains, "tls": ingress_without_tls, "backups": state_without_backup,
        "resources": memory_limit_above_request, "rate-limits": no_rate_limit, "runbooks": alert_without_runbook,
        "dashboards": no_dashboard, "images": unpinned_image, "probes": no_readiness_probe}


def test_the_full_bundle_passes_every_item(service: Path) -> None:
    report = readiness.evaluate(service / "deploy")
    assert report.ok, report.summary()
    assert report["backups"].status == NA and report.counts()[PASS] == len(report.results) - 1
    assert list(readiness.item_titles()) == [r.key for r in report.results]
    assert check_dir(service / "deploy").ok  # the layer's Ingress passes the schemas and the policy checker


@pytest.mark.parametrize("item", sorted(GAPS))
def test_each_planted_gap_fails_exactly_its_item(service: Path, tmp_path: Path, item: str) -> None:
    bundle = copy_of(service, tmp_path)
    GAPS[item](bundle)
    report = readiness.evaluate(bundle)
    assert report.failed == [item], report.summary()
    assert report[item].bundle.text


def test_three_planted_gaps_fail_exactly_three_items(service: Path, tmp_path: Path) -> None:
    bundle = copy_of(service, tmp_path)
    for item in ("pdb", "tls", "backups"):
        GAPS[item](bundle)
    report = readiness.evaluate(bundle)
    assert sorted(report.failed) == ["backups", "pdb", "tls"]
    assert "maxUnavailable" not in report["pdb"].bundle.text and "allows no eviction" in report["pdb"].bundle.text
    assert "PersistentVolumeClaim/chat-cache" in report["backups"].bundle.text
    assert check_dir(bundle).kubernetes == []  # still valid Kubernetes: the gaps are in what it means


def test_a_backed_up_claim_passes(service: Path, tmp_path: Path) -> None:
    bundle = copy_of(service, tmp_path)
    state_without_backup(bundle)
    schedule = {"apiVersion": "velero.io/v1", "kind": "Schedule", "metadata": {"name": "chat", "namespace": "velero"},
                "spec": {"schedule": "0 3 * * *", "template": {"includedNamespaces": ["slm"]}}}
    (bundle / "k8s/11-backup.yaml").write_text(yaml.safe_dump(schedule))
    assert readiness.evaluate(bundle)["backups"].status == PASS


def test_the_bare_render_fails_what_the_layer_adds(tmp_path: Path) -> None:
    render_to(DeploymentSpec(name="chat"), tmp_path / "bare")
    report = readiness.evaluate(tmp_path / "bare")
    assert sorted(report.failed) == ["alerts", "dashboards", "images", "rate-limits", "runbooks", "tls"]
    assert all(r.service.status == NA for r in report.results)  # no service given: nothing judged there
    assert "| TLS at the ingress | ✗ fail |" in readiness.as_markdown(report)


def test_a_single_replica_is_a_disruption_gap(tmp_path: Path) -> None:
    render_to(DeploymentSpec(name="chat", replicas=1, max_replicas=2), tmp_path / "one")
    evidence = readiness.evaluate(tmp_path / "one")["pdb"].bundle
    assert evidence.status == FAIL and "runs 1 replica" in evidence.text


def test_the_layer_refuses_a_bad_host_and_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SlmLabError, match="not a DNS host name"):
        layer.add_production_layer(tmp_path, host="not a host")
    with pytest.raises(SlmLabError, match="no Kubernetes manifest"):
        readiness.evaluate(tmp_path)


def test_runbook_anchors_match_github_headings() -> None:
    assert layer.anchor("HighTimeToFirstTokenP95") == "hightimetofirsttokenp95"
    assert layer.anchor("Disk full: what now?") == "disk-full-what-now"
    text = layer.runbook_text("slm", "chat")
    assert all(f"## {name}" in text for name in layer.RUNBOOK) and "kubectl -n slm" in text


def test_the_spec_carries_the_rate_limit_to_the_gateway(tmp_path: Path) -> None:
    from slmlab.deploy import SpecError

    with pytest.raises(SpecError, match="rate_limit"):
        DeploymentSpec(rate_limit="6/fortnight").plan()
    render_to(SPEC, tmp_path / "b")
    config = next(yaml.safe_load_all((tmp_path / "b/k8s/03-gateway-deployment.yaml").read_text()))
    assert config["data"]["SLMLAB_RATE_LIMIT"] == "60/minute"
    assert "SLMLAB_RATE_LIMIT: \"60/minute\"" in (tmp_path / "b/compose.yaml").read_text()
