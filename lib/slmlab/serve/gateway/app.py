"""The course's FastAPI service: an OpenAI-compatible chat API over any slmlab backend, with metrics and security.

    app = create_app(lambda: open_backend("llamacpp"), AppSettings(rate_limit="60/minute"))

Endpoints: ``POST /v1/chat/completions`` (OpenAI's shape; ``"stream": true`` answers with server-sent events,
``data: {...}`` chunks then ``data: [DONE]``), ``GET /v1/models``, ``GET /healthz`` (the process is alive),
``GET /readyz`` (the model is loaded and answers: 503 otherwise), ``GET /metrics`` (Prometheus) and ``GET /``
(a small chat page that streams answers). One model instance answers one request at a time (the others wait);
generation runs in a worker thread, so the event loop keeps serving health checks and metrics meanwhile.

Errors are OpenAI-style bodies: invalid JSON or fields → 400 naming the field; a prompt longer than the
context → 400 saying the limit; max_tokens over the cap → 400; a crashed or closed model → 503 (and /readyz
turns 503); no/wrong API key → 401; over the rate limit → 429 with Retry-After; too large a body → 413.

Run it: ``python -m slmlab.serve.gateway.app --engine llamacpp --model smollm2-135m-instruct --port 8000`` (binds
127.0.0.1), or ``uvicorn --factory slmlab.serve.gateway.app:create_app`` with the settings in SLMLAB_* variables
(``AppSettings.from_env``, ``backend_factory_from_env``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import Request

from slmlab.backends.base import Backend, GenerationOptions
from slmlab.errors import SlmLabError, UpstreamError
from slmlab.process import HOST
from slmlab.serve.gateway import protocol as api
from slmlab.serve.gateway.metrics import MetricsMiddleware, ServiceMetrics
from slmlab.serve.gateway.security import (
    ApiKeys,
    RateLimiter,
    SecurityMiddleware,
    add_cors,
    check_bind_host,
    check_max_tokens,
    load_api_keys,
)
from slmlab.serve.slot import ModelSlot, Run, RunResult, SlotBusy, StartFailed

log = logging.getLogger("slmlab.serve")
STATIC = Path(__file__).resolve().parent / "static"
# The chat page loads only its own script and style and talks only to this server.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ENV = {  # the environment variables create_app() reads when it is given no settings (uvicorn --factory)
    "backend": "SLMLAB_BACKEND", "model": "SLMLAB_MODEL", "context": "SLMLAB_CONTEXT",
    "upstream_url": "SLMLAB_UPSTREAM_URL", "upstream_key_file": "SLMLAB_UPSTREAM_API_KEY_FILE",
    "served_model_name": "SLMLAB_SERVED_MODEL_NAME", "rate_limit": "SLMLAB_RATE_LIMIT",
    "rate_burst": "SLMLAB_RATE_BURST", "max_body_bytes": "SLMLAB_MAX_BODY_BYTES",
    "max_tokens_cap": "SLMLAB_MAX_TOKENS", "cors_origins": "SLMLAB_CORS_ORIGINS", "docs": "SLMLAB_DOCS",
}


@dataclass(frozen=True)
class AppSettings:
    """What the service allows. API keys are never shown in its repr; none configured means auth is off."""

    served_model_name: str | None = None  # the id in /v1/models and answers (default: the backend's model name)
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # accepted keys (see security.load_api_keys)
    rate_limit: str | None = None  # per API key (or per client address without keys), e.g. "60/minute"
    rate_burst: int | None = None  # requests allowed at once (default: the count in rate_limit)
    max_body_bytes: int = 256 * 1024  # larger request bodies get 413
    max_tokens_cap: int = 1024  # a larger max_tokens gets 400
    default_max_tokens: int = 256  # when the request sets none (never above the cap)
    max_waiting: int = 32  # requests queued for the model; more get 503 with Retry-After
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none: CORS off)
    metrics_public: bool = True  # /metrics without a key (Prometheus scrapes it inside the cluster)
    docs: bool = False  # FastAPI's /docs and /openapi.json (off: less to expose)
    chat_page: bool = True  # the chat page at /

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", load_api_keys(keys=tuple(self.api_keys)) if self.api_keys else ())
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for name in ("max_body_bytes", "max_tokens_cap", "default_max_tokens", "max_waiting"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SlmLabError(f"AppSettings({name}={value!r}) must be a whole number, at least 1.",
                                  f"Use e.g. {name}={AppSettings.__dataclass_fields__[name].default}.")
        RateLimiter.parse(self.rate_limit, self.rate_burst)  # fail now on a bad rate

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Settings from SLMLAB_* variables (see ENV); API keys from $SLMLAB_API_KEYS / $SLMLAB_API_KEYS_FILE."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"api_keys": load_api_keys(env=env)}
        for name in ("served_model_name", "rate_limit"):
            if env.get(ENV[name]):
                values[name] = env[ENV[name]]
        for name in ("rate_burst", "max_body_bytes", "max_tokens_cap"):
            if env.get(ENV[name]):
                values[name] = _env_int(env, ENV[name])
        if env.get(ENV["cors_origins"]):
            values["cors_origins"] = tuple(o.strip() for o in env[ENV["cors_origins"]].split(",") if o.strip())
        if env.get(ENV["docs"]):
            values["docs"] = env[ENV["docs"]].strip().lower() in ("1", "true", "yes", "on")
        return cls(**values)

    def with_changes(self, **changes: Any) -> AppSettings:
        """A copy with some settings changed."""
        return replace(self, **changes)


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise SlmLabError(f"${name}={env[name]!r} is not a whole number.", f"Set {name} to a number.") from None


def backend_factory_from_env(env: Mapping[str, str] | None = None) -> Callable[[], Backend]:
    """The backend the environment asks for: $SLMLAB_BACKEND (llamacpp | openai | onnx | hf), $SLMLAB_MODEL,
    $SLMLAB_CONTEXT; for openai, $SLMLAB_UPSTREAM_URL and the key in $SLMLAB_UPSTREAM_API_KEY_FILE."""
    env = dict(os.environ if env is None else env)
    engine = env.get(ENV["backend"]) or "llamacpp"
    model = env.get(ENV["model"]) or None
    options: dict[str, Any] = {}
    if engine.lower() in ("openai", "http"):
        options["base_url"] = env.get(ENV["upstream_url"]) or "http://127.0.0.1:8000/v1"
        model = model or env.get(ENV["served_model_name"]) or None
        key_file = env.get(ENV["upstream_key_file"])
        if key_file:
            from slmlab.serve.gateway.security import read_keys_file

            options["api_key"] = read_keys_file(key_file)[0]
    elif env.get(ENV["context"]) and engine.lower().replace("-", "").replace("_", "") in ("llamacpp", "llama", "onnx"):
        options["n_ctx"] = _env_int(env, ENV["context"])
    return _factory(engine, model, options)


def _factory(engine: str, model: str | None, options: dict[str, Any]) -> Callable[[], Backend]:
    from slmlab.backends import open_backend

    def factory() -> Backend:
        if model is None:
            return open_backend(engine, **options)
        return open_backend(engine, model, **options)

    factory.__qualname__ = f"open_backend({engine!r}, {model!r})"
    return factory


# ---------------------------------------------------------------------------------------------- the app


def create_app(backend: Backend | Callable[[], Backend] | None = None, settings: AppSettings | None = None) -> Any:
    """The FastAPI app serving `backend` (a Backend, borrowed; or a factory, loaded at startup and closed at shutdown).

    With no arguments (``uvicorn --factory slmlab.serve.gateway.app:create_app``) both come from the environment.
    The app answers /healthz at once; /readyz turns 200 when the model is loaded.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    settings = AppSettings.from_env() if settings is None else settings
    if not isinstance(settings, AppSettings):
        raise SlmLabError(f"settings must be an AppSettings, not {type(settings).__name__}.",
                          "Pass AppSettings(...), e.g. AppSettings(rate_limit='60/minute').")
    slot = ModelSlot(backend_factory_from_env() if backend is None else backend, max_waiting=settings.max_waiting)
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async def load() -> None:
            await slot.load()
            metrics.ready.set(1 if slot.state == "ready" else 0)
            if slot.state == "ready":
                metrics.declare_model(served_name())

        loading = asyncio.create_task(load())  # not awaited: /healthz answers while the model loads
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await slot.close()

    app = FastAPI(title="slmlab chat service", version="1", lifespan=lifespan,
                  docs_url="/docs" if settings.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.docs else None)
    app.state.slot, app.state.metrics, app.state.settings = slot, metrics, settings

    def served_name() -> str:
        return settings.served_model_name or slot.model_name or "model"

    def fail(status: int, body: dict[str, Any], reason: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
        if reason:
            metrics.rejected.labels(reason).inc()
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return fail(400, api.validation_error(list(exc.errors())), "bad_request")

    # ------------------------------------------------------------------ probes, metrics, models

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests (the model may still be loading)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded and answers a cheap call; 503 with the reason otherwise."""
        ready, why = await slot.probe()
        metrics.ready.set(1 if ready else 0)
        if ready:
            metrics.declare_model(served_name())  # a model loaded on a retry gets its series too
            return JSONResponse({"status": "ready", "model": served_name(), "detail": why})
        return JSONResponse({"status": "not ready", "model": served_name(), "detail": why}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        metrics.waiting.set(slot.waiting)
        metrics.running.set(slot.running)
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The one model this service serves."""
        return {"object": "list", "data": [{"id": served_name(), "object": "model", "created": started,
                                            "owned_by": "slmlab"}]}

    started = int(time.time())

    # ------------------------------------------------------------------ chat

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: api.ChatRequest, request: Request) -> Any:
        """OpenAI's chat completions: a whole answer, or server-sent events with ``"stream": true``."""
        arrived = time.perf_counter()
        if slot.state != "ready":
            reason = "is still loading" if slot.state == "loading" else f"is not available ({slot.error or slot.state})"
            return fail(503, api.error(f"The model {reason}.", "model_not_ready", "server_error"), "unavailable",
                        {"Retry-After": "5"})
        model = served_name()
        if body.model is not None and body.model not in (model, slot.model_name):
            return fail(404, api.error(f"The model '{body.model}' does not exist here; this server serves '{model}'.",
                                       "model_not_found", param="model"), "bad_request")
        try:
            max_tokens = check_max_tokens(body.requested_max_tokens(), settings.max_tokens_cap,
                                          settings.default_max_tokens)
            gen = body.generation_options(max_tokens)
            GenerationOptions.from_kwargs(**gen)
        except SlmLabError as exc:
            param = "max_tokens" if "max_tokens" in exc.problem else None
            return fail(400, api.error(exc.problem, "invalid_value", param=param), "bad_request")

        def finished(result: RunResult) -> None:  # called once the worker is done, whoever stopped it
            metrics.observe_generation(model, result.finish_reason, result.prompt_tokens, result.completion_tokens)

        try:
            run = await slot.start(body.plain_messages(), gen, on_done=finished)
        except SlotBusy:
            return fail(503, api.error("The model is busy: too many requests are waiting.", "server_busy",
                                       "server_error"), "busy", {"Retry-After": "2"})
        except StartFailed as exc:
            return refused(exc)
        metrics.queue_wait.labels(model).observe(run.queue_wait_s)
        ident = api.new_id()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _generation_stream(stream_events(run, ident, model, arrived, include_usage), run)
        pieces: list[str] = []
        try:
            async for piece in run:
                if not pieces:
                    metrics.ttft.labels(model).observe(time.perf_counter() - arrived)
                pieces.append(piece)
                if len(pieces) % 8 == 0 and await request.is_disconnected():
                    run.cancel()  # nobody is waiting for this answer any more: free the model
        except BaseException as exc:
            run.cancel()
            if isinstance(exc, Exception):
                return fail(503, api.error(f"The model failed while answering: {_text(exc)}", "model_error",
                                           "server_error"), "unavailable")
            raise
        result = run.result or RunResult("stop", 0, len(pieces))
        return api.completion(ident, model, "".join(pieces), result.finish_reason, result.prompt_tokens,
                              result.completion_tokens)

    def refused(exc: StartFailed) -> JSONResponse:
        error = exc.error
        if isinstance(error, UpstreamError):  # the model's server failed, not the request: 502, may be retried
            log.error("the upstream model server failed: %s", _text(error))
            return fail(502, api.error(f"The model's server failed: {_text(error)}", "upstream_error",
                                       "server_error"), "upstream_error", {"Retry-After": "1"})
        if exc.model_alive and isinstance(error, SlmLabError):
            over = "context is" in error.problem or "trained on" in error.hint
            message = f"{error.problem} {error.hint}".strip()
            return fail(400, api.error(message, "context_length_exceeded" if over else "invalid_value",
                                       param="messages" if over else None),
                        "over_context" if over else "bad_request")
        log.error("the model failed to start a generation: %s", _text(error))
        metrics.ready.set(0)
        return fail(503, api.error(f"The model is not available: {_text(error)}", "model_unavailable",
                                   "server_error"), "unavailable", {"Retry-After": "5"})

    async def stream_events(run: Run, ident: str, model: str, arrived: float,
                            include_usage: bool) -> AsyncIterator[str]:
        created = int(time.time())
        yield api.sse(api.chunk(ident, model, {"role": "assistant", "content": ""}, created=created))
        first = True
        try:
            async for piece in run:
                if first:
                    first = False
                    metrics.ttft.labels(model).observe(time.perf_counter() - arrived)
                yield api.sse(api.chunk(ident, model, {"content": piece}, created=created))
        except Exception as exc:  # noqa: BLE001 - the status line is sent: report the failure in the stream
            yield api.sse(api.error(f"The model failed while answering: {_text(exc)}", "model_error", "server_error"))
            return
        result = run.result or RunResult("stop", 0, 0)
        yield api.sse(api.chunk(ident, model, {}, result.finish_reason, created=created))
        if include_usage:
            yield api.sse(api.usage_chunk(ident, model, result.prompt_tokens, result.completion_tokens))
        yield api.sse("[DONE]")

    # ------------------------------------------------------------------ the chat page

    if settings.chat_page:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def chat_page() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                                "Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ middleware (the last added runs first)

    keys = ApiKeys(settings.api_keys)
    protected = ("/v1/",) if settings.metrics_public else ("/v1/", "/metrics")
    app.add_middleware(SecurityMiddleware, keys=keys, limiter=RateLimiter.parse(settings.rate_limit,
                                                                                settings.rate_burst),
                       max_body_bytes=settings.max_body_bytes, protected=protected,
                       on_reject=lambda reason: metrics.rejected.labels(reason).inc())
    add_cors(app, settings.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.router.routes)
    return app


