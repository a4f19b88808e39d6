"""``POST /api/create``: a new model from an installed one (``from``) or an uploaded GGUF blob (``files``), with
the layers a Modelfile adds (template, system, parameters, messages, licence), reported as Ollama's statuses."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.serve.ollama.names import check_name
from slmlab.serve.ollama.protocol import ApiError, CreateRequest, error_message
from slmlab.serve.ollama.registry import ModelEntry, Registry, sha256_text

Status = dict[str, Any]


def plan_create(registry: Registry, req: CreateRequest) -> tuple[ModelEntry, list[Status]]:
    """Check a create request and build the new entry; nothing is written yet (see :func:`create_steps`)."""
    try:
        target = check_name(req.model)
    except SlmLabError as exc:
        raise ApiError(400, exc.problem) from None
    if req.quantize:
        raise ApiError(400, "quantize is not supported by slmlab's server: quantize with llama.cpp "
                            "(slmlab's quantization notebook), then create from the GGUF file")
    if req.adapters:
        raise ApiError(400, "ADAPTER (LoRA adapters) is not supported by slmlab's server")
    if req.from_:
        entry, steps = _from_model(registry, target, req.from_)
    elif req.files:
        entry, steps = _from_blob(registry, target, req.files)
    else:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    return entry, steps + _apply_layers(entry, req)


def create_steps(registry: Registry, entry: ModelEntry, steps: list[Status]) -> Iterator[Status]:
    """The statuses, then the manifest written and "success"."""
    yield from steps
    yield {"status": "writing manifest"}
    registry.put(entry)
    yield {"status": "success"}


def _from_model(registry: Registry, target: str, source: str) -> tuple[ModelEntry, list[Status]]:
    """A copy of an installed model (a bundled one is pulled first) under the new name."""
    steps: list[Status] = []
    parent = registry.get(source)
    if parent is None and registry.bundled(source) is not None:
        steps += [s for s in registry.pull_steps(source) if s["status"] != "success"]
        parent = registry.get(source)
    if parent is None:
        raise ApiError(404, f"model '{source}' not found, try pulling it first")
    entry = ModelEntry(**{**copy.deepcopy(parent.__dict__), "name": target, "parent": parent.name})
    steps.append({"status": f"using existing layer sha256:{parent.weights_digest or parent.digest}"})
    return entry, steps


def _from_blob(registry: Registry, target: str, files: dict[str, str]) -> tuple[ModelEntry, list[Status]]:
    """A model on one uploaded GGUF file (``files``: file name -> blob digest)."""
    from slmlab.models.gguf import check_gguf_file

    ggufs = [(name, digest) for name, digest in files.items() if name.lower().endswith(".gguf")]
    if len(ggufs) != 1:
        raise ApiError(400, "files must name exactly one .gguf file (safetensors folders are not supported here)")
    digest = ggufs[0][1]
    try:
        path = registry.blob_path(digest)
    except SlmLabError as exc:
        raise ApiError(400, exc.problem) from None
    if not path.exists():
        raise ApiError(400, f"blob {digest} not found: upload it first (POST /api/blobs/{digest})")
    try:
        check_gguf_file(path)
    except SlmLabError as exc:
        raise ApiError(400, error_message(exc)) from None
    entry = ModelEntry(name=target, base="", blob=digest, template="{{ .Prompt }}",
                       weights_digest=digest.split(":", 1)[1])
    return entry, [{"status": "parsing GGUF"}, {"status": f"using existing layer {digest}"}]


def _apply_layers(entry: ModelEntry, req: CreateRequest) -> list[Status]:
    """Set the layers the request gives on `entry`; a "creating new layer" status for each."""
    layers: list[Any] = []
    if req.template is not None:
        entry.template = req.template
        layers.append(entry.template)
    if req.system is not None:
        entry.system = req.system
        layers.append(entry.system)
    if req.parameters is not None:
        entry.parameters = {**entry.parameters, **req.parameters}
        layers.append(json.dumps(entry.parameters, sort_keys=True))
    if req.messages is not None:
        entry.messages = [m.plain() for m in req.messages]
        layers.append(json.dumps(entry.messages))
    if req.license is not None:
        entry.license = list(req.license)
        layers.append(json.dumps(entry.license))
    return [{"status": f"creating new layer sha256:{sha256_text(layer)}"} for layer in layers]
