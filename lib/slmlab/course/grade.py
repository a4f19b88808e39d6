"""Grade a class: every learner's notebook of one or more labs, in parallel, into points, CSVs and feedback.

Layout: ``SUBMISSIONS/<learner>/<lab>.ipynb`` (nbgrader's; a lab in a part folder sits in that folder:
``ada/01-foundations/01-slm-landscape.ipynb``) or, grading one lab, ``SUBMISSIONS/<learner>.ipynb``.

For each lab: the reference lab's check cells and their points (:mod:`slmlab.course.points`), the instructor's
hidden checks (:mod:`slmlab.course.hidden`), and the time limits: a multiple of the solution's own measured time
(:mod:`slmlab.course.limits`), unless a flat ``timeout`` is given. Then every submission is graded
(:mod:`slmlab.course.submission`), ``jobs`` at a time, each on its own share of the CPU cores (fewer jobs when
the solution's peak memory times the jobs would not fit the memory available).

Outputs in ``out``: ``gradebook.csv``, ``totals.csv``, ``points.csv`` (:mod:`slmlab.course.gradebook`),
``feedback/<learner>.md`` and ``summary.md`` (:mod:`slmlab.course.feedback`), and
``executed/<lab>/<learner>.ipynb`` (each notebook as it ran, without the hidden checks).
"""

from __future__ import annotations

import dataclasses
import os
import queue
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from slmlab.course.execute import descendants, stop_processes
from slmlab.course.feedback import class_summary, learner_feedback
from slmlab.course.gradebook import write_gradebook
from slmlab.course.hidden import hidden_path, hidden_questions, load_hidden, unused_files
from slmlab.course.limits import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_S,
    SolutionRun,
    cached_run,
    derived_limits,
    flat_limits,
    run_key,
    store_run,
)
from slmlab.course.points import questions_of
from slmlab.course.results import LearnerGrade, number
from slmlab.course.submission import (
    LabPlan,
    Submission,
    grade_submission,
    load_reference,
    prepare_submission,
    relative_files,
    submissions_for,
)
from slmlab.errors import SlmLabError

__all__ = ["grade_folder", "plan_lab", "measure_solution", "cpu_slices", "jobs_for_memory", "write_outputs",
           "prepare_submission", "load_reference"]  # the last two live in submission.py; imported from here too

SOLUTION_LIMIT_S = 3600.0  # the solution's own run, before anything is known about its time
MEMORY_SHARE = 0.8  # parallel jobs may use this share of the memory available when grading starts
Echo = Callable[[str], None]


def plan_lab(lab: str, labs_dir: Path | str, hidden_dir: Path | str | None) -> LabPlan:
    """The reference lab, its hidden cells and all its questions with their points."""
    reference = load_reference(lab, labs_dir)
    visible = questions_of(reference, str(Path(labs_dir) / f"{lab}.ipynb"))
    hidden = load_hidden(hidden_dir, lab, [q.name for q in visible]) if hidden_dir is not None else []
    where = str(hidden_path(hidden_dir, lab)) if hidden_dir is not None else ""
    return LabPlan(lab, reference, hidden, visible + hidden_questions(hidden, where))


def cpu_slices(jobs: int | None) -> list[list[int]]:
    """The cores this process may use, split into ``jobs`` equal shares (default: one job per physical core)."""
    from slmlab.models.hardware import physical_cores

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if jobs is not None and jobs < 1:
        raise SlmLabError(f"--jobs {jobs} is not a number of parallel jobs.", "Pass --jobs 1 or more.")
    count = max(1, min(jobs or physical_cores(), len(cores)))
    size = len(cores) // count
    return [cores[i * size:(i + 1) * size] for i in range(count)]


def measure_solution(plan: LabPlan, solutions_dir: Path | str, parameters: Mapping[str, Any] | None,
                     cpus: Sequence[int], *, remeasure: bool = False) -> SolutionRun:
    """The solution's time and memory through the grading path (cached); an error when it fails a check."""
    path = Path(solutions_dir) / f"{plan.lab}.ipynb"
    if not path.is_file():
        raise SlmLabError(f"No solution {path} to measure {plan.lab}'s time limit with.",
                          "Pass --solutions DIR (the course's solutions/), or a flat --timeout SECONDS.")
    key = run_key(path, [c.source for c in plan.hidden], dict(parameters or {}), len(cpus))
    if not remeasure and (cached := cached_run(key)) is not None:
        return cached
    trial = dataclasses.replace(plan, limits=flat_limits(SOLUTION_LIMIT_S))
    grade = grade_submission(Submission("solution", plan.lab, path), trial, parameters=parameters, cpus=cpus)
    failed = [c for c in grade.checks if not c.passed]
    if grade.status != "ok" or failed:
        what = f"check {failed[0].name!r}: {failed[0].detail}" if failed else f"{grade.status}: {grade.reason}"
        raise SlmLabError(
            f"The solution {path} does not pass on this machine ({what}); grading would blame the learners for it.",
            "Run `slmlab doctor` and the solution itself (`slmlab run`); fix a failing hidden check in its file. "
            "To grade without the solution's time, pass a flat --timeout SECONDS.")
    run = SolutionRun(round(grade.seconds, 2), round(grade.slowest_cell_s, 2), grade.peak_rss_bytes or 0,
                      datetime.now(UTC).isoformat(timespec="seconds"))
    store_run(key, run)
    return run


