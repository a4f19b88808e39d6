"""The course on a machine that has been used: the server notebooks run again in the same HOME, next to other models.

The server-starting notebooks (2.1 and 3.4) make their one CI run (test_notebooks.py) in a used HOME
(tests/used_home.py) whose model store already lists an embedding model and a base model before the chat model, as
after ``ollama pull all-minilm`` and ``ollama pull gemma3:270m``: 3.4's gateway must still chat with the chat model
(before the gateway named that model itself, its load test got 0 answers). Here they run a second time in that HOME,
with every store entry and leftover file of the first run, and must pass like the first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CI_PARAMETERS, SOLUTIONS
from slmlab.course.execute import RunResult, run_notebooks
from slmlab.serve.ollama.names import normalize
from used_home import CHAT_MODEL, EXTRA_MODELS, SERVER_NOTEBOOKS, UsedHome

pytestmark = pytest.mark.slow


def _run(keys: list[str], output_dir: Path) -> list[RunResult]:
    notebooks = [SOLUTIONS / f"{key}.ipynb" for key in keys]
    return run_notebooks(notebooks, CI_PARAMETERS, output_dir=output_dir, cell_timeout=300, progress_bar=False)


def _failures(results: list[RunResult]) -> list[str]:
    return [f"{r.notebook.name}: {r.status}: {r.error}" for r in results if not r.ok]


def test_the_server_notebooks_run_twice_in_a_home_whose_store_lists_other_models_first(used_home: UsedHome,
                                                                                     tmp_path: Path):
    """Both cases of a used machine in one pair of runs: the monitoring notebook chats with its model although the
    store lists an embedding model and a base model first, and both server notebooks run again in the HOME their
    first runs used (test_notebooks.py's runs; made here when this test runs without them)."""
    chat, extras = normalize(CHAT_MODEL), [normalize(m) for m in EXTRA_MODELS]
    for listing in (used_home.openai_ids, used_home.tags):  # the case: both listings put the others before the chat
        assert set(listing) == {chat, *extras} and listing.index(chat) == 2, listing
    with used_home.active():
        missing = [key for key in SERVER_NOTEBOOKS if key not in used_home.runs]
        if missing:
            for key, result in zip(missing, _run(missing, tmp_path / "first"), strict=True):
                used_home.record(key, result)
        first = [used_home.runs[key][0] for key in SERVER_NOTEBOOKS]
        assert not _failures(first), (f"first run, with {', '.join(extras)} listed before {chat} in the model store: "
                                      f"{_failures(first)}")
        assert (used_home.model_store / "manifest.json").is_file()
        second = _run(list(SERVER_NOTEBOOKS), tmp_path / "second")
    assert not _failures(second), f"second run, in the HOME the first one used: {_failures(second)}"
