"""The course's FastAPI service: an OpenAI-compatible chat API over any slmlab backend, with metrics and security.

    app = create_app(lambda: open_backend("llamacpp"), AppSettings(rate_limit="60/minute"))

Endpoints: ``POST /v1/chat/completions`` (OpenAI's shape; ``"stream": true`` answers with server-sent events,
``data: {...}`` chunks then ``data: [DONE]``), ``GET /v1/models``, ``GET /healthz`` (the process is alive),
``GET /readyz`` (the model is loaded and answers: 503 otherwise), ``GET /metrics`` (Prometheus) and ``GET /``
(a small chat page that streams answers). Every ``/v1/...`` route also answers at ``/openai/v1/...``, the
path of Azure's OpenAI v1 API, and a key may come in Azure's ``api-key`` header (``azure_v1``). One model
instance answers one request at a time (the others wait); generation runs in a worker thread, so the event loop
keeps serving health checks and metrics meanwhile.

Errors are OpenAI-style bodies: invalid JSON or fields → 400 naming the field; a prompt longer than the
context → 400 saying the limit; max_tokens over the cap → 400; a crashed or closed model → 503 (and /readyz
turns 503); no/wrong API key → 401; over the rate limit → 429 with Retry-After; too large a body → 413.

Run it: ``python -m slmlab.serve.gateway.app --engine llamacpp --model smollm2-135m-instruct --port 8000`` (binds
127.0.0.1), or ``uvicorn --factory slmlab.serve.gateway.app:create_app`` with the settings in SLMLAB_* variables
(``AppSettings.from_env``, ``backend_factory_from_env``). With ``--engine openai --upstream-url URL`` it is a
gateway in front of another server: the upstream model it calls is ``--model``, else ``--served-model-name`` when
the upstream has it, else the upstream's only chat model (never simply the first one it lists).

Layout: ``create_app`` only wires the pieces together. The routes are ``APIRouter``s by topic
(``routes_chat``: /v1/chat/completions and /v1/models; ``routes_ops``: /healthz, /readyz, /metrics;
``routes_page``: the chat page), each with an ``attach_router(app)``; their handlers reach the model slot, the
metrics and the settings through ``state.gateway(request)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Mount

from slmlab.backends.base import Backend
from slmlab.errors import SlmLabError
from slmlab.monitoring.structured_log import RequestLogMiddleware, configure_logging, uvicorn_log_options
from slmlab.process import HOST
from slmlab.serve.gateway import routes_chat, routes_ops, routes_page
from slmlab.serve.gateway.azure_v1 import AzureV1Alias
from slmlab.serve.gateway.metrics import MetricsMiddleware, ServiceMetrics
from slmlab.serve.gateway.security import ApiKeys, RateLimiter, SecurityMiddleware, add_cors, check_bind_host
from slmlab.serve.gateway.settings import (
    AppSettings,
    backend_factory,
    backend_factory_from_env,
    is_upstream_engine,
    upstream_api_key,
    upstream_options,
)
from slmlab.serve.gateway.state import Gateway
from slmlab.serve.slot import ModelSlot

__all__ = ["AppSettings", "backend_factory_from_env", "create_app", "main", "run"]
log = logging.getLogger("slmlab.serve")


# ---------------------------------------------------------------------------------------------- the app


def create_app(backend: Backend | Callable[[], Backend] | None = None, settings: AppSettings | None = None) -> FastAPI:
    """The FastAPI app serving `backend` (a Backend, borrowed; or a factory, loaded at startup and closed at shutdown).

    With no arguments (``uvicorn --factory slmlab.serve.gateway.app:create_app``) both come from the environment.
    The app answers /healthz at once; /readyz turns 200 when the model is loaded.
    """
    settings = AppSettings.from_env() if settings is None else settings
    if not isinstance(settings, AppSettings):
        raise SlmLabError(f"settings must be an AppSettings, not {type(settings).__name__}.",
                          "Pass AppSettings(...), e.g. AppSettings(rate_limit='60/minute').")
    slot = ModelSlot(backend_factory_from_env() if backend is None else backend, max_waiting=settings.max_waiting,
                     parallel=settings.upstream_parallel)
    state = Gateway(slot, ServiceMetrics(), settings)
    app = FastAPI(title="slmlab chat service", version="1", lifespan=_lifespan(state),
                  docs_url="/docs" if settings.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.docs else None)
    app.state.gateway = state
    app.state.slot, app.state.metrics, app.state.settings = slot, state.metrics, settings
    topics = [routes_ops, routes_chat, *([routes_page] if settings.chat_page else [])]
    for topic in topics:
        topic.attach_router(app)
    _add_middleware(app, state, _route_table(app, [topic.router for topic in topics]))
    return app


def _lifespan(state: Gateway) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """Load the model in the background at startup (/healthz answers meanwhile); close it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async def load() -> None:
            await state.slot.load()
            state.note_readiness(state.slot.state == "ready")

        loading = asyncio.create_task(load())  # not awaited: /healthz answers while the model loads
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await state.slot.close()

    return lifespan