def _set_limits(plans: list[LabPlan], options: dict[str, Any], cpus: Sequence[int], echo: Echo | None
                ) -> list[SolutionRun]:
    """Give every plan its limits: flat, or from its solution's run; the solution runs measured."""
    runs = []
    for plan in plans:
        if options["timeout"] is not None:
            plan.limits = flat_limits(options["timeout"], options["cell_timeout"])
        else:
            run = measure_solution(plan, options["solutions_dir"], options["parameters"], cpus,
                                   remeasure=options["remeasure"])
            plan.limits = derived_limits(run, options["factor"], options["min_timeout"], options["cell_timeout"])
            runs.append(run)
        if echo:
            hidden = sum(q.hidden for q in plan.questions)
            total = number(sum(q.points for q in plan.questions))
            echo(f"{plan.lab}: {len(plan.questions)} checks ({hidden} hidden), {total} points; limit "
                 f"{plan.limits.notebook_s:g} s per notebook ({plan.limits.why})")
    return runs


def jobs_for_memory(jobs: int, runs: Sequence[SolutionRun], available: int | None = None) -> int:
    """At most as many jobs as the solutions' peak memory lets run side by side in MEMORY_SHARE of what is free."""
    peak = max((r.peak_rss_bytes for r in runs), default=0)
    if not peak:
        return jobs
    free = psutil.virtual_memory().available if available is None else available
    return max(1, min(jobs, int(free * MEMORY_SHARE // peak)))


def _grade_in_parallel(subs: Sequence[Submission], plans: Mapping[str, LabPlan], out: Path,
                       parameters: Mapping[str, Any] | None, slices: list[list[int]], echo: Echo | None
                       ) -> list[LearnerGrade]:
    """Grade every submission, one job per core share; a line per finished submission."""
    free: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for cores in slices:
        free.put(cores)

    def one(sub: Submission) -> LearnerGrade:
        cores = free.get()
        executed = out / "executed" / sub.lab / f"{sub.learner}.ipynb"
        try:
            return grade_submission(sub, plans[sub.lab], executed_to=executed, parameters=parameters, cpus=cores)
        finally:
            free.put(cores)

    grades: list[LearnerGrade] = []
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="grade") as pool:
        futures = [pool.submit(one, sub) for sub in subs]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                grade = future.result()
                grades.append(grade)
                if echo:
                    echo(f"[{done}/{len(subs)}] {grade.lab} {grade.learner}: {number(grade.score)}/"
                         f"{number(grade.max_score)} points, {grade.total}/{len(grade.checks)} checks "
                         f"({grade.status}, {grade.seconds:.1f} s)")
        except BaseException:  # Ctrl-C: stop what runs now (workers and kernels), cancel the rest
            for future in futures:
                future.cancel()
            stop_processes(descendants(), grace=0)
            raise
    return grades


def write_outputs(out: Path, grades: Sequence[LearnerGrade], plans: Sequence[LabPlan],
                  files: dict[tuple[str, str], str]) -> Path:
    """gradebook.csv, totals.csv, points.csv, feedback/<learner>.md and summary.md; the gradebook's path."""
    order = {plan.lab: i for i, plan in enumerate(plans)}
    by_learner: dict[str, list[LearnerGrade]] = {}
    for grade in sorted(grades, key=lambda g: (g.learner, order[g.lab])):
        by_learner.setdefault(grade.learner, []).append(grade)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    for learner, own in by_learner.items():
        (out / "feedback" / f"{learner}.md").write_text(learner_feedback(learner, own), encoding="utf-8")
    ordered = sorted(grades, key=lambda g: (order[g.lab], g.learner))
    (out / "summary.md").write_text(class_summary(ordered), encoding="utf-8")
    return write_gradebook(out, ordered, {plan.lab: plan.questions for plan in plans}, files)


def grade_folder(
    submissions: Path | str,
    labs: str | Sequence[str],
    *,
    labs_dir: Path | str = "labs",
    solutions_dir: Path | str = "solutions",
    hidden_dir: Path | str | None = None,
    out: Path | str | None = None,
    timeout: float | None = None,
    cell_timeout: float | None = None,
    factor: float = DEFAULT_FACTOR,
    min_timeout: float = DEFAULT_MIN_S,
    jobs: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    remeasure: bool = False,
    echo: Echo | None = print,
) -> Any:
    """Grade every submission of ``labs``; write the gradebook, totals, feedback and summary; return the gradebook
    as a pandas DataFrame."""
    import pandas as pd

    labs = [labs] if isinstance(labs, str) else list(labs)
    plans = [plan_lab(lab, labs_dir, hidden_dir) for lab in labs]
    if hidden_dir is not None and echo:
        for stray in unused_files(hidden_dir, labs):
            echo(f"note: hidden checks not used in this run: {stray}")
    folder = Path(submissions)
    subs = submissions_for(folder, labs)
    out = Path(out) if out is not None else Path("grades") / (labs[0] if len(labs) == 1 else "class")
    out.mkdir(parents=True, exist_ok=True)
    slices = cpu_slices(jobs)
    options = {"timeout": timeout, "cell_timeout": cell_timeout, "solutions_dir": solutions_dir,
               "parameters": parameters, "remeasure": remeasure, "factor": factor, "min_timeout": min_timeout}
    runs = _set_limits(plans, options, slices[0], echo)
    fitting = jobs_for_memory(len(slices), runs)
    if fitting < len(slices):
        slices = cpu_slices(fitting)
        if echo:
            echo(f"{fitting} parallel job(s): the solution's peak memory times more would not fit in memory")
    if echo:
        echo(f"grading {len(subs)} submission(s), {len(slices)} at a time, {len(slices[0])} core(s) each")
    grades = _grade_in_parallel(subs, {p.lab: p for p in plans}, out, parameters, slices, echo)
    path = write_outputs(out, grades, plans, relative_files(subs, folder))
    return pd.read_csv(path, dtype=str, keep_default_na=False)

