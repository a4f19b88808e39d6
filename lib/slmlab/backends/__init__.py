"""Run a model through one interface, whatever the engine: ``open_backend("llamacpp" | "hf", model=...)``."""

from __future__ import annotations

import os
from typing import Any

from slmlab.backends.base import Backend, Generation, GenerationOptions, Scorer, Timings
from slmlab.errors import SlmLabError, did_you_mean
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel

ENGINES = {
    "llamacpp": "llama.cpp via llama-cpp-python: GGUF files, fast on CPU",
    "hf": "transformers on PyTorch: HF folders, or a GGUF dequantized to fp32 (pip install -e '.[hf]')",
    "onnx": "ONNX Runtime GenAI: a model-builder folder (int8 default; int4/fp32), a GGUF converted once "
            "(pip install -e '.[hf,onnx]')",
    "ort-greedy": "plain onnxruntime: the greedy KV-cache loop written out, over an ORT GenAI folder (fp32 default)",
    "foundry": "Microsoft Foundry Local in-process (foundry-local-sdk): an ORT GenAI folder in its local catalog; "
               "chat only (pip install -e '.[foundry]')",
    "openai": "any OpenAI-compatible server over HTTP (llama-cpp-python's, vLLM, llama-server, Foundry Local's): "
              "base_url=...",
    "ollama": "any Ollama server (a real one, or `slmlab serve ollama`) via the official ollama client: host=...",
}


def open_backend(engine: str = "llamacpp", model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL,
                 **kwargs: Any) -> Backend:
    """Load `model` in `engine` (see ENGINES); extra keyword arguments go to that backend."""
    key = str(engine).strip().lower().replace("-", "").replace("_", "")
    key = {"llama": "llamacpp", "llamacpppython": "llamacpp", "transformers": "hf", "http": "openai"}.get(key, key)
    if key == "llamacpp":
        from slmlab.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, **kwargs)
    if key == "hf":
        from slmlab.backends.hf import HFBackend

        return HFBackend(model, **kwargs)
    if key in ("onnx", "ortgenai", "onnxruntimegenai", "onnxruntime"):
        from slmlab.backends.onnx import OrtGenAIBackend

        return OrtGenAIBackend(model, **kwargs)
    if key == "ortgreedy":
        from slmlab.backends.onnx import OrtGreedyBackend

        return OrtGreedyBackend(model, **kwargs)
    if key in ("foundry", "foundrylocal"):
        from slmlab.backends.foundry import FoundryBackend

        return FoundryBackend(model, **kwargs)
    if key == "ollama":
        from slmlab.backends.ollama import OllamaBackend

        return OllamaBackend(model, **kwargs)
    if key == "openai":
        from slmlab.backends.openai_http import OpenAIBackend

        # `model` is the server's model id; the default means "whatever the server serves first".
        name = None if model == DEFAULT_MODEL else getattr(model, "name", str(model))
        return OpenAIBackend(model=name, **kwargs)
    listing = "; ".join(f"'{k}' ({v})" for k, v in ENGINES.items())
    raise SlmLabError(f"Unknown engine '{engine}'.", f"{did_you_mean(engine, ENGINES, n=1)}Engines: {listing}.")


__all__ = ["ENGINES", "Backend", "Generation", "GenerationOptions", "Scorer", "Timings", "open_backend"]
