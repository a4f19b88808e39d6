"""Shared paths and parameters for the course tests, and the budget tables printed after them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from slmlab.course.build import notebooks_in

# Kernels started by papermill and nbclient inherit this: pickers take their defaults, progress is text.
os.environ.setdefault("SLMLAB_HEADLESS", "1")

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_SOLUTION = FIXTURES / "tiny" / "solutions" / "tiny.ipynb"
CHECKED_OUTPUTS = FIXTURES / "outputs" / "checked-outputs.ipynb"
# The regexes applied to saved and new outputs of `# NBVAL_CHECK_OUTPUT` cells before they are compared.
SANITIZE_FILE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"
# What CI injects into every notebook (each notebook gets the ones its parameters cell declares).
CI_PARAMETERS = {"fast": True, "max_tokens": 16}

# Fixture notebooks are inputs of tests, not notebooks for `pytest --nbval-lax` to run.
collect_ignore_glob = ["fixtures/*"]


# The solutions' papermill runs (CI parameters), for the budget table at the end of the session.
NOTEBOOK_RUNS = pytest.StashKey[list]()

NOTEBOOK_TESTS = Path(__file__).resolve().parent / "notebooks"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/notebooks/ are CI's last group (`pytest -m "notebooks and not fast"`)."""
    for item in items:
        if NOTEBOOK_TESTS in item.path.parents:
            item.add_marker(pytest.mark.notebooks)


@pytest.fixture(scope="session")
def used_home(tmp_path_factory: pytest.TempPathFactory):
    """The used HOME (tests/used_home.py) of this session: the server notebooks run there, twice in all."""
    from used_home import make_used_home

    return make_used_home(tmp_path_factory.mktemp("used-machine"))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[NOTEBOOK_RUNS] = []


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """After the tests: each solution's seconds and peak RSS against the course budgets, and its checks run undone."""
    runs = config.stash.get(NOTEBOOK_RUNS, [])
    if runs:
        from slmlab.course.budget import budget_report

        terminalreporter.write_sep("=", "course budgets (solutions: CI parameters, or defaults where they differ)")
        terminalreporter.write_line(budget_report(sorted(runs, key=lambda r: str(r.notebook))))
        undone = {str(r.notebook): r.undone_checks for r in runs if r.undone_checks}
        failed = sum(error is not None for checks in undone.values() for error in checks.values())
        terminalreporter.write_line(f"checks also run with their exercises undone: {failed} of "
                                    f"{sum(map(len, undone.values()))} failed, as they must, in {len(undone)} "
                                    f"notebook{'' if len(undone) == 1 else 's'}")


def solutions() -> list[Path]:
    """Every solution notebook."""
    return notebooks_in(SOLUTIONS)


def labs() -> list[Path]:
    """Every lab notebook."""
    return notebooks_in(LABS)


# ----------------------------------------------------------------------------- a browser, for the page tests


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Selenium (one per test module), or a skip saying what to install."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-extensions", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager then never tries to download one.
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def tool_machine(tmp_path, monkeypatch) -> Callable[..., Path]:
    """For the converter tests (tests/unit/convert/test_olive_cli.py, test_litert_cli.py).

    make(venv_env, program, script, dist_info, calls_env): the cache at tmp/cache with the HF folder in it, and a
    fake venv at tmp/<program>-venv whose bin/<program> runs `script` and records its arguments in tmp/calls."""
    import json
    import sys

    from slmlab.convert import gguf_to_onnx as convert
    from slmlab.convert import onnx_quantize

    def make(venv_env: str, program: str, script: str, dist_info: str, calls_env: str) -> Path:
        monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
        venv = tmp_path / f"{program}-venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "lib" / "python3.11" / "site-packages" / dist_info).mkdir(parents=True)
        path = venv / "bin" / program
        path.write_text(f"#!{sys.executable}\n{script}")
        path.chmod(0o755)
        monkeypatch.setenv(venv_env, str(venv))
        monkeypatch.setenv(calls_env, str(tmp_path / "calls"))
        hf = convert.converted_dir() / "smollm2-135m-instruct-hf"
        hf.mkdir(parents=True)
        (hf / "config.json").write_text("{}")
        (hf / convert.MARKER).write_text(json.dumps({"source_sha256": "abc", "created": "then"}))
        monkeypatch.setattr(onnx_quantize, "prepare", lambda variants, model: {"hf": hf})
        return tmp_path
    return make
