"""llama.cpp's own HTTP server, ``llama-server``, for a GGUF model on 127.0.0.1: parallel slots, continuous batching.

Unlike llama-cpp-python's server (``serve/llamacpp_server.py``: one sequence at a time), ``llama-server`` keeps
``--parallel N`` slots, each with its own part of the KV cache, and decodes every busy slot in the same batch
(``--cont-batching``): N requests share each forward pass. It is the server of the container image the deploy
templates ship (``ghcr.io/ggml-org/llama.cpp:server``), built here from the same llama.cpp commit as the Python
binding (``slmlab setup llamacpp``)::

    with llama_server("smollm2-135m-instruct", parallel=4, api_key="sk-local") as server:
        OpenAIBackend(server.url, api_key="sk-local").chat("Say hello.")
        slots(server)              # /slots: one entry per slot, is_processing while it decodes
        metrics(server)            # /metrics: llamacpp:tokens_predicted_total, llamacpp:requests_processing, ...

The API key is handed over in a file (``--api-key-file``, mode 0600), never on the command line where ``ps``
shows it; ``/health`` needs no key, everything else does. ``ui=True`` serves llama.cpp's web chat UI at ``/``
(``--path``: the UI built from the vendored sources by ``slmlab setup llamacpp --ui``; the course's build compiles
none in, so without it ``GET /`` answers 404).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.process import HOST, ServerProcess
from slmlab.serve.scrape import Samples

DEFAULT_PARALLEL = 4
DEFAULT_N_CTX = 2048  # per slot: the same context a request gets from the other servers
METRIC_PREFIX = "llamacpp:"
# llama-server reads LLAMA_ARG_* (and LLAMA_API_KEY) from the environment as defaults for its flags: a stray one
# would change what runs without showing on the command line, so they are removed for the child.
_ENV_PREFIXES = ("LLAMA_ARG_", "LLAMA_API_KEY", "LLAMA_LOG_")


def llama_server_command(program: str | os.PathLike, gguf: str | os.PathLike, alias: str, *,
                         parallel: int = DEFAULT_PARALLEL, n_ctx: int = DEFAULT_N_CTX, threads: int | None = None,
                         api_key_file: str | os.PathLike | None = None, metrics: bool = True,
                         ui_path: str | os.PathLike | None = None, extra_args: Sequence[str] = ()) -> list[str]:
    """The ``llama-server …`` command line, with "{port}" where the port goes.

    Each of the `parallel` slots holds `n_ctx` tokens (``--ctx-size`` is their total: llama-server splits it).
    `ui_path` is a folder of web-UI files to serve at ``/`` (``--path``).
    """
    from slmlab.models.hardware import physical_cores

    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 256:
        raise SlmLabError(f"parallel={parallel!r} is not a number of slots.",
                          "Use a whole number from 1 (one request at a time) to e.g. 8.")
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 16:
        raise SlmLabError(f"n_ctx={n_ctx!r} is not a usable context size.",
                          "Use a whole number such as 2048 (tokens per slot).")
    cmd = [os.fspath(program), "--model", os.fspath(gguf), "--alias", alias, "--host", HOST, "--port", "{port}",
           "--ctx-size", str(n_ctx * parallel), "--parallel", str(parallel), "--cont-batching",
           # the same threads as the in-process backend and llama-cpp-python's server, for a fair comparison
           "--threads", str(threads or physical_cores()),
           "--log-colors", "off"]
    if metrics:
        cmd.append("--metrics")
    if api_key_file is not None:
        cmd += ["--api-key-file", os.fspath(api_key_file)]
    if ui_path is not None:
        cmd += ["--path", os.fspath(ui_path)]
    return cmd + [str(arg) for arg in extra_args]


class LlamaServer(ServerProcess):
    """A ServerProcess for ``llama-server``: ready when ``/health`` answers 200 (the model is loaded).

    It knows its `alias` (the model name clients send), its `parallel` slots and their `n_ctx`; a key file it
    wrote for `api_key` is deleted when it stops.
    """

    def __init__(self, cmd: Sequence[str], alias: str, parallel: int, n_ctx: int,
                 key_folder: Path | None = None, **kwargs: Any) -> None:
        super().__init__(cmd, ready_url="/health", **kwargs)
        self.alias, self.parallel, self.n_ctx = alias, parallel, n_ctx
        self._key_folder = key_folder

    def start(self) -> LlamaServer:
        """Start it and wait for /health; if it cannot start (a port in use …), its key file is deleted too."""
        try:
            super().start()
        except BaseException:
            self._delete_key_file()
            raise
        return self

    def stop(self) -> int | None:
        """Stop the server (its whole process group) and delete the key file written for it."""
        try:
            return super().stop()
        finally:
            self._delete_key_file()

    def _delete_key_file(self) -> None:
        if self._key_folder is not None:
            shutil.rmtree(self._key_folder, ignore_errors=True)


def write_key_file(api_key: str) -> Path:
    """A private folder with ``api-keys.txt`` (mode 0600) holding `api_key`, for ``--api-key-file``."""
    if not isinstance(api_key, str) or not api_key.strip() or any(c in api_key for c in "\r\n") \
            or api_key.strip().startswith("#"):
        raise SlmLabError("The API key must be one line of text, not empty and not starting with '#'.",
                          "Pass e.g. api_key='sk-local-123' (llama-server reads one key per line; '#' is a comment).")
    folder = Path(tempfile.mkdtemp(prefix="slmlab-llama-server-"))
    key_file = folder / "api-keys.txt"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(api_key.strip() + "\n")
    return folder


def llama_server(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, parallel: int = DEFAULT_PARALLEL,
                 n_ctx: int = DEFAULT_N_CTX, port: int | None = None, api_key: str | None = None,
                 model_alias: str | None = None, threads: int | None = None, startup_timeout: float = 60,
                 ui: bool = False, extra_args: Sequence[str] = (),
                 env: Mapping[str, str | None] | None = None) -> LlamaServer:
    """llama.cpp's ``llama-server`` for `model` (not started: use it in a `with` block).

    `parallel` slots of `n_ctx` tokens each decode together (continuous batching); `/metrics` is on. The model
    is listed under `model_alias` (default: its slmlab name). `api_key` protects every endpoint but ``/health``.
    `ui` serves the web chat UI at ``/`` (built once by ``slmlab setup llamacpp --ui``).
    `extra_args` go to llama-server's command line (e.g. ["--flash-attn", "on"]; see ``llama-server --help``).
    """
    from slmlab.setup.llamacpp import llamacpp_program
    from slmlab.setup.llamacpp_ui import llamacpp_ui_dir

    program = llamacpp_program("llama-server")  # first: a missing build is reported before anything else
    ui_path = llamacpp_ui_dir() if ui else None
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format != "gguf" or not Path(resolved.path).is_file():
        raise SlmLabError(f"{resolved.name} is not a GGUF file ({resolved.path}); llama-server loads .gguf files.",
                          "Pass a GGUF model, e.g. 'smollm2-135m-instruct' or a path to a .gguf file.")
    alias = model_alias or resolved.name
    key_folder = write_key_file(api_key) if api_key is not None else None
    try:
        cmd = llama_server_command(program, resolved.path, alias, parallel=parallel, n_ctx=n_ctx, threads=threads,
                                   api_key_file=key_folder / "api-keys.txt" if key_folder else None,
                                   ui_path=ui_path, extra_args=extra_args)
    except BaseException:
        if key_folder is not None:
            shutil.rmtree(key_folder, ignore_errors=True)
        raise
    clear: dict[str, str | None] = {name: None for name in os.environ if name.startswith(_ENV_PREFIXES)}
    headers = {"Authorization": f"Bearer {api_key.strip()}"} if api_key else None
    return LlamaServer(cmd, alias, parallel, n_ctx, key_folder=key_folder, port=port,
                       name=f"llama-server-{alias}", env={**clear, **(env or {})}, startup_timeout=startup_timeout,
                       headers=headers)


# ----------------------------------------------------------------------------- reading it


def _root_and_headers(server: Any, api_key: str | None) -> tuple[str, dict[str, str]]:
    root = str(getattr(server, "url", server)).rstrip("/")
    headers = dict(getattr(server, "headers", None) or {})
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return root, headers


def slots(server: Any, api_key: str | None = None, timeout: float = 10) -> list[dict[str, Any]]:
    """``GET /slots``: one dict per slot (``id``, ``n_ctx``, ``is_processing``, ``params``, ``next_token`` …).

    `server` is a LlamaServer (its key is used) or a root URL (pass `api_key` if it has one).
    """
    from slmlab.serve.scrape import get_ok

    root, headers = _root_and_headers(server, api_key)
    answer = get_ok(root, "/slots", headers=headers, timeout=timeout, what="llama-server",
                    status_hint="401: pass the server's API key; 501: the server was started with --no-slots.")
    return list(answer.json())


def metrics(server: Any, api_key: str | None = None, timeout: float = 10) -> Samples:
    """``GET /metrics`` as samples (``llamacpp:tokens_predicted_total``, ``llamacpp:requests_processing`` …)."""
    from slmlab.serve.scrape import fetch

    root, headers = _root_and_headers(server, api_key)
    return fetch(root, timeout=timeout, headers=headers)


def llamacpp_metrics(server: Any, api_key: str | None = None) -> dict[str, float]:
    """The ``llamacpp:*`` metrics now, name → value (labelled series added up)."""
    values: dict[str, float] = {}
    for sample in metrics(server, api_key):
        if sample.name.startswith(METRIC_PREFIX):
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values
