"""Grade a folder of submissions: run each learner's notebook, record every check cell as pass/fail.

Layout: ``SUBMISSIONS/<learner>/<lab>.ipynb`` (nbgrader's) or ``SUBMISSIONS/<learner>.ipynb``.

Each submission is graded in a worker process (``python -m slmlab.course.grade JOB_DIR``) that
runs the notebook with nbclient in a temporary copy of the learner's folder, with its own HOME,
errors allowed per cell, a timeout per cell and per notebook. The check cells are replaced by the
lab's own before running, so an edited check cannot pass. A malformed notebook, a hanging or
crashing cell, or a cell that deletes files costs that learner the affected checks; the worker is
killed (with the kernel) if it overruns, and the class run goes on.

Outputs in ``--out``: ``gradebook.csv`` (learner, one 1/0 column per check, total, status),
``reports/<learner>.md`` and ``executed/<learner>.ipynb`` for feedback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil

from slmlab.course import check_cells, check_name
from slmlab.course.build import notebooks_in
from slmlab.course.execute import execute_tolerantly, stop_processes
from slmlab.errors import SlmLabError
from slmlab.progress import HEADLESS_ENV

WORKER_GRACE_S = 60  # kernel start and shutdown on top of the notebook timeout


# ----------------------------------------------------------------------------- worker process


def _worker(job_dir: Path) -> int:
    """Run one prepared submission (job_dir/job.json), streaming each cell's result to cells.jsonl."""
    job = json.loads((job_dir / "job.json").read_text())
    nb = nbformat.read(job["notebook"], as_version=4)
    with open(job_dir / "cells.jsonl", "a", buffering=1, encoding="utf-8") as log:

        def record(index: int, error: str | None) -> None:
            log.write(json.dumps({"index": index, "error": error}) + "\n")

        outcome = execute_tolerantly(nb, cwd=job["cwd"], cell_timeout=job["cell_timeout"], timeout=job["timeout"],
                                     env=job["env"], on_cell=record)
        nbformat.write(nb, job_dir / "executed.ipynb")
        log.write(json.dumps({"status": outcome.status, "reason": outcome.reason}) + "\n")
    return 0


def _run_worker(job_dir: Path, limit: float) -> bool:
    """Run the worker on a job folder; kill it and its kernel after ``limit`` seconds. True if killed."""
    with open(job_dir / "worker.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slmlab.course.grade", str(job_dir)],
            cwd=job_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            proc.wait(timeout=limit)
            return False
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()
            return True


def _read_cell_log(path: Path) -> tuple[set[int], dict[int, str], str, str]:
    """Executed cell indices, their errors, and the final status/reason (empty if the worker never finished)."""
    executed: set[int] = set()
    errors: dict[int, str] = {}
    status = reason = ""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if "index" in entry:
            executed.add(entry["index"])
            if entry["error"]:
                errors[entry["index"]] = entry["error"]
        else:
            status, reason = entry["status"], entry["reason"]
    return executed, errors, status, reason


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (the kernel runs in a session of its own)."""
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    stop_processes(procs, grace=0)


def _kernel_env(home: Path) -> dict[str, str]:
    """The grader's environment with a private HOME; model caches stay shared so nothing re-downloads."""
    env = dict(os.environ)
    real_home = Path.home()
    env.setdefault("SLMLAB_CACHE", str(real_home / ".cache" / "slmlab"))
    env.setdefault("HF_HOME", str(real_home / ".cache" / "huggingface"))
    env.setdefault("MPLCONFIGDIR", str(real_home / ".cache" / "matplotlib"))
    env["HOME"] = str(home)
    env[HEADLESS_ENV] = "1"
    env.pop("JPY_PARENT_PID", None)
    return env


# ----------------------------------------------------------------------------- grading


