"""Fixtures for the triage app's test suite.

The suite tests whichever app version its JSON config names (`slmlab.apps.pytest_run.prepare_suite`
writes it, the environment variable SLMLAB_TESTING_CONFIG points at it). Without a config it tests v1
with small defaults, so `pytest data/testing/suite` also works on its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slmlab.apps import quality, triage

DEFAULTS = {
    "version": "v1",  # the app version under test
    "model": "smollm2-135m-instruct",
    "golden": None,  # a golden file from slmlab.apps.quality.record_golden; golden tests skip without one
    "latency_budget_s": 5.0,  # p95 seconds per ticket allowed
    "latency_calls": 5,
    "eval_limit": 8,  # labelled tickets in the accuracy gate
    "accuracy_threshold": 0.4,  # v1 scores 0.45 on all 20, more on the first 8
    "max_examples": 100,  # hypothesis examples per property
}


def load_config() -> dict:
    """The suite's settings: DEFAULTS updated with the JSON file named by SLMLAB_TESTING_CONFIG."""
    path = os.environ.get("SLMLAB_TESTING_CONFIG")
    return {**DEFAULTS, **(json.loads(Path(path).read_text()) if path else {})}


CONFIG = load_config()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: calls the language model (slower)")


@pytest.fixture(scope="session")
def parse():
    """The reply parser of the version under test."""
    return triage.parser_for(CONFIG["version"])


@pytest.fixture(scope="session")
def app():
    """The app under test, on a model loaded once for the whole session."""
    from slmlab.backends import open_backend

    backend = open_backend("llamacpp", CONFIG["model"], n_ctx=1024)
    yield triage.TriageApp(backend, version=CONFIG["version"])
    backend.close()


@pytest.fixture(scope="session")
def cases():
    """The labelled tickets for the accuracy gate."""
    return quality.load_cases(limit=CONFIG["eval_limit"])
