"""Validate a rendered deployment folder with every checker: hadolint (and the course's Dockerfile rules), the
compose schema, the Kubernetes schemas (kubernetes-validate), our policy checker, and promtool where it is
installed. Every checker reports `Finding`s; the report keeps them per checker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slmlab.deploy import adapter, compose, docker, k8s, policy, prometheus
from slmlab.deploy.findings import Finding
from slmlab.errors import SlmLabError
from slmlab.monitoring import promtool
from slmlab.textfiles import read_text

# checker -> what it counts, in the order the summary lists them
CHECKERS = {"helm lint": "chart(s)", "hadolint": "Dockerfile(s)", "compose schema": "file(s)",
            "kubernetes schemas": "object(s)", "policy": "object(s)", "checkov": "check(s)", "promtool": "file(s)",
            "prometheus-adapter": "file(s)"}
RENDER_FIRST = "Render first: slmlab deploy render SPEC.yaml --out DIR"


class _FoundBy:
    """A CheckReport attribute that reads what one checker found (an empty list when it did not run)."""

    def __init__(self, checker: str) -> None:
        self.checker = checker

    def __get__(self, report: CheckReport | None, owner: type | None = None) -> list[Finding]:
        return report.findings.get(self.checker, []) if report is not None else []


@dataclass
class CheckReport:
    """What each checker found in a folder; `ok` when all found nothing."""

    folder: Path
    findings: dict[str, list[Finding]] = field(default_factory=dict)  # checker -> what it found
    checked: dict[str, int] = field(default_factory=dict)  # checker -> files/objects checked
    skipped: dict[str, str] = field(default_factory=dict)  # checker -> why it did not run
    notes: list[str] = field(default_factory=list)  # what a checker could not check, and why
    waived: list[Finding] = field(default_factory=list)  # checkov's checks skipped on an object: message = why
    shown: ClassVar[dict[str, str]] = CHECKERS  # the checkers a summary lists, in order, with what each counts

    def add(self, checker: str, found: list[Finding], count: int) -> None:
        """Record one checker's run over `count` files or objects."""
        self.findings[checker] = found
        self.checked[checker] = count

    # what each checker found, by the names the notebooks use
    lint = _FoundBy("hadolint")  # hadolint's and the course's Dockerfile rules
    compose = _FoundBy("compose schema")  # places where the compose file breaks the Compose Specification
    kubernetes = _FoundBy("kubernetes schemas")  # places where a manifest breaks its Kubernetes API schema
    policy = _FoundBy("policy")  # Pod Security restricted and the course's hardening rules
    prometheus = _FoundBy("promtool")  # promtool's complaints about the Prometheus configs
    adapter = _FoundBy("prometheus-adapter")  # problems in the prometheus-adapter values
    scanner = _FoundBy("checkov")  # what checkov (the field's IaC scanner) failed

    @property
    def ok(self) -> bool:
        """True when no checker found anything."""
        return not any(self.findings.values())

    def summary(self) -> str:
        """One line per checker, then every finding."""
        lines = []
        for name, unit in self.shown.items():
            if name in self.skipped:
                lines.append(f"- {name}: {self.skipped[name]}")
            elif name in self.checked:
                found = self.findings[name]
                lines.append(f"{'✗' if found else '✓'} {name}: {self.checked[name]} {unit}, {len(found)} problem(s)")
                lines += [f"    {finding}" for finding in found]
        lines += [f"  checkov skips {f.rule} on {f.subject or f.file}: {f.message}" for f in self.waived]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def table(self) -> Any:
        """Every finding as a pandas DataFrame: checker, file, object, where, rule, severity, message."""
        import pandas as pd

        columns = ["checker", "file", "object", "where", "rule", "severity", "message"]
        return pd.DataFrame([{"checker": name, **finding.row()} for name, found in self.findings.items()
                             for finding in found], columns=columns)


def check_dir(folder: str | Path, scan: bool = False) -> CheckReport:
    """Run every checker on a folder written by `slmlab deploy render`; with `scan`, checkov too (a few seconds
    more: it runs in its own virtualenv, `slmlab setup checkov`)."""
    root = Path(folder)
    if not root.is_dir():
        raise SlmLabError(f"{root} is not a folder.", RENDER_FIRST)
    dockerfiles = sorted(root.rglob("*Dockerfile"))
    compose_files = [p for p in (root / "compose.yaml", root / "docker-compose.yml") if p.is_file()]
    manifests = k8s.load_dir(root)
    if not (dockerfiles or compose_files or manifests):
        raise SlmLabError(f"{root} holds no Dockerfile, compose file or Kubernetes manifest.", RENDER_FIRST)
    report = CheckReport(root)
    report.add("hadolint", docker.lint_dir(root), len(dockerfiles))
    report.add("compose schema", [f for p in compose_files for f in compose.validate_compose_file(p, root)],
               len(compose_files))
    report.add("kubernetes schemas", k8s.validate_all(manifests), len(manifests))
    report.add("policy", policy.check_bundle(manifests), len(manifests))
    if scan:
        from slmlab.deploy.scanner import scan_dir

        scanned = scan_dir(root)
        report.add("checkov", scanned.failed, scanned.passed + len(scanned.failed) + len(scanned.skipped))
        report.waived = scanned.skipped
    _check_with_promtool(report, root)
    return report


def _check_with_promtool(report: CheckReport, root: Path) -> None:
    """The Prometheus configs and the adapter's queries, where promtool is installed."""
    configs = sorted((root / "prometheus").glob("*.yml")) if (root / "prometheus").is_dir() else []
    adapter_files = sorted((root / "helm").glob("prometheus-adapter*.y*ml")) if (root / "helm").is_dir() else []
    if promtool.promtool_path() is None:
        if configs:
            report.skipped["promtool"] = f"not installed, Prometheus config not checked ({promtool.INSTALL_HINT})"
        if adapter_files:
            report.skipped["prometheus-adapter"] = "promtool not installed, the adapter's queries not checked"
        return
    if configs:
        report.add("promtool", [f for p in configs for f in prometheus.check_prometheus_config(p, root, report.notes)],
                   len(configs))
    if adapter_files:
        report.add("prometheus-adapter", [f for p in adapter_files for f in adapter.check_adapter_values(
            read_text(p, "prometheus-adapter values"), str(p.relative_to(root)))], len(adapter_files))
