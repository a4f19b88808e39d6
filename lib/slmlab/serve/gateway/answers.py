"""A started generation (``slot.Run``) as an HTTP answer: a whole ``chat.completion``, or server-sent events.

Either way the model is freed as soon as nobody waits for the answer: a client that disconnects cancels the
generation (between pieces for a whole answer, when the response ends for a stream).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Send

from slmlab.errors import SlmLabError
from slmlab.serve.gateway import protocol as api
from slmlab.serve.gateway.state import Gateway
from slmlab.serve.slot import Run, RunResult

DISCONNECT_CHECK_EVERY = 8  # pieces between two checks that the client of a whole answer is still there


def error_text(exc: BaseException) -> str:
    """An exception in one line for an error body: slmlab's problem text, else the type and message."""
    return exc.problem if isinstance(exc, SlmLabError) else f"{type(exc).__name__}: {exc}"


def model_failed(exc: BaseException) -> dict[str, Any]:
    """The error body for a model that failed after it started answering."""
    return api.error(f"The model failed while answering: {error_text(exc)}", "model_error", "server_error")


async def whole_answer(state: Gateway, run: Run, request: Request, ident: str, model: str,
                       arrived: float) -> Any:
    """The generation collected into one chat.completion; 503 when the model fails on the way."""
    pieces: list[str] = []
    try:
        async for piece in run:
            if not pieces:
                state.metrics.ttft.labels(model).observe(time.perf_counter() - arrived)
            pieces.append(piece)
            if len(pieces) % DISCONNECT_CHECK_EVERY == 0 and await request.is_disconnected():
                run.cancel()  # nobody is waiting for this answer any more: free the model
    except BaseException as exc:
        run.cancel()
        if isinstance(exc, Exception):
            return state.reject(503, model_failed(exc), "unavailable")
        raise
    result = run.result or RunResult("stop", 0, len(pieces))
    return api.completion(ident, model, "".join(pieces), result.finish_reason, result.prompt_tokens,
                          result.completion_tokens)


async def sse_events(state: Gateway, run: Run, ident: str, model: str, arrived: float,
                     include_usage: bool) -> AsyncIterator[str]:
    """The generation as chat.completion.chunk events, then ``[DONE]``; a failure mid-way is an error event."""
    created = int(time.time())
    yield api.sse(api.chunk(ident, model, {"role": "assistant", "content": ""}, created=created))
    first = True
    try:
        async for piece in run:
            if first:
                first = False
                state.metrics.ttft.labels(model).observe(time.perf_counter() - arrived)
            yield api.sse(api.chunk(ident, model, {"content": piece}, created=created))
    except Exception as exc:  # noqa: BLE001 - the status line is sent: report the failure in the stream
        yield api.sse(model_failed(exc))
        return
    result = run.result or RunResult("stop", 0, 0)
    yield api.sse(api.chunk(ident, model, {}, result.finish_reason, created=created))
    if include_usage:
        yield api.sse(api.usage_chunk(ident, model, result.prompt_tokens, result.completion_tokens))
    yield api.sse("[DONE]")


class GenerationStream(StreamingResponse):
    """A server-sent-events response whose generation is cancelled when the response ends, however it ends."""

    def __init__(self, events: AsyncIterator[str], run: Run) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.run = run

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # the client left (or the stream ended): stop generating and free the model
            self.run.cancel()
