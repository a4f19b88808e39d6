"""Run a pytest suite in a fresh subprocess and read back what happened to each test.

A notebook should not run pytest in its own kernel: imports get cached, a model loaded by a test stays in
the kernel's memory, and plugins leak. :func:`run_pytest` starts ``python -m pytest`` in a working folder
of its own (its own ``pytest.ini``, so the course's settings do not apply), writes a JUnit XML report and
returns one outcome per test (:class:`PytestRun`). :func:`prepare_suite` copies the course's example
suite (``data/testing/suite``) there, with the JSON config its ``conftest.py`` reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmlab.apps.quality import TESTING_DIR
from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    import pandas as pd

SUITE_DIR = TESTING_DIR / "suite"
CONFIG_ENV = "SLMLAB_TESTING_CONFIG"  # the suite's conftest.py reads its JSON config from this path
PYTEST_INI = """[pytest]
# Written by slmlab.apps.pytest_run: this folder's settings, not the course's.
addopts = -p no:randomly -p no:cacheprovider
filterwarnings = ignore::DeprecationWarning
"""


@dataclass(frozen=True)
class PytestRun:
    """One pytest run: its exit code, each test's outcome, and the text it printed."""

    exit_code: int
    outcomes: dict[str, str]  # test id -> "passed" | "failed" | "error" | "skipped"
    output: str
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        """How many tests passed, failed, errored, were skipped."""
        return dict(Counter(self.outcomes.values()))

    @property
    def ok(self) -> bool:
        """True when pytest collected tests and all of them passed (exit code 0)."""
        return self.exit_code == 0 and bool(self.outcomes)

    def failures(self) -> list[str]:
        """The ids of tests that failed or errored."""
        return [name for name, outcome in self.outcomes.items() if outcome in ("failed", "error")]

    def tail(self, lines: int = 15) -> str:
        """The last lines pytest printed (its short summary)."""
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


def prepare_suite(workdir: str | Path, config: Mapping[str, Any], extra_tests: Mapping[str, str] | None = None) -> Path:
    """Copy the suite into `workdir`/suite with `config` as its JSON config, plus `extra_tests` (name → code)."""
    suite = Path(workdir) / "suite"
    if suite.exists():
        shutil.rmtree(suite)
    shutil.copytree(SUITE_DIR, suite, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    (suite / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf-8")
    for name, code in (extra_tests or {}).items():
        if not (name.startswith("test_") and name.endswith(".py") and "/" not in name):
            raise SlmLabError(f"'{name}' is not a test file name pytest collects.", "Use a name like test_mine.py.")
        (suite / name).write_text(code, encoding="utf-8")
    return suite


def run_pytest(tests: str | Path, *, env: Mapping[str, str] | None = None, args: Sequence[str] = (),
               timeout: float = 600) -> PytestRun:
    """Run pytest on `tests` (a folder or file) in a subprocess; `env` is added to this process's environment."""
    tests = Path(tests).resolve()
    if not tests.exists():
        raise SlmLabError(f"No tests at {tests}.", "Pass a test file or a folder of test_*.py files.")
    root = tests if tests.is_dir() else tests.parent
    config = root / "config.json"
    environment = {**os.environ, **({CONFIG_ENV: str(config)} if config.is_file() else {}), **dict(env or {})}
    with tempfile.TemporaryDirectory(prefix="slmlab-pytest-") as scratch:  # our ini and report, not the suite's
        ini, report = Path(scratch) / "pytest.ini", Path(scratch) / "report.xml"
        ini.write_text(PYTEST_INI, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", str(tests), "-c", str(ini), "--rootdir", str(root),
                   "-q", "--junitxml", str(report), *args]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SlmLabError(f"pytest on {tests.name} ran longer than {timeout:.0f} s.",
                              "Run fewer or smaller tests (fewer model calls, smaller max_examples).") from None
        return PytestRun(done.returncode, _outcomes(report), done.stdout + done.stderr, time.perf_counter() - start)


def _outcomes(report: Path) -> dict[str, str]:
    """Test id -> outcome, from a JUnit XML report (empty when pytest wrote none)."""
    if not report.is_file():
        return {}
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name', '?')}"
        tags = {child.tag for child in case}
        outcomes[name] = ("failed" if "failure" in tags else "error" if "error" in tags
                          else "skipped" if "skipped" in tags else "passed")
    return outcomes


def compare_runs(runs: Mapping[str, PytestRun]) -> pd.DataFrame:
    """A table with one row per test and one column per run (e.g. {"v1": run1, "v2": run2})."""
    import pandas as pd

    names = list(dict.fromkeys(name for run in runs.values() for name in run.outcomes))
    return pd.DataFrame({label: [run.outcomes.get(n, "-") for n in names] for label, run in runs.items()},
                        index=pd.Index(names, name="test"))


def call_test(test: Any, *args: Any) -> str | None:
    """Call a test function (a plain or a hypothesis test) with `args`: None if it passed, else why it failed.

    Hypothesis prints its falsifying example; that print is captured and returned with the error.
    """
    import contextlib
    import io

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            test(*args)
    except Exception as err:  # noqa: BLE001 - any exception means the test failed, as in pytest
        first = (str(err).strip().splitlines() or [""])[0]
        example = printed.getvalue().strip()
        return f"{type(err).__name__}: {first}" + (f"\n{example}" if example else "")
    return None
