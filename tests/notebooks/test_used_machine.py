"""The course on a machine that has been used: notebooks run again in the same HOME, and next to other models.

A learner's HOME keeps what earlier notebooks left: the Ollama-compatible server's model store
(``~/.cache/slmlab/ollama``), caches, logs. These tests give every notebook run a temporary HOME of its own, shared
by the runs of one test, so the store and every leftover file carry over from one run to the next. The big caches
stay reachable: the pip-installed models live in the virtual environment (not in HOME), and the folders of the real
``~/.cache`` (and ``~/.cache/slmlab``: assembled and converted models) are linked in, all but the model store.

The server-starting notebooks (2.1 and 3.4) run twice in a row (CI parameters) against a model store that already
lists an embedding model and a base model before the chat model, as after ``ollama pull all-minilm`` and ``ollama
pull gemma3:270m``: 3.4's gateway must still chat with the chat model (before the gateway named that model itself,
its load test got 0 answers), and the second runs must pass like the first.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import CI_PARAMETERS, SOLUTIONS
from slmlab.course.execute import RunResult, run_notebooks
from slmlab.models.resolver import cache_dir
from slmlab.serve.ollama.names import normalize
from slmlab.serve.ollama.registry import MODELS_ENV
from slmlab.serve.ollama.server import ollama_server

pytestmark = pytest.mark.slow

OLLAMA = SOLUTIONS / "02-local" / "01-ollama.ipynb"  # pulls the embedding model (section 3)
MONITORING = SOLUTIONS / "03-cloud" / "04-monitoring.ipynb"  # a gateway in front of the Ollama-API server
SERVER_NOTEBOOKS = [OLLAMA, MONITORING]
CHAT_MODEL = "smollm2:135m"  # the model the monitoring notebook's gateway serves
EXTRA_MODELS = ["all-minilm", "gemma3:270m"]  # an embedding model and a base model: no chat in either
MACHINE_ENV = ("SLMLAB_CACHE", MODELS_ENV, "OLLAMA_HOST")  # cache_dir(), the store, a server elsewhere


def _link_entries(real: Path, home_copy: Path, keep_own: set[str]) -> None:
    """`home_copy` as a folder whose entries link to those of `real`, except the names in `keep_own`."""
    home_copy.mkdir(parents=True, exist_ok=True)
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name not in keep_own and not (home_copy / entry.name).exists():
                (home_copy / entry.name).symlink_to(entry.resolve())


@pytest.fixture
def used_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME for this test's runs: its own model store, the real caches linked in."""
    real_cache = Path.home() / ".cache"
    real_slmlab = cache_dir()  # $SLMLAB_CACHE or ~/.cache/slmlab, before HOME changes
    home = tmp_path / "home"
    _link_entries(real_cache, home / ".cache", keep_own={"slmlab"})
    _link_entries(real_slmlab, home / ".cache" / "slmlab", keep_own={"ollama"})
    monkeypatch.setenv("HOME", str(home))  # the kernels and the servers they start inherit it
    for name in MACHINE_ENV:  # HOME alone decides where things go
        monkeypatch.delenv(name, raising=False)
    assert cache_dir() == home / ".cache" / "slmlab"
    return home


def model_store(home: Path) -> Path:
    """Where the Ollama-API server keeps its models in `home` (registry.store_dir() there)."""
    return home / ".cache" / "slmlab" / "ollama"


def _run(notebooks: list[Path], output_dir: Path) -> list[RunResult]:
    return run_notebooks(notebooks, CI_PARAMETERS, output_dir=output_dir, cell_timeout=300, progress_bar=False)


def _failures(results: list[RunResult]) -> list[str]:
    return [f"{r.notebook.name}: {r.status}: {r.error}" for r in results if not r.ok]


def seed_store(models: list[str]) -> tuple[list[str], list[str]]:
    """Pull `models` into the default store through the server's own POST /api/pull, as `ollama pull` would.

    Returns what /v1/models and /api/tags list afterwards (ids and names, in the server's order).
    """
    with ollama_server([CHAT_MODEL]) as server:  # installs the chat model first, so the others are newer
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as http:
            for name in models:
                reply = http.post("/api/pull", json={"model": name, "stream": False})
                assert reply.status_code == 200 and reply.json()["status"] == "success", reply.text
            openai_ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
            tags = [m["name"] for m in http.get("/api/tags").json()["models"]]
    return openai_ids, tags


def test_the_server_notebooks_run_twice_in_a_home_whose_store_lists_other_models_first(used_home: Path,
                                                                                     tmp_path: Path):
    """Both cases of a used machine in one pair of runs: the monitoring notebook chats with its model although the
    store lists an embedding model and a base model first, and both server notebooks run again in the HOME their
    first runs used."""
    openai_ids, tags = seed_store(EXTRA_MODELS)
    chat, extras = normalize(CHAT_MODEL), [normalize(m) for m in EXTRA_MODELS]
    for listing in (openai_ids, tags):  # the case to test: both listings put the others before the chat model
        assert set(listing) == {chat, *extras} and listing.index(chat) == 2, listing
    first = _run(SERVER_NOTEBOOKS, tmp_path / "first")
    assert not _failures(first), (f"first run, with {', '.join(extras)} listed before {chat} in the model store: "
                                  f"{_failures(first)}")
    assert (model_store(used_home) / "manifest.json").is_file()
    second = _run(SERVER_NOTEBOOKS, tmp_path / "second")
    assert not _failures(second), f"second run, in the HOME the first one used: {_failures(second)}"