def _generation_stream(events: AsyncIterator[str], run: Run) -> Any:
    """A server-sent-events response whose generation is cancelled when the response ends, however it ends."""
    from starlette.responses import StreamingResponse

    class GenerationStream(StreamingResponse):
        async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:  # the client left (or the stream ended): stop generating and free the model
                run.cancel()

    return GenerationStream(events, media_type="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _text(exc: BaseException) -> str:
    return exc.problem if isinstance(exc, SlmLabError) else f"{type(exc).__name__}: {exc}"


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


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AppSettings:
    """AppSettings from the environment, overridden by the command line."""
    env = dict(os.environ if env is None else env)
    if args.api_keys_file:
        env["SLMLAB_API_KEYS_FILE"] = args.api_keys_file
    settings = AppSettings.from_env(env)
    changes = {name: value for name, value in (
        ("served_model_name", args.served_model_name), ("rate_limit", args.rate_limit),
        ("rate_burst", args.rate_burst), ("max_tokens_cap", args.max_tokens),
        ("max_body_bytes", args.max_body_bytes)) if value is not None}
    if args.cors_origin:
        changes["cors_origins"] = tuple(args.cors_origin)
    if args.docs:
        changes["docs"] = True
    return settings.with_changes(**changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a model with uvicorn (127.0.0.1 unless --host says otherwise)."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed options until stopped; 2 on a bad option (said in one line)."""
    import uvicorn

    try:
        settings = settings_from_args(args)
        check_bind_host(args.host, bool(settings.api_keys), args.allow_unauthenticated)
        options: dict[str, Any] = {}
        if args.n_ctx:
            options["n_ctx"] = args.n_ctx
        if args.upstream_url:
            options["base_url"] = args.upstream_url
        factory = _factory(args.engine, args.model, options)
    except SlmLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    log.info("serving %s (%s) on http://%s:%d; API keys: %s; rate limit: %s", args.model or "the default model",
             args.engine, args.host, args.port, f"{len(settings.api_keys)} configured" if settings.api_keys else "off",
             settings.rate_limit or "off")
    uvicorn.run(create_app(factory, settings), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
