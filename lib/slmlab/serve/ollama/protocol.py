"""Ollama's REST contract (docs/api.md): request models, the error shape, NDJSON, time stamps and durations.

Requests are pydantic models read the way Ollama's Go server reads JSON: strict types (``"stream": "yes"`` is
an error, not True), unknown fields ignored, ``null`` the same as leaving a field out, and the body parsed as
JSON whatever its Content-Type says (``curl -d`` sends form-encoded). A bad request becomes
``{"error": "..."}`` with status 400 through one handler (:func:`validation_message`); errors found later
are :class:`ApiError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from slmlab.errors import SlmLabError
from slmlab.serve.ollama import template as templates
from slmlab.serve.ollama.modelfile import PARAMETERS, check_parameter, parse_modelfile
from slmlab.serve.ollama.runner import parse_keep_alive

log = logging.getLogger("slmlab.ollama")
NDJSON = "application/x-ndjson"
OWN_ERROR = "ollama_request"  # the pydantic error type of the checks below: their message is the whole answer


# ---------------------------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answered as {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_message(exc: BaseException) -> str:
    """The text of an error answer: an SlmLabError's problem and hint, else the exception's own text."""
    if isinstance(exc, SlmLabError):
        return f"{exc.problem} {exc.hint}".strip() if exc.hint else exc.problem
    return str(exc)


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is answered as it is (``{"error": message}``)."""
    return PydanticCustomError(OWN_ERROR, "{message}", {"message": message})


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """The ``error`` text for pydantic's errors on a request body: the first problem, in Ollama's words."""
    first: Mapping[str, Any] = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    kind = first.get("type")
    loc = [part for part in first.get("loc", ()) if part != "body"]
    if kind == OWN_ERROR:
        return str(first.get("msg"))
    if kind == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        where = f" (at character {loc[0]})" if loc else ""
        return f"invalid JSON in request body{where}: {reason}"
    if not loc:
        return "missing request body" if kind == "missing" else "the request body must be a JSON object"
    field = _dotted(loc)
    if kind == "missing":
        return f"{field} is required"
    given = json.dumps(first.get("input"), ensure_ascii=False, default=str)
    given = given if len(given) <= 60 else given[:57] + "..."
    return f"invalid value for '{field}': {first.get('msg', 'invalid')} (got {given})"


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------- field types
def _required_name(value: str) -> str:
    if not value.strip():
        raise invalid("model is required")
    return value


def _options(value: dict[str, Any]) -> dict[str, Any]:
    """Known options checked and converted; unknown ones ignored with a warning (as in Ollama)."""
    out = {}
    for key, item in value.items():
        if key not in PARAMETERS:
            log.warning("invalid option provided: %s", key)
            continue
        try:
            out[key] = check_parameter(key, item, source="options")
        except SlmLabError as exc:
            raise invalid(error_message(exc)) from None
    return out


def _parameters(value: dict[str, Any]) -> dict[str, Any]:
    """A create request's parameters: every name must be an Ollama parameter."""
    try:
        return {key.lower(): check_parameter(key, item) for key, item in value.items()}
    except SlmLabError as exc:
        raise invalid(error_message(exc)) from None


def _keep_alive(value: Any) -> float | None:
    """Seconds (None: the server's default), from seconds or a Go duration such as "5m"; negative: forever."""
    if value is None or value == "":
        return None
    try:
        return parse_keep_alive(value)
    except SlmLabError as exc:
        raise invalid(exc.problem) from None


def _template(value: str) -> str:
    try:
        templates.check_template(value)
    except SlmLabError as exc:
        raise invalid(error_message(exc)) from None
    return value


def _texts(value: Any) -> list[str]:
    """An embedding input: one string (none when empty) or a list of strings."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise invalid("invalid input type: 'input' must be a string or a list of strings")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


ModelName = Annotated[str, Field(validation_alias=AliasChoices("model", "name")), AfterValidator(_required_name)]
Options = Annotated[dict[str, Any], AfterValidator(_options)]
Parameters = Annotated[dict[str, Any], AfterValidator(_parameters)]
KeepAlive = Annotated[float | None, BeforeValidator(_keep_alive)]
Template = Annotated[str, AfterValidator(_template)]
Texts = Annotated[list[str], BeforeValidator(_texts)]


class OllamaRequest(BaseModel):
    """Read like Go's encoding/json: strict types, unknown fields ignored, null taken as absent."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# ---------------------------------------------------------------------------------------------- native requests
