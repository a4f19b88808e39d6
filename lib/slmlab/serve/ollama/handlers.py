"""Ollama's generate, chat and embed handlers (server/routes.go) as plain functions: a request in, Ollama's answer
out, as a dict or an async stream of dicts. The native routes write them as JSON or NDJSON; the
OpenAI-compatible routes translate their requests into these and the answers back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.serve.ollama import template as templates
from slmlab.serve.ollama.generation import Event, Finished, Generation, load_only
from slmlab.serve.ollama.protocol import (
    ApiError,
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    created_at,
    error_message,
    ns,
)
from slmlab.serve.ollama.registry import ModelEntry
from slmlab.serve.ollama.runner import Loaded
from slmlab.serve.ollama.state import ServerState

Reply = dict[str, Any] | AsyncIterator[dict[str, Any]]  # one answer, or a stream of chunks
STATS_ORDER = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
               "eval_duration")


# ---------------------------------------------------------------------------------------------- prompts
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


def refuse_unsupported(name: str, *, suffix: str = "", images: bool = False, tools: Any = None, think: Any = None,
                       format: Any = None) -> None:
    """Requests this server cannot honour get Ollama's own 400s instead of being silently ignored."""
    if suffix:
        raise ApiError(400, f'"{name}" does not support insert')
    if images:
        raise ApiError(400, "this model does not support image input")
    if tools:
        raise ApiError(400, f'"{name}" does not support tools')
    if think:
        raise ApiError(400, f'"{name}" does not support thinking')
    if format:
        raise ApiError(400, "format (JSON mode and structured outputs) is not supported by slmlab's "
                            "Ollama-compatible server; a real Ollama supports it")


# ---------------------------------------------------------------------------------------------- generate and chat
async def generate(state: ServerState, req: GenerateRequest, endpoint: str = "/api/generate") -> Reply:
    """POST /api/generate: a completion of `req.prompt` (the model's template around it unless `raw`)."""
    entry = state.entry(req.model)
    keep_alive = state.keep_alive(req.keep_alive)
    refuse_unsupported(req.model, suffix=req.suffix, images=bool(req.images), think=req.think, format=req.format)
    state.require(entry, "completion", "generate", req.model)
    if not req.prompt and not req.context:
        return {"model": req.model, "created_at": created_at(), "response": "", "done": True,
                "done_reason": await load_only(state, entry, keep_alive)}

    def build(loaded: Loaded) -> str:
        if req.raw:
            text = req.prompt
        else:
            msgs = generate_messages(entry, req.prompt, req.system, with_examples=req.context is None)
            text = templates.render_chat(req.template or entry.template, msgs)
        if req.context:
            text = state.runner.detokenize(loaded, req.context) + text
        return text

    run = Generation(state, entry, {**entry.parameters, **req.options}, keep_alive, build,
                     want_context=not req.raw, endpoint=endpoint)
    return _chunks(await run.start(), {"model": req.model}, lambda text: {"response": text})


async def chat(state: ServerState, req: ChatRequest, endpoint: str = "/api/chat") -> Reply:
    """POST /api/chat: the assistant's next message after `req.messages`."""
    entry = state.entry(req.model)
    keep_alive = state.keep_alive(req.keep_alive)
    refuse_unsupported(req.model, images=any(m.images for m in req.messages), tools=req.tools, think=req.think,
                       format=req.format)
    state.require(entry, "completion", "chat", req.model)
    if not req.messages:
        return {"model": req.model, "created_at": created_at(), "message": {"role": "assistant", "content": ""},
                "done_reason": await load_only(state, entry, keep_alive), "done": True}
    messages = chat_messages(entry, [m.plain() for m in req.messages])

    def build(loaded: Loaded) -> str:
        return templates.render_chat(entry.template, messages)

    run = Generation(state, entry, {**entry.parameters, **req.options}, keep_alive, build, endpoint=endpoint)
    return _chunks(await run.start(), {"model": req.model},
                   lambda text: {"message": {"role": "assistant", "content": text}})


