"""`slmlab secrets-scan PATH …`: key-like strings in notebooks, before they are committed (registered by slmlab.cli)."""

from __future__ import annotations

import argparse


def cmd_secrets_scan(args: argparse.Namespace) -> int:
    """Print each finding (redacted) and exit 1 when there is any, so it can gate a commit or CI."""
    from slmlab.security.secrets_scan import report, scan_paths

    findings = scan_paths(args.paths, threshold=args.threshold)
    print(report(findings))
    return 1 if findings else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `secrets-scan` to slmlab's subcommands."""
    from slmlab.security.secrets_scan import ENTROPY_THRESHOLD, IGNORE_PRAGMA

    scan = sub.add_parser(
        "secrets-scan", help="find API keys and other secrets in notebooks (sources and saved outputs)",
        description="Scan notebooks for known key formats and high-entropy tokens; findings are printed redacted. "
                    f"Exit status 1 when anything is found. A line containing '{IGNORE_PRAGMA}' is skipped.")
    scan.add_argument("paths", nargs="*", default=["solutions", "labs"],
                      help="notebooks or folders (default: solutions labs)")
    scan.add_argument("--threshold", type=float, default=ENTROPY_THRESHOLD,
                      help=f"entropy in bits per character above which a long token looks random "
                           f"(default {ENTROPY_THRESHOLD})")
    scan.set_defaults(func=cmd_secrets_scan)
