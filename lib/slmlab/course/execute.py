"""Run notebooks headlessly, two ways.

* :func:`run_notebooks` (``slmlab run``, CI): papermill with parameters, a timeout per cell, executed
  copies in an output folder, and a summary with wall time and the peak RSS of the kernel's process
  tree (polled with psutil from a thread). A run stops at the first error, as papermill does.
  With ``undo_exercises``, each check also runs once with its exercises undone, just before it runs as written
  (:mod:`slmlab.course.undone`): CI proves from the solution's one run that no check passes on an untouched lab.
* :func:`execute_tolerantly` (grading): nbclient cell by cell with errors allowed, so every check cell runs
  and is recorded even after a failed exercise; a cell that times out is interrupted and the run goes on; an
  overall timeout bounds the notebook; ``stop_after`` ends the run at a given cell.

Both start kernels with ``SLMLAB_HEADLESS=1``: pickers take their defaults, progress bars print text.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil

from slmlab.course import check_name, parameters_cell_index
from slmlab.errors import SlmLabError
from slmlab.progress import HEADLESS_ENV

SEVERITY = ("ok", "error", "timeout", "crashed")  # a tolerant run keeps the most serious status it met
SETTLE_S = 10  # how long an interrupted kernel gets to answer again


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
            raise SlmLabError(f"Cannot read the parameter {item!r}.",
                              "Write it as -p name=value, e.g. -p max_tokens=16.")
        parameters[name.strip()] = parse_value(value.strip())
    return parameters


def declared_parameters(path: Path | str) -> dict[str, Any]:
    """The names and default values a notebook declares in its ``parameters`` cell."""
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


def inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> Any:
    """Add papermill's ``injected-parameters`` cell after the ``parameters`` cell (returns the notebook)."""
    from papermill.parameterize import parameterize_notebook

    for cell in nb.cells:  # papermill's own loader does this before it parameterizes
        cell.metadata.setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    return parameterize_notebook(nb, dict(parameters), kernel_name="python3", language="python")


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
    status: str  # "ok" | "skipped" (stopped cleanly: the machine is too small) | "failed" | "timeout" | "crashed"
    seconds: float
    peak_rss_bytes: int
    error: str = ""
    memory_limit_bytes: int | None = None  # the cgroup limit it ran under, if any
    cgroup_peak_bytes: int | None = None  # the kernel's own count of the group's peak (page cache included)
    undone_checks: dict[str, str | None] = field(default_factory=dict)  # check -> its error, exercises undone

    @property
    def ok(self) -> bool:
        """True when every cell ran without an error."""
        return self.status == "ok"


