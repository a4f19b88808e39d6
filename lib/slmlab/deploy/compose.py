"""The compose file (engine + gateway + Prometheus), validated against the Compose Specification's schema."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from slmlab.deploy.findings import Finding, schema_findings
from slmlab.deploy.spec import Plan
from slmlab.deploy.templating import render_template
from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"


def writable_paths(plan: Plan) -> list[str]:
    """Folders the engine writes at run time (tmpfs in compose, emptyDir volumes in Kubernetes)."""
    paths = ["/tmp"]
    if plan.engine.key == "vllm":
        paths.append("/cache")
    if plan.engine.key == "ollama":
        paths.append("/home/slm")
    return paths


def engine_healthcheck(plan: Plan) -> list[str]:
    """The engine's compose healthcheck, the same probe as its Dockerfile HEALTHCHECK."""
    url = f"http://127.0.0.1:{plan.port}{plan.engine.liveness_path}"
    if plan.engine.key == "llamacpp-server":
        return ["CMD", "curl", "-fsS", url]
    if plan.engine.key == "ollama":
        return ["CMD", "ollama", "list"]
    return ["CMD", "python3", "-c", f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"]


def scrape_engine_with_key(plan: Plan) -> bool:
    """llama.cpp's /metrics sits behind its API key; vLLM's and our app's /metrics do not."""
    return plan.engine.key == "llamacpp-server" and plan.spec.auth == "api-key"


def render_compose(plan: Plan) -> dict[str, str]:
    """compose.yaml for `docker compose up --build` in the rendered folder."""
    text = render_template(
        "compose.yaml.j2", plan, writable_paths=writable_paths(plan), engine_healthcheck=engine_healthcheck(plan),
        engine_context="${SLMLAB_SOURCE:-.}" if plan.engine.key == "ort-service" else ".",
        engine_dockerfile=("${PWD}/" if plan.engine.key == "ort-service" else "") + "docker/engine.Dockerfile",
        gateway_dockerfile="${PWD}/docker/gateway.Dockerfile", scrape_engine_with_key=scrape_engine_with_key(plan))
    return {"compose.yaml": text}


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_compose(data: dict[str, Any] | str, path: str = "compose.yaml") -> list[Finding]:
    """Every violation of the Compose Specification's JSON schema (empty list: valid)."""
    import yaml

    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as err:
            return [Finding(path, "", "yaml", f"not valid YAML: {err}")]
    if not isinstance(data, dict):
        return [Finding(path, "", "type", "a compose file must be a mapping")]
    return schema_findings(_validator(), data, path)


def validate_compose_file(file: str | Path, root: str | Path | None = None) -> list[Finding]:
    """Validate a compose file on disk (a UTF-8 byte-order mark and CRLF line ends are fine)."""
    file = Path(file)
    if not file.is_file():
        raise SlmLabError(f"{file} does not exist.", "Render the deployment first: slmlab deploy render SPEC --out DIR")
    rel = str(file.relative_to(root)) if root else str(file)
    return validate_compose(read_text(file, "compose file"), rel)


__all__ = ["engine_healthcheck", "render_compose", "scrape_engine_with_key", "validate_compose",
           "validate_compose_file", "writable_paths"]
