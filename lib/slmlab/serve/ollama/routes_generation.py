"""Ollama's generation endpoints: ``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/embeddings``.

Streams are NDJSON (one JSON object per line) unless ``"stream": false``, which answers the final chunk with
the whole text.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from slmlab.serve.ollama import handlers
from slmlab.serve.ollama.protocol import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    JsonBodyRoute,
    ndjson,
)
from slmlab.serve.ollama.state import server_state

router = APIRouter(route_class=JsonBodyRoute)


async def respond(reply: handlers.Reply, stream: bool) -> Response:
    """A handler's answer as HTTP: one JSON object, or NDJSON lines when streaming."""
    if isinstance(reply, dict):
        return JSONResponse(reply)
    if stream:
        return ndjson(reply)
    return JSONResponse(await handlers.collect(reply))


@router.post("/api/generate")
async def generate(req: GenerateRequest, request: Request) -> Response:
    return await respond(await handlers.generate(server_state(request), req), req.stream)


@router.post("/api/chat")
async def chat(req: ChatRequest, request: Request) -> Response:
    return await respond(await handlers.chat(server_state(request), req), req.stream)


@router.post("/api/embed")
async def embed(req: EmbedRequest, request: Request) -> dict[str, Any]:
    return await handlers.embed(server_state(request), req)


@router.post("/api/embeddings")
async def embeddings(req: EmbeddingsRequest, request: Request) -> dict[str, Any]:
    return await handlers.embeddings(server_state(request), req)
