"""The slice of the OpenAI chat API the course's service speaks: request models (pydantic), answer shapes, errors.

Requests are validated by pydantic; a bad one becomes a 400 whose ``error.param`` names the field
(``messages[0].role``) the way OpenAI's API answers. Unknown fields are ignored (clients send many), except
that ``n`` must be 1: one model instance gives one answer per request.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    """One part of a message's content list; only text parts are understood."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A chat message: a role and its text (a string, or a list of text parts)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The content as one string."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """POST /v1/chat/completions. Sampling defaults are the course's: greedy (temperature 0), seed 0."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # the newer name of max_tokens
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)  # not in OpenAI's API; llama.cpp's and vLLM's servers take it
    seed: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or not all(stops)):
            raise ValueError("give up to 4 non-empty stop strings")
        return stops

    def requested_max_tokens(self) -> int | None:
        """max_tokens, or max_completion_tokens when only that is given."""
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def generation_options(self, max_tokens: int) -> dict[str, Any]:
        """Keyword arguments for Backend.stream(): only what the request set, plus the capped max_tokens."""
        options = {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                   "top_k": self.top_k, "seed": self.seed, "stop": self.stop}
        return {k: v for k, v in options.items() if v is not None}

    def plain_messages(self) -> list[dict[str, str]]:
        """The messages as {'role', 'content'} dicts for a backend."""
        return [{"role": m.role, "content": m.text()} for m in self.messages]


# ---------------------------------------------------------------------------------------------- answers


def new_id() -> str:
    """An id in OpenAI's style for one completion."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(ident: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
               completion_tokens: int) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chunk(ident: str, model: str, delta: dict[str, str], finish_reason: str | None = None,
          created: int | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream."""
    return {"id": ident, "object": "chat.completion.chunk", "created": created or int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def usage_chunk(ident: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line (``data: [DONE]`` ends a stream)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def error(message: str, code: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def validation_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A 400 body from pydantic's errors: the first problem in words, ``param`` naming the field."""
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        where = f" (at character {loc[0]})" if loc else ""
        reason = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return error(f"The request body is not valid JSON{where}: {reason}.", "invalid_json")
    param = _dotted(loc)
    if first.get("type") == "missing" and not loc:
        return error("The request body is missing: send a JSON object with 'messages'.", "missing_body")
    if first.get("type") == "missing":
        message = f"'{param}' is required."
    else:
        given = json.dumps(first.get("input"), ensure_ascii=False, default=str)
        given = given if len(given) <= 60 else given[:57] + "..."
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')} (got {given})."
    more = len(errors) - 1
    if more > 0:
        message += f" ({more} more problem{'s' if more > 1 else ''} in the request.)"
    return error(message, "invalid_value" if first.get("type") != "missing" else "missing_field", param=param or None)


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
