"""Structured JSON logs for the course's servers: one JSON object per line, one line per request, and a request id
that follows the request from the gateway to the engine behind it.

    configure_logging("gateway", fmt="json", syslog="tcp://127.0.0.1:5514")   # stderr + the aggregator
    app.add_middleware(RequestLogMiddleware, service="gateway")             # one line per request
    annotate(model="smollm2:135m", completion_tokens=32)                     # from a handler, into that line

A request line has ``time, level, service, logger, msg, request_id, method, path, status, latency_ms`` and, where
the server knows them, ``model, prompt_tokens, completion_tokens, outcome, error``. Only the names in ``FIELDS``
ever reach a log line: never the prompt or the answer (personal data a user typed, which privacy law such as the
GDPR says to keep only where needed, and which would make every log store a copy of the conversations), never an
API key or an Authorization header (a secret in a log is a leaked secret: logs are shipped, kept and read widely).
A key is known by its id (``key-`` + 8 hex digits of its SHA-256) if at all.

The request id is taken from the client's ``X-Request-ID`` header when it looks like an id (letters, digits,
``._:-``, at most 64; anything else could forge log lines), else made up (32 hex digits); it is answered in the
same header and sent on to the upstream server by slmlab's OpenAI backend (``request_id()`` in its thread).
Shipping goes through Python's ``logging.handlers.SysLogHandler`` as RFC 5424 syslog over TCP (or UDP), behind a
``QueueHandler`` so a slow aggregator never blocks the event loop.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import logging.handlers
import os
import queue
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from slmlab.errors import SlmLabError

REQUEST_ID_HEADER = "X-Request-ID"
FORMATS = ("text", "json")
# Every field a log line may carry, besides time, level, service, logger and msg. Nothing else gets through.
FIELDS = ("request_id", "method", "path", "status", "latency_ms", "model", "prompt_tokens", "completion_tokens",
          "outcome", "error", "upstream", "key_id", "exc_type")
# Scraped or probed every second (their health shows in `up` and readiness, not in logs): not logged.
QUIET_PATHS = ("/metrics", "/healthz", "/readyz", "/api/version")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("slmlab_request", default=None)


# ---------------------------------------------------------------------------------------------- the request's fields


def new_request_id() -> str:
    """A fresh request id: 32 hex digits (a random UUID)."""
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The client's request id if it looks like one (``[A-Za-z0-9._:-]{1,64}``), else a new one."""
    return value if value and _ID.match(value) else new_request_id()


def request_id() -> str | None:
    """The id of the request being served in this context (also in a thread started with its context), or None."""
    fields = _REQUEST.get()
    return fields.get("request_id") if fields else None


def annotate(**fields: Any) -> None:
    """Add fields (names from FIELDS) to the current request's log line; outside a request, nothing happens."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise SlmLabError(f"annotate() got fields a log line may not carry: {sorted(unknown)}.",
                          f"Use only {', '.join(FIELDS)} (never prompt text or keys).")
    current = _REQUEST.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def begin_request(rid: str) -> contextvars.Token:
    """Start a request's context (its fields dict) with id `rid`; pass the token to end_request."""
    return _REQUEST.set({"request_id": rid})


def end_request(token: contextvars.Token) -> None:
    """Leave the request's context."""
    _REQUEST.reset(token)


def upstream_headers() -> dict[str, str]:
    """Headers to pass on to an upstream server: the request id, when serving one."""
    rid = request_id()
    return {REQUEST_ID_HEADER: rid} if rid else {}


# ---------------------------------------------------------------------------------------------- formatting


def iso_time(epoch: float) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-12-02T10:40:22.123Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, service, logger, msg, and the allowed FIELDS it carries.

    Fields come from ``extra={"fields": {...}}`` and from the current request (its request_id); an exception
    adds only its type (a traceback can quote request data).
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record's JSON object (before serialising)."""
        out: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname, "service": self.service,
                               "logger": record.name, "msg": record.getMessage()}
        rid = request_id()
        if rid:
            out["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            out.update({k: v for k, v in extra.items() if k in FIELDS and v is not None})
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return out

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), ensure_ascii=False, default=str)


class SyslogJsonFormatter(JsonFormatter):
    """RFC 5424 after the ``<PRI>`` that SysLogHandler writes: ``1 TIME HOST APP PROCID MSGID - {json}``.

    APP-NAME is the service, MSGID the logger's last part ("request" for request lines); the JSON is the MSG.
    """

    def format(self, record: logging.LogRecord) -> str:
        host = socket.gethostname().split(".")[0] or "-"
        msgid = (record.name.rsplit(".", 1)[-1] or "-")[:32]
        return (f"1 {iso_time(record.created)} {host} {self.service[:48]} {os.getpid()} {msgid} - "
                f"{super().format(record)}\n")


