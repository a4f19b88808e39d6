"""Grade one submission: prepare it, run it in a worker process inside a sandbox, score its checks.

Each submission runs in a worker process (:mod:`slmlab.course.grade_worker`, started with
:func:`slmlab.process.run_worker`) on its own share of the CPU cores, in a temporary copy of the learner's
folder with its own HOME, errors allowed per cell, a timeout per cell and per notebook. The lab's check cells
replace the learner's before the run, so an edited check cannot pass; the instructor's hidden checks
(:mod:`slmlab.course.hidden`) are appended and run in the same kernel. A malformed notebook, a hanging or
crashing cell, or a cell that deletes files costs that learner the affected checks; a worker that overruns is
killed with everything it started (found by a marker in their environment), kernel and servers included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import psutil

from slmlab.course import check_cells, check_name
from slmlab.course.build import notebooks_in
from slmlab.course.execute import stop_processes
from slmlab.course.grade_worker import CELL_LOG, EXECUTED
from slmlab.course.hidden import is_hidden, without_hidden
from slmlab.course.limits import Limits
from slmlab.course.points import Question
from slmlab.course.results import CheckResult, LearnerGrade
from slmlab.errors import SlmLabError
from slmlab.progress import HEADLESS_ENV

WORKER_GRACE_S = 60  # kernel start and shutdown on top of the notebook timeout
MAX_REASON = 80  # characters of a parser's message kept in the gradebook
JOB_ENV = "SLMLAB_GRADE_JOB"  # set in the worker's and the kernel's environment: how their leftovers are found


@dataclass
class Submission:
    """One learner's notebook for one lab, and the learner's own folder (copied along) in nbgrader's layout."""

    learner: str
    lab: str
    path: Path
    folder: Path | None = None


@dataclass
class LabPlan:
    """What grading a lab needs: the reference lab, the hidden cells, the questions, the time limits."""

    lab: str
    reference: nbformat.NotebookNode
    hidden: list[nbformat.NotebookNode] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    limits: Limits | None = None


# ----------------------------------------------------------------------------- finding and preparing


def find_submissions(folder: Path, lab: str, *, flat: bool = True) -> dict[str, Path]:
    """Map learner name to notebook: ``folder/<learner>/<lab>.ipynb`` or (``flat``) ``folder/<learner>.ipynb``."""
    if not folder.is_dir():
        raise SlmLabError(f"Submissions folder not found: {folder}",
                          "Pass the folder holding one notebook per learner.")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and (entry / f"{lab}.ipynb").is_file():
            found[entry.name] = entry / f"{lab}.ipynb"
        elif flat and entry.is_file() and entry.suffix == ".ipynb":
            found[entry.stem] = entry
    if not found:
        where = f"{folder}/<learner>/{lab}.ipynb" + (f" or {folder}/<learner>.ipynb" if flat else "")
        raise SlmLabError(f"No submissions for {lab} in {folder}.", f"Expected {where}.")
    return found


def load_reference(lab: str, labs_dir: Path | str = "labs") -> nbformat.NotebookNode:
    """The lab notebook whose check cells (and their points) are authoritative for grading."""
    path = Path(labs_dir) / f"{lab}.ipynb"
    if not path.is_file():
        names = ", ".join(str(p.relative_to(labs_dir).with_suffix("")) for p in notebooks_in(labs_dir)) or "(none)"
        raise SlmLabError(f"Lab not found: {path}", f"Labs in {labs_dir}: {names}.")
    reference = nbformat.read(path, as_version=4)
    if not check_cells(reference):
        raise SlmLabError(f"{path} has no check cells to grade.", "Check cells start with '# CHECK: <name>'.")
    return reference


def prepare_submission(nb: nbformat.NotebookNode, reference: nbformat.NotebookNode,
                       parameters: Mapping[str, Any] | None = None,
                       hidden: Sequence[nbformat.NotebookNode] = ()) -> nbformat.NotebookNode:
    """Put the reference check cells in place of the learner's, clear outputs, inject parameters, append the
    hidden cells. A learner's own cell named like a hidden check, or tagged hidden, is dropped."""
    canonical = {check_name(c): c.source for c in reference.cells if check_name(c)}
    hidden_names = {check_name(c) for c in hidden} - {None}
    nb.cells = [c for c in nb.cells if check_name(c) not in hidden_names and not is_hidden(c)]
    for cell in nb.cells:
        name = check_name(cell)
        if name in canonical:
            cell.source = canonical[name]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if parameters:
        from slmlab.course.execute import inject_parameters

        nb = inject_parameters(nb, parameters)
    nb.cells.extend(nbformat.from_dict(cell) for cell in hidden)
    return nb


