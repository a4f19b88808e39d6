"""A rendered deploy bundle read once, for the checks that look across its files: its Kubernetes objects (as
`slmlab.deploy.k8s` loads them), the spec it was rendered from, its alert rules, dashboards and runbook.

    bundle = Bundle.load("out/")              # a folder written by `slmlab deploy render` (+ the production layer)
    bundle.deployments()                      # [Manifest, ...]
    bundle.config("SLMLAB_RATE_LIMIT")        # a value from the gateway's ConfigMap, or None
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.deploy import k8s
from slmlab.deploy.k8s import Manifest
from slmlab.deploy.render import SPEC_FILE
from slmlab.deploy.spec import Plan, SpecError, load_spec
from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

RULES_DIR = "prometheus/rules"  # alerting rule files (promtool check rules), beside the Prometheus configs
DASHBOARDS_DIR = "grafana"  # Grafana dashboard JSON files
RUNBOOK_FILE = "RUNBOOK.md"


@dataclass
class Bundle:
    """The objects and files of one bundle folder."""

    root: Path
    manifests: list[Manifest]
    plan: Plan | None  # None when spec.yaml is missing or no longer plans (its problem is in `plan_problem`)
    plan_problem: str = ""
    rule_files: list[Path] = field(default_factory=list)
    dashboards: list[Path] = field(default_factory=list)

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        """Read a bundle folder; a folder with no Kubernetes manifest is not a bundle."""
        root = Path(folder)
        if not root.is_dir():
            raise SlmLabError(f"{root} is not a folder.", "Render one: slmlab deploy render SPEC.yaml --out DIR")
        manifests = k8s.load_dir(root)
        if not manifests:
            raise SlmLabError(f"{root} holds no Kubernetes manifest (k8s/*.yaml).",
                              "Pass the folder written by `slmlab deploy render SPEC.yaml --out DIR`.")
        plan, problem = None, ""
        try:
            plan = load_spec(root / SPEC_FILE).plan() if (root / SPEC_FILE).is_file() else None
            problem = "" if plan else f"no {SPEC_FILE} beside the manifests"
        except (SpecError, SlmLabError) as err:
            problem = err.problem
        rules = sorted((root / RULES_DIR).glob("*.y*ml")) if (root / RULES_DIR).is_dir() else []
        boards = sorted((root / DASHBOARDS_DIR).glob("*.json")) if (root / DASHBOARDS_DIR).is_dir() else []
        return cls(root, manifests, plan, problem, rules, boards)

    def of_kind(self, *kinds: str) -> list[Manifest]:
        """The objects of these kinds, in file order."""
        return [m for m in self.manifests if m.kind in kinds]

    def deployments(self) -> list[Manifest]:
        """Deployments and StatefulSets: the workloads that serve."""
        return self.of_kind("Deployment", "StatefulSet")

    def component(self, manifest: Manifest) -> str:
        """The app.kubernetes.io/component label of a workload's pods ("engine", "gateway"), else its name."""
        return pod_labels(manifest).get("app.kubernetes.io/component", manifest.name)

    def workload(self, component: str) -> Manifest | None:
        """The workload of a component ("gateway"), or None."""
        return next((m for m in self.deployments() if self.component(m) == component), None)

    def config(self, key: str) -> str | None:
        """A value of any ConfigMap's data (the gateway's settings live there), or None."""
        for manifest in self.of_kind("ConfigMap"):
            value = (manifest.data.get("data") or {}).get(key)
            if value is not None:
                return str(value)
        return None

    def alert_rules(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """(file, rule) for every alerting rule in the bundle's rule files (recording rules are skipped)."""
        import yaml

        for path in self.rule_files:
            data = yaml.safe_load(read_text(path, "Prometheus rule file")) or {}
            for group in data.get("groups") or []:
                for rule in group.get("rules") or []:
                    if isinstance(rule, dict) and "alert" in rule:
                        yield path, rule

    def dashboard(self, path: Path) -> dict[str, Any]:
        """One dashboard's JSON."""
        return dict(json.loads(read_text(path, "Grafana dashboard")))

    def rel(self, path: Path) -> str:
        """A path relative to the bundle, as evidence shows it."""
        return str(path.relative_to(self.root))


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    """A workload's pod template spec ({} when it has none)."""
    return ((manifest.data.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(manifest: Manifest) -> dict[str, str]:
    """A workload's pod template labels."""
    return (((manifest.data.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    """A workload's (non-init) containers."""
    return [c for c in pod_spec(manifest).get("containers") or [] if isinstance(c, dict)]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector picks pods with these labels (an empty selector picks none here)."""
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())
