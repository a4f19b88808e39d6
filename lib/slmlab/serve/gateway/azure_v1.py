"""Azure's OpenAI v1 route on the course's gateway: every ``/v1/...`` route is also served at ``/openai/v1/...``.

Microsoft now documents one way to call a model deployed in Azure AI Foundry (Azure OpenAI and the other
Foundry Models): the ``openai`` package's plain ``OpenAI`` client, with ``base_url`` set to
``https://<resource>.openai.azure.com/openai/v1/`` and the deployment's name as ``model``. The older
``azure-ai-inference`` SDK (``ChatCompletionsClient``, ``https://<resource>.services.ai.azure.com/models``) is
deprecated and retiring; Microsoft's migration guide moves it to this route. So the same client code reaches the
course's gateway with ``base_url="http://127.0.0.1:<port>/openai/v1/"``.

What the gateway does for it (``create_app`` adds ``AzureV1Alias`` inside its request log):

- a request to ``/openai/v1/<rest>`` is answered by the route ``/v1/<rest>``: ``chat/completions`` (streaming
  too) and ``models``. Security, limits and metrics see ``/v1/<rest>``, so they treat both paths alike; the
  request log keeps the path the client sent;
- the ``api-version`` query parameter Azure's REST examples still send (``?api-version=preview``) is ignored,
  as the v1 API no longer needs it;
- an API key is accepted in Azure's ``api-key`` header as well as in ``Authorization: Bearer <key>`` (what the
  ``openai`` client sends) — see ``security.presented_keys``.

Where it differs from Azure: only ``chat/completions`` and ``models`` exist (Azure's v1 also has ``responses``,
``embeddings``, ``files``, ``fine_tuning``, ``vector_stores``...: 404 here); a Bearer value must be one of the
gateway's keys (Azure also takes Microsoft Entra ID tokens there); ``models`` lists the one served model (Azure:
the resource's models); and ``model`` may be left out (Azure requires the deployment's name).

Sources: https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle (the v1 API, its routes, the
api-key header and Bearer tokens); https://learn.microsoft.com/azure/ai-foundry/how-to/model-inference-to-openai-migration
(azure-ai-inference → the OpenAI SDK).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AZURE_V1_PREFIX = "/openai/v1"
SERVED_PREFIX = "/v1"


def served_path(path: str) -> str | None:
    """The gateway's own path for an Azure v1 path (``/openai/v1/models`` → ``/v1/models``), or None."""
    if path == AZURE_V1_PREFIX or path.startswith(AZURE_V1_PREFIX + "/"):
        return SERVED_PREFIX + path[len(AZURE_V1_PREFIX):]
    return None


class AzureV1Alias:
    """ASGI middleware: requests under /openai/v1 go on as requests under /v1 (a new scope; the caller's is kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = served_path(scope.get("path", "")) if scope["type"] == "http" else None
        if path is not None:
            raw = scope.get("raw_path") or scope["path"].encode("utf-8")
            scope = {**scope, "path": path, "raw_path": SERVED_PREFIX.encode() + raw[len(AZURE_V1_PREFIX):]}
        await self.app(scope, receive, send)
