"""A Foundry model catalog served from this machine: the air-gapped way to feed Foundry's web service.

Foundry Local's public catalog is a web API (``POST <host>/asset-gallery/v1.0/models`` with a list of filters,
answered with ``{"value": [model entries], "totalCount": n, "continuationToken": "..."}``).
``Configuration(catalog_urls=[(url, None)])`` points the SDK at another host, which is how an enterprise without
internet access gives its machines a catalog. This module writes the entries for ONNX Runtime GenAI folders and
serves any list of entries on 127.0.0.1 with the standard library only, so ``slmlab.serve.ServerProcess`` can run
it as a child process::

    python -m slmlab.foundry.catalog --port 8765 --entries entries.json

An entry holds what Foundry Local 2.2.1 reads (asset id, entity id, name, version, alias, display name, publisher,
task, device, execution provider, file size) and every field its request filters on. Its request, as sent
(recorded from foundry-local-sdk 2.2.1): ``type eq models``, ``kind eq Versioned``,
``annotations/systemCatalogData/deploymentOptions eq "Foundry Local on Devices"``, ``annotations/archived
NotEquals true``, ``labels eq latest``, and the device and execution provider of this machine, ``pageSize`` 50.
Filters and pages follow the catalog's query language (``slmlab.foundry.catalog_filters``); a request the
catalog cannot answer gets a 400 whose body says what is wrong and what to send instead.
The same server holds the stand-in of the Azure AI Foundry model catalog (``slmlab.foundry.gallery``).
Reference: https://learn.microsoft.com/azure/ai-foundry/foundry-local/reference/reference-catalog-api
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.foundry.catalog_filters import answer

CATALOG_PATH = "/asset-gallery/v1.0/models"  # the path Foundry Local requires at the end of a catalog URL
HEALTH_PATH = "/health"
PUBLISHER = "slmlab"
FOUNDRY_LOCAL_DEPLOYMENT = "Foundry Local on Devices"  # the deployment option Foundry Local asks the catalog for


def catalog_entry(model_id: str, folder: str | Path, alias: str | None = None, display_name: str | None = None,
                  task: str = "chat-completion", device: str = "cpu",
                  execution_provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """The catalog entry Foundry Local turns into model `model_id` ("name:version") for the files in `folder`."""
    name, _, version = model_id.partition(":")
    if not name or not version.isdigit():
        raise ValueError(f"model_id must look like 'name:version' with a whole-number version, not {model_id!r}")
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return {
        "assetId": f"azureml://registries/{PUBLISHER}/models/{name}/versions/{version}",
        "entityId": f"{PUBLISHER}-{name}-{version}", "type": "models", "kind": "Versioned", "labels": ["latest"],
        "annotations": {"tags": {"alias": alias or name, "task": task}, "archived": False,
                        "systemCatalogData": {"publisher": PUBLISHER, "displayName": display_name or name,
                                              "deploymentOptions": [FOUNDRY_LOCAL_DEPLOYMENT]}},
        "properties": {"name": name, "version": int(version),
                       "variantInfo": {"variantMetadata": {"device": device, "executionProvider": execution_provider,
                                                           "modelType": "ONNX", "fileSizeBytes": size}}},
    }


def make_handler(entries: Sequence[dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    """A request handler answering the catalog path (POST with filters, or GET for all) and /health."""

    class CatalogHandler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == HEALTH_PATH:
                self._send(200, {"status": "ok", "models": len(entries)})
            elif path == CATALOG_PATH:
                self._answer({})
            else:
                self._send(404, {"error": f"no such path: {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0].rstrip("/") != CATALOG_PATH:
                self._send(404, {"error": f"no such path: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"code": "BadRequest", "message": "The body is not JSON.",
                                           "whatToDo": "Send a JSON object: {'filters': [...]}."}})
                return
            self._answer(request)

        def _answer(self, request: Any) -> None:
            try:
                self._send(200, answer(entries, request))
            except SlmLabError as exc:  # the request's fault: say what is wrong and what to send
                sys.stderr.write(f"400: {exc.problem}\n")
                self._send(400, {"error": {"code": "BadRequest", "message": exc.problem, "whatToDo": exc.hint}})

        def log_message(self, format: str, *args: Any) -> None:  # one line per request, to the server's log
            sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    return CatalogHandler


def run(entries: Sequence[dict[str, Any]], port: int) -> None:
    """Serve `entries` on 127.0.0.1:`port` until stopped."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(entries))
    print(f"Foundry catalog with {len(entries)} entries on http://127.0.0.1:{port}{CATALOG_PATH}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the entries of a JSON file (a list of catalog entries) on 127.0.0.1 until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--entries", type=Path, required=True, help="a JSON file holding a list of entries")
    args = parser.parse_args(argv)
    run(json.loads(args.entries.read_text()), args.port)


if __name__ == "__main__":
    main()
