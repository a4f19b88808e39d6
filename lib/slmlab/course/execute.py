"""Run notebooks headlessly with papermill: parameters, a timeout per cell, executed copies, a summary.

Each notebook runs in its own folder (as in JupyterLab) with ``SLMLAB_HEADLESS=1`` so pickers take
their defaults and progress bars print text. A thread polls the kernel's process tree with psutil
to report its peak RSS next to the wall time.
"""

from __future__ import annotations

import ast
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from slmlab.course import parameters_cell_index
from slmlab.errors import SlmLabError
from slmlab.progress import HEADLESS_ENV


def parse_value(text: str) -> Any:
    """A -p value as a Python/JSON literal where possible (16, True, true, [1, 2]), else the string."""
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def parse_parameters(items: Sequence[str] | None) -> dict[str, Any]:
    """Turn ``["max_tokens=16", "fast=True"]`` into ``{"max_tokens": 16, "fast": True}``."""
    parameters: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SlmLabError(f"Cannot read the parameter {item!r}.", "Write it as -p name=value, e.g. -p max_tokens=16.")
        parameters[name.strip()] = parse_value(value.strip())
    return parameters


def declared_parameters(path: Path | str) -> dict[str, Any]:
    """The names and default values a notebook declares in its ``parameters`` cell."""
    import nbformat
    import papermill

    path = Path(path)
    if not path.is_file():
        raise SlmLabError(f"Notebook not found: {path}", "Check the path; notebooks live in solutions/ and labs/.")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        raise SlmLabError(f"{path} is not a readable notebook: {exc}", "Open it in JupyterLab and re-save it.") from exc
    parameters_cell_index(nb, path)  # raises a clear error when there is no parameters cell
    inferred = papermill.inspect_notebook(str(path))
    return {name: info.get("default") for name, info in inferred.items()}


def check_parameters(path: Path | str, parameters: Mapping[str, Any]) -> None:
    """Raise a learner-readable error when ``parameters`` names something the notebook does not declare."""
    declared = declared_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise SlmLabError(
            f"{path} has no parameter {', '.join(repr(u) for u in unknown)}.",
            f"It declares: {', '.join(declared) or '(none)'}.",
        )


class PeakRSS:
    """Poll, from a thread, the summed RSS of this process's children (the kernel and what it starts)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    @staticmethod
    def sample() -> int:
        """Current RSS, in bytes, of every descendant process of this one."""
        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def headless_env() -> Iterator[None]:
    """Set ``SLMLAB_HEADLESS=1`` for the kernels started inside the block."""
    old = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = old


@dataclass
class RunResult:
    """How one notebook run went."""

    notebook: Path
    output: Path
    status: str  # "ok" | "failed" | "timeout" | "crashed"
    seconds: float
    peak_rss_bytes: int
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when every cell ran without an error."""
        return self.status == "ok"


def _describe_failure(exc: BaseException, cell_timeout: float) -> tuple[str, str]:
    """Map an execution exception to (status, one-line reason)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return "failed", f"cell {exc.exec_count or exc.cell_index}: {exc.ename}: {exc.evalue}"
    if isinstance(exc, CellTimeoutError):
        return "timeout", f"a cell ran longer than {cell_timeout:g} s"
    if isinstance(exc, DeadKernelError):
        return "crashed", "the kernel died (out of memory, or a crash in native code)"
    return "failed", f"{type(exc).__name__}: {exc}"


def output_paths(notebooks: Sequence[Path], output_dir: Path) -> list[Path]:
    """Where each executed copy goes: ``output_dir/NAME``, prefixed by its folder when names repeat."""
    names = [p.name for p in notebooks]
    return [
        output_dir / (f"{p.parent.name}-{p.name}" if names.count(p.name) > 1 else p.name) for p in notebooks
    ]


def run_notebook(
    path: Path | str,
    output: Path | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    cell_timeout: float = 600,
    progress_bar: bool = True,
) -> RunResult:
    """Execute one notebook with papermill (in its own folder) and write the executed copy."""
    import papermill

    path, output = Path(path), Path(output)
    parameters = dict(parameters or {})
    check_parameters(path, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    status, error = "ok", ""
    started = time.perf_counter()
    with headless_env(), PeakRSS() as rss:
        try:
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=parameters,
                cwd=str(path.parent.resolve()),
                progress_bar={"desc": path.name} if progress_bar else False,
                execution_timeout=cell_timeout,
                kernel_name="python3",
            )
        except Exception as exc:  # a failed notebook is a result, not a crash of the runner
            status, error = _describe_failure(exc, cell_timeout)
    return RunResult(path, output, status, time.perf_counter() - started, rss.peak_bytes, error)


def run_notebooks(
    paths: Sequence[Path | str],
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: Path | str = "runs",
    cell_timeout: float = 600,
    progress_bar: bool = True,
) -> list[RunResult]:
    """Execute notebooks one after another; parameters are checked for all before any runs."""
    notebooks = [Path(p) for p in paths]
    for notebook in notebooks:
        check_parameters(notebook, parameters or {})
    outputs = output_paths(notebooks, Path(output_dir))
    return [
        run_notebook(nb, out, parameters, cell_timeout=cell_timeout, progress_bar=progress_bar)
        for nb, out in zip(notebooks, outputs)
    ]


def summary_table(results: Sequence[RunResult]) -> Any:
    """A pandas DataFrame: notebook, status, seconds, peak RSS (MB), output, error."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "notebook": str(r.notebook),
                "status": r.status,
                "seconds": round(r.seconds, 1),
                "peak_rss_mb": round(r.peak_rss_bytes / 1e6, 1),
                "output": str(r.output),
                "error": r.error,
            }
            for r in results
        ],
        columns=["notebook", "status", "seconds", "peak_rss_mb", "output", "error"],
    )
