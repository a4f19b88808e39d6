"""promtool, Prometheus' own checker: the one wrapper every check in the course runs it through.

    check_config("prometheus.yml", syntax_only=True)   # [] when valid, else promtool's complaint
    check_rules(rules_text)                             # one complaint per broken rule
    run_rule_tests(rules_text, [test_case])             # promtool test rules: (all passed, its output)

promtool comes with Debian's `prometheus` package. Debian builds it without Kubernetes service discovery, so
`check_config` checks a file that uses `kubernetes_sd_configs` with a static target standing in for each, and
says so in `notes`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

INSTALL_HINT = "apt-get install prometheus  (Debian/Ubuntu)"
K8S_SD_MISSING = "field kubernetes_sd_configs not found"  # what a promtool built without Kubernetes SD says
K8S_SD_NOTE = ("this promtool has no Kubernetes service discovery (Debian builds it without), so "
               "kubernetes_sd_configs was not checked; the rest of the file was")
STAND_IN_TARGET = "engine-pod.example:8080"  # replaces kubernetes_sd_configs when promtool cannot parse them


def promtool_path() -> str | None:
    """promtool (Debian's `prometheus` package), or None when it is not installed."""
    return shutil.which("promtool")


def run_promtool(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess[str]:
    """Run `promtool ARGS…` (60 s at most); a clear error when promtool is not installed."""
    tool = promtool_path()
    if tool is None:
        raise SlmLabError("promtool is not installed.", INSTALL_HINT)
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def complaints(proc: subprocess.CompletedProcess[str], path: str | os.PathLike) -> list[str]:
    """What promtool said was wrong with `path`, one line each (empty when it exited 0): its `Checking …`
    lines and `FAILED:` markers dropped, the file name in front of each line removed."""
    if proc.returncode == 0:
        return []
    lines = []
    for raw in (proc.stdout + proc.stderr).splitlines():
        line = raw.strip().removeprefix("FAILED:").strip()
        if line and not line.startswith("Checking "):
            lines.append(line.replace(f"{os.fspath(path)}: ", ""))
    return lines or [f"promtool exited with {proc.returncode}"]


def check_config(path: str | os.PathLike, syntax_only: bool = False, notes: list[str] | None = None) -> list[str]:
    """`promtool check config` on a prometheus.yml: its complaint as one line (empty list: valid).

    Without `syntax_only` promtool also checks the rule files and files the config names; with it, a
    config can be checked on a machine that lacks them (an API-key file mounted only in the container).
    A promtool without Kubernetes service discovery checks the rest of the file (see the module's doc); then
    `notes` gets a line saying so.
    """
    problems = _config_complaints(Path(path), syntax_only)
    if any(K8S_SD_MISSING in problem for problem in problems):
        problems = _check_with_static_stand_ins(Path(path), syntax_only)
        if notes is not None:
            notes.append(K8S_SD_NOTE)
    return problems


def _config_complaints(path: Path, syntax_only: bool) -> list[str]:
    proc = run_promtool("check", "config", *(["--syntax-only"] if syntax_only else []), str(path))
    found = complaints(proc, path)
    return [" ".join(found)] if found else []  # one YAML error spans several lines


def _check_with_static_stand_ins(path: Path, syntax_only: bool) -> list[str]:
    """The config with each kubernetes_sd_configs replaced by a static target, checked in a temporary copy."""
    import yaml

    from slmlab.textfiles import read_text

    config = yaml.safe_load(read_text(path, "Prometheus config")) or {}
    for job in config.get("scrape_configs") or []:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job.setdefault("static_configs", [{"targets": [STAND_IN_TARGET]}])
    with tempfile.TemporaryDirectory(prefix="slmlab-promtool-") as tmp:
        stand_in = Path(tmp) / path.name
        stand_in.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return _config_complaints(stand_in, syntax_only)


def check_rules(rules: str | os.PathLike) -> list[str]:
    """`promtool check rules` on a rule file (a path, or the YAML text): its complaints (empty list: valid)."""
    with tempfile.TemporaryDirectory(prefix="slmlab-rules-") as tmp:
        if isinstance(rules, str) and ("\n" in rules or not Path(rules).is_file()):
            path = Path(tmp) / "rules.yml"
            path.write_text(rules, encoding="utf-8")
        else:
            path = Path(rules)
        return complaints(run_promtool("check", "rules", str(path)), path)


def run_rule_tests(rules: str, tests: Sequence[Mapping[str, Any]], evaluation_interval: str = "1s") -> tuple[bool, str]:
    """`promtool test rules` on the rule file text `rules` with these test cases: (all passed, promtool's output)."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="slmlab-ruletest-") as tmp:
        (Path(tmp) / "rules.yml").write_text(rules, encoding="utf-8")
        spec = {"rule_files": ["rules.yml"], "evaluation_interval": evaluation_interval, "tests": list(tests)}
        (Path(tmp) / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        proc = run_promtool("test", "rules", "tests.yml", cwd=tmp)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
