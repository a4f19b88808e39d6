"""What the gateway allows (``AppSettings``) and which backend it serves, from arguments or SLMLAB_* variables.

``uvicorn --factory slmlab.serve.gateway.app:create_app`` builds the app from the environment alone:
``AppSettings.from_env()`` and ``backend_factory_from_env()`` read the variables listed in ``ENV``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from slmlab.backends.base import Backend
from slmlab.errors import SlmLabError
from slmlab.serve.gateway.security import RateLimiter, load_api_keys, read_keys_file

ENV = {  # the environment variables create_app() reads when it is given no settings (uvicorn --factory)
    "backend": "SLMLAB_BACKEND", "model": "SLMLAB_MODEL", "context": "SLMLAB_CONTEXT",
    "upstream_url": "SLMLAB_UPSTREAM_URL", "upstream_key_file": "SLMLAB_UPSTREAM_API_KEY_FILE",
    "served_model_name": "SLMLAB_SERVED_MODEL_NAME", "rate_limit": "SLMLAB_RATE_LIMIT",
    "rate_burst": "SLMLAB_RATE_BURST", "max_body_bytes": "SLMLAB_MAX_BODY_BYTES",
    "max_tokens_cap": "SLMLAB_MAX_TOKENS", "cors_origins": "SLMLAB_CORS_ORIGINS", "docs": "SLMLAB_DOCS",
    "upstream_parallel": "SLMLAB_UPSTREAM_PARALLEL",
}
DEFAULT_UPSTREAM = "http://127.0.0.1:8000/v1"
TRUE_WORDS = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppSettings:
    """What the service allows. API keys are never shown in its repr; none configured means auth is off."""

    served_model_name: str | None = None  # the id in /v1/models and answers (default: the backend's model name)
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # accepted keys (see security.load_api_keys)
    rate_limit: str | None = None  # per API key (or per client address without keys), e.g. "60/minute"
    rate_burst: int | None = None  # requests allowed at once (default: the count in rate_limit)
    max_body_bytes: int = 256 * 1024  # larger request bodies get 413
    max_tokens_cap: int = 1024  # a larger max_tokens gets 400
    default_max_tokens: int = 256  # when the request sets none (never above the cap)
    max_waiting: int = 32  # requests queued for the model; more get 503 with Retry-After
    upstream_parallel: int = 1  # generations sent to an HTTP upstream at once: its slots (llama-server --parallel)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none: CORS off)
    metrics_public: bool = True  # /metrics without a key (Prometheus scrapes it inside the cluster)
    docs: bool = False  # FastAPI's /docs and /openapi.json (off: less to expose)
    chat_page: bool = True  # the chat page at /

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", load_api_keys(keys=tuple(self.api_keys)) if self.api_keys else ())
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for name in ("max_body_bytes", "max_tokens_cap", "default_max_tokens", "max_waiting", "upstream_parallel"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SlmLabError(f"AppSettings({name}={value!r}) must be a whole number, at least 1.",
                                  f"Use e.g. {name}={AppSettings.__dataclass_fields__[name].default}.")
        RateLimiter.parse(self.rate_limit, self.rate_burst)  # fail now on a bad rate

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Settings from SLMLAB_* variables (see ENV); API keys from $SLMLAB_API_KEYS / $SLMLAB_API_KEYS_FILE."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"api_keys": load_api_keys(env=env)}
        for name in ("served_model_name", "rate_limit"):
            if env.get(ENV[name]):
                values[name] = env[ENV[name]]
        for name in ("rate_burst", "max_body_bytes", "max_tokens_cap", "upstream_parallel"):
            if env.get(ENV[name]):
                values[name] = env_int(env, ENV[name])
        if env.get(ENV["cors_origins"]):
            values["cors_origins"] = tuple(o.strip() for o in env[ENV["cors_origins"]].split(",") if o.strip())
        if env.get(ENV["docs"]):
            values["docs"] = env[ENV["docs"]].strip().lower() in TRUE_WORDS
        return cls(**values)

    def with_changes(self, **changes: Any) -> AppSettings:
        """A copy with some settings changed."""
        return replace(self, **changes)


def env_int(env: Mapping[str, str], name: str) -> int:
    """The whole number in $name; a clear error when it is something else."""
    try:
        return int(env[name])
    except ValueError:
        raise SlmLabError(f"${name}={env[name]!r} is not a whole number.", f"Set {name} to a number.") from None


# ---------------------------------------------------------------------------------------------- the backend


def is_upstream_engine(engine: str) -> bool:
    """True for the engines that forward to another server over HTTP (``openai``, alias ``http``)."""
    return engine.strip().lower() in ("openai", "http")


def upstream_options(url: str | None, served_model_name: str | None = None,
                     api_key: str | None = None) -> dict[str, Any]:
    """The `openai` backend's options for a gateway in front of the server at `url`.

    The served name is the upstream model to call when none is named and the upstream lists it (the backend
    never falls back to the first model listed: see slmlab.backends.server_models).
    """
    options: dict[str, Any] = {"base_url": url or DEFAULT_UPSTREAM}
    if served_model_name:
        options["preferred_model"] = served_model_name
    if api_key:
        options["api_key"] = api_key
    return options


def upstream_api_key(env: Mapping[str, str] | None = None) -> str | None:
    """The upstream server's API key: the first key in the file named by $SLMLAB_UPSTREAM_API_KEY_FILE, if set."""
    key_file = (os.environ if env is None else env).get(ENV["upstream_key_file"])
    return read_keys_file(key_file)[0] if key_file else None


def backend_factory_from_env(env: Mapping[str, str] | None = None) -> Callable[[], Backend]:
    """The backend the environment asks for: $SLMLAB_BACKEND (llamacpp | openai | onnx | hf), $SLMLAB_MODEL,
    $SLMLAB_CONTEXT; for openai, $SLMLAB_UPSTREAM_URL, the key in $SLMLAB_UPSTREAM_API_KEY_FILE, and
    $SLMLAB_SERVED_MODEL_NAME as the upstream model when $SLMLAB_MODEL is unset."""
    env = dict(os.environ if env is None else env)
    engine = env.get(ENV["backend"]) or "llamacpp"
    model = env.get(ENV["model"]) or None
    options: dict[str, Any] = {}
    if is_upstream_engine(engine):
        options = upstream_options(env.get(ENV["upstream_url"]), env.get(ENV["served_model_name"]),
                                   upstream_api_key(env))
    elif env.get(ENV["context"]) and engine.lower().replace("-", "").replace("_", "") in ("llamacpp", "llama", "onnx"):
        options["n_ctx"] = env_int(env, ENV["context"])
    return backend_factory(engine, model, options)


def backend_factory(engine: str, model: str | None, options: dict[str, Any]) -> Callable[[], Backend]:
    """A function that opens `model` in `engine` with `options` (called by the app at startup, in a thread)."""
    from slmlab.backends import open_backend

    def factory() -> Backend:
        if model is None:
            return open_backend(engine, **options)
        return open_backend(engine, model, **options)

    factory.__qualname__ = f"open_backend({engine!r}, {model!r})"
    return factory
