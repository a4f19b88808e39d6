"""A stand-in of the Azure AI Foundry model catalog for the course's models, served on 127.0.0.1.

The real catalog (``POST https://api.catalog.azureml.ms/asset-gallery/v1.0/models``, what ai.azure.com's "Model
catalog" page and Foundry Local read) lists models and their deployable variants. Browsing it for an organisation's
resources, and deploying from it, needs an Azure subscription and credentials; its *shape* does not. This module
builds the same kind of entries from the course's own data and serves them with ``slmlab.foundry.catalog``, so
the query language (``slmlab.foundry.catalog_filters``) can be learnt offline:

- one **model** entry per model of ``slmlab.models.catalog`` (publisher and display name from its Hugging Face
  repository, its licence, its inference task: ``chat-completion`` for instruct models, ``text-generation``
  for base models, its context window);
- one **variant** entry per set of weights that is on this machine now: the bundled GGUF files (llama.cpp) and
  the ONNX Runtime GenAI folders ``slmlab.convert.gguf_to_onnx`` has built (Foundry Local's format). A variant
  names its parent model (``properties/variantInfo/parents``) and carries its format, quantization, device,
  execution provider (ONNX only: llama.cpp is not an ONNX Runtime one; ONNX variants also carry Foundry Local's
  deployment option) and real size on disk (``properties/variantInfo/variantMetadata/fileSizeBytes``, summed
  over the files).

Nothing is made up beyond what the real catalog needs and the course cannot know: the registry is ``slmlab``
and every version is 1. ``deployment(entry)`` says how the course's gateway serves a variant
(``slmlab.serve.gateway.server.app_server(**deployment(entry))``).

Sources: https://learn.microsoft.com/azure/ai-foundry/foundry-local/reference/reference-catalog-api (entry fields),
https://github.com/azure-ai-foundry/mcp-foundry (how a client filters and pages the public catalog).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.foundry.catalog import CATALOG_PATH, FOUNDRY_LOCAL_DEPLOYMENT, HEALTH_PATH, run
from slmlab.foundry.catalog_filters import DEFAULT_PAGE_SIZE, pages, read_path
from slmlab.models.catalog import CATALOG, ModelSpec
from slmlab.models.resolver import BUNDLED, bundled_file
from slmlab.process import ServerProcess

REGISTRY = "slmlab"
VARIANT = "properties/variantInfo/variantMetadata/"
_ORT_FOLDER = re.compile(r"^(?P<key>.+)-ort-(?P<precision>int4|int8|fp32)(?:-[0-9a-f]{8})?$")


def asset_id(name: str) -> str:
    """The asset id of an entry, as the real catalog writes them (registry, name, version)."""
    return f"azureml://registries/{REGISTRY}/models/{name}/versions/1"


def task_of(spec: ModelSpec) -> str:
    """The catalog's inference task for a model: chat-completion for an instruct model, else text-generation."""
    return "chat-completion" if spec.chat else "text-generation"


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    """The catalog entry of one model of the course's catalog (no files: its variants have them)."""
    publisher, _, display = spec.hub_id.partition("/")
    task = task_of(spec)
    return {
        "assetId": asset_id(spec.key), "entityId": f"{REGISTRY}-{spec.key}-1", "type": "models", "kind": "Versioned",
        "labels": ["latest"], "version": "1",
        "annotations": {"tags": {"alias": spec.key, "task": task, "license": spec.license, "author": publisher},
                        "archived": False,
                        "systemCatalogData": {"publisher": publisher, "displayName": display, "inferenceTasks": [task],
                                              "modelLimits": {"textLimits": {"inputContextWindow": spec.context}}}},
        "properties": {"name": spec.key, "version": 1},
    }


def variant_entry(spec: ModelSpec, name: str, path: Path, model_type: str, quantization: str) -> dict[str, Any]:
    """The entry of one variant of `spec` whose files are at `path` (a file or a folder), sized from the disk."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    entry = model_entry(spec)
    metadata: dict[str, Any] = {"modelType": model_type, "quantization": [quantization], "device": "cpu",
                                "fileSizeBytes": sum(p.stat().st_size for p in files)}
    if model_type == "ONNX":  # what Foundry Local runs, and asks the catalog for
        metadata["executionProvider"] = "CPUExecutionProvider"
        entry["annotations"]["systemCatalogData"]["deploymentOptions"] = [FOUNDRY_LOCAL_DEPLOYMENT]
    entry.update(assetId=asset_id(name), entityId=f"{REGISTRY}-{name}-1")
    entry["annotations"]["tags"]["directoryPath"] = str(path if path.is_dir() else path.parent)
    entry["properties"] = {"name": name, "version": 1,
                           "variantInfo": {"parents": [{"assetId": asset_id(spec.key)}], "variantMetadata": metadata}}
    return entry


def gguf_variants() -> list[dict[str, Any]]:
    """The bundled GGUF files that are on disk now (none is assembled or downloaded to list it)."""
    from slmlab.models.gguf import read_file_type

    found = []
    for key, bundled in BUNDLED.items():
        path = bundled_file(key) if bundled.format == "gguf" and key in CATALOG else None
        if path is not None:
            quant = read_file_type(path)
            found.append(variant_entry(CATALOG[key], f"{key}-{quant.lower()}-gguf", path, "GGUF", quant))
    return found


def onnx_variants(converted: Path | None = None) -> list[dict[str, Any]]:
    """The finished ONNX Runtime GenAI folders of catalog models that slmlab.convert.gguf_to_onnx has built."""
    from slmlab.convert.gguf_to_onnx import converted_dir, read_marker

    folder = converted if converted is not None else converted_dir()
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _ORT_FOLDER.match(path.name)
        if match and match["key"] in CATALOG and (path / "genai_config.json").is_file() and read_marker(path):
            found.append(variant_entry(CATALOG[match["key"]], path.name, path, "ONNX", match["precision"]))
    return found


def entries() -> list[dict[str, Any]]:
    """The whole stand-in catalog: every model of the course's catalog, then the variants on this machine."""
    return [model_entry(spec) for spec in CATALOG.values()] + gguf_variants() + onnx_variants()


