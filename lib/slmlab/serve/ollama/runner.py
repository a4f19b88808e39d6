"""Loaded models: load on first use, keep for ``keep_alive``, unload when it runs out; one worker thread.

Every model operation (load, generate, embed, unload) runs on a single worker thread, so requests queue the
way they do in Ollama with one parallel slot, and llama.cpp is never used from two threads at once.
Engines are shared: two names on the same weights and context size (``smollm2:135m`` and a Modelfile
variant of it) use one loaded llama.cpp model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.serve.ollama.registry import ModelEntry, Registry

log = logging.getLogger("slmlab.ollama")
DEFAULT_KEEP_ALIVE = 300.0  # Ollama's default: 5 minutes
FOREVER = float("inf")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_keep_alive(value: Any, default: float = DEFAULT_KEEP_ALIVE) -> float:
    """Seconds to keep a model loaded: a number of seconds or a Go duration ("5m", "1h30m"); negative = forever."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise SlmLabError(f"invalid keep_alive {value!r}", "Use seconds (e.g. 300), a duration ('5m'), 0 or -1.")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION.findall(body)
            if not parts or "".join(a + b for a, b in parts) != body:
                raise SlmLabError(f'time: invalid duration "{text}"',
                                  "keep_alive takes seconds (300), a duration ('5m', '1h', '30s'), 0 or -1.") from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    return FOREVER if seconds < 0 else seconds


@dataclass
class Engine:
    """One loaded model in memory (llama.cpp backend or sentence-transformers)."""

    key: tuple[str, int]
    handle: Any
    size: int
    n_ctx: int
    names: set[str] = field(default_factory=set)

    def close(self) -> None:
        close = getattr(self.handle, "close", None)
        if close:
            close()
        self.handle = None


@dataclass
class Loaded:
    """A model name that is loaded, and until when."""

    name: str
    entry: ModelEntry
    engine: Engine
    expires: float  # time.time() when it unloads (inf = never)
    busy: int = 0

    @property
    def expires_at(self) -> str:
        if math.isinf(self.expires):
            moment = datetime.now(UTC) + timedelta(days=365 * 290)
        else:
            moment = datetime.fromtimestamp(self.expires, UTC)
        return moment.astimezone().isoformat()


