"""The course subcommands of `slmlab`: build-labs, copy-labs, course-map, run, grade (registered by slmlab.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_build_labs(args: argparse.Namespace) -> int:
    """Generate labs/ from solutions/; with --check, exit 1 and list the labs that are out of date."""
    from slmlab.course.build import build_labs, notebooks_in, solution_problems

    report = build_labs(args.solutions, args.labs, check=args.check, force=args.force)
    for path in notebooks_in(args.solutions):
        for problem in solution_problems(path):
            print(f"warning: {problem}")
    for orphan in report.orphans:
        solution = Path(args.solutions) / orphan.relative_to(args.labs)
        print(f"{orphan}: no solution {solution}; delete the lab or add its solution")
    for path in report.edited:
        print(f"{path}: kept, it has edits that build-labs did not write. Learners work in their own copy "
              f"(slmlab copy-labs); to discard these edits, run: slmlab build-labs --force")
    if args.check:
        for path in report.changed:
            print(f"{path}: out of date (run: slmlab build-labs)")
        if report.in_sync:
            print(f"{len(report.unchanged)} lab(s) in sync with {args.solutions}/")
        return 0 if report.in_sync else 1
    for path in report.changed:
        print(f"wrote {path}")
    print(f"{len(report.changed)} lab(s) written, {len(report.unchanged)} unchanged"
          + (f", {len(report.edited)} kept with edits" if report.edited else ""))
    return 1 if report.orphans or report.edited else 0


def cmd_copy_labs(args: argparse.Namespace) -> int:
    """Make or update the learner's own copy of labs/; never overwrite their edits."""
    from slmlab.course.learner_copy import copy_labs

    report = copy_labs(args.labs, args.to)
    for line in report.lines():
        print(line)
    print(f"{args.to}/: {len(report.copied)} new, {len(report.updated)} updated, "
          f"{len(report.beside)} with a new version beside your work, {len(report.kept)} as they were")
    return 0


