"""Ollama's OpenAI-compatible endpoints: ``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from slmlab.serve.ollama import template as templates
from slmlab.serve.ollama.app import ApiError, OllamaApp, _body, _check_messages, _field, _model_name, chat_messages


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI request fields as Ollama options."""
    out: dict[str, Any] = {}
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        out["num_predict"] = _field({"max_tokens": tokens}, "max_tokens", int)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = float(_field(body, name, (int, float)))
    if body.get("seed") is not None:
        out["seed"] = _field(body, "seed", int)
    stop = body.get("stop")
    if stop:
        out["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def add_routes(app: FastAPI, state: OllamaApp) -> None:
    """Register the /v1 endpoints."""
    registry = state.registry

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": e.name, "object": "model", "created": int(datetime.fromisoformat(e.modified_at).timestamp()),
             "owned_by": "library"} for e in registry.entries()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await _body(request)
        name = _model_name(body)
        entry = state.entry(name)
        messages = _check_messages(body.get("messages"))
        if not messages:
            raise ApiError(400, "messages must not be empty")
        state.require(entry, "completion", "chat", name)
        stream = _field(body, "stream", bool, False)
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        options = {**entry.parameters, **_options(body)}

        def build(loaded: Any) -> str:
            return templates.render_chat(entry.template, chat_messages(entry, messages))

        queue, cancel, t0 = await state.start(entry, options, state.keep_alive(body), build)
        events = state.events(queue, cancel, t0, name, "/v1/chat/completions")
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        head = {"id": ident, "created": created, "model": name, "system_fingerprint": "fp_ollama"}

        if not stream:
            parts: list[str] = []
            async for kind, value in events:
                if kind == "piece":
                    parts.append(value)
                elif kind == "done":
                    stats, reason, _ = value
                    return JSONResponse({**head, "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                         "finish_reason": reason}], "usage": _usage(stats)})
                else:
                    raise ApiError(500, value)
            raise ApiError(500, "generation ended without a result")

        async def sse() -> AsyncIterator[bytes]:
            def event(data: dict[str, Any]) -> bytes:
                return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

            chunk = {**head, "object": "chat.completion.chunk"}
            first = True
            async for kind, value in events:
                if kind == "piece":
                    delta = {"role": "assistant", "content": value} if first else {"content": value}
                    first = False
                    yield event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                elif kind == "done":
                    stats, reason, _ = value
                    yield event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}
                                                       if first else {}, "finish_reason": reason}]})
                    if usage_wanted:
                        yield event({**chunk, "choices": [], "usage": _usage(stats)})
                else:
                    yield event({"error": {"message": value, "type": "api_error", "param": None, "code": None}})
                    return
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await _body(request)
        name = _model_name(body)
        entry = state.entry(name)
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not texts or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "invalid input: 'input' must be a non-empty string or list of strings")
        state.require(entry, "embedding", "embeddings", name)
        runner = state.runner

        def work() -> tuple[list[list[float]], int]:
            loaded, _ = runner.acquire(entry, 0)
            try:
                return runner.embed(loaded, texts, True)
            finally:
                runner.release(loaded, state.keep_alive(body))

        vectors, tokens = await runner.run(work)
        return {"object": "list", "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)]}


def _usage(stats: dict[str, Any]) -> dict[str, int]:
    prompt, completion = stats.get("prompt_eval_count", 0), stats.get("eval_count", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
