"""The course's FastAPI service (``slmlab.serve.gateway.app``) under uvicorn, as a child process on 127.0.0.1.

    with app_server(model="smollm2-135m-instruct", api_keys=[key], rate_limit="60/minute") as server:
        httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=...)

The server is ready when ``/readyz`` answers 200 (the model is loaded); it is stopped, with its whole process
group, when the block ends. API keys travel to the child in its environment (``SLMLAB_API_KEYS``), never on its
command line, which every user of the machine can read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel
from slmlab.process import ServerProcess
from slmlab.serve.gateway.security import API_KEYS_ENV, API_KEYS_FILE_ENV, load_api_keys

# Settings the child would otherwise inherit from this process's environment (see AppSettings.from_env).
_INHERITED = ("SLMLAB_BACKEND", "SLMLAB_MODEL", "SLMLAB_CONTEXT", "SLMLAB_UPSTREAM_URL",
              "SLMLAB_UPSTREAM_API_KEY_FILE", "SLMLAB_SERVED_MODEL_NAME", "SLMLAB_RATE_LIMIT", "SLMLAB_RATE_BURST",
              "SLMLAB_MAX_BODY_BYTES", "SLMLAB_MAX_TOKENS", "SLMLAB_CORS_ORIGINS", "SLMLAB_DOCS",
              API_KEYS_ENV, API_KEYS_FILE_ENV)


def app_command(engine: str = "llamacpp", model: ResolvedModel | str | os.PathLike | None = DEFAULT_MODEL,
                n_ctx: int | None = None, upstream_url: str | None = None, served_model_name: str | None = None,
                rate_limit: str | None = None, rate_burst: int | None = None, max_tokens: int | None = None,
                max_body_bytes: int | None = None, cors_origins: Iterable[str] = (), docs: bool = False,
                log_level: str = "info", log_format: str | None = None, log_syslog: str | None = None,
                upstream_parallel: int | None = None) -> list[str]:
    """The ``python -m slmlab.serve.gateway.app ...`` command line, with "{port}" where the port goes."""
    cmd = [sys.executable, "-m", "slmlab.serve.gateway.app", "--engine", engine, "--port", "{port}",
           "--log-level", log_level]
    if model is not None:
        cmd += ["--model", os.fspath(model.path) if isinstance(model, ResolvedModel) else os.fspath(model)]
    for flag, value in (("--n-ctx", n_ctx), ("--upstream-url", upstream_url),
                        ("--upstream-parallel", upstream_parallel), ("--served-model-name", served_model_name),
                        ("--rate-limit", rate_limit), ("--rate-burst", rate_burst), ("--max-tokens", max_tokens),
                        ("--max-body-bytes", max_body_bytes), ("--log-format", log_format),
                        ("--log-syslog", log_syslog)):
        if value is not None:
            cmd += [flag, str(value)]
    for origin in cors_origins:
        cmd += ["--cors-origin", origin]
    if docs:
        cmd.append("--docs")
    return cmd


def app_server(engine: str = "llamacpp", model: ResolvedModel | str | os.PathLike | None = DEFAULT_MODEL,
               port: int | None = None, api_keys: Iterable[str] | None = None,
               api_keys_file: str | os.PathLike | None = None, startup_timeout: float = 90,
               env: Mapping[str, str | None] | None = None, **options: object) -> ServerProcess:
    """Our FastAPI service for `model` in `engine`, on 127.0.0.1 (not started: use it in a `with` block).

    `api_keys` (or a secret file) turn authentication on; `options` are app_command's (n_ctx, rate_limit,
    max_tokens, max_body_bytes, cors_origins, served_model_name, upstream_url, upstream_parallel (requests sent to
    the upstream at once: its slots), docs, log_level, log_format ("json": one JSON object per line), log_syslog
    (ship JSON logs to an aggregator, tcp://HOST:PORT)). With
    engine="openai" (a gateway in front of `upstream_url`), `model` is the upstream's model id; model=None calls
    `served_model_name` when the upstream has it, else the upstream's only chat model. SLMLAB_*
    settings of this process are not inherited: the server runs with exactly what is passed here (and `env`).
    """
    keys = load_api_keys(keys=api_keys, keys_file=api_keys_file) if (api_keys or api_keys_file) else ()
    try:
        cmd = app_command(engine, model, **options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise SlmLabError(f"app_server() got an option it does not know: {exc}.",
                          "Options: n_ctx, upstream_url, upstream_parallel, served_model_name, rate_limit, "
                          "rate_burst, max_tokens, "
                          "max_body_bytes, cors_origins, docs, log_level, log_format, log_syslog.") from None
    child_env: dict[str, str | None] = {name: None for name in _INHERITED}
    if keys:
        child_env[API_KEYS_ENV] = ",".join(keys)
    child_env.update(env or {})
    if isinstance(model, ResolvedModel):
        name = model.name
    else:
        name = os.path.basename(os.fspath(model)) if model is not None else engine
    return ServerProcess(cmd, port=port, ready_url="/readyz", name=f"slmlab-app-{name}", env=child_env,
                         startup_timeout=startup_timeout)
