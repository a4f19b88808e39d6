"""What every route shares (the model registry, the runner, the metrics), kept on ``app.state``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from slmlab.serve.ollama.metrics import Metrics
from slmlab.serve.ollama.protocol import ApiError
from slmlab.serve.ollama.registry import ModelEntry, Registry
from slmlab.serve.ollama.runner import Runner


class ServerState:
    """The registry, the runner and the metrics of one server, and the lookups every handler starts with."""

    def __init__(self, registry: Registry, runner: Runner, preload: Sequence[str] = ()) -> None:
        self.registry = registry
        self.runner = runner
        self.preload = list(preload)
        self.metrics = Metrics(lambda: len(runner.loaded))

    def entry(self, name: str) -> ModelEntry:
        """The installed model called `name`, or a 404."""
        entry = self.registry.get(name)
        if entry is None:
            raise ApiError(404, f"model '{name}' not found, try pulling it first")
        return entry

    def require(self, entry: ModelEntry, capability: str, action: str, name: str) -> None:
        """A 400 unless the model can do `capability` ("completion", "embedding")."""
        if capability not in entry.capabilities:
            raise ApiError(400, f'"{name}" does not support {action}')

    def keep_alive(self, seconds: float | None) -> float:
        """A request's keep_alive, or the server's default when it gave none."""
        return self.runner.default_keep_alive if seconds is None else seconds


def server_state(request: Request) -> ServerState:
    """The ServerState of the app serving `request`."""
    state: ServerState = request.app.state.ollama
    return state