def check_positions(nb: nbformat.NotebookNode) -> dict[str, int]:
    """Each check's cell index: the first visible cell of that name; a hidden check's own (last) cell."""
    positions = dict(check_cells(nb))
    for index, cell in enumerate(nb.cells):
        if is_hidden(cell) and (name := check_name(cell)):
            positions[name] = index
    return positions


# ----------------------------------------------------------------------------- the worker and its leftovers


def stop_marked(marker: str) -> None:
    """Kill every process carrying this job's marker in its environment: the worker, an orphaned kernel, servers."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(JOB_ENV) == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    stop_processes(found, grace=0)


def _kernel_env(home: Path, marker: str) -> dict[str, str]:
    """The grader's environment with a private HOME; model caches stay shared so nothing re-downloads."""
    env = dict(os.environ)
    real_home = Path.home()
    env.setdefault("SLMLAB_CACHE", str(real_home / ".cache" / "slmlab"))
    env.setdefault("HF_HOME", str(real_home / ".cache" / "huggingface"))
    env.setdefault("MPLCONFIGDIR", str(real_home / ".cache" / "matplotlib"))
    env["HOME"] = str(home)
    env[HEADLESS_ENV] = "1"
    env[JOB_ENV] = marker
    env.pop("JPY_PARENT_PID", None)
    return env


def _run_job(job_dir: Path, limit: float, marker: str, what: str) -> tuple[dict[str, Any] | None, str]:
    """Run the worker on a prepared job folder within ``limit`` s: its summary, or why it has none."""
    from slmlab.process import run_worker

    started = time.monotonic()
    try:
        return run_worker("slmlab.course.grade_worker", [job_dir], timeout=limit, env={JOB_ENV: marker}, what=what), ""
    except SlmLabError as err:
        if time.monotonic() - started >= limit - 1:
            return None, f"timeout: grading stopped after {limit:g} s"
        how = re.search(r"\((.*?)\)\.", err.problem)  # run_worker's "X failed (killed by SIGKILL, ...)."
        return None, "crashed: the grading worker died before the notebook finished" + (f" ({how[1]})" if how else "")
    finally:
        stop_marked(marker)


def read_cell_log(path: Path) -> tuple[dict[int, dict[str, Any]], str, str]:
    """The cells that ran (index → error, seconds, peak_rss) and the final status/reason ("" if none came)."""
    cells: dict[int, dict[str, Any]] = {}
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
            cells[entry["index"]] = entry
        elif "status" in entry:
            status, reason = entry["status"], entry["reason"]
    return cells, status, reason


# ----------------------------------------------------------------------------- one submission


def checks_from(nb: nbformat.NotebookNode | None, questions: Sequence[Question], cells: Mapping[int, dict[str, Any]],
                why_not_run: str) -> list[CheckResult]:
    """Pass/fail per question, given which cells ran and how; time and memory of the cells leading to each check."""
    where = check_positions(nb) if nb is not None else {}
    at_index = {index: name for name, index in where.items()}
    sections: dict[str, tuple[float, int]] = {}
    seconds, peak = 0.0, 0
    for index in sorted(cells):
        seconds += cells[index].get("seconds") or 0.0
        peak = max(peak, cells[index].get("peak_rss") or 0)
        if index in at_index:
            sections[at_index[index]] = (seconds, peak)
            seconds, peak = 0.0, 0
    results = []
    for q in questions:
        result = CheckResult(q.name, False, q.points, hidden=q.hidden)
        if nb is None:
            result.detail = why_not_run
        elif q.name not in where:
            result.detail = "check cell missing from the submission"
        elif where[q.name] not in cells:
            result.detail = why_not_run
        else:
            error = cells[where[q.name]].get("error")
            result.passed, result.detail = not error, error or ""
            result.seconds, result.peak_rss_bytes = sections.get(q.name, (None, None))
        results.append(result)
    return results


def _read_submission(sub: Submission, plan: LabPlan, parameters: Mapping[str, Any] | None
                     ) -> tuple[nbformat.NotebookNode | None, str]:
    """The prepared notebook, or why it could not be read."""
    try:
        nb = nbformat.read(sub.path, as_version=4)
        nbformat.validate(nb)
        return prepare_submission(nb, plan.reference, parameters, plan.hidden), ""
    except Exception as exc:  # noqa: BLE001 - broken JSON, not a notebook, wrong schema: a malformed submission
        first = " ".join(str(exc).split())  # one line, however the parser wrapped it
        first = first if len(first) <= MAX_REASON else first[: MAX_REASON - 1] + "…"
        return None, f"the notebook could not be read: {type(exc).__name__}: {first}"