def _describe_failure(exc: BaseException, cell_timeout: float) -> tuple[str, str]:
    """Map an execution exception to (status, one-line reason)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        status = "skipped" if exc.ename == "MachineTooSmall" else "failed"
        return status, f"In [{exc.exec_count}]: {exc.ename}: {exc.evalue}"
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
    memory_limit_bytes: int | None = None,
    undo_exercises: bool = False,
) -> RunResult:
    """Execute one notebook with papermill (in its own folder) and write the executed copy.

    With `memory_limit_bytes`, the kernel and all it starts run in a memory cgroup of that size (root needed).
    With `undo_exercises`, each check runs first with its exercises undone; `RunResult.undone_checks` has the error
    each raised then (None: it passed, so it checks nothing).
    """
    path, output = Path(path), Path(output)
    parameters = dict(parameters or {})
    check_parameters(path, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    undone: dict[str, str | None] | None = {} if undo_exercises else None
    if memory_limit_bytes is None:
        with PeakRSS() as rss:
            status, error = _papermill(path, output, parameters, cell_timeout, progress_bar, "python3", undone)
        return RunResult(path, output, status, time.perf_counter() - started, rss.peak_bytes, error,
                         undone_checks=undone or {})
    from slmlab.course.memory_limit import MemoryCgroup

    with MemoryCgroup(memory_limit_bytes) as group, group.kernelspec() as kernel_name, PeakRSS() as rss:
        status, error = _papermill(path, output, parameters, cell_timeout, progress_bar, kernel_name, undone)
        if status in ("crashed", "failed") and group.oom_kills:
            status, error = "crashed", (f"killed by the out-of-memory killer at the {memory_limit_bytes / 2**30:.1f} "
                                        f"GB limit ({error})")
        peak = group.peak_bytes
    return RunResult(path, output, status, time.perf_counter() - started, rss.peak_bytes, error,
                     memory_limit_bytes, peak, undone or {})


def _papermill(path: Path, output: Path, parameters: dict, cell_timeout: float, progress_bar: bool,
               kernel_name: str, undone: dict[str, str | None] | None = None) -> tuple[str, str]:
    """Run papermill headlessly; (status, one-line error) of the run. With `undone` (a dict to fill), each check
    runs first with its exercises undone."""
    import papermill

    engine: dict[str, Any] = {}
    if undone is not None:
        from slmlab.course.undone import register_engine

        engine = {"engine_name": register_engine(), "undone_results": undone}
    with headless_env():
        try:
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=parameters,
                cwd=str(path.parent.resolve()),
                progress_bar={"desc": str(path)} if progress_bar else False,
                execution_timeout=cell_timeout,
                kernel_name=kernel_name,
                **engine,
            )
        except Exception as exc:  # noqa: BLE001 - a failed notebook is a result, not a crash of the runner
            return _describe_failure(exc, cell_timeout)
    return "ok", ""


def run_notebooks(
    paths: Sequence[Path | str],
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: Path | str = "runs",
    cell_timeout: float = 600,
    progress_bar: bool = True,
    memory_limit_bytes: int | None = None,
    undo_exercises: bool = False,
) -> list[RunResult]:
    """Execute notebooks one after another; parameters are checked for all before any runs."""
    notebooks = [Path(p) for p in paths]
    for notebook in notebooks:
        check_parameters(notebook, parameters or {})
    outputs = output_paths(notebooks, Path(output_dir))
    return [
        run_notebook(nb, out, parameters, cell_timeout=cell_timeout, progress_bar=progress_bar,
                     memory_limit_bytes=memory_limit_bytes, undo_exercises=undo_exercises)
        for nb, out in zip(notebooks, outputs, strict=True)
    ]


def summary_table(results: Sequence[RunResult]) -> Any:
    """A pandas DataFrame: notebook, status, seconds, peak RSS (MB), the memory limit and the cgroup's peak (MB)
    when there was one, output, error."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "notebook": str(r.notebook),
                "status": r.status,
                "seconds": round(r.seconds, 1),
                "peak_rss_mb": round(r.peak_rss_bytes / 1e6, 1),
                "limit_mb": round(r.memory_limit_bytes / 1e6) if r.memory_limit_bytes else None,
                "cgroup_peak_mb": round(r.cgroup_peak_bytes / 1e6) if r.cgroup_peak_bytes else None,
                "output": str(r.output),
                "error": r.error,
            }
            for r in results
        ],
        columns=["notebook", "status", "seconds", "peak_rss_mb", "limit_mb", "cgroup_peak_mb", "output", "error"],
    ).dropna(axis="columns", how="all")


# ----------------------------------------------------------------------------- errors allowed


@dataclass
class Execution:
    """What happened when a notebook ran with errors allowed."""

    status: str = "ok"  # "ok" | "timeout" | "crashed" | "error"
    reason: str = ""
    errors: dict[int, str] = field(default_factory=dict)  # cell index -> "Name: message"
    executed: set[int] = field(default_factory=set)  # code cells that ran to completion or error

    def flag(self, status: str, reason: str) -> None:
        """Record a problem unless a more serious one was recorded already."""
        if SEVERITY.index(status) > SEVERITY.index(self.status):
            self.status, self.reason = status, reason


