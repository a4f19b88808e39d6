"""`slmlab deploy render SPEC.yaml --out DIR` and `slmlab deploy check DIR` (registered by slmlab.cli)."""

from __future__ import annotations

import argparse


def cmd_render(args: argparse.Namespace) -> int:
    """Validate the spec, render every artifact into --out, then check them."""
    from slmlab.deploy.check import check_dir
    from slmlab.deploy.render import render_to
    from slmlab.deploy.spec import load_spec

    spec = load_spec(args.spec)
    written = render_to(spec, args.out)
    for path in written:
        print(f"wrote {path}")
    if args.no_check:
        return 0
    report = check_dir(args.out)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    """hadolint, compose schema, Kubernetes schemas and policy on a rendered folder; exit 1 on any finding."""
    from slmlab.deploy.check import check_dir

    report = check_dir(args.folder)
    print(report.summary())
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `deploy render` and `deploy check` to the `slmlab` command."""
    deploy = subparsers.add_parser("deploy", help="render and validate Dockerfiles, compose and Kubernetes manifests")
    sub = deploy.add_subparsers(dest="deploy_command", required=True)
    render = sub.add_parser("render", help="render every artifact of a deployment spec (YAML) and check them")
    render.add_argument("spec", metavar="SPEC.yaml", help="deployment spec: engine, model, quantization, hardware, ...")
    render.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    render.add_argument("--no-check", action="store_true", help="write only; skip hadolint and the validators")
    render.set_defaults(func=cmd_render)
    check = sub.add_parser("check", help="run hadolint, the compose schema, kubernetes-validate and the policy checker")
    check.add_argument("folder", metavar="DIR", help="a folder written by `slmlab deploy render`")
    check.set_defaults(func=cmd_check)
