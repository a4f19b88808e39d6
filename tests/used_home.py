"""A used machine for the server-starting notebooks: a HOME of its own whose model store already lists other models.

A learner's HOME keeps what earlier notebooks left: the Ollama-compatible server's model store
(``~/.cache/slmlab/ollama``), caches, logs. A :class:`UsedHome` is a temporary HOME shared by every run made inside
:meth:`UsedHome.active`, so the store and every leftover file carry over from one run to the next. The big caches
stay reachable: the pip-installed models live in the virtual environment (not in HOME), and the folders of the real
``~/.cache`` (and ``~/.cache/slmlab``: assembled and converted models) are linked in, all but the model store.

Its store is seeded as after ``ollama pull all-minilm`` and ``ollama pull gemma3:270m``: an embedding model and a
base model listed before the chat model. test_notebooks.py runs the server notebooks (2.1, 3.4) there once, as their
one CI run; test_used_machine.py runs them there again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from slmlab.course.execute import RunResult
from slmlab.models.resolver import cache_dir
from slmlab.serve.ollama.registry import MODELS_ENV
from slmlab.serve.ollama.server import ollama_server

CHAT_MODEL = "smollm2:135m"  # the model the monitoring notebook's gateway serves
EXTRA_MODELS = ["all-minilm", "gemma3:270m"]  # an embedding model and a base model: no chat in either
MACHINE_ENV = ("SLMLAB_CACHE", MODELS_ENV, "OLLAMA_HOST")  # cache_dir(), the store, a server elsewhere
# The notebooks that start servers on the store, by their key under solutions/: their one CI run is in the used HOME.
SERVER_NOTEBOOKS = ("02-local/01-ollama", "03-cloud/04-monitoring")


def _link_entries(real: Path, home_copy: Path, keep_own: set[str]) -> None:
    """`home_copy` as a folder whose entries link to those of `real`, except the names in `keep_own`."""
    home_copy.mkdir(parents=True, exist_ok=True)
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name not in keep_own and not (home_copy / entry.name).exists():
                (home_copy / entry.name).symlink_to(entry.resolve())


@dataclass
class UsedHome:
    """A temporary HOME with a seeded model store, and the runs made in it so far (by notebook key)."""

    home: Path
    openai_ids: list[str] = field(default_factory=list)  # what /v1/models listed after seeding
    tags: list[str] = field(default_factory=list)  # what /api/tags listed after seeding
    runs: dict[str, list[RunResult]] = field(default_factory=dict)

    @property
    def model_store(self) -> Path:
        """Where the Ollama-API server keeps its models in this HOME (registry.store_dir() there)."""
        return self.home / ".cache" / "slmlab" / "ollama"

    @contextmanager
    def active(self) -> Iterator[None]:
        """HOME is this one (kernels and the servers they start inherit it), and HOME alone decides where things go."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HOME", str(self.home))
            for name in MACHINE_ENV:
                patch.delenv(name, raising=False)
            assert cache_dir() == self.home / ".cache" / "slmlab"
            yield

    def record(self, key: str, result: RunResult) -> None:
        """Keep a run of notebook `key` made in this HOME."""
        self.runs.setdefault(key, []).append(result)


def make_used_home(root: Path) -> UsedHome:
    """A used HOME under `root`: the real caches linked in, the store seeded through the server's own POST /api/pull."""
    real_cache = Path.home() / ".cache"
    real_slmlab = cache_dir()  # $SLMLAB_CACHE or ~/.cache/slmlab, before HOME changes
    used = UsedHome(root / "home")
    _link_entries(real_cache, used.home / ".cache", keep_own={"slmlab"})
    _link_entries(real_slmlab, used.home / ".cache" / "slmlab", keep_own={"ollama"})
    with used.active(), ollama_server([CHAT_MODEL]) as server:  # the chat model first, so the others are newer
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as http:
            for name in EXTRA_MODELS:
                reply = http.post("/api/pull", json={"model": name, "stream": False})
                assert reply.status_code == 200 and reply.json()["status"] == "success", reply.text
            used.openai_ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
            used.tags = [m["name"] for m in http.get("/api/tags").json()["models"]]
    return used