def _error_of(cell: Any) -> str | None:
    """'Ename: evalue' of the first error output of an executed cell, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    return None


async def _interrupt_and_settle(client: Any, wait: float) -> bool:
    """Interrupt the kernel, then wait until it answers a trivial request; False if it never does."""
    from nbclient.util import ensure_async

    await ensure_async(client.km.interrupt_kernel())
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        msg_id = client.kc.execute("pass", silent=True, store_history=False)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply = await ensure_async(client.kc.shell_channel.get_msg(timeout=remaining))
            except queue.Empty:
                return False
            if reply["parent_header"].get("msg_id") == msg_id:
                if reply["content"].get("status") == "ok":
                    return True
                break  # aborted while the interrupt was handled: ask again
    return False


def _run_cell(client: Any, cell: Any, index: int, limit: float, outcome: Execution) -> tuple[str | None, bool]:
    """Run one code cell within ``limit`` seconds; return its error (or None) and whether to stop."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import run_sync

    client.timeout = max(1, int(limit))
    try:
        client.execute_cell(cell, index)
    except CellTimeoutError:
        outcome.flag("timeout", f"cell {index + 1} timed out")
        error = f"CellTimeoutError: the cell ran longer than {client.timeout} s and was interrupted"
        if run_sync(_interrupt_and_settle)(client, max(1.0, min(SETTLE_S, limit))):
            return error, False
        outcome.reason = f"cell {index + 1} timed out and the kernel ignored the interrupt"
        return error, True
    except DeadKernelError:
        outcome.flag("crashed", f"the kernel died in cell {index + 1}")
        return "DeadKernelError: the kernel died while running this cell", True
    return _error_of(cell), False


def execute_tolerantly(
    nb: nbformat.NotebookNode,
    *,
    cwd: Path | str,
    cell_timeout: float = 600,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    on_cell: Callable[[int, str | None], None] | None = None,
    stop_after: int | None = None,
) -> Execution:
    """Run every code cell in place, going on after errors and interrupted cells, within an overall timeout.

    With ``stop_after`` (a cell index), the cells after it are left as they are, unexecuted. The processes the
    notebook started and left running (servers in a session of their own, whose stop cell did not run or failed)
    are stopped when the kernel is, so nothing outlives the run.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    outcome = Execution()
    deadline = time.monotonic() + timeout if timeout else float("inf")
    client = NotebookClient(
        nb,
        timeout=int(cell_timeout),
        allow_errors=True,
        kernel_name="python3",
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(cwd)}},
    )
    kernel_env = dict(os.environ if env is None else env)
    kernel_env.setdefault(HEADLESS_ENV, "1")
    before, spawned = descendants(), set()
    try:
        with client.setup_kernel(env=kernel_env, cwd=str(cwd)):
            for index, cell in enumerate(nb.cells[: None if stop_after is None else stop_after + 1]):
                if cell.cell_type != "code":
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    outcome.flag("timeout", f"the notebook ran longer than {timeout:g} s; later cells did not run")
                    break
                error, stop = _run_cell(client, cell, index, min(cell_timeout, remaining), outcome)
                outcome.executed.add(index)
                if error:
                    outcome.errors[index] = error
                    if check_name(cell) is None:
                        outcome.flag("error", f"cell {index + 1}: {error}")
                spawned |= descendants() - before  # while the kernel lives, what it started are its children
                if on_cell:
                    on_cell(index, error)
                if stop:
                    break
    except DeadKernelError:  # died while starting or shutting down
        outcome.flag("crashed", "the kernel died")
    except RuntimeError as exc:  # e.g. the kernel did not start
        outcome.flag("crashed", f"the kernel failed: {exc}")
    finally:
        stop_processes(spawned)
    return outcome


def descendants() -> set[psutil.Process]:
    """Every process this one started, directly or not, that is running now."""
    try:
        return set(psutil.Process().children(recursive=True))
    except psutil.Error:
        return set()


def stop_processes(procs: Iterable[psutil.Process], grace: float = 5) -> None:
    """Stop the processes still running: SIGTERM, then SIGKILL those alive ``grace`` s later (grace=0: SIGKILL)."""
    alive = [p for p in procs if p.is_running()]
    for sig in (signal.SIGTERM, signal.SIGKILL) if grace > 0 else (signal.SIGKILL,):
        for proc in alive:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(alive, timeout=grace if sig == signal.SIGTERM else 5)
        if not alive:
            return