@dataclass
class CheckResult:
    """One check of one learner."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class LearnerGrade:
    """A learner's checks, run status and where their executed notebook went."""

    learner: str
    checks: list[CheckResult]
    status: str  # "ok" | "error" (a non-check cell raised) | "timeout" | "crashed" | "malformed"
    reason: str = ""
    seconds: float = 0.0
    executed: Path | None = None

    @property
    def total(self) -> int:
        """Number of checks passed."""
        return sum(c.passed for c in self.checks)


def find_submissions(folder: Path, lab: str) -> dict[str, Path]:
    """Map learner name to notebook: ``folder/<learner>/<lab>.ipynb`` or ``folder/<learner>.ipynb``."""
    if not folder.is_dir():
        raise SlmLabError(f"Submissions folder not found: {folder}",
                          "Pass the folder holding one notebook per learner.")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and (entry / f"{lab}.ipynb").is_file():
            found[entry.name] = entry / f"{lab}.ipynb"
        elif entry.is_file() and entry.suffix == ".ipynb":
            found[entry.stem] = entry
    if not found:
        raise SlmLabError(
            f"No submissions for {lab} in {folder}.",
            f"Expected {folder}/<learner>/{lab}.ipynb or {folder}/<learner>.ipynb.",
        )
    return found


def load_reference(lab: str, labs_dir: Path | str = "labs") -> nbformat.NotebookNode:
    """The lab notebook whose check cells are authoritative for grading."""
    path = Path(labs_dir) / f"{lab}.ipynb"
    if not path.is_file():
        names = ", ".join(str(p.relative_to(labs_dir).with_suffix("")) for p in notebooks_in(labs_dir)) or "(none)"
        raise SlmLabError(f"Lab not found: {path}", f"Labs in {labs_dir}: {names}.")
    reference = nbformat.read(path, as_version=4)
    if not check_cells(reference):
        raise SlmLabError(f"{path} has no check cells to grade.", "Check cells start with '# CHECK: <name>'.")
    return reference


def prepare_submission(
    nb: nbformat.NotebookNode, reference: nbformat.NotebookNode, parameters: Mapping[str, Any] | None = None
) -> nbformat.NotebookNode:
    """Put the reference check cells in place of the learner's, clear outputs, inject parameters."""
    canonical = {check_name(c): c.source for c in reference.cells if check_name(c)}
    for cell in nb.cells:
        name = check_name(cell)
        if name in canonical:
            cell.source = canonical[name]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if parameters:
        from slmlab.course.execute import inject_parameters

        nb = inject_parameters(nb, parameters)
    return nb


def _checks_from(nb: nbformat.NotebookNode | None, names: list[str], errors: dict[int, str],
                 executed: set[int], why_not_run: str) -> list[CheckResult]:
    """Pass/fail per reference check name, given which cells ran and which raised."""
    where = check_cells(nb) if nb is not None else {}
    results = []
    for name in names:
        if name not in where:
            results.append(CheckResult(name, False, "check cell missing from the submission"))
        elif where[name] not in executed:
            results.append(CheckResult(name, False, why_not_run))
        elif where[name] in errors:
            results.append(CheckResult(name, False, errors[where[name]]))
        else:
            results.append(CheckResult(name, True))
    return results


