"""Ollama's OpenAI-compatible endpoints (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``).

As in Ollama (``openai/openai.go``), each translates the OpenAI request into the native one, runs the native
handler, and translates its answer back; errors are OpenAI's ``{"error": {"message", "type", …}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from slmlab.serve.ollama import handlers
from slmlab.serve.ollama.protocol import (
    ApiError,
    ChatCompletionRequest,
    ChatRequest,
    EmbeddingRequest,
    EmbedRequest,
    JsonBodyRoute,
)
from slmlab.serve.ollama.routes_models import installed_models
from slmlab.serve.ollama.state import server_state

router = APIRouter(route_class=JsonBodyRoute)
Native = TypeVar("Native", bound=BaseModel)


# ---------------------------------------------------------------------------------------------- requests
def _native(kind: type[Native], fields: dict[str, Any]) -> Native:
    """The native request, validated as if a client had sent it (its errors are 400s)."""
    try:
        return kind.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def from_chat_request(req: ChatCompletionRequest) -> ChatRequest:
    """/v1/chat/completions as /api/chat: max_tokens becomes num_predict, the sampling fields options."""
    if not req.messages:
        raise ApiError(400, "messages must not be empty")
    tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    options = {"num_predict": tokens, "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed,
               "stop": req.stop or None}
    return _native(ChatRequest, {
        "model": req.model, "messages": [{"role": m.role, "content": m.text()} for m in req.messages],
        "options": {k: v for k, v in options.items() if v is not None}, "keep_alive": req.keep_alive,
        "stream": req.stream})


def from_embedding_request(req: EmbeddingRequest) -> EmbedRequest:
    """/v1/embeddings as /api/embed (inputs longer than the model's context are cut, as OpenAI's are)."""
    if not req.input:
        raise ApiError(400, "invalid input: 'input' must be a non-empty string or list of strings")
    return _native(EmbedRequest, {"model": req.model, "input": req.input, "truncate": True,
                                  "dimensions": req.dimensions, "keep_alive": req.keep_alive})


# ---------------------------------------------------------------------------------------------- answers
def to_usage(final: dict[str, Any]) -> dict[str, int]:
    prompt, completion = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def to_chat_completion(head: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """A whole /api/chat answer as a ``chat.completion``."""
    return {**head, "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": final["message"]["content"]},
         "finish_reason": final["done_reason"]}], "usage": to_usage(final)}


async def to_chunks(chunks: AsyncIterator[dict[str, Any]], head: dict[str, Any], include_usage: bool
                    ) -> AsyncIterator[bytes]:
    """An /api/chat stream as server-sent ``chat.completion.chunk`` events, ending with ``[DONE]``."""
    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    base = {**head, "object": "chat.completion.chunk"}
    first = True
    async for chunk in chunks:
        if "error" in chunk:
            yield event({"error": {"message": chunk["error"], "type": "api_error", "param": None, "code": None}})
            return
        if not chunk["done"]:
            text = chunk["message"]["content"]
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            first = False
            yield event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            continue
        delta = {"role": "assistant", "content": ""} if first else {}
        yield event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": chunk["done_reason"]}]})
        if include_usage:
            yield event({**base, "choices": [], "usage": to_usage(chunk)})
    yield b"data: [DONE]\n\n"


def to_embedding_list(answer: dict[str, Any]) -> dict[str, Any]:
    tokens = answer["prompt_eval_count"]
    return {"object": "list", "model": answer["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(answer["embeddings"])]}


# ---------------------------------------------------------------------------------------------- routes
@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": m["name"], "object": "model", "created": int(datetime.fromisoformat(m["modified_at"]).timestamp()),
         "owned_by": "library"} for m in await installed_models(server_state(request))]}


@router.post("/v1/chat/completions")
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
    reply = await handlers.chat(server_state(request), from_chat_request(req), endpoint=request.url.path)
    chunks = handlers.chunks_of(reply)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": req.model,
            "system_fingerprint": "fp_ollama"}
    if not req.stream:
        return JSONResponse(to_chat_completion(head, await handlers.collect(chunks)))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(to_chunks(chunks, head, include_usage), media_type="text/event-stream")


@router.post("/v1/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request) -> dict[str, Any]:
    return to_embedding_list(await handlers.embed(server_state(request), from_embedding_request(req)))