def cmd_course_map(args: argparse.Namespace) -> int:
    """Write docs/course-map.md (and README's promises table) from the syllabus, promises.toml and the notebooks;
    with --check, write nothing and exit 1 when either is stale."""
    from slmlab.course.course_map import load_syllabus, map_problems, render_map
    from slmlab.course.promises import load_promises, promise_problems, render_promises, with_promises_block

    entries, promises = load_syllabus(), load_promises()
    problems = map_problems(Path(args.solutions), entries)
    problems += promise_problems(promises, {entry.number for entry in entries})
    for problem in problems:
        print(problem)
    if problems:
        return 1
    table = render_promises(promises)
    readme = Path(args.readme)
    wanted = {Path(args.out): render_map(Path(args.solutions), entries, table)}
    if readme.exists():
        wanted[readme] = with_promises_block(readme.read_text(encoding="utf-8"), table)
    stale = [path for path, text in wanted.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in wanted:
            print(f"{path}: " + ("out of date (run: slmlab course-map)" if path in stale else "in sync"))
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    if not stale:
        print("course map and README's promises table: in sync")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Execute notebooks headlessly with papermill and print a summary table; exit 1 if any failed."""
    from slmlab.course.execute import parse_parameters, run_notebooks, summary_table

    results = run_notebooks(
        args.paths, parse_parameters(args.parameter), output_dir=args.output_dir, cell_timeout=args.cell_timeout,
        memory_limit_bytes=parse_size(args.memory_limit) if args.memory_limit else None,
        undo_exercises=args.undo_exercises,
    )
    table = summary_table(results)
    print(table.drop(columns=["error"] if not any(r.error for r in results) else []).to_string(index=False))
    vacuous = {str(r.notebook): [name for name, error in r.undone_checks.items() if error is None] for r in results}
    if args.undo_exercises:
        for result in results:
            for name, error in result.undone_checks.items():
                verdict = "fails, as it must" if error else "PASSES: it checks nothing its exercises do"
                print(f"{result.notebook}: check {name!r} with its exercises undone {verdict}"
                      + (f" ({error.splitlines()[0][:100]})" if error else ""))
    if len(results) > 1:
        from slmlab.course.budget import budget_report

        print("\nBudgets (CI parameters on 2 cores):\n" + budget_report(results))
    return 0 if all(r.ok for r in results) and not any(vacuous.values()) else 1


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
    """Grade a folder of submissions into gradebook.csv, totals, per-learner feedback and a class summary."""
    from slmlab.course.execute import parse_parameters
    from slmlab.course.grade import grade_folder

    labs = args.lab
    out = Path(args.out) if args.out else Path("grades") / (labs[0] if len(labs) == 1 else "class")
    book = grade_folder(
        args.submissions, labs, labs_dir=args.labs, solutions_dir=args.solutions, hidden_dir=args.hidden, out=out,
        timeout=args.timeout, cell_timeout=args.cell_timeout, factor=args.timeout_factor,
        min_timeout=args.min_timeout, jobs=args.jobs, parameters=parse_parameters(args.parameter),
        remeasure=args.remeasure,
    )
    shown = ["assignment", "student_id", "score", "max_score", "grading_status"]
    print("\n" + book[shown].to_string(index=False))
    print(f"\nwrote {out / 'gradebook.csv'}, totals.csv, points.csv, summary.md, feedback/<learner>.md "
          f"and executed/ in {out}/")
    return 0


def _add_grade_parser(subparsers: argparse._SubParsersAction) -> None:
    """The options of `slmlab grade`."""
    from slmlab.course.limits import DEFAULT_FACTOR, DEFAULT_MIN_S  # a light module: --help stays fast

    grade = subparsers.add_parser("grade", help="grade learners' notebooks into gradebook.csv and feedback")
    grade.add_argument("submissions", metavar="SUBMISSIONS_DIR",
                       help="holds <learner>/<lab>.ipynb (or, for one lab, <learner>.ipynb) per learner")
    grade.add_argument("--lab", required=True, action="append",
                       help="lab name, e.g. 00-setup-check or 01-foundations/01-slm-landscape (repeatable)")
    grade.add_argument("--labs", default="labs", help="folder holding the reference labs (default: labs)")
    grade.add_argument("--solutions", default="solutions",
                       help="folder holding the solutions, run once to set the time limits (default: solutions)")
    grade.add_argument("--hidden", default=None, metavar="DIR",
                       help="the instructor's hidden checks, DIR/<lab>.py, run after the visible ones")
    grade.add_argument("--jobs", "-j", type=int, default=None,
                       help="submissions graded in parallel (default: one per physical core, fewer if memory is short)")
    grade.add_argument("--timeout-factor", type=float, default=DEFAULT_FACTOR,
                       help=f"a submission may run this many times the solution's time (default: {DEFAULT_FACTOR:g})")
    grade.add_argument("--min-timeout", type=float, default=DEFAULT_MIN_S,
                       help=f"but at least this many seconds, per notebook and per cell (default: {DEFAULT_MIN_S:g})")
    grade.add_argument("--timeout", type=float, default=None,
                       help="a flat limit in seconds per notebook instead (the solution is then not run)")
    grade.add_argument("--cell-timeout", type=float, default=None,
                       help="seconds one cell may run before it is interrupted (default: derived, or --timeout)")
    grade.add_argument("--remeasure", action="store_true",
                       help="run the solution again even when its time is cached")
    grade.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                       help="inject a notebook parameter for every learner and the solution, e.g. -p fast=True")
    grade.add_argument("--out", default=None, help="output folder (default: grades/<lab>, or grades/class)")
    grade.set_defaults(func=cmd_grade)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add build-labs, copy-labs, course-map, run and grade to the `slmlab` command."""
    build = subparsers.add_parser("build-labs", help="generate labs/ from solutions/ (strip the solution blocks)")
    build.add_argument("--solutions", default="solutions", help="folder of solution notebooks (default: solutions)")
    build.add_argument("--labs", default="labs", help="folder to write labs into (default: labs)")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 and list labs that are out of date")
    build.add_argument("--force", action="store_true", help="overwrite labs that have edits build-labs did not write")
    build.set_defaults(func=cmd_build_labs)

    copy = subparsers.add_parser("copy-labs", help="make or update your own copy of the labs (my-labs/), keeping "
                                                   "your edits",
                                 description="Copy labs/ into your own folder. Run it again after an update: a lab you "
                                             "have not changed is updated; one you have changed stays as it is, with "
                                             "the new version beside it as NAME.new.ipynb.")
    copy.add_argument("--labs", default="labs", help="the course's labs (default: labs)")
    copy.add_argument("--to", default="my-labs", help="your copy (default: my-labs, which git ignores)")
    copy.set_defaults(func=cmd_copy_labs)

    course_map = subparsers.add_parser("course-map", help="write docs/course-map.md: objectives, estimated times, "
                                                          "prerequisites and topics of every notebook")
    course_map.add_argument("--solutions", default="solutions", help="the solution notebooks (default: solutions)")
    course_map.add_argument("--out", default="docs/course-map.md", help="the map (default: docs/course-map.md)")
    course_map.add_argument("--readme", default="README.md",
                            help="the README whose promises block is kept in sync (default: README.md)")
    course_map.add_argument("--check", action="store_true", help="write nothing; exit 1 when the map is out of date")
    course_map.set_defaults(func=cmd_course_map)

    run = subparsers.add_parser("run", help="execute notebooks headlessly (papermill) and summarize time and memory")
    run.add_argument("paths", nargs="+", metavar="PATH", help="notebooks to execute")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="set a notebook parameter (repeatable), e.g. -p max_tokens=16 -p fast=True")
    run.add_argument("--output-dir", default="runs", help="folder for the executed copies (default: runs)")
    run.add_argument("--cell-timeout", type=float, default=600, help="seconds one cell may run (default: 600)")
    run.add_argument("--memory-limit", default=None, metavar="SIZE",
                     help="run each kernel and all it starts in a memory cgroup of this size, e.g. 2G as on Binder "
                          "(Linux, root)")
    run.add_argument("--undo-exercises", action="store_true",
                     help="also run each check once with its exercises undone, as in the untouched lab: it must "
                          "fail (exit 1 when one passes)")
    run.set_defaults(func=cmd_run)

    _add_grade_parser(subparsers)
