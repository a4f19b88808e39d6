"""What every route of the gateway shares (the model slot, the metrics, the settings), and how a handler gets it.

``create_app`` puts one ``Gateway`` in ``app.state.gateway``; a handler reaches it with ``gateway(request)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from slmlab.monitoring.structured_log import annotate
from slmlab.serve.gateway.metrics import ServiceMetrics
from slmlab.serve.gateway.settings import AppSettings
from slmlab.serve.slot import ModelSlot


@dataclass
class Gateway:
    """The one model behind the app, its metrics and its settings."""

    slot: ModelSlot
    metrics: ServiceMetrics
    settings: AppSettings
    started: int = field(default_factory=lambda: int(time.time()))  # "created" in /v1/models

    def served_name(self) -> str:
        """The model id clients see: the configured served name, else the backend's model name."""
        return self.settings.served_model_name or self.slot.model_name or "model"

    def note_readiness(self, ready: bool) -> None:
        """Set the readiness gauge; a ready model gets its series at 0 (also one loaded on a retry)."""
        self.metrics.ready.set(1 if ready else 0)
        if ready:
            self.metrics.declare_model(self.served_name())

    def reject(self, status: int, body: dict[str, Any], reason: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
        """An error answer, counted under `reason` in slmlab_http_rejected_total."""
        if reason:
            self.metrics.rejected.labels(reason).inc()
            annotate(outcome=reason)  # the request's log line says why it was refused
        return JSONResponse(body, status_code=status, headers=headers)


def gateway(request: Request) -> Gateway:
    """The Gateway of the app serving `request`."""
    state: Gateway = request.app.state.gateway
    return state
