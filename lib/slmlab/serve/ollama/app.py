"""The Ollama REST API (docs/api.md in the Ollama repository) as a FastAPI app, backed by llama.cpp.

Native endpoints: ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``, ``/api/generate``,
``/api/chat``, ``/api/embed``, ``/api/embeddings``, ``/api/create``, ``/api/copy``, ``/api/delete``,
``/api/pull``, ``/api/blobs/:digest``; OpenAI-compatible ``/v1/chat/completions``, ``/v1/models``,
``/v1/embeddings``; and ``/metrics`` for Prometheus. Streams are NDJSON (one JSON object per line) unless
``"stream": false``; durations are nanoseconds; errors are ``{"error": "..."}`` with 400/404/500, or an
``{"error": ...}`` line once a stream has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from slmlab.backends.base import GenerationOptions
from slmlab.errors import SlmLabError
from slmlab.serve.ollama.metrics import Metrics
from slmlab.serve.ollama.modelfile import PARAMETERS, check_parameter
from slmlab.serve.ollama.registry import ModelEntry, Registry
from slmlab.serve.ollama.runner import Loaded, Runner, parse_keep_alive

log = logging.getLogger("slmlab.ollama")
VERSION = "0.9.0"  # the Ollama API version this server follows (GET /api/version)
NDJSON = "application/x-ndjson"
# Ollama's sampling defaults (a request's options and a Modelfile's PARAMETERs override them).
DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}
ROLES = ("system", "user", "assistant", "tool")


class ApiError(Exception):
    """An error answered as {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _created_at() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, SlmLabError):
        return f"{exc.problem} {exc.hint}".strip() if exc.hint else exc.problem
    return str(exc)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ApiError(400, f"invalid value for '{name}': expected {names}, got {json.dumps(value)[:60]}")
    return value


def _model_name(body: dict[str, Any]) -> str:
    name = _field(body, "model", str, "") or _field(body, "name", str, "")
    if not name:
        raise ApiError(400, "model is required")
    return name


