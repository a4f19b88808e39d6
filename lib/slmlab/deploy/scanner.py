"""checkov, the field's infrastructure-as-code scanner, over a rendered bundle: its Kubernetes checks (CKV_K8S_*) on
the manifests and its Dockerfile checks (CKV_DOCKER_*) on the Dockerfiles, next to the course's own policy
checker. What it fails is a `Finding`, the record every checker of `slmlab deploy check` reports.

The bundle's templates fix what checkov finds, or skip a check on the object itself with the reason written
beside it, where the learner reads it: a Kubernetes annotation (``checkov.io/skip1: CKV_K8S_43=<why>``) or a
Dockerfile comment (``# checkov:skip=CKV_DOCKER_7:<why>``). checkov reports those as skipped, with the reason:
`ScanReport.skipped` keeps them (as Findings whose message is the reason).

checkov lives in a venv of its own (`slmlab setup checkov`): its pins clash with the course's.

    report = scan_dir("out/")          # ScanReport: failed, skipped, passed
    print(report.summary())
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.deploy.findings import Finding
from slmlab.errors import SlmLabError

FRAMEWORKS = ("kubernetes", "dockerfile")
# The checks the bundle skips on the object, and why (the templates write these reasons into the files).
SKIP_REASONS = {
    "CKV_K8S_43": "the image is built by `slmlab deploy build` and has no registry digest until it is pushed; after "
                  "pushing, pin it by digest (the Helm chart's image digest values)",
    "CKV_K8S_15": "the tag is a fixed release (never latest), so IfNotPresent pulls it once per node; Always would "
                  "make every restart depend on the registry, and podman kube play runs from the local store",
    "CKV_K8S_35": "vLLM reads its API key only from VLLM_API_KEY (or --api-key, which the process list shows); the "
                  "value comes from the Secret by reference and is never written here",
    "CKV_DOCKER_7": "each FROM ${...} names a build argument whose default above is a pinned version (checkov reads "
                    "the variable, not its value)",
}
# the chart's templates are not YAML until `helm template` renders them (`helm_chart.check_chart` scans that output)
NOT_SCANNED = (r"helm/[^/]+/templates",)


@dataclass
class ScanReport:
    """What checkov found: failed checks (Findings), checks skipped on an object with their reason, passes."""

    folder: Path
    failed: list[Finding] = field(default_factory=list)
    skipped: list[Finding] = field(default_factory=list)  # message: the reason written on the object
    passed: int = 0
    version: str = ""

    @property
    def ok(self) -> bool:
        """True when checkov failed nothing."""
        return not self.failed

    def summary(self) -> str:
        """A line of counts, then each failure and each skip with its reason."""
        lines = [f"{'✓' if self.ok else '✗'} checkov {self.version}: {self.passed} passed, {len(self.failed)} failed, "
                 f"{len(self.skipped)} skipped on the object with a reason"]
        lines += [f"    ✗ {finding}" for finding in self.failed]
        lines += [f"    - {f.rule} on {f.subject or f.file}: {f.message}" for f in self.skipped]
        return "\n".join(lines)


def _subject(resource: str, check_type: str) -> str:
    """checkov's resource name as kubectl names it: "Deployment.slm.chat-engine" -> "Deployment/chat-engine"."""
    if check_type == "kubernetes":
        parts = resource.split(".")
        return f"{parts[0]}/{parts[-1]}" if len(parts) >= 2 else resource
    return ""


def _finding(check: dict[str, Any], check_type: str, skipped: bool) -> Finding:
    lines = check.get("file_line_range") or []
    where = f"lines {lines[0]}-{lines[1]}" if len(lines) == 2 and lines[0] != lines[1] else (
        f"line {lines[0]}" if lines else "")
    reason = str((check.get("check_result") or {}).get("suppress_comment", "")).strip()
    message = reason if skipped else str(check.get("check_name", ""))
    return Finding(str(check.get("file_path", "")).lstrip("/"), where, str(check.get("check_id", "?")), message,
                   "skipped" if skipped else "error", _subject(str(check.get("resource", "")), check_type))


def parse_results(output: str, folder: Path) -> ScanReport:
    """checkov's JSON (one report per framework, or one alone) as a ScanReport."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError:
        raise SlmLabError(f"checkov did not answer JSON:\n{output.strip()[-1500:]}",
                          "Run it by hand to see why: checkov -d DIR --framework kubernetes dockerfile") from None
    report = ScanReport(folder)
    for part in data if isinstance(data, list) else [data]:
        if "results" not in part:  # no file of this framework: {"check_type": …, "summary": {…}} only
            continue
        results, check_type = part["results"], str(part.get("check_type", ""))
        report.failed += [_finding(c, check_type, False) for c in results.get("failed_checks") or []]
        report.skipped += [_finding(c, check_type, True) for c in results.get("skipped_checks") or []]
        report.passed += len(results.get("passed_checks") or [])
        report.version = str((part.get("summary") or {}).get("checkov_version", report.version))
    return report


def scan_command(folder: Path, program: Path | str = "checkov") -> list[str]:
    """checkov's command line for a folder: its Kubernetes and Dockerfile checks, JSON, nothing downloaded."""
    return [str(program), "-d", str(folder), "--framework", *FRAMEWORKS, "--output", "json", "--compact",
            "--skip-download", *[arg for path in NOT_SCANNED for arg in ("--skip-path", path)]]


def scan_dir(folder: str | Path, timeout: float = 300) -> ScanReport:
    """checkov's Kubernetes and Dockerfile checks over a rendered folder (or any folder of manifests)."""
    from slmlab.setup.checkov_env import checkov_program, tool_env  # setup/ is below deploy/: read its one path

    root = Path(folder)
    if not root.is_dir():
        raise SlmLabError(f"{root} is not a folder.", "Render first: slmlab deploy render SPEC.yaml --out DIR")
    command = scan_command(root, checkov_program())
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=tool_env(),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SlmLabError(f"checkov did not finish within {timeout:g} s.",
                          "Is the machine busy? Run it again.") from None
    if done.returncode not in (0, 1):  # 1: some check failed
        raise SlmLabError(f"checkov failed (exit {done.returncode}):\n{(done.stderr or done.stdout).strip()[-1500:]}",
                          "Its own message is above.")
    return parse_results(done.stdout, root)
