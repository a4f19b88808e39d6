"""Protect a served endpoint: API keys, per-key rate limits, a request-size cap, CORS off, loopback by default.

Every HTTP service in the kit (``slmlab.serve.gateway.app`` and what is built on it) uses these pieces::

    keys = ApiKeys(load_api_keys())               # $SLMLAB_API_KEYS and/or the file in $SLMLAB_API_KEYS_FILE
    app.add_middleware(SecurityMiddleware, keys=keys, limiter=RateLimiter.parse("60/minute"),
                       max_body_bytes=256 * 1024, protected=("/v1/",))

- Keys are compared in constant time (``hmac.compare_digest`` on SHA-256 digests, so neither the content nor
  the length of a key leaks through timing) and are never logged or echoed: a key is known to logs and metrics
  only by its id, ``key-`` + the first 8 hex digits of its SHA-256.
- A key travels in ``Authorization: Bearer <key>`` (OpenAI's clients) or in ``api-key: <key>`` (Azure's header);
  a missing or wrong key gets 401 with ``WWW-Authenticate: Bearer``; a key past its rate gets 429 with
  ``Retry-After``; a body over the cap gets 413 (checked before the body is read when Content-Length says so).
- CORS is off unless origins are listed (then only those, never ``*``); servers bind 127.0.0.1 unless told
  otherwise, and listening on another address without API keys is refused (``check_bind_host``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

API_KEYS_ENV = "SLMLAB_API_KEYS"  # comma-separated keys (fine for a terminal; prefer a secret file in production)
API_KEYS_FILE_ENV = "SLMLAB_API_KEYS_FILE"  # a file with one key per line ('#' comments and blank lines skipped)
MIN_KEY_LENGTH = 16
NEW_KEY_HINT = "Make one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
LOOPBACK_NAMES = ("localhost",)


# ---------------------------------------------------------------------------------------------- API keys


def key_id(key: str) -> str:
    """The name a key is known by in logs and metrics: ``key-`` + 8 hex digits of its SHA-256 (not reversible)."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def read_keys_file(path: str | os.PathLike) -> list[str]:
    """The keys in a secret file: one per line; blank lines and lines starting with '#' are skipped.

    A file saved on Windows (a UTF-8 byte-order mark, CRLF line ends) reads exactly like a plain one.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise SlmLabError(f"The API-key file {file} does not exist (or is not a file).",
                          f"Write one key per line into it, or unset {API_KEYS_FILE_ENV}. {NEW_KEY_HINT}")
    try:
        text = read_text(file, "API-key file")  # its errors name the file and a position, never the content
    except OSError as exc:
        raise SlmLabError(f"Cannot read the API-key file {file}: {type(exc).__name__}.",
                          "Check its permissions; it must be UTF-8 text with one key per line.") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise SlmLabError(f"The API-key file {file} holds no key.", f"Write one key per line. {NEW_KEY_HINT}")
    return keys


def load_api_keys(keys: str | Iterable[str] | None = None, keys_file: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """API keys from arguments, else from $SLMLAB_API_KEYS (comma-separated) and the file in $SLMLAB_API_KEYS_FILE.

    Returns () when none are configured (authentication off). Each key is checked for a usable length; an error
    names the source and the key's position, never the key.
    """
    env = os.environ if env is None else env
    found: list[tuple[str, str]] = []
    if keys is None and keys_file is None:
        keys, keys_file = env.get(API_KEYS_ENV) or None, env.get(API_KEYS_FILE_ENV) or None
        source = f"${API_KEYS_ENV}"
    else:
        source = "keys="
    if keys is not None:
        items = keys.split(",") if isinstance(keys, str) else list(keys)
        found += [(source, k.strip()) for k in items if isinstance(k, str) and k.strip()]
        if any(not isinstance(k, str) for k in items):
            raise SlmLabError("API keys must be strings.", "Pass keys=['...'] or a comma-separated string.")
    if keys_file is not None:
        found += [(str(keys_file), k) for k in read_keys_file(keys_file)]
    for position, (where, key) in enumerate(found, 1):
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise SlmLabError(f"API key #{position} from {where} is too weak: it has {len(key)} characters "
                              f"(at least {MIN_KEY_LENGTH}, no spaces).", NEW_KEY_HINT)
    return tuple(dict.fromkeys(key for _, key in found))  # unique, in order


class ApiKeys:
    """The accepted keys, kept as SHA-256 digests and compared in constant time. An empty set turns auth off."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._digests = [(hashlib.sha256(k.encode("utf-8")).digest(), key_id(k)) for k in keys]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (requests must then present one)."""
        return bool(self._digests)

    def identify(self, presented: str | None) -> str | None:
        """The id of the key `presented` matches, or None. Every key is compared, whatever matches first."""
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", errors="surrogateescape")).digest()
        match = None
        for known, ident in self._digests:
            if hmac.compare_digest(digest, known) and match is None:
                match = ident
        return match

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the keys
        return f"<ApiKeys {len(self)} key{'s' if len(self) != 1 else ''}>"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request presents: its Bearer token, and Azure's ``api-key`` header (lower-case header names).

    Azure OpenAI takes a key in ``api-key`` and Microsoft Entra ID tokens as Bearer; the openai client sends its
    api_key as Bearer. A request is let in when one of them is a valid key.
    https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle
    """
    azure = (headers.get("api-key") or "").strip()
    return [key for key in (bearer_token(headers), azure) if key]


# ---------------------------------------------------------------------------------------------- rate limits

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; each request takes one."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per client (an API key's id, or the client address when auth is off).

    `per_second` requests per second on average, bursts of up to `burst` at once (default: one second's worth,
    at least 1; ``parse('5/minute')`` gives a burst of 5). `clock` is injectable for tests.
    """

    MAX_CLIENTS = 10_000  # buckets kept; full (idle) ones are dropped beyond this

    def __init__(self, per_second: float, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic, description: str | None = None) -> None:
        if not (isinstance(per_second, int | float) and math.isfinite(per_second) and per_second > 0):
            raise SlmLabError(f"A rate limit of {per_second!r} requests per second is not usable.",
                              "Use a positive number, or a text like '60/minute'.")
        burst = max(1, math.ceil(per_second)) if burst is None else burst
        if not (isinstance(burst, int) and burst >= 1):
            raise SlmLabError(f"burst={burst!r} is not usable.", "Use a whole number of requests, at least 1.")
        self.per_second, self.burst, self.clock = float(per_second), burst, clock
        self.description = description or f"{per_second:g} requests per second"
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, rate: str | float | None, burst: int | None = None,
              clock: Callable[[], float] = time.monotonic) -> RateLimiter | None:
        """A limiter from text like '60/minute', '5/s', '1000/hour' (a bare number: per minute); None or '' is off."""
        if rate is None or (isinstance(rate, str) and not rate.strip()):
            return None
        if isinstance(rate, int | float) and not isinstance(rate, bool):
            count, unit = float(rate), "minute"
        else:
            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+?)s?)?\s*", str(rate).lower())
            if not found or (found.group(2) and found.group(2) not in _UNITS):
                raise SlmLabError(f"Cannot read the rate limit {rate!r}.",
                                  "Write it like '60/minute', '5/second' or '1000/hour'.")
            count, unit = float(found.group(1)), found.group(2) or "minute"
        if count <= 0:
            raise SlmLabError(f"The rate limit {rate!r} allows no request.", "Use a positive count, e.g. '60/minute'.")
        seconds = _UNITS[unit]
        name = {1: "second", 60: "minute", 3600: "hour"}[seconds]
        # '5/minute' reads as "5 requests in a minute": a burst of 5, then one every 12 s.
        return cls(count / seconds, burst if burst is not None else max(1, math.ceil(count)),
                   clock, description=f"{count:g} requests per {name}")

    def take(self, client: str) -> float:
        """0.0 when `client` may go ahead now, else the seconds it must wait."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.MAX_CLIENTS:
                    self._forget_idle(now)
                bucket = self._buckets[client] = TokenBucket(self.burst, self.per_second, self.burst, now)
            return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        full = [c for c, b in self._buckets.items() if b.tokens + (now - b.updated) * b.rate >= b.capacity]
        for client in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[client]

    def __repr__(self) -> str:
        return f"<RateLimiter {self.description}, burst {self.burst}>"


# ---------------------------------------------------------------------------------------------- caps


def check_max_tokens(requested: int | None, cap: int, default: int) -> int:
    """The max_tokens to use: `requested` if within `cap` (else an error saying the cap), `default` when None."""
    if requested is None:
        return min(default, cap)
    if requested > cap:
        raise SlmLabError(f"max_tokens={requested} is over this server's limit of {cap} tokens per answer.",
                          f"Ask for at most {cap} tokens.")
    return requested


def check_bind_host(host: str, api_keys_set: bool, allow_unauthenticated: bool = False) -> str:
    """`host` if it is safe to listen on: loopback always; another address only with API keys (or explicitly)."""
    if is_loopback(host):
        return host
    if api_keys_set or allow_unauthenticated:
        return host
    raise SlmLabError(f"Refusing to listen on {host} without API keys: anyone who can reach this machine could "
                      "use the model.",
                      f"Keep the default host 127.0.0.1, or set {API_KEYS_FILE_ENV} (a file with one key per line) "
                      "before listening on another address.")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_cors(app: Any, origins: Sequence[str]) -> None:
    """Allow cross-origin browser calls from exactly `origins` (none: CORS stays off, browsers block them)."""
    origins = [o.rstrip("/") for o in origins if o]
    if not origins:
        return
    if "*" in origins:
        raise SlmLabError("CORS origin '*' would let any web page call this API with a user's browser.",
                          "List the exact origins, e.g. cors_origins=['http://127.0.0.1:3000'].")
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "api-key", "Content-Type"], max_age=600)


# ---------------------------------------------------------------------------------------------- the middleware


def error_body(message: str, code: str, kind: str = "invalid_request_error", param: str | None = None) -> bytes:
    """An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}."""
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()


class SecurityMiddleware:
    """ASGI middleware: API key (401), rate limit (429) and body-size cap (413) for paths under `protected`.

    Security headers (nosniff, no-referrer, no framing) go on every response. The authenticated key's id is put
    in ``scope["state"]["client_id"]`` for the app (rate limits and metrics use it; the key itself never leaves).
    """

    def __init__(self, app: Any, keys: ApiKeys | None = None, limiter: RateLimiter | None = None,
                 max_body_bytes: int = 256 * 1024, protected: Sequence[str] = ("/v1/",),
                 on_reject: Callable[[str], None] | None = None) -> None:
        self.app, self.keys, self.limiter = app, keys or ApiKeys(), limiter
        self.max_body_bytes, self.protected = max_body_bytes, tuple(protected)
        self.on_reject = on_reject

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        path = scope.get("path", "")
        if not any(path == p.rstrip("/") or path.startswith(p) for p in self.protected) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = None
        if self.keys.enabled:
            presented = presented_keys(headers)
            client = next((ident for ident in map(self.keys.identify, presented) if ident), None)
            if client is None:
                message = ("This endpoint needs an API key: send the header 'Authorization: Bearer <key>'."
                           if not presented else "The API key is not valid.")
                challenge = 'Bearer realm="slmlab"' + ('' if not presented else ', error="invalid_token"')
                await self._reject(send, 401, error_body(message, "invalid_api_key"), "unauthorized",
                                   [(b"www-authenticate", challenge.encode())])
                return
        else:
            client = "addr-" + str((scope.get("client") or ("unknown", 0))[0])
        scope.setdefault("state", {})["client_id"] = client
        if self.limiter is not None:
            wait = self.limiter.take(client)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                await self._reject(send, 429, error_body(
                    f"Rate limit reached: {self.limiter.description} per API key. Retry in {seconds} s.",
                    "rate_limit_exceeded", "requests"), "rate_limited", [(b"retry-after", str(seconds).encode())])
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            declared = headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._too_large(send, int(declared))
                return
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break  # the client went away: let the app see the same
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body_bytes:
                    await self._too_large(send, None)
                    return
            receive = _replay(bytes(body), receive)
        await self.app(scope, receive, send)

    async def _too_large(self, send: Callable, size: int | None) -> None:
        said = f"is {size} bytes" if size is not None else "is larger than that"
        await self._reject(send, 413, error_body(
            f"The request body {said}; this server accepts at most {self.max_body_bytes} bytes.",
            "request_too_large"), "too_large")

    async def _reject(self, send: Callable, status: int, body: bytes, reason: str,
                      extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY")]


def _with_security_headers(send: Callable) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []),
                                              *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]}
        await send(message)

    return wrapped


def _replay(body: bytes, receive: Callable) -> Callable:
    """A receive() that gives the already-read body first, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
