"""The operations routes: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from slmlab.serve.gateway.state import gateway

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests (the model may still be loading)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the model is loaded and answers a cheap call; 503 with the reason otherwise."""
    state = gateway(request)
    ready, why = await state.slot.probe()
    state.note_readiness(ready)
    body = {"status": "ready" if ready else "not ready", "model": state.served_name(), "detail": why}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """The service's metrics in Prometheus' text format, with the current load."""
    state = gateway(request)
    state.metrics.waiting.set(state.slot.waiting)
    state.metrics.running.set(state.slot.running)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


def attach_router(app: FastAPI) -> None:
    """Serve the probes and the metrics from `app`."""
    app.include_router(router)
