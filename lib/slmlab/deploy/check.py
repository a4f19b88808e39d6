"""Validate a rendered deployment folder with every checker: hadolint, the compose schema, the Kubernetes
schemas (kubernetes-validate), our policy checker, and promtool where it is installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slmlab.deploy import adapter, compose, docker, k8s, policy, prometheus
from slmlab.errors import SlmLabError


@dataclass
class CheckReport:
    """What each checker found in a folder; `ok` when all found nothing."""

    folder: Path
    lint: list[docker.LintFinding] = field(default_factory=list)
    compose: list[compose.SchemaError] = field(default_factory=list)
    kubernetes: list[k8s.SchemaViolation] = field(default_factory=list)
    policy: list[policy.Violation] = field(default_factory=list)
    prometheus: list[str] = field(default_factory=list)
    adapter: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a checker could not check, and why
    checked: dict[str, int] = field(default_factory=dict)  # checker -> files/objects checked

    @property
    def ok(self) -> bool:
        """True when no checker found anything."""
        return not (self.lint or self.compose or self.kubernetes or self.policy or self.prometheus or self.adapter)

    def summary(self) -> str:
        """One line per checker, then every finding."""
        lines = []
        for name, found, unit in (("hadolint", self.lint, "Dockerfile(s)"), ("compose schema", self.compose, "file(s)"),
                                  ("kubernetes schemas", self.kubernetes, "object(s)"),
                                  ("policy", self.policy, "object(s)"), ("promtool", self.prometheus, "file(s)"),
                                  ("prometheus-adapter", self.adapter, "file(s)")):
            if name == "promtool" and name not in self.checked:
                lines.append("- promtool: not installed, Prometheus config not checked (apt-get install prometheus)")
                continue
            if name == "prometheus-adapter" and not self.checked.get(name):
                continue  # nothing rendered for it (the HPA scales on cpu)
            mark = "✓" if not found else "✗"
            lines.append(f"{mark} {name}: {self.checked.get(name, 0)} {unit}, {len(found)} problem(s)")
            lines += [f"    {item}" for item in found]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def check_dir(folder: str | Path) -> CheckReport:
    """Run every checker on a folder written by `slmlab deploy render`."""
    root = Path(folder)
    if not root.is_dir():
        raise SlmLabError(f"{root} is not a folder.", "Render first: slmlab deploy render SPEC.yaml --out DIR")
    report = CheckReport(root)
    dockerfiles = sorted(root.rglob("*Dockerfile"))
    report.lint = docker.lint_dir(root)
    report.checked["hadolint"] = len(dockerfiles)
    compose_files = [p for p in (root / "compose.yaml", root / "docker-compose.yml") if p.is_file()]
    for path in compose_files:
        report.compose += compose.validate_compose_file(path, root)
    report.checked["compose schema"] = len(compose_files)
    manifests = k8s.load_dir(root)
    report.kubernetes = k8s.validate_all(manifests)
    report.policy = policy.check_bundle(manifests)
    report.checked["kubernetes schemas"] = report.checked["policy"] = len(manifests)
    prometheus_files = sorted((root / "prometheus").glob("*.yml")) if (root / "prometheus").is_dir() else []
    if prometheus_files and prometheus.promtool_path():
        for path in prometheus_files:
            report.prometheus += prometheus.promtool_check(path, root, notes=report.notes)
        report.checked["promtool"] = len(prometheus_files)
    adapter_files = sorted((root / "helm").glob("prometheus-adapter*.y*ml")) if (root / "helm").is_dir() else []
    if adapter_files and prometheus.promtool_path():
        for path in adapter_files:
            report.adapter += adapter.check_adapter_values(path.read_text(encoding="utf-8"),
                                                           str(path.relative_to(root)))
        report.checked["prometheus-adapter"] = len(adapter_files)
    if not (dockerfiles or compose_files or manifests):
        raise SlmLabError(f"{root} holds no Dockerfile, compose file or Kubernetes manifest.",
                          "Render first: slmlab deploy render SPEC.yaml --out DIR")
    return report
