"""The course subcommands of `slmlab`: build-labs, run, grade (registered by slmlab.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_build_labs(args: argparse.Namespace) -> int:
    """Generate labs/ from solutions/; with --check, exit 1 and list the labs that are out of date."""
    from slmlab.course.build import build_labs, notebooks_in, solution_problems

    report = build_labs(args.solutions, args.labs, check=args.check)
    for path in notebooks_in(args.solutions):
        for problem in solution_problems(path):
            print(f"warning: {problem}")
    for orphan in report.orphans:
        solution = Path(args.solutions) / orphan.relative_to(args.labs)
        print(f"{orphan}: no solution {solution}; delete the lab or add its solution")
    if args.check:
        for path in report.changed:
            print(f"{path}: out of date (run: slmlab build-labs)")
        if report.in_sync:
            print(f"{len(report.unchanged)} lab(s) in sync with {args.solutions}/")
        return 0 if report.in_sync else 1
    for path in report.changed:
        print(f"wrote {path}")
    print(f"{len(report.changed)} lab(s) written, {len(report.unchanged)} unchanged")
    return 1 if report.orphans else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Execute notebooks headlessly with papermill and print a summary table; exit 1 if any failed."""
    from slmlab.course.execute import parse_parameters, run_notebooks, summary_table

    results = run_notebooks(
        args.paths, parse_parameters(args.parameter), output_dir=args.output_dir, cell_timeout=args.cell_timeout,
        memory_limit_bytes=parse_size(args.memory_limit) if args.memory_limit else None,
    )
    table = summary_table(results)
    print(table.drop(columns=["error"] if not any(r.error for r in results) else []).to_string(index=False))
    if len(results) > 1:
        from slmlab.course.budget import budget_report

        print("\nBudgets (CI parameters on 2 cores):\n" + budget_report(results))
    return 0 if all(r.ok for r in results) else 1


def parse_size(text: str) -> int:
    """'2G', '1536M', '2GiB' or a number of bytes -> bytes (binary units, as cgroups and Kubernetes' Gi/Mi)."""
    import re

    from slmlab.errors import SlmLabError

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise SlmLabError(f"--memory-limit {text!r} is not a size.", "E.g. --memory-limit 2G (or 1536M).")
    number, unit = float(match[1]), match[2].upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade a folder of submissions into gradebook.csv and per-learner reports."""
    from slmlab.course.execute import parse_parameters
    from slmlab.course.grade import grade_folder

    out = Path(args.out) if args.out else Path("grades") / args.lab
    book = grade_folder(
        args.submissions,
        args.lab,
        labs_dir=args.labs,
        out=out,
        timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        parameters=parse_parameters(args.parameter),
    )
    print(book.to_string(index=False))
    print(f"\nwrote {out / 'gradebook.csv'} and {out / 'reports'}/")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add build-labs, run and grade to the `slmlab` command."""
    build = subparsers.add_parser("build-labs", help="generate labs/ from solutions/ (strip the solution blocks)")
    build.add_argument("--solutions", default="solutions", help="folder of solution notebooks (default: solutions)")
    build.add_argument("--labs", default="labs", help="folder to write labs into (default: labs)")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 and list labs that are out of date")
    build.set_defaults(func=cmd_build_labs)

    run = subparsers.add_parser("run", help="execute notebooks headlessly (papermill) and summarize time and memory")
    run.add_argument("paths", nargs="+", metavar="PATH", help="notebooks to execute")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="set a notebook parameter (repeatable), e.g. -p max_tokens=16 -p fast=True")
    run.add_argument("--output-dir", default="runs", help="folder for the executed copies (default: runs)")
    run.add_argument("--cell-timeout", type=float, default=600, help="seconds one cell may run (default: 600)")
    run.add_argument("--memory-limit", default=None, metavar="SIZE",
                     help="run each kernel and all it starts in a memory cgroup of this size, e.g. 2G as on Binder "
                          "(Linux, root)")
    run.set_defaults(func=cmd_run)

    grade = subparsers.add_parser("grade", help="grade a folder of learner notebooks into gradebook.csv")
    grade.add_argument("submissions", metavar="SUBMISSIONS_DIR",
                       help="holds <learner>/<lab>.ipynb or <learner>.ipynb per learner")
    grade.add_argument("--lab", required=True, help="lab name, e.g. 00-setup-check")
    grade.add_argument("--labs", default="labs", help="folder holding the reference lab (default: labs)")
    grade.add_argument("--timeout", type=float, default=600, help="seconds one notebook may run (default: 600)")
    grade.add_argument("--cell-timeout", type=float, default=None,
                       help="seconds one cell may run before it is interrupted (default: the notebook timeout)")
    grade.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                       help="inject a notebook parameter for every learner, e.g. -p fast=True")
    grade.add_argument("--out", default=None, help="output folder (default: grades/<lab>)")
    grade.set_defaults(func=cmd_grade)
