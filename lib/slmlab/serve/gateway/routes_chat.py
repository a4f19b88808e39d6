"""The OpenAI routes: ``POST /v1/chat/completions`` (a whole answer, or server-sent events) and ``GET /v1/models``.

A request is checked before it waits for the model (ready? this model? options within the caps?), then
started in the model slot; a refusal is an OpenAI-style error body with the status that says whose fault it is
(400 the request's, 502 the upstream server's, 503 the model's or the load's).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from slmlab.backends.base import GenerationOptions
from slmlab.errors import SlmLabError, UpstreamError
from slmlab.monitoring.structured_log import annotate
from slmlab.serve.gateway import protocol as api
from slmlab.serve.gateway.answers import GenerationStream, error_text, sse_events, whole_answer
from slmlab.serve.gateway.security import check_max_tokens
from slmlab.serve.gateway.state import Gateway, gateway
from slmlab.serve.slot import RunResult, SlotBusy, StartFailed

log = logging.getLogger("slmlab.serve")
router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The one model this service serves."""
    state = gateway(request)
    return {"object": "list", "data": [{"id": state.served_name(), "object": "model", "created": state.started,
                                        "owned_by": "slmlab"}]}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: api.ChatRequest, request: Request) -> Any:
    """OpenAI's chat completions: a whole answer, or server-sent events with ``"stream": true``."""
    arrived = time.perf_counter()
    state = gateway(request)
    model = state.served_name()
    annotate(model=model)  # into this request's log line (never the prompt)
    gen = check_request(state, body, model)
    if isinstance(gen, JSONResponse):
        return gen

    def finished(result: RunResult) -> None:  # called once the worker is done, whoever stopped it
        state.metrics.observe_generation(model, result.finish_reason, result.prompt_tokens, result.completion_tokens)

    try:
        run = await state.slot.start(body.plain_messages(), gen, on_done=finished)
    except SlotBusy:
        return state.reject(503, api.error("The model is busy: too many requests are waiting.", "server_busy",
                                           "server_error"), "busy", {"Retry-After": "2"})
    except StartFailed as exc:
        return refused(state, exc)
    state.metrics.queue_wait.labels(model).observe(run.queue_wait_s)
    ident = api.new_id()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return GenerationStream(sse_events(state, run, ident, model, arrived, include_usage), run)
    return await whole_answer(state, run, request, ident, model, arrived)


def check_request(state: Gateway, body: api.ChatRequest, model: str) -> dict[str, Any] | JSONResponse:
    """The generation options for `body`, or the error answer when the request cannot be served as it is."""
    slot = state.slot
    if slot.state != "ready":
        reason = "is still loading" if slot.state == "loading" else f"is not available ({slot.error or slot.state})"
        return state.reject(503, api.error(f"The model {reason}.", "model_not_ready", "server_error"), "unavailable",
                            {"Retry-After": "5"})
    if body.model is not None and body.model not in (model, slot.model_name):
        return state.reject(404, api.error(f"The model '{body.model}' does not exist here; this server serves "
                                           f"'{model}'.", "model_not_found", param="model"), "bad_request")
    settings = state.settings
    try:
        max_tokens = check_max_tokens(body.requested_max_tokens(), settings.max_tokens_cap, settings.default_max_tokens)
        gen = body.generation_options(max_tokens)
        GenerationOptions.from_kwargs(**gen)
    except SlmLabError as exc:
        param = "max_tokens" if "max_tokens" in exc.problem else None
        return state.reject(400, api.error(exc.problem, "invalid_value", param=param), "bad_request")
    return gen


def refused(state: Gateway, exc: StartFailed) -> JSONResponse:
    """The answer to a generation the backend would not start: whose fault it was decides the status."""
    error = exc.error
    if isinstance(error, UpstreamError):  # the model's server failed, not the request: 502, may be retried
        log.error("the upstream model server failed: %s", error_text(error), extra={"fields": {"error": "upstream"}})
        return state.reject(502, api.error(f"The model's server failed: {error_text(error)}", "upstream_error",
                                           "server_error"), "upstream_error", {"Retry-After": "1"})
    if exc.model_alive and isinstance(error, SlmLabError):
        over = "context is" in error.problem or "trained on" in error.hint
        message = f"{error.problem} {error.hint}".strip()
        return state.reject(400, api.error(message, "context_length_exceeded" if over else "invalid_value",
                                           param="messages" if over else None),
                            "over_context" if over else "bad_request")
    log.error("the model failed to start a generation: %s", error_text(error))
    state.metrics.ready.set(0)
    return state.reject(503, api.error(f"The model is not available: {error_text(error)}", "model_unavailable",
                                       "server_error"), "unavailable", {"Retry-After": "5"})


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A request pydantic rejected, as OpenAI's 400 naming the field."""
    errors = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    return gateway(request).reject(400, api.validation_error(errors), "bad_request")


def attach_router(app: FastAPI) -> None:
    """Serve the OpenAI routes from `app`, with their 400 for invalid requests."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(router)