def parse_options(raw: Any) -> dict[str, Any]:
    """A request's ``options``: known ones checked and converted; unknown ones ignored with a warning (as in Ollama)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid value for 'options': expected an object")
    out = {}
    for key, value in raw.items():
        if key not in PARAMETERS:
            log.warning("invalid option provided: %s", key)
            continue
        try:
            out[key] = check_parameter(key, value, source="options")
        except SlmLabError as exc:
            raise ApiError(400, _message_of(exc)) from None
    return out


def generation_kwargs(options: dict[str, Any], n_ctx: int, prompt_tokens: int) -> dict[str, Any]:
    """Ollama options as slmlab generation options (num_predict -1 or absent: as much as the context holds)."""
    merged = {**DEFAULTS, **options}
    room = max(1, n_ctx - prompt_tokens - 1)
    num_predict = merged.get("num_predict", -1)
    gen = {"max_tokens": min(num_predict, room) if num_predict and num_predict > 0 else room,
           "temperature": max(0.0, float(merged["temperature"])),
           "top_p": min(1.0, float(merged["top_p"])) if merged["top_p"] > 0 else 1.0,
           "top_k": max(0, int(merged["top_k"])),
           "seed": merged["seed"] if isinstance(merged.get("seed"), int) and merged["seed"] >= 0 else None,
           "stop": tuple(merged.get("stop") or ())}
    GenerationOptions(**gen)  # validated here so errors are 400s, not failures mid-stream
    return gen


def chat_messages(entry: ModelEntry, messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """What the template sees for /api/chat: the Modelfile's MESSAGEs, the request's, its SYSTEM first."""
    msgs = [dict(m) for m in entry.messages] + [dict(m) for m in messages]
    if entry.system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": entry.system})
    return msgs


def generate_messages(entry: ModelEntry, prompt: str, system: str | None, with_examples: bool) -> list[dict[str, str]]:
    """What the template sees for /api/generate: system (the request's or the Modelfile's), MESSAGEs, the prompt."""
    msgs = []
    if system or entry.system:
        msgs.append({"role": "system", "content": system or entry.system})
    if with_examples:
        msgs += [dict(m) for m in entry.messages]
    msgs.append({"role": "user", "content": prompt})
    return msgs


def _check_messages(raw: Any) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "invalid value for 'messages': expected a list")
    out = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content", ""), str):
            raise ApiError(400, f"invalid message {i}: expected {{\"role\": one of {', '.join(ROLES)}, "
                                f"\"content\": text}}, got {json.dumps(msg)[:80]}")
        if msg.get("images"):
            raise ApiError(400, "this model does not support image input")
        out.append({"role": msg["role"], "content": msg.get("content") or ""})
    return out


def _ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for item in items:
            yield (json.dumps(item, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type=NDJSON)


class OllamaApp:
    """State shared by the routes: the model registry, the runner, the metrics."""

    def __init__(self, registry: Registry, runner: Runner, preload: Sequence[str] = ()) -> None:
        self.registry = registry
        self.runner = runner
        self.preload = list(preload)
        self.metrics = Metrics(lambda: len(runner.loaded))

    # ------------------------------------------------------------------ lookups
    def entry(self, name: str) -> ModelEntry:
        entry = self.registry.get(name)
        if entry is None:
            raise ApiError(404, f"model '{name}' not found, try pulling it first")
        return entry

    def require(self, entry: ModelEntry, capability: str, action: str, name: str) -> None:
        if capability not in entry.capabilities:
            raise ApiError(400, f'"{name}" does not support {action}')

    def keep_alive(self, body: dict[str, Any]) -> float:
        try:
            return parse_keep_alive(body.get("keep_alive"), self.runner.default_keep_alive)
        except SlmLabError as exc:
            raise ApiError(400, exc.problem) from None

    # ------------------------------------------------------------------ generation
    async def start(self, entry: ModelEntry, options: dict[str, Any], keep_alive: float,
                    build_prompt: Callable[[Loaded], str], want_context: bool = False
                    ) -> tuple[asyncio.Queue, threading.Event, float]:
        """Load the model and check the request on the worker; errors raise here (before any byte is sent).
        Returns a queue of ("piece", text) … then ("done", stats) or ("error", exc), the cancel flag, and t0."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        started: asyncio.Future = loop.create_future()
        t0 = time.perf_counter()

        def settle(fn: Callable[[Any], None], value: Any) -> None:
            loop.call_soon_threadsafe(lambda: None if started.done() else fn(value))

        def put(item: tuple) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            loaded = None
            try:
                n_ctx = self.runner.context_size(entry, options)
                loaded, load_s = self.runner.acquire(entry, n_ctx)
                prompt = build_prompt(loaded)
                n_prompt = len(self.runner.tokenize(loaded, prompt)) + 1
                gen = generation_kwargs(options, loaded.engine.n_ctx, n_prompt)
                pieces = self.runner.stream(loaded, prompt, gen, cancel)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes the request's error
                if loaded is not None:
                    self.runner.release(loaded, keep_alive)
                settle(started.set_exception, exc)
                return
            settle(started.set_result, load_s)
            try:
                for piece in pieces:
                    put(("piece", piece))
                if cancel.is_set():
                    return
                result = loaded.engine.handle.last
                stats = {"load_duration": _ns(load_s), "prompt_eval_count": result.prompt_tokens,
                         "prompt_eval_duration": _ns(result.timings.prompt_eval_s),
                         "eval_count": result.completion_tokens,
                         "eval_duration": _ns(result.extra.get("engine_eval_s") or
                                              max(result.timings.ttft_s + result.timings.eval_s
                                                  - result.timings.prompt_eval_s, 0.0))}
                done_reason = "length" if result.finish_reason == "length" else "stop"
                context = self.runner.tokenize(loaded, prompt + result.text) if want_context else None
                put(("done", (stats, done_reason, context)))
            except BaseException as exc:  # noqa: BLE001
                put(("error", exc))
            finally:
                self.runner.release(loaded, keep_alive)

        self.runner.worker.submit(work)
        try:
            await started
        except asyncio.CancelledError:
            cancel.set()
            raise
        except ApiError:
            raise
        except SlmLabError as exc:
            raise ApiError(400, _message_of(exc)) from None
        except Exception as exc:
            log.exception("generation failed to start")
            raise ApiError(500, f"{type(exc).__name__}: {exc}") from None
        return queue, cancel, t0

    async def events(self, queue: asyncio.Queue, cancel: threading.Event, t0: float, model: str,
                     endpoint: str) -> AsyncIterator[tuple[str, Any]]:
        """The worker's pieces, then ("done", (stats, reason, context)) with total_duration, or ("error", message)."""
        try:
            while True:
                kind, value = await queue.get()
                if kind == "piece":
                    yield kind, value
                elif kind == "done":
                    stats, reason, context = value
                    stats = {"total_duration": _ns(time.perf_counter() - t0), **stats}
                    self.metrics.observe_generation(model, stats)
                    yield kind, (stats, reason, context)
                    return
                else:
                    self.metrics.errors.labels(endpoint).inc()
                    log.error("generation failed: %s", value)
                    yield "error", _message_of(value)
                    return
        finally:
            cancel.set()  # the client went away, or we are done: stop generating

    async def load_only(self, entry: ModelEntry, keep_alive: float) -> str:
        """An empty prompt loads the model (or, with keep_alive 0, unloads it): Ollama's "load"/"unload"."""
        if keep_alive == 0:
            await self.runner.run(self.runner.unload, entry.name)
            return "unload"

        def load() -> None:
            loaded, _ = self.runner.acquire(entry, self.runner.context_size(entry, entry.parameters))
            self.runner.release(loaded, keep_alive)

        try:
            await self.runner.run(load)
        except SlmLabError as exc:
            raise ApiError(500, _message_of(exc)) from None
        return "load"