class TextFormatter(logging.Formatter):
    """The servers' plain format, with the request's fields appended as key=value (for a terminal)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            text += " " + " ".join(f"{k}={v}" for k, v in extra.items() if k in FIELDS and v is not None)
        return text


# ---------------------------------------------------------------------------------------------- handlers


def parse_syslog_address(address: str) -> tuple[str, int, socket.SocketKind]:
    """(host, port, socket type) from ``tcp://127.0.0.1:5514`` or ``udp://127.0.0.1:5514``."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "udp") or not parts.hostname or not port:
        raise SlmLabError(f"{address!r} is not a syslog address.",
                          "Write it as tcp://HOST:PORT or udp://HOST:PORT, e.g. tcp://127.0.0.1:5514.")
    return parts.hostname, port, socket.SOCK_STREAM if parts.scheme == "tcp" else socket.SOCK_DGRAM


def syslog_handler(address: str, service: str) -> tuple[logging.Handler, logging.handlers.QueueListener]:
    """A QueueHandler whose listener thread ships JSON records as RFC 5424 syslog to `address`; start the listener.

    Raises SlmLabError when nothing listens there (TCP).
    """
    host, port, kind = parse_syslog_address(address)
    try:
        sender = logging.handlers.SysLogHandler(address=(host, port), socktype=kind)
    except OSError as exc:
        raise SlmLabError(f"Cannot reach the log aggregator at {address}: {exc.strerror or exc}.",
                          "Start it first (slmlab.monitoring.aggregator.rsyslog_server), or leave --log-syslog out."
                          ) from None
    sender.append_nul = False  # the formatter ends each message with a newline: rsyslog's TCP framing
    sender.setFormatter(SyslogJsonFormatter(service))
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, sender, respect_handler_level=False)
    listener.start()
    return _ContextQueueHandler(records), listener


class _ContextQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that keeps the request id: the listener thread formats without the request's context."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)  # the other handlers see the record as it was
        rid = request_id()
        if rid:
            extra = dict(getattr(record, "fields", None) or {})
            extra.setdefault("request_id", rid)
            record.fields = extra
        record.msg, record.args = record.getMessage(), None
        if record.exc_info and record.exc_info[0] is not None:  # the type is kept in `fields`, not the traceback
            extra = dict(getattr(record, "fields", None) or {})
            extra.setdefault("exc_type", record.exc_info[0].__name__)
            record.fields = extra
        record.exc_info, record.exc_text = None, None
        return record


_LISTENERS: list[logging.handlers.QueueListener] = []


def configure_logging(service: str, level: str = "info", fmt: str = "text", syslog: str | None = None,
                      text_format: str = "%(levelname)s:     %(name)s: %(message)s") -> None:
    """Log every record of this process (uvicorn's too) to stderr as `fmt` (text or json) and, with `syslog`, as
    JSON to that aggregator. Replaces the root logger's handlers."""
    if fmt not in FORMATS:
        raise SlmLabError(f"--log-format {fmt!r} is not known.", f"Use one of: {', '.join(FORMATS)}.")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(text_format))
    root.addHandler(stderr)
    if syslog:
        handler, listener = syslog_handler(syslog, service)
        root.addHandler(handler)
        _LISTENERS.append(listener)
        import atexit

        atexit.register(listener.stop)  # sends what is queued before the process exits
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers would bypass ours
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def uvicorn_log_options(fmt: str, syslog: str | None) -> dict[str, Any]:
    """uvicorn.run's logging options: its own config for plain text, none (ours) for JSON or shipping.

    With ours, uvicorn's access log is off: the request line says the same, with the request id.
    """
    if fmt == "text" and not syslog:
        return {}
    return {"log_config": None, "access_log": False}


# ---------------------------------------------------------------------------------------------- the middleware


class RequestLogMiddleware:
    """ASGI middleware: a request id for every HTTP request (taken or made, answered in X-Request-ID) and one
    ``request`` log line when the answer's last byte is sent (5xx at ERROR, 4xx at WARNING, else INFO).

    Handlers add fields with ``annotate``. QUIET_PATHS (metrics scrapes, health probes) are not logged.
    """

    def __init__(self, app: Any, service: str = "server", logger: str = "slmlab.request",
                 quiet_paths: tuple[str, ...] = QUIET_PATHS) -> None:
        self.app, self.service, self.quiet = app, service, quiet_paths
        self.log = logging.getLogger(logger)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = accept_request_id(headers.get(REQUEST_ID_HEADER.lower()))
        token = begin_request(rid)
        fields = _REQUEST.get()
        assert fields is not None
        start, status = time.perf_counter(), 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REQUEST_ID_HEADER.lower().encode(), rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            fields.setdefault("error", type(exc).__name__)
            raise
        finally:
            self._log(scope, status, (time.perf_counter() - start) * 1000, fields)
            end_request(token)

    def _log(self, scope: dict, status: int, latency_ms: float, fields: dict[str, Any]) -> None:
        path = scope.get("path", "")
        if path in self.quiet:
            return
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        line = {"method": scope.get("method", ""), "path": path, "status": status,
                "latency_ms": round(latency_ms, 1), "outcome": outcome, **fields}
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        self.log.log(level, "%s %s %d in %.0f ms", line["method"], path, status, latency_ms,
                     extra={"fields": line})
