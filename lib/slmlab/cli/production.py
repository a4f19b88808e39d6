"""`slmlab production …`: what a rendered bundle needs for production, and whether it has it (the work:
`slmlab.production`)."""

from __future__ import annotations

import argparse


def cmd_layer(args: argparse.Namespace) -> int:
    """Add the Ingress (TLS), alert rules with runbook links, dashboard and runbook to a rendered bundle."""
    from slmlab.production.layer import add_production_layer

    for path in add_production_layer(args.folder, host=args.host, tls_secret=args.tls_secret,
                                     runbook_url=args.runbook_url):
        print(f"wrote {path}")
    return 0


def cmd_readiness(args: argparse.Namespace) -> int:
    """The readiness checklist on a bundle (and a running service on 127.0.0.1); exit 1 when an item fails."""
    from slmlab.production.live import LiveService
    from slmlab.production.readiness import evaluate
    from slmlab.serve.gateway.security import read_keys_file

    live = None
    if args.url:
        key = read_keys_file(args.api_key_file)[0] if args.api_key_file else None
        live = LiveService(args.url, api_key=key, log_path=args.log)
    report = evaluate(args.folder, live=live, workflows=args.workflows)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_images(args: argparse.Namespace) -> int:
    """The images a bundle's workloads run, one per line (what CI scans and pushes)."""
    from slmlab.production.bundle import Bundle, containers

    bundle = Bundle.load(args.folder)
    for image in sorted({str(c.get("image")) for m in bundle.deployments() for c in containers(m)}):
        print(image)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """actionlint, zizmor and the workflow schema on a GitHub Actions workflow; exit 1 on a finding."""
    from slmlab.production.workflow_check import validate_workflow

    report = validate_workflow(args.workflow)
    print(report.summary())
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `production layer|readiness|images|validate-workflow` to the `slmlab` command."""
    production = subparsers.add_parser("production", help="production layer, readiness checklist, CI workflow checks")
    sub = production.add_subparsers(dest="production_command", required=True)
    layer = sub.add_parser("layer", help="add an Ingress with TLS, alerts, a dashboard and a runbook to a bundle")
    layer.add_argument("folder", metavar="DIR", help="a folder written by `slmlab deploy render`")
    layer.add_argument("--host", default="chat.example.com", help="the DNS name clients use")
    layer.add_argument("--tls-secret", default=None, help="the certificate's Secret (default: NAME-tls)")
    layer.add_argument("--runbook-url", default="RUNBOOK.md", help="where RUNBOOK.md will be read")
    layer.set_defaults(func=cmd_layer)
    ready = sub.add_parser("readiness", help="the production readiness checklist, item by item, with evidence")
    ready.add_argument("folder", metavar="DIR", help="a rendered bundle")
    ready.add_argument("--url", default=None, help="a running gateway on 127.0.0.1 to check too")
    ready.add_argument("--api-key-file", default=None, help="a file with the gateway's API key")
    ready.add_argument("--log", default=None, help="the gateway's log file")
    ready.add_argument("--workflows", default=None, help="the CI workflows folder (default: .github/workflows above)")
    ready.set_defaults(func=cmd_readiness)
    images = sub.add_parser("images", help="the images a bundle runs, one per line")
    images.add_argument("folder", metavar="DIR")
    images.set_defaults(func=cmd_images)
    validate = sub.add_parser("validate-workflow", help="actionlint, zizmor and the schema on a workflow file")
    validate.add_argument("workflow", metavar="FILE")
    validate.set_defaults(func=cmd_validate)
