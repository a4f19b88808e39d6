"""`slmlab setup containers`: the container runtime and the local base image (the `setup` command group calls
`add_setup_parser` to add it)."""

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


def add_setup_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `containers` to the subcommands of `slmlab setup`."""
    parser = subparsers.add_parser(
        "containers", help="podman (or Docker), the course's container settings and its local base image",
        description="Install podman, runc, catatonit and debootstrap when missing (as root; otherwise print the "
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
