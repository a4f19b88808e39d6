"""How long a submission may run: a multiple of the solution's own measured time, not a flat ten minutes.

Before a class is graded, the lab's solution runs once through exactly the grading path (same worker, same
parameters, the hidden checks appended, the same number of CPU cores a submission gets). A submission may then
run ``factor`` times as long as the solution did (default 5×), at least ``minimum`` seconds (default 60), and any
one cell ``factor`` times the solution's slowest cell, with the same floor. A hanging 00-setup-check
(7 s solved) is cut after a minute instead of ten.

The measurement is cached in ``$SLMLAB_CACHE/grading/solution-times.json`` (``~/.cache/slmlab``), keyed by
the solution's bytes, the hidden checks, the parameters, the cores per job, the machine and the versions of the
packages that set its speed (a pin update measures again), so regrading a late
submission does not run the solution again; ``--remeasure`` runs it anyway. A flat ``--timeout`` skips all this.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_FACTOR = 5.0
DEFAULT_MIN_S = 60.0
CACHE_NAME = "solution-times.json"
# Updating one of these (a new pin) can change the solution's time: its cached measurement is not reused.
TIMED_PACKAGES = ("slmlab", "llama-cpp-python", "nbclient", "ipykernel", "torch", "onnxruntime-genai")


@dataclass
class SolutionRun:
    """The solution's run on this machine: wall seconds (kernel start included), slowest cell, peak memory."""

    seconds: float
    slowest_cell_s: float
    peak_rss_bytes: int
    measured_at: str  # ISO time of the measurement
    cached: bool = False


@dataclass(frozen=True)
class Limits:
    """Seconds a submission's notebook and any one of its cells may run, and where the numbers came from."""

    notebook_s: float
    cell_s: float
    why: str


def flat_limits(timeout: float, cell_timeout: float | None = None) -> Limits:
    """The limits an instructor set by hand (``--timeout``, ``--cell-timeout``)."""
    cell = min(cell_timeout or timeout, timeout)
    return Limits(timeout, cell, f"--timeout {timeout:g} s" + (f", --cell-timeout {cell:g} s" if cell_timeout else ""))


def derived_limits(run: SolutionRun, factor: float = DEFAULT_FACTOR, minimum: float = DEFAULT_MIN_S,
                   cell_timeout: float | None = None) -> Limits:
    """``factor`` × the solution's time (at least ``minimum``) for the notebook and, by its slowest cell, per cell."""
    notebook = max(minimum, factor * run.seconds)
    cell = min(notebook, cell_timeout or max(minimum, factor * run.slowest_cell_s))
    origin = "cached" if run.cached else "measured now"
    return Limits(round(notebook, 1), round(cell, 1),
                  f"{factor:g} × the solution's {run.seconds:.1f} s ({origin}), at least {minimum:g} s; "
                  f"a cell {cell:.0f} s")


def run_key(solution: Path, hidden_sources: list[str], parameters: dict[str, Any], cpus: int) -> str:
    """What the solution's time depends on, hashed: its bytes, the hidden checks, parameters, cores, machine."""
    digest = hashlib.sha256(solution.read_bytes())
    extra = {"hidden": hidden_sources, "parameters": parameters, "cpus": cpus,
             "machine": [platform.node(), platform.machine(), platform.python_version()],
             "versions": [_version(name) for name in TIMED_PACKAGES]}
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _version(package: str) -> str:
    """The installed version of a package, or "" when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def cache_file() -> Path:
    """The JSON file of measured solution runs."""
    from slmlab.models.resolver import cache_dir

    return cache_dir() / "grading" / CACHE_NAME


def cached_run(key: str, path: Path | None = None) -> SolutionRun | None:
    """The cached measurement for ``key``, or None (a missing or unreadable cache is no cache)."""
    try:
        entry = json.loads((path or cache_file()).read_text(encoding="utf-8"))[key]
        return SolutionRun(float(entry["seconds"]), float(entry["slowest_cell_s"]), int(entry["peak_rss_bytes"]),
                           str(entry["measured_at"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_run(key: str, run: SolutionRun, path: Path | None = None) -> None:
    """Remember a measurement (written to a temporary file first, so a crash leaves the old cache)."""
    path = path or cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        entries = {}
    entries[key] = {k: v for k, v in asdict(run).items() if k != "cached"}
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, path)
