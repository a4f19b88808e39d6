"""`slmlab doctor`: can this environment run the course? One check per line, each with its fix."""

from __future__ import annotations

import argparse


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the environment; exit 1 when something required is missing."""
    from slmlab.setup.doctor import print_report, run_doctor

    report = run_doctor()
    print_report(report)
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `doctor` to slmlab's subcommands."""
    doctor = sub.add_parser("doctor", help="check that this environment can run the course")
    doctor.set_defaults(func=cmd_doctor)