def create_app(registry: Registry | None = None, runner: Runner | None = None, preload: Sequence[str] = (),
               default_ctx: int = 2048, max_loaded: int = 3, keep_alive: float | None = None) -> FastAPI:
    """The FastAPI app; `preload` names bundled models to install at start (as if pulled)."""
    registry = registry or Registry()
    runner = runner or Runner(registry, default_ctx=default_ctx, max_loaded=max_loaded,
                              default_keep_alive=300.0 if keep_alive is None else keep_alive)
    state = OllamaApp(registry, runner, preload)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        installed = await asyncio.to_thread(registry.ensure_bundled, state.preload)
        if installed:
            log.info("installed %s", ", ".join(installed))
        await asyncio.to_thread(registry.warm_up)  # read GGUF headers now, so /api/tags answers at once
        for name in registry.names():  # their series exist at 0 before the first request
            state.metrics.declare_model(name)
        task = asyncio.create_task(runner.expiry_loop())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(runner.shutdown)

    app = FastAPI(title="slmlab Ollama-compatible server", version=VERSION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ollama = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path.startswith("/v1/"):
            kind = "invalid_request_error" if exc.status < 500 else "api_error"
            return JSONResponse({"error": {"message": exc.message, "type": kind, "param": None, "code": None}},
                                status_code=exc.status)
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "404 page not found" if exc.status_code == 404 else "405 method not allowed" \
            if exc.status_code == 405 else str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable) -> Response:
        start = time.perf_counter()
        route = request.url.path if request.url.path.startswith(("/api/", "/v1/", "/metrics")) else "/"
        route = "/api/blobs" if route.startswith("/api/blobs/") else route
        try:
            response = await call_next(request)
        except Exception:
            state.metrics.requests.labels(route, "500").inc()
            raise
        state.metrics.requests.labels(route, str(response.status_code)).inc()
        state.metrics.request_seconds.labels(route).observe(time.perf_counter() - start)
        if response.status_code >= 400:
            state.metrics.errors.labels(route).inc()
        return response

    from slmlab.serve.ollama import openai_compat, routes

    routes.add_routes(app, state)
    openai_compat.add_routes(app, state)
    return app
