"""Ollama model names (``name:tag``) and the bundled offline models they stand for."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from slmlab.errors import SlmLabError

DEFAULT_TAG = "latest"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(:[a-z0-9][a-z0-9._-]*)?$")

SMOLLM2_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
# SmolLM2's own chat template (in its GGUF) adds this system prompt when a chat has none: same here.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class BundledOllamaModel:
    """An Ollama library name served from one of slmlab's offline models."""

    name: str  # Ollama name, e.g. "smollm2:135m"
    key: str  # slmlab.models name, e.g. "smollm2-135m-instruct"
    capabilities: tuple[str, ...]  # "completion" | "embedding"
    template: str = "{{ .Prompt }}"
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str = ""


BUNDLED: dict[str, BundledOllamaModel] = {m.name: m for m in [
    BundledOllamaModel("smollm2:135m", "smollm2-135m-instruct", ("completion",), SMOLLM2_TEMPLATE, SMOLLM2_SYSTEM,
                       {"stop": ["<|im_start|>", "<|im_end|>"]}, "Apache License 2.0"),
    BundledOllamaModel("gemma3:270m", "gemma-3-270m", ("completion",), "{{ .Prompt }}", "", {},
                       "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"),
    BundledOllamaModel("all-minilm:latest", "all-minilm-l6-v2", ("embedding",), "", "", {}, "Apache License 2.0"),
]}
# slmlab model names -> their Ollama names (for open_backend("ollama", "smollm2-135m-instruct")).
BY_KEY = {m.key: m.name for m in BUNDLED.values()}


def normalize(name: str) -> str:
    """``name`` with its tag (``:latest`` when none), lower-case; library prefixes dropped."""
    text = str(name or "").strip().lower()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text and ":" not in text.rsplit("/", 1)[-1]:
        text = f"{text}:{DEFAULT_TAG}"
    return text


def check_name(name: str, what: str = "model") -> str:
    """The normalized name, or an SlmLabError saying what a valid name looks like."""
    text = normalize(name)
    if not text or not _NAME.match(text):
        raise SlmLabError(f"invalid {what} name {name!r}",
                          "Use a name like 'mymodel' or 'mymodel:v1' (letters, digits, '.', '_', '-').")
    return text


def ollama_name(model: str) -> str:
    """The Ollama name for a slmlab model name (``smollm2-135m-instruct`` -> ``smollm2:135m``), else unchanged."""
    return BY_KEY.get(str(model).strip().lower(), str(model))
