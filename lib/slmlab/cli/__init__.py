"""The `slmlab` command: one module per command group, each with thin ``cmd_*`` functions and a ``register()``.

``COMMAND_MODULES`` is the one list of them. Every command is always listed by ``slmlab --help``; a command whose
optional dependencies are missing says which ``pip install -e ".[extra]"`` to run when it is invoked.
"""

from __future__ import annotations

import argparse
import sys

from slmlab.cli import (
    bench,
    compare,
    course,
    deploy,
    doctor,
    loadtest,
    models,
    monitor,
    production,
    quantize,
    scale,
    secrets,
    serve,
    setup,
)
from slmlab.errors import SlmLabError

COMMAND_MODULES = (doctor, models, quantize, bench, compare, loadtest, serve, setup, monitor, scale, deploy, course,
                   secrets, production)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="slmlab", description="SLM Deploy Lab: tools for the course.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: learner-facing errors, a missing extra included, are printed without a traceback."""
    from slmlab.setup.extras import missing_extra_error

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        error = missing_extra_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SlmLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