def serve() -> ServerProcess:
    """The stand-in catalog on 127.0.0.1, as a child process (not started: ``.start()``, or a ``with`` block).

    The child builds entries() itself, from the same files; POST queries to its url (``search``).
    """
    return ServerProcess([sys.executable, "-m", "slmlab.foundry.gallery", "--port", "{port}"],
                         ready_url=HEALTH_PATH, name="foundry-gallery", startup_timeout=30, stop_timeout=5)


def search(url: str, filters: Sequence[Mapping[str, Any]] = (), page_size: int = DEFAULT_PAGE_SIZE,
           max_pages: int = 100) -> list[dict[str, Any]]:
    """Every entry a catalog at `url` (its base, or the full CATALOG_PATH) finds for `filters`, page after page.

    A request the catalog refuses (a bad filter, page size or token) raises its own message as a SlmLabError.
    """
    import httpx

    endpoint = url if url.rstrip("/").endswith(CATALOG_PATH) else url.rstrip("/") + CATALOG_PATH

    def ask(body: dict[str, Any]) -> Mapping[str, Any]:
        reply = httpx.post(endpoint, json=body, timeout=30)
        if reply.status_code == 400:
            error = reply.json().get("error", {})
            raise SlmLabError(f"The catalog refused the query: {error.get('message')}", error.get("whatToDo", ""))
        reply.raise_for_status()
        return reply.json()

    found: list[dict[str, Any]] = []
    for number, page in enumerate(pages(ask, filters, page_size), start=1):
        if number > max_pages:
            raise SlmLabError(f"The catalog was still answering after {max_pages} pages.",
                              "Narrow the query with more filters, or raise max_pages.")
        found += page
    return found


def is_variant(entry: Mapping[str, Any]) -> bool:
    """True for a variant (files to deploy), False for a model entry."""
    return bool(read_path(entry, VARIANT + "modelType"))


def _first(entry: Mapping[str, Any], path: str) -> Any:
    return next(iter(read_path(entry, path)), "")


def rows(found: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One short row per entry, for a table: name, task, licence, publisher, and a variant's format and size."""
    table = []
    for entry in found:
        size = _first(entry, VARIANT + "fileSizeBytes")
        kind = (_first(entry, VARIANT + "modelType"), _first(entry, VARIANT + "quantization"))
        variant = " ".join(str(v) for v in kind if v)
        table.append({"name": _first(entry, "properties/name"), "task": _first(entry, "annotations/tags/task"),
                      "license": _first(entry, "annotations/tags/license"),
                      "publisher": _first(entry, "annotations/systemCatalogData/publisher"),
                      "variant": variant, "MB": round(size / 1e6, 1) if size else ""})
    return table


def deployment(entry: Mapping[str, Any]) -> dict[str, Any]:
    """app_server's arguments that serve a variant with the course's gateway: llama.cpp for GGUF, ONNX Runtime
    GenAI for an ONNX folder."""
    name, kind = _first(entry, "properties/name"), _first(entry, VARIANT + "modelType")
    if kind == "GGUF":
        return {"engine": "llamacpp", "model": read_path(entry, "annotations/tags/alias")[0]}
    if kind == "ONNX":
        return {"engine": "onnx", "model": read_path(entry, "annotations/tags/directoryPath")[0]}
    raise SlmLabError(f"'{name}' is a model entry, not a variant: it has no files on this machine to serve.",
                      f"Pick one of its variants: filter on 'properties/variantInfo/parents/assetId' eq "
                      f"'{asset_id(str(name))}'.")


def main(argv: Sequence[str] | None = None) -> None:
    """Serve entries() on 127.0.0.1 until stopped: ``python -m slmlab.foundry.gallery --port 8765``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    run(entries(), parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