def grade_submission(
    learner: str,
    path: Path,
    reference: nbformat.NotebookNode,
    out: Path,
    *,
    timeout: float = 600,
    cell_timeout: float | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> LearnerGrade:
    """Grade one notebook in a worker process and a private temporary folder."""
    names = list(check_cells(reference))
    started = time.perf_counter()
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        nb = prepare_submission(nb, reference, parameters)
    except Exception as exc:  # noqa: BLE001 - broken JSON, not a notebook, wrong schema: a malformed submission
        reason = f"the notebook could not be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return LearnerGrade(learner, [CheckResult(n, False, reason) for n in names], "malformed", reason)

    target = out / "executed" / f"{learner}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    # The learner's sandbox (work folder + HOME) and the grader's job folder are separate temporary
    # folders, so a cell that deletes everything it can reach from its cwd or HOME loses no results.
    with tempfile.TemporaryDirectory(prefix=f"slmlab-{learner}-", ignore_cleanup_errors=True) as sandbox, \
            tempfile.TemporaryDirectory(prefix="slmlab-job-", ignore_cleanup_errors=True) as job_tmp:
        work, home, job_dir = Path(sandbox) / "work", Path(sandbox) / "home", Path(job_tmp)
        if path.parent.name == learner:  # the learner's own folder: copy their data files along
            shutil.copytree(path.parent, work, symlinks=True)
        work.mkdir(exist_ok=True)
        home.mkdir()
        notebook = work / path.name
        nbformat.write(nb, notebook)
        job = {
            "notebook": str(notebook),
            "cwd": str(work),
            "timeout": timeout,
            "cell_timeout": cell_timeout or timeout,
            "env": _kernel_env(home),
        }
        (job_dir / "job.json").write_text(json.dumps(job))
        killed = _run_worker(job_dir, timeout + WORKER_GRACE_S)
        executed, errors, status, reason = _read_cell_log(job_dir / "cells.jsonl")
        if not status:
            status = "timeout" if killed else "crashed"
            reason = (f"grading stopped after {timeout + WORKER_GRACE_S:g} s" if killed
                      else "the grading worker died before the notebook finished")
        try:
            executed_nb = nbformat.read(job_dir / "executed.ipynb", as_version=4)
        except OSError:
            executed_nb = nb
        nbformat.write(executed_nb, target)
    why_not_run = f"not run: {reason}" if reason else "not run"
    checks = _checks_from(nb, names, errors, executed, why_not_run)
    return LearnerGrade(learner, checks, status, reason, time.perf_counter() - started, target)


def learner_report(grade: LearnerGrade, lab: str) -> str:
    """A short markdown report for one learner."""
    lines = [
        f"# {lab}: {grade.learner}",
        "",
        f"Score: **{grade.total}/{len(grade.checks)}** checks passed. Run status: **{grade.status}**"
        + (f" ({grade.reason})" if grade.reason else "") + ".",
        "",
        "| check | result | details |",
        "| --- | --- | --- |",
    ]
    for check in grade.checks:
        detail = check.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check.name} | {'✓ pass' if check.passed else '✗ fail'} | {detail} |")
    if grade.executed is not None:
        lines += ["", f"Your notebook as it ran: `executed/{grade.executed.name}`."]
    return "\n".join(lines) + "\n"


def grade_folder(
    submissions: Path | str,
    lab: str,
    *,
    labs_dir: Path | str = "labs",
    out: Path | str | None = None,
    timeout: float = 600,
    cell_timeout: float | None = None,
    parameters: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] | None = print,
) -> Any:
    """Grade every submission; write gradebook.csv and reports; return the gradebook DataFrame."""
    import pandas as pd

    reference = load_reference(lab, labs_dir)
    learners = find_submissions(Path(submissions), lab)
    out = Path(out) if out is not None else Path("grades") / lab
    (out / "reports").mkdir(parents=True, exist_ok=True)
    names = list(check_cells(reference))
    rows = []
    for learner, path in learners.items():
        grade = grade_submission(
            learner, path, reference, out, timeout=timeout, cell_timeout=cell_timeout, parameters=parameters
        )
        (out / "reports" / f"{learner}.md").write_text(learner_report(grade, lab), encoding="utf-8")
        if echo:
            echo(f"{learner}: {grade.total}/{len(names)} ({grade.status}, {grade.seconds:.1f} s)")
        rows.append(
            {"learner": learner, **{c.name: int(c.passed) for c in grade.checks}, "total": grade.total,
             "status": grade.status}
        )
    book = pd.DataFrame(rows, columns=["learner", *names, "total", "status"])
    book.to_csv(out / "gradebook.csv", index=False)
    return book


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
