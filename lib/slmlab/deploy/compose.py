"""The compose file (engine + gateway + Prometheus), validated against the Compose Specification's schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from slmlab.deploy.render import render_template
from slmlab.deploy.spec import Plan
from slmlab.errors import SlmLabError

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


@dataclass(frozen=True)
class SchemaError:
    """One place where a document breaks its schema."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field or '(top level)'}: {self.message}"


def _field(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_compose(data: dict[str, Any] | str, path: str = "compose.yaml") -> list[SchemaError]:
    """Every violation of the Compose Specification's JSON schema (empty list: valid)."""
    import yaml

    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as err:
            return [SchemaError(path, "", f"not valid YAML: {err}")]
    if not isinstance(data, dict):
        return [SchemaError(path, "", "a compose file must be a mapping")]
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    return [SchemaError(path, _field(e.absolute_path), e.message) for e in errors]


def validate_compose_file(file: str | Path, root: str | Path | None = None) -> list[SchemaError]:
    """Validate a compose file on disk."""
    file = Path(file)
    if not file.is_file():
        raise SlmLabError(f"{file} does not exist.", "Render the deployment first: slmlab deploy render SPEC --out DIR")
    rel = str(file.relative_to(root)) if root else str(file)
    return validate_compose(file.read_text(encoding="utf-8"), rel)


__all__ = ["SchemaError", "render_compose", "validate_compose", "validate_compose_file", "writable_paths"]