class Runner:
    """Loads models on demand, keeps them for keep_alive seconds, runs all model work on one thread."""

    def __init__(self, registry: Registry, default_ctx: int = 2048, max_loaded: int = 3,
                 default_keep_alive: float = DEFAULT_KEEP_ALIVE, n_threads: int | None = None) -> None:
        self.registry = registry
        self.default_ctx = default_ctx
        self.max_loaded = max_loaded
        self.default_keep_alive = default_keep_alive
        self.n_threads = n_threads
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ollama-runner")
        self.loaded: dict[str, Loaded] = {}
        self.engines: dict[tuple[str, int], Engine] = {}
        self._lock = threading.Lock()  # guards loaded/engines between the worker and the event loop

    # ------------------------------------------------------------------ running on the worker
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the worker thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def shutdown(self) -> None:
        self.worker.submit(self._unload_all).result()
        self.worker.shutdown(wait=True)

    # ------------------------------------------------------------------ loading (worker thread)
    def context_size(self, entry: ModelEntry, options: dict[str, Any]) -> int:
        n_ctx = options.get("num_ctx") or entry.parameters.get("num_ctx") or self.default_ctx
        if not isinstance(n_ctx, int) or n_ctx < 16:
            raise SlmLabError(f"invalid num_ctx {n_ctx!r}", "Use a whole number such as 2048 or 4096.")
        return n_ctx

    def acquire(self, entry: ModelEntry, n_ctx: int) -> tuple[Loaded, float]:
        """The model loaded (loading it if needed) and marked busy; returns it and the seconds spent loading."""
        start = time.perf_counter()
        path = self.registry.weights_path(entry)
        key = (str(path), 0 if entry.is_embedding else n_ctx)
        with self._lock:
            current = self.loaded.get(entry.name)
        if current is not None and current.engine.key != key:  # other weights or context size: reload
            self._unload(entry.name)
            current = None
        if current is None:
            engine = self.engines.get(key)
            if engine is None:
                self._make_room()
                engine = self._load(entry, path, n_ctx, key)
                self.engines[key] = engine
            current = Loaded(entry.name, entry, engine, FOREVER)
            engine.names.add(entry.name)
            with self._lock:
                self.loaded[entry.name] = current
        current.entry = entry
        current.busy += 1
        return current, time.perf_counter() - start

    def release(self, loaded: Loaded, keep_alive: float) -> None:
        """The request is done: the model stays for keep_alive seconds (0 unloads it now)."""
        loaded.busy = max(0, loaded.busy - 1)
        loaded.expires = time.time() + keep_alive if not math.isinf(keep_alive) else FOREVER
        if keep_alive == 0 and loaded.busy == 0:
            self._unload(loaded.name)

    def _load(self, entry: ModelEntry, path: Path, n_ctx: int, key: tuple[str, int]) -> Engine:
        log.info("loading %s (%s, n_ctx=%s)", entry.name, path, n_ctx)
        if entry.is_embedding:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise SlmLabError("Embeddings need sentence-transformers, which is not installed.",
                                  "Run: pip install -e '.[embeddings]'") from None
            model = SentenceTransformer(str(path), device="cpu")
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            return Engine(key, model, size, int(model.max_seq_length or model.tokenizer.model_max_length))
        from slmlab.backends.llamacpp import LlamaCppBackend
        from slmlab.models.resolver import ResolvedModel

        resolved = ResolvedModel(entry.base or entry.name, path, "local", "gguf")
        backend = LlamaCppBackend(resolved, n_ctx=n_ctx, n_threads=self.n_threads)
        return Engine(key, backend, path.stat().st_size, backend.n_ctx)

    def _make_room(self) -> None:
        """Unload the least recently used idle engine while max_loaded engines are in memory."""
        while len(self.engines) >= self.max_loaded:
            idle = [e for e in self.engines.values() if all(self.loaded[n].busy == 0 for n in e.names)]
            if not idle:
                return
            oldest = min(idle, key=lambda e: max((self.loaded[n].expires for n in e.names), default=0))
            for name in list(oldest.names):
                self._unload(name)

    def _unload(self, name: str) -> bool:
        with self._lock:
            loaded = self.loaded.pop(name, None)
        if loaded is None:
            return False
        engine = loaded.engine
        engine.names.discard(name)
        if not engine.names:
            self.engines.pop(engine.key, None)
            engine.close()
            log.info("unloaded %s", name)
        return True

    def _unload_all(self) -> None:
        for name in list(self.loaded):
            self._unload(name)

    def unload(self, name: str) -> bool:
        """Unload a model now (worker thread)."""
        return self._unload(name)

    def expire(self) -> list[str]:
        """Unload every idle model whose keep_alive has run out (worker thread)."""
        now = time.time()
        gone = [n for n, m in list(self.loaded.items()) if m.busy == 0 and m.expires <= now]
        for name in gone:
            self._unload(name)
        return gone

    async def expiry_loop(self, every: float = 0.5) -> None:
        """Background task: check expiries twice a second."""
        while True:
            await asyncio.sleep(every)
            now = time.time()
            if any(m.busy == 0 and m.expires <= now for m in list(self.loaded.values())):
                await self.run(self.expire)

    def running(self) -> list[Loaded]:
        """The loaded models, most recently used first."""
        with self._lock:
            return sorted(self.loaded.values(), key=lambda m: -m.expires if not math.isinf(m.expires) else -1e30)

    # ------------------------------------------------------------------ work (worker thread)
    def stream(self, loaded: Loaded, prompt: str, gen: dict[str, Any], cancel: threading.Event) -> Iterator[str]:
        """Generate from a raw prompt; checks (context length …) raise before the first piece."""
        backend = loaded.engine.handle
        pieces = backend.stream(prompt, **gen)

        def guarded() -> Iterator[str]:
            try:
                for piece in pieces:
                    yield piece
                    if cancel.is_set():
                        break
            finally:
                pieces.close()

        return guarded()

    def tokenize(self, loaded: Loaded, text: str) -> list[int]:
        return loaded.engine.handle.tokenize(text)

    def detokenize(self, loaded: Loaded, tokens: list[int]) -> str:
        llm = loaded.engine.handle.llm
        return llm.detokenize(tokens, special=True).decode("utf-8", errors="replace")

    def embed(self, loaded: Loaded, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """Normalized embeddings of `texts` and the number of input tokens."""
        model = loaded.engine.handle
        limit = int(model.max_seq_length)
        counts = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        if not truncate and any(c > limit for c in counts):
            raise SlmLabError(f"input length exceeds the context length ({max(counts)} > {limit} tokens)",
                              "Shorten the input, or pass truncate=true to cut it to the context length.")
        vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vectors], sum(min(c, limit) for c in counts)
