"""The bundle's Helm chart checked with the official helm (`slmlab setup helm`): `helm lint`, then what
`helm template` renders through the same checks as the rendered manifests (the Kubernetes schemas, the policy
checker, checkov).

    report = check_chart("out/", scan=True)       # a CheckReport: helm lint, kubernetes schemas, policy, checkov
    print(report.summary())
"""

from __future__ import annotations

import re
from pathlib import Path

from slmlab.deploy.check import CheckReport
from slmlab.deploy.findings import Finding
from slmlab.deploy.helm_chart import chart_dir
from slmlab.deploy.k8s import load_manifests
from slmlab.errors import SlmLabError


def _helm(args: list[str], what: str) -> str:
    """Run the course's helm; a failure is a SlmLabError with helm's own last lines."""
    import subprocess

    from slmlab.containers.runtime import last_lines
    from slmlab.setup.helm import helm_program  # setup/ is below deploy/: read its one path

    done = subprocess.run([str(helm_program()), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SlmLabError(f"{what} failed (exit {done.returncode}):\n{last_lines(done.stderr or done.stdout)}",
                          "The lines above are helm's own.")
    return done.stdout


def lint_chart(chart: Path) -> list[Finding]:
    """`helm lint`: each [ERROR], [WARNING] and [INFO] line as a Finding (severity error, warning, info)."""
    import subprocess

    from slmlab.setup.helm import helm_program

    done = subprocess.run([str(helm_program()), "lint", str(chart)], capture_output=True, text=True, timeout=120)
    found = []
    for line in (done.stdout + done.stderr).splitlines():
        match = re.match(r"\[(ERROR|WARNING|INFO)\]\s+([^:]+):\s*(.*)", line.strip())
        if match:
            found.append(Finding(f"{chart.name}/{match[2].strip()}", "", "helm lint", match[3].strip(),
                                 match[1].lower()))
    if done.returncode != 0 and not any(f.severity == "error" for f in found):
        found.append(Finding(chart.name, "", "helm lint", (done.stderr or done.stdout).strip()[-500:]))
    return found


def template_chart(chart: Path, release: str, namespace: str, values: dict[str, str] | None = None) -> str:
    """`helm template RELEASE CHART --namespace NS [--set k=v …]`: the manifests the chart renders."""
    sets = [arg for key, value in (values or {}).items() for arg in ("--set", f"{key}={value}")]
    return _helm(["template", release, str(chart), "--namespace", namespace, *sets], f"helm template {chart.name}")


def check_chart(folder: str | Path, scan: bool = False, values: dict[str, str] | None = None) -> CheckReport:
    """The bundle's chart through `helm lint`, then what `helm template` renders through the same checks as the
    rendered manifests: the Kubernetes schemas, the policy checker and (with `scan`) checkov."""
    import tempfile

    from slmlab.deploy import policy
    from slmlab.deploy.k8s import validate_all
    from slmlab.deploy.render import bundle_plan

    root = Path(folder)
    plan = bundle_plan(root)
    chart = root / chart_dir(plan)
    if not (chart / "Chart.yaml").is_file():
        raise SlmLabError(f"{chart} holds no Chart.yaml.",
                          "Render the bundle again: slmlab deploy render SPEC --out DIR")
    report = CheckReport(root)
    lint = lint_chart(chart)
    report.add("helm lint", [f for f in lint if f.severity in ("error", "warning")], 1)
    report.notes += [f"helm lint: {f.message} ({f.file})" for f in lint if f.severity == "info"]
    text = template_chart(chart, plan.spec.name, plan.spec.namespace, values)
    manifests = load_manifests(text, "helm template")
    report.add("kubernetes schemas", validate_all(manifests), len(manifests))
    report.add("policy", policy.check_bundle(manifests), len(manifests))
    if scan:
        from slmlab.deploy.scanner import scan_dir

        with tempfile.TemporaryDirectory(prefix="slmlab-chart-") as scratch:
            (Path(scratch) / "helm-template.yaml").write_text(text, encoding="utf-8")
            scanned = scan_dir(scratch)
        report.add("checkov", scanned.failed, scanned.passed + len(scanned.failed) + len(scanned.skipped))
        report.waived = scanned.skipped
    return report
