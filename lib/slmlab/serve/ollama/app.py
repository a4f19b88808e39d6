"""The Ollama REST API (docs/api.md in the Ollama repository) as a FastAPI app, backed by llama.cpp.

Native endpoints: ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``, ``/api/generate``,
``/api/chat``, ``/api/embed``, ``/api/embeddings``, ``/api/create``, ``/api/copy``, ``/api/delete``,
``/api/pull``, ``/api/blobs/:digest`` (routes_generation, routes_models); OpenAI-compatible
``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings`` (routes_openai); and ``/metrics`` for Prometheus.
Streams are NDJSON (one JSON object per line) unless ``"stream": false``; durations are nanoseconds; errors are
``{"error": "..."}`` with 400/404/500, or an ``{"error": ...}`` line once a stream has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from slmlab.monitoring.structured_log import RequestLogMiddleware
from slmlab.serve.ollama import routes_generation, routes_models, routes_openai
from slmlab.serve.ollama.protocol import ApiError, validation_message
from slmlab.serve.ollama.registry import Registry
from slmlab.serve.ollama.routes_models import VERSION
from slmlab.serve.ollama.runner import Runner
from slmlab.serve.ollama.state import ServerState, server_state

log = logging.getLogger("slmlab.ollama")


def create_app(registry: Registry | None = None, runner: Runner | None = None, preload: Sequence[str] = (),
               default_ctx: int = 2048, max_loaded: int = 3, keep_alive: float | None = None) -> FastAPI:
    """The FastAPI app; `preload` names bundled models to install at start (as if pulled)."""
    registry = registry or Registry()
    runner = runner or Runner(registry, default_ctx=default_ctx, max_loaded=max_loaded,
                              default_keep_alive=300.0 if keep_alive is None else keep_alive)
    app = FastAPI(title="slmlab Ollama-compatible server", version=VERSION, lifespan=_lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ollama = ServerState(registry, runner, preload)
    install_error_handlers(app)
    app.middleware("http")(_count_requests)
    app.add_middleware(RequestLogMiddleware, service="ollama")  # outermost: one JSON-able line per request, its id
    attach_routers(app)
    return app


def attach_routers(app: FastAPI) -> None:
    """The native routes, then the OpenAI-compatible ones."""
    for module in (routes_models, routes_generation, routes_openai):
        app.include_router(module.router)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Install the preloaded models and read their headers; expire idle models while serving; unload at the end."""
    state: ServerState = app.state.ollama
    installed = await asyncio.to_thread(state.registry.ensure_bundled, state.preload)
    if installed:
        log.info("installed %s", ", ".join(installed))
    await asyncio.to_thread(state.registry.warm_up)  # read GGUF headers now, so /api/tags answers at once
    for name in state.registry.names():  # their series exist at 0 before the first request
        state.metrics.declare_model(name)
    task = asyncio.create_task(state.runner.expiry_loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.to_thread(state.runner.shutdown)


# ---------------------------------------------------------------------------------------------- errors
def error_response(request: Request, status: int, message: str) -> JSONResponse:
    """``{"error": message}``, or OpenAI's ``{"error": {"message", "type", ...}}`` under /v1/."""
    if request.url.path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "api_error"
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                            status_code=status)
    return JSONResponse({"error": message}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """ApiError as its status; a request that does not validate as 400; unknown routes as Ollama's 404/405."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 400, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = {404: "404 page not found", 405: "405 method not allowed"}.get(exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, message)


# ---------------------------------------------------------------------------------------------- metrics
async def _count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Requests, latency and errors per endpoint (``/api/blobs/<digest>`` counted as ``/api/blobs``)."""
    metrics = server_state(request).metrics
    start = time.perf_counter()
    route = request.url.path if request.url.path.startswith(("/api/", "/v1/", "/metrics")) else "/"
    route = "/api/blobs" if route.startswith("/api/blobs/") else route
    try:
        response = await call_next(request)
    except Exception:
        metrics.requests.labels(route, "500").inc()
        raise
    metrics.requests.labels(route, str(response.status_code)).inc()
    metrics.request_seconds.labels(route).observe(time.perf_counter() - start)
    if response.status_code >= 400:
        metrics.errors.labels(route).inc()
    return response
