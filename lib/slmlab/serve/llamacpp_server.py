"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) for a GGUF model, on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from slmlab.errors import SlmLabError, did_you_mean
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.process import HOST, ServerProcess

PIP_SERVE = "pip install -e '.[serve]'  (or: pip install 'llama-cpp-python[server]')"
SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def _settings_fields() -> list[str]:
    """The server's setting names (each is a --flag and, upper- or lower-case, an environment variable)."""
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise SlmLabError(f"llama-cpp-python's server needs {', '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed.", f"Run: {PIP_SERVE}")
    from llama_cpp.server.settings import Settings

    return list(Settings.model_fields)


def llamacpp_command(gguf: str | os.PathLike, alias: str, n_ctx: int = 2048, api_key: str | None = None,
                     n_threads: int | None = None, **settings: Any) -> list[str]:
    """The `python -m llama_cpp.server …` command line, with "{port}" where the port goes."""
    from slmlab.models.hardware import physical_cores

    fields = _settings_fields()
    # llama.cpp rounds the context up to a multiple of 256; asking for the rounded size keeps
    # llama-cpp-python's buffers in step with it (as LlamaCppBackend does).
    n_ctx = -(-n_ctx // 256) * 256
    args: dict[str, Any] = {
        "model": os.fspath(gguf), "model_alias": alias, "host": HOST, "port": "{port}", "n_ctx": n_ctx,
        # The same threads as the in-process backend (load_llama), for the same speed and the same answers.
        "n_threads": n_threads or physical_cores(),
        # The GGUF's own chat template, never a built-in format guessed from it; a base model without a
        # template then gets an error for chat instead of a silent llama-2 format.
        "chat_format": "chat_template.default",
        # The server's default (True) keeps n_ctx x vocab float32 logits: ~400 MB for SmolLM2 at 2048.
        "logits_all": False,
        # The server's default (True) cuts a running stream off whenever another request arrives.
        "interrupt_requests": False,
    }
    if api_key:
        args["api_key"] = api_key
    for key, value in settings.items():
        if key not in fields:
            raise SlmLabError(f"'{key}' is not a setting of llama-cpp-python's server.",
                              f"{did_you_mean(key, fields, n=1)}Settings: python -m llama_cpp.server --help")
        args[key] = value
    cmd = [sys.executable, "-m", "llama_cpp.server"]
    for key, value in args.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += [f"--{key}", *(map(str, value) if isinstance(value, list | tuple) else [str(value)])]
    return cmd


def llamacpp_server(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, n_ctx: int = 2048,
                    port: int | None = None, api_key: str | None = None, model_alias: str | None = None,
                    startup_timeout: float = 60, **settings: Any) -> ServerProcess:
    """llama-cpp-python's OpenAI-compatible server for `model` (not started: use it in a `with` block).

    The model is listed under `model_alias` (default: its slmlab name); extra keyword arguments are the
    server's own settings (e.g. n_gpu_layers=-1, flash_attn=True), see ``python -m llama_cpp.server --help``.
    """
    if not isinstance(n_ctx, int) or n_ctx < 16:
        raise SlmLabError(f"n_ctx={n_ctx!r} is not a usable context size.", "Use a whole number such as 2048.")
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format != "gguf":
        raise SlmLabError(f"{resolved.name} is not a GGUF model; llama.cpp's server needs a .gguf file.",
                          "Resolve a GGUF model, e.g. 'smollm2-135m-instruct'.")
    alias = model_alias or resolved.name
    cmd = llamacpp_command(resolved.path, alias, n_ctx=n_ctx, api_key=api_key, **settings)
    # pydantic-settings also reads every setting from the environment (MODEL, PORT, API_KEY, CONFIG_FILE …),
    # and the server lets HOST and PORT override its flags: clear them so the flags above are what runs.
    clear = {name: None for field in [*_settings_fields(), "config_file"] for name in (field.upper(), field)}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return ServerProcess(cmd, port=port, ready_url="/v1/models", name=f"llama-cpp-server-{alias}", env=clear,
                         startup_timeout=startup_timeout, headers=headers)