def _route_table(app: FastAPI, routers: Sequence[APIRouter]) -> list[BaseRoute]:
    """Every route a request can match, for the metrics' route label: the routers' own routes, and the mounts.

    (FastAPI keeps an included router as one entry of app.routes; its routes are read from the router itself.)
    """
    return [*(route for router in routers for route in router.routes),
            *(route for route in app.router.routes if isinstance(route, Mount))]


def _add_middleware(app: FastAPI, state: Gateway, routes: Sequence[BaseRoute]) -> None:
    """Security (keys, rate, size), CORS, metrics and Azure's path alias; the last added runs first, so metrics
    count every answer."""
    settings, metrics = state.settings, state.metrics
    protected = ("/v1/",) if settings.metrics_public else ("/v1/", "/metrics")
    app.add_middleware(SecurityMiddleware, keys=ApiKeys(settings.api_keys),
                       limiter=RateLimiter.parse(settings.rate_limit, settings.rate_burst),
                       max_body_bytes=settings.max_body_bytes, protected=protected,
                       on_reject=lambda reason: metrics.rejected.labels(reason).inc())
    add_cors(app, settings.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: routes)
    app.add_middleware(AzureV1Alias)  # /openai/v1/... is /v1/... for everything inside; the log keeps the original
    app.add_middleware(RequestLogMiddleware, service="gateway")  # outermost: one log line per request, its id


# ---------------------------------------------------------------------------------------------- command line


KEYS_EPILOG = ("API keys come from $SLMLAB_API_KEYS or the file in $SLMLAB_API_KEYS_FILE, never from the command "
               "line (other users can read command lines).")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m slmlab.serve.gateway.app", description=__doc__.split("\n\n")[0],
                                     epilog=KEYS_EPILOG)
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The service's options (also `slmlab serve app`'s)."""
    parser.add_argument("--engine", default="llamacpp", help="slmlab backend: llamacpp, openai, onnx, hf")
    parser.add_argument("--model", default=None, help="model reference (default: the course's default model)")
    parser.add_argument("--n-ctx", type=int, default=None, help="context size (llamacpp, onnx)")
    parser.add_argument("--upstream-url", default=None, help="for --engine openai: the server's URL")
    parser.add_argument("--upstream-parallel", type=int, default=None,
                        help="for --engine openai: requests sent to the server at once, its slots (default 1)")
    parser.add_argument("--host", default=HOST, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--api-keys-file", default=None, help="a file with one API key per line")
    parser.add_argument("--rate-limit", default=None, help="per API key, e.g. 60/minute")
    parser.add_argument("--rate-burst", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None, help="the cap on max_tokens per request")
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeat)")
    parser.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    parser.add_argument("--allow-unauthenticated", action="store_true",
                        help="allow a non-loopback --host without API keys (not recommended)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="stderr log lines: text, or one JSON object per line")
    parser.add_argument("--log-syslog", default=None,
                        help="also ship JSON logs to this syslog aggregator, e.g. tcp://127.0.0.1:5514")


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AppSettings:
    """AppSettings from the environment, overridden by the command line."""
    env = dict(os.environ if env is None else env)
    if args.api_keys_file:
        env["SLMLAB_API_KEYS_FILE"] = args.api_keys_file
    settings = AppSettings.from_env(env)
    changes = {name: value for name, value in (
        ("served_model_name", args.served_model_name), ("rate_limit", args.rate_limit),
        ("rate_burst", args.rate_burst), ("max_tokens_cap", args.max_tokens),
        ("max_body_bytes", args.max_body_bytes), ("upstream_parallel", args.upstream_parallel)) if value is not None}
    if args.cors_origin:
        changes["cors_origins"] = tuple(args.cors_origin)
    if args.docs:
        changes["docs"] = True
    return settings.with_changes(**changes)


def backend_options(args: argparse.Namespace, settings: AppSettings,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The backend's options from the command line: for --engine openai, the upstream's URL and model to call."""
    if is_upstream_engine(args.engine):
        return upstream_options(args.upstream_url, settings.served_model_name, upstream_api_key(env))
    options: dict[str, Any] = {}
    if args.n_ctx:
        options["n_ctx"] = args.n_ctx
    if args.upstream_url:
        options["base_url"] = args.upstream_url
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a model with uvicorn (127.0.0.1 unless --host says otherwise)."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed options until stopped; 2 on a bad option (said in one line)."""
    import uvicorn

    try:
        settings = settings_from_args(args)
        check_bind_host(args.host, bool(settings.api_keys), args.allow_unauthenticated)
        factory = backend_factory(args.engine, args.model, backend_options(args, settings))
        configure_logging("gateway", args.log_level, args.log_format, args.log_syslog)
    except SlmLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s (%s) on http://%s:%d; API keys: %s; rate limit: %s", args.model or "the default model",
             args.engine, args.host, args.port, f"{len(settings.api_keys)} configured" if settings.api_keys else "off",
             settings.rate_limit or "off")
    uvicorn.run(create_app(factory, settings), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5, **uvicorn_log_options(args.log_format, args.log_syslog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