def _sandbox(sub: Submission, nb: nbformat.NotebookNode, root: Path) -> Path:
    """Copy the learner's folder (or nothing) into ``root/work``, write the prepared notebook; its path."""
    work = root / "work"
    if sub.folder is not None:
        shutil.copytree(sub.folder, work, symlinks=True)
    notebook = work / f"{sub.lab}.ipynb" if sub.folder is not None else work / sub.path.name
    notebook.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, notebook)
    (root / "home").mkdir()
    return notebook


def grade_submission(sub: Submission, plan: LabPlan, *, executed_to: Path | None = None,
                     parameters: Mapping[str, Any] | None = None, cpus: Sequence[int] | None = None
                     ) -> LearnerGrade:
    """Grade one notebook in a worker process and a private temporary folder."""
    if plan.limits is None:
        raise SlmLabError(f"No time limits for {plan.lab}.", "Pass timeout= or measure the solution first.")
    started = time.perf_counter()
    submitted = datetime.fromtimestamp(sub.path.stat().st_mtime, tz=UTC).isoformat(timespec="seconds")
    nb, problem = _read_submission(sub, plan, parameters)
    if nb is None:
        checks = checks_from(None, plan.questions, {}, problem)
        return LearnerGrade(sub.learner, checks, "malformed", problem, lab=plan.lab, submitted_at=submitted)
    marker = uuid.uuid4().hex
    # The learner's sandbox (work folder + HOME) and the grader's job folder are separate temporary folders, so a
    # cell that deletes everything it can reach from its cwd or HOME loses no results.
    with tempfile.TemporaryDirectory(prefix=f"slmlab-{sub.learner}-", ignore_cleanup_errors=True) as sandbox, \
            tempfile.TemporaryDirectory(prefix="slmlab-job-", ignore_cleanup_errors=True) as job_tmp:
        notebook, job_dir = _sandbox(sub, nb, Path(sandbox)), Path(job_tmp)
        job = {"notebook": str(notebook), "cwd": str(notebook.parent), "timeout": plan.limits.notebook_s,
               "cell_timeout": plan.limits.cell_s, "env": _kernel_env(Path(sandbox) / "home", marker),
               "cpus": list(cpus or [])}
        (job_dir / "job.json").write_text(json.dumps(job))
        summary, ended = _run_job(job_dir, plan.limits.notebook_s + WORKER_GRACE_S, marker,
                                  f"Grading {sub.learner}'s {plan.lab}")
        cells, status, reason = read_cell_log(job_dir / CELL_LOG)
        if not status:
            status, _, reason = ended.partition(": ")
        executed = _keep_executed(job_dir / EXECUTED, nb, executed_to)
    checks = checks_from(nb, plan.questions, cells, f"not run: {reason}" if reason else "not run")
    slowest = max((c.get("seconds") or 0.0 for c in cells.values()), default=0.0)
    peak = (summary or {}).get("peak_rss") or max((c.get("peak_rss") or 0 for c in cells.values()), default=0)
    return LearnerGrade(sub.learner, checks, status, reason, time.perf_counter() - started, executed, plan.lab,
                        peak or None, submitted, slowest)


def _keep_executed(path: Path, prepared: nbformat.NotebookNode, target: Path | None) -> Path | None:
    """Write the executed notebook (the prepared one when none came back) to ``target``, hidden cells taken out."""
    if target is None:
        return None
    try:
        executed = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        executed = prepared
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(without_hidden(executed), target)
    return target


def submissions_for(folder: Path, labs: Sequence[str]) -> list[Submission]:
    """Every learner's submission of every lab (the flat layout only when there is one lab)."""
    found = []
    for lab in labs:
        for learner, path in find_submissions(folder, lab, flat=len(labs) == 1).items():
            own = folder / learner if path.is_relative_to(folder / learner) and (folder / learner).is_dir() else None
            found.append(Submission(learner, lab, path, own))
    return found


def relative_files(subs: Iterable[Submission], folder: Path) -> dict[tuple[str, str], str]:
    """(lab, learner) → the graded file, relative to the submissions folder."""
    return {(s.lab, s.learner): s.path.relative_to(folder).as_posix() for s in subs}
