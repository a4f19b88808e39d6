"""The grader's child process: run one prepared submission, cell by cell, and say how each cell went.

``slmlab.course.grade`` starts it with :func:`slmlab.process.run_worker`
(``python -m slmlab.course.grade_worker --worker JOB_DIR``). ``JOB_DIR/job.json`` names the notebook, its working
folder, the kernel's environment, the timeouts and the CPU cores to run on. The kernel's own output goes to
``JOB_DIR/kernel.log``. Every cell's result is appended to
``JOB_DIR/cells.jsonl`` as soon as it is known, with the cell's seconds and the kernel's peak memory during it,
so a worker killed for overrunning (or by the learner's code) still leaves the results of the cells that ran.
The executed notebook is written to ``JOB_DIR/executed.ipynb``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat

from slmlab.course.execute import PeakRSS, execute_tolerantly
from slmlab.process import WORKER_FLAG, worker_main

CELL_LOG = "cells.jsonl"
EXECUTED = "executed.ipynb"
KERNEL_LOG = "kernel.log"


def _pin(cpus: list[int] | None) -> None:
    """Run this process (and the kernel it starts) on the given cores, so parallel jobs do not share them."""
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:  # a core that is not ours (a cgroup changed): run where allowed
            pass


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to a file while the block runs.

    The kernel and whatever the notebook starts inherit them: were they the pipes run_worker reads, a process the
    notebook left behind would hold them open, and the grader would wait for it after the worker had ended.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)


def run_job(job_dir: Path) -> dict[str, Any]:
    """Run the job in ``job_dir``; the run's status, reason, seconds and peak memory."""
    job = json.loads((job_dir / "job.json").read_text())
    _pin(job.get("cpus"))
    nb = nbformat.read(job["notebook"], as_version=4)
    started = time.perf_counter()
    with _output_to(job_dir / KERNEL_LOG), open(job_dir / CELL_LOG, "a", buffering=1, encoding="utf-8") as log, \
            PeakRSS(interval=0.2) as rss:
        last = time.perf_counter()
        overall_peak = 0

        def record(index: int, error: str | None) -> None:
            nonlocal last, overall_peak
            now, peak = time.perf_counter(), max(rss.peak_bytes, rss.sample())
            overall_peak = max(overall_peak, peak)
            log.write(json.dumps({"index": index, "error": error, "seconds": round(now - last, 3),
                                  "peak_rss": peak}) + "\n")
            last, rss.peak_bytes = now, 0  # the next cell's peak starts afresh

        outcome = execute_tolerantly(nb, cwd=job["cwd"], cell_timeout=job["cell_timeout"], timeout=job["timeout"],
                                     env=job["env"], on_cell=record)
        nbformat.write(nb, job_dir / EXECUTED)
        log.write(json.dumps({"status": outcome.status, "reason": outcome.reason}) + "\n")
    return {"status": outcome.status, "reason": outcome.reason, "seconds": round(time.perf_counter() - started, 3),
            "peak_rss": max(overall_peak, rss.peak_bytes)}


def main(argv: list[str]) -> dict[str, Any]:
    """``--worker JOB_DIR`` → the job's summary."""
    args = [a for a in argv if a != WORKER_FLAG]
    return run_job(Path(args[0]))


if __name__ == "__main__":
    worker_main(main)
