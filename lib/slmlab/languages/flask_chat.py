"""The course's chat endpoint in Flask (sync, WSGI), to set beside the FastAPI gateway (async, ASGI).

    with flask_server(model="smollm2-135m-instruct") as server:      # gunicorn, one process, 4 threads
        load_test(server.url, concurrency=4, ...)

The same OpenAI request and answer shapes as the gateway (`slmlab.serve.gateway.protocol`: the pydantic request
model, chunks, errors), so the same clients and `slmlab loadtest` work on both. What differs is how it serves:

- **sync**: each request has a thread of its own (gunicorn's ``gthread`` worker) that blocks while the model
  generates; the model takes one generation at a time, so the others wait on a ``threading.Lock``.
- **streaming**: the view returns a generator; Flask (Werkzeug) sends each string it yields as it comes
  (``stream_with_context`` keeps the request around while it runs).

The gateway does the same work with one event loop: a request waits for the model on an ``asyncio.Lock`` without
holding a thread, and the generation runs in the model's own worker thread (`slmlab.serve.slot`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from slmlab.models.resolver import DEFAULT_MODEL
from slmlab.process import ServerProcess

MODEL_ENV = "SLMLAB_FLASK_MODEL"
MAX_TOKENS_CAP = 256


def create_app(model: str | None = None, n_ctx: int = 1024) -> Any:
    """A Flask app serving `model` (default $SLMLAB_FLASK_MODEL, else the course's default) in llama.cpp."""
    from flask import Flask, Response, jsonify, request, stream_with_context
    from pydantic import ValidationError

    from slmlab.backends import open_backend
    from slmlab.serve.gateway import protocol as api

    app = Flask("slmlab-flask-chat")
    backend = open_backend("llamacpp", model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL, n_ctx=n_ctx)
    name = backend.model_name
    lock = threading.Lock()  # one model, one generation at a time: llama.cpp's context is not thread-safe

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> Any:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "slmlab"}]}

    @app.post("/v1/chat/completions")
    def chat_completions() -> Any:
        try:
            body = api.ChatRequest.model_validate(request.get_json(force=True, silent=True) or {})
        except ValidationError as exc:
            return jsonify(api.validation_error([dict(e) for e in exc.errors()])), 400
        max_tokens = body.requested_max_tokens() or 128
        if max_tokens > MAX_TOKENS_CAP:
            return jsonify(api.error(f"max_tokens={max_tokens} is over this server's limit of {MAX_TOKENS_CAP}.",
                                     "max_tokens_too_large", param="max_tokens")), 400
        options = {"max_tokens": max_tokens, "temperature": body.temperature or 0.0}
        ident, messages = api.new_id(), body.plain_messages()
        if not body.stream:
            with lock:  # this thread blocks until the model is free, then while it generates
                answer = backend.chat(messages, **options)
            return api.completion(ident, name, answer.text, answer.finish_reason, answer.prompt_tokens,
                                  answer.completion_tokens)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return Response(stream_with_context(_events(backend, lock, ident, messages, options, include_usage)),
                        mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def _events(backend: Any, lock: threading.Lock, ident: str, messages: Any, options: dict[str, Any],
            include_usage: bool) -> Iterator[str]:
    """The answer as chat.completion.chunk events, generated while this thread holds the model."""
    from slmlab.serve.gateway import protocol as api

    name = backend.model_name
    with lock:
        yield api.sse(api.chunk(ident, name, {"role": "assistant", "content": ""}))
        for piece in backend.stream(messages, **options):
            yield api.sse(api.chunk(ident, name, {"content": piece}))
        done = backend.last
    yield api.sse(api.chunk(ident, name, {}, done.finish_reason))
    if include_usage:
        yield api.sse(api.usage_chunk(ident, name, done.prompt_tokens, done.completion_tokens))
    yield api.sse("[DONE]")


def gunicorn_command(threads: int = 4, workers: int = 1) -> list[str]:
    """gunicorn with `workers` processes of `threads` threads each, serving create_app() on 127.0.0.1:{port}."""
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", str(workers), "--threads",
            str(threads), "--bind", "127.0.0.1:{port}", "--timeout", "300", "--graceful-timeout", "5",
            "slmlab.languages.flask_chat:create_app()"]


def flask_server(model: str | None = None, threads: int = 4, port: int | None = None) -> ServerProcess:
    """The Flask app under gunicorn (one process: one model in memory) as a ServerProcess, ready once loaded."""
    return ServerProcess(gunicorn_command(threads), port=port, ready_url="/healthz", name="flask-chat",
                         env={MODEL_ENV: model or DEFAULT_MODEL}, startup_timeout=90)