async def _chunks(events: AsyncIterator[Event], head: dict[str, Any], content: Callable[[str], dict[str, Any]]
                  ) -> AsyncIterator[dict[str, Any]]:
    """Ollama's stream: a chunk per piece, then the final chunk with the timing fields (or an error line)."""
    async for kind, value in events:
        if kind == "piece":
            yield {**head, "created_at": created_at(), **content(value), "done": False}
        elif kind == "done":
            yield _final(head, value, content(""))
        else:
            yield {"error": value}


def _final(head: dict[str, Any], finished: Finished, empty: dict[str, Any]) -> dict[str, Any]:
    out = {**head, "created_at": created_at(), **empty, "done": True, "done_reason": finished.reason}
    if finished.context is not None:
        out["context"] = finished.context
    out.update({k: finished.stats[k] for k in STATS_ORDER if k in finished.stats})
    return out


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The answer to ``"stream": false``: the final chunk, holding the whole text (an error line is a 500)."""
    parts: list[str] = []
    async for chunk in chunks:
        if "error" in chunk:
            raise ApiError(500, chunk["error"])
        if not chunk["done"]:
            parts.append(chunk["response"] if "response" in chunk else chunk["message"]["content"])
        elif "response" in chunk:
            return {**chunk, "response": "".join(parts)}
        else:
            return {**chunk, "message": {**chunk["message"], "content": "".join(parts)}}
    raise ApiError(500, "generation ended without a result")


async def chunks_of(reply: Reply) -> AsyncIterator[dict[str, Any]]:
    """A handler's answer as a stream of chunks (a single answer is a stream of one)."""
    if isinstance(reply, dict):
        yield reply
        return
    async for chunk in reply:
        yield chunk


# ---------------------------------------------------------------------------------------------- embeddings
async def embed(state: ServerState, req: EmbedRequest) -> dict[str, Any]:
    """POST /api/embed: unit-length vectors for each input (cut to `dimensions` and renormalized if asked)."""
    t0 = time.perf_counter()
    entry = state.entry(req.model)
    vectors, tokens, load_s = await _embed(state, entry, req.model, req.input, req.truncate,
                                           state.keep_alive(req.keep_alive))
    if req.dimensions is not None:
        size = len(vectors[0]) if vectors else 0
        if req.dimensions < 1 or (vectors and req.dimensions > size):
            raise ApiError(400, f"invalid dimensions {req.dimensions}: this model has {size}")
        vectors = [_renormalize(v[:req.dimensions]) for v in vectors]
    return {"model": req.model, "embeddings": vectors, "total_duration": ns(time.perf_counter() - t0),
            "load_duration": ns(load_s), "prompt_eval_count": tokens}


async def embeddings(state: ServerState, req: EmbeddingsRequest) -> dict[str, Any]:
    """POST /api/embeddings: one vector for one prompt (none for an empty prompt)."""
    entry = state.entry(req.model)
    vectors, _, _ = await _embed(state, entry, req.model, [req.prompt] if req.prompt else [], True,
                                 state.keep_alive(req.keep_alive))
    return {"embedding": vectors[0] if vectors else []}


async def _embed(state: ServerState, entry: ModelEntry, name: str, texts: list[str], truncate: bool,
                 keep_alive: float) -> tuple[list[list[float]], int, float]:
    state.require(entry, "embedding", "embeddings", name)
    runner = state.runner

    def work() -> tuple[list[list[float]], int, float]:
        loaded, load_s = runner.acquire(entry, 0)
        try:
            vectors, tokens = runner.embed(loaded, texts, truncate) if texts else ([], 0)
            return vectors, tokens, load_s
        finally:
            runner.release(loaded, keep_alive)

    try:
        result: tuple[list[list[float]], int, float] = await runner.run(work)
    except SlmLabError as exc:
        raise ApiError(400, error_message(exc)) from None
    return result


def _renormalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]

