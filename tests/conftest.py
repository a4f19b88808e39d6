"""Shared paths and parameters for the course tests, and the glue that makes nbval items `slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slmlab.course.build import notebooks_in

# Kernels started by nbval and papermill inherit this: pickers take their defaults, progress is text.
os.environ.setdefault("SLMLAB_HEADLESS", "1")

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_SOLUTION = FIXTURES / "tiny" / "solutions" / "tiny.ipynb"
# What CI injects into every notebook (each notebook gets the ones its parameters cell declares).
CI_PARAMETERS = {"fast": True, "max_tokens": 16}

# Fixture notebooks are inputs of tests, not notebooks for nbval to run.
collect_ignore_glob = ["fixtures/*"]


# The solutions' papermill runs (CI parameters), for the budget table at the end of the session.
NOTEBOOK_RUNS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[NOTEBOOK_RUNS] = []


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """After the tests: each solution's seconds and peak RSS against the course budgets."""
    runs = config.stash.get(NOTEBOOK_RUNS, [])
    if runs:
        from slmlab.course.budget import budget_report

        terminalreporter.write_sep("=", "course budgets (solutions, CI parameters)")
        terminalreporter.write_line(budget_report(sorted(runs, key=lambda r: str(r.notebook))))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Notebook cells collected by nbval execute notebooks: mark them slow."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def solutions() -> list[Path]:
    """Every solution notebook."""
    return notebooks_in(SOLUTIONS)


def labs() -> list[Path]:
    """Every lab notebook."""
    return notebooks_in(LABS)