class Message(OllamaRequest):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None

    def plain(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class ModelRequest(OllamaRequest):
    """POST /api/show, DELETE /api/delete: one model name (``name`` in older clients)."""

    model: ModelName


class RunRequest(ModelRequest):
    """What every request that runs a model has: its options and how long to keep it loaded afterwards."""

    options: Options = Field(default_factory=dict)
    keep_alive: KeepAlive = None


class GenerateRequest(RunRequest):
    """POST /api/generate."""

    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: Template = ""
    context: list[int] | None = None
    raw: bool = False
    stream: bool = True
    format: Any = None
    images: list[str] | None = None
    think: Any = None


class ChatRequest(RunRequest):
    """POST /api/chat."""

    messages: list[Message] = Field(default_factory=list)
    stream: bool = True
    format: Any = None
    tools: list[Any] | None = None
    think: Any = None


class EmbedRequest(RunRequest):
    """POST /api/embed (``input``: a string or a list of strings)."""

    input: Texts = Field(default_factory=list)
    truncate: bool = True
    dimensions: int | None = None


class EmbeddingsRequest(RunRequest):
    """POST /api/embeddings (the older, one-text form of /api/embed)."""

    prompt: str = ""


class CreateRequest(ModelRequest):
    """POST /api/create; ``modelfile`` (the text itself, as before Ollama 0.5.5) is parsed into the fields."""

    from_: str = Field(default="", alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: Template | None = None
    system: str | None = None
    parameters: Parameters | None = None
    messages: list[Message] | None = None
    license: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    quantize: str = ""
    stream: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_modelfile(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("modelfile"):
            return data
        text = data["modelfile"]
        if not isinstance(text, str):
            raise invalid("invalid value for 'modelfile': it must be the Modelfile's text")
        try:
            mf = parse_modelfile(text, source="modelfile")
        except SlmLabError as exc:
            raise invalid(error_message(exc)) from None
        if mf.from_is_file:
            raise invalid(f"FROM {mf.from_} is a local file: upload it to /api/blobs and pass "
                          "files={name: digest}")
        fields = mf.create_request("x", adapters={a: "" for a in mf.adapters} if mf.adapters else None)
        return {**fields, **{k: v for k, v in data.items() if k != "modelfile" and v is not None}}


class PullRequest(ModelRequest):
    """POST /api/pull."""

    insecure: bool = False
    stream: bool = True


class CopyRequest(OllamaRequest):
    """POST /api/copy."""

    source: str
    destination: str


# ---------------------------------------------------------------------------------------------- OpenAI requests
class TextPart(OllamaRequest):
    type: Literal["text"]
    text: str


class OpenAIMessage(OllamaRequest):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] = ""

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(OllamaRequest):
    include_usage: bool = False


class ChatCompletionRequest(ModelRequest):
    """POST /v1/chat/completions (``keep_alive`` is Ollama's own addition)."""

    messages: list[OpenAIMessage]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # the newer name of max_tokens
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    keep_alive: Any = None


class EmbeddingRequest(ModelRequest):
    """POST /v1/embeddings."""

    input: Texts
    dimensions: int | None = None
    keep_alive: Any = None


# ---------------------------------------------------------------------------------------------- bodies and answers
class JsonBodyRoute(APIRoute):
    """A route whose body is read as JSON whatever its Content-Type (or none), as Ollama does: ``curl -d``
    sends ``application/x-www-form-urlencoded``, and FastAPI reads only JSON content types as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def as_json(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            return await handler(Request({**request.scope, "headers": headers}, request.receive))

        return as_json


def created_at() -> str:
    """Now, as Ollama writes ``created_at`` (UTC, with a Z)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ns(seconds: float) -> int:
    """Seconds as the API's nanoseconds."""
    return max(0, int(seconds * 1e9))


def ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """A stream of JSON objects, one per line."""

    async def lines() -> AsyncIterator[bytes]:
        async for item in items:
            yield (json.dumps(item, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type=NDJSON)
