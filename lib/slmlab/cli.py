"""The `slmlab` command: doctor, models, inspect, plus the course commands (build-labs, run, grade)."""

from __future__ import annotations

import argparse
import sys

from slmlab.errors import SlmLabError


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the environment; exit 1 when something required is missing."""
    from slmlab.doctor import print_report, run_doctor

    report = run_doctor()
    print_report(report)
    return 0 if report.ok else 1


def cmd_models(args: argparse.Namespace) -> int:
    """List the catalog with tiers and, for a hardware preset, footprints and verdicts."""
    from rich.console import Console
    from rich.table import Table

    from slmlab import catalog, footprint, hardware, models

    hw = hardware.get_preset(args.hardware)
    specs = catalog.by_tier(args.tier) if args.tier else list(catalog.CATALOG.values())
    title = (f"SLM catalog on {hw.label}: {args.quant}, context {args.context} "
             f"(budget {hw.model_memory_gb:g} GB {'VRAM' if hw.vram_gb else 'RAM'})")
    table = Table(title=title)
    for col in ("model", "tier", "params (B)", "weights GB", "KV GB", "total GB", "verdict", "offline", "licence"):
        table.add_column(col, justify="right" if "GB" in col or "params" in col else "left")
    colors = {footprint.FITS: "green", footprint.TIGHT: "yellow", footprint.NO_FIT: "red"}
    for spec in specs:
        est = footprint.estimate(spec, args.quant, min(args.context, spec.context), hw)
        offline = "yes" if spec.key in models.BUNDLED else ""
        table.add_row(spec.key, spec.tier, f"{spec.params_b:g}", f"{est.weights_gb:.2f}", f"{est.kv_cache_gb:.2f}",
                      f"{est.total_gb:.2f}", f"[{colors[est.verdict]}]{est.verdict}[/]", offline, spec.license)
    Console(width=160).print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Resolve a model reference and print its GGUF metadata."""
    from slmlab.models import resolve

    resolved = resolve(args.model)
    print(f"{resolved.name}: {resolved.path} ({resolved.source}, {resolved.size_mb} MB, sha256 {resolved.sha256 or 'n/a'})")
    if resolved.format == "gguf":
        for key, value in resolved.inspect().summary().items():
            print(f"  {key:15} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="slmlab", description="SLM Deploy Lab: tools for the course.")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="check that this environment can run the course")
    doctor.set_defaults(func=cmd_doctor)

    from slmlab.footprint import quant_types

    models = sub.add_parser("models", help="list the catalog with tiers and memory footprints")
    models.add_argument("--hardware", default="this-machine", help="preset, e.g. binder-2gb, t4, h100-80gb")
    models.add_argument("--quant", default="Q4_K_M", type=str.upper, choices=quant_types())
    models.add_argument("--context", default=4096, type=int, help="context length in tokens")
    models.add_argument("--tier", choices=["micro", "small", "medium"])
    models.set_defaults(func=cmd_models)

    inspect = sub.add_parser("inspect", help="resolve a model and show its GGUF metadata")
    inspect.add_argument("model", nargs="?", default="smollm2-135m-instruct")
    inspect.set_defaults(func=cmd_inspect)

    import importlib

    # Each part registers its own subcommands; a part whose extra is not installed is left out.
    for module in ("slmlab.course.commands", "slmlab.part1_commands", "slmlab.serve.commands",
                   "slmlab.loadtest_commands", "slmlab.setup_commands", "slmlab.security_commands",
                   "slmlab.monitoring.commands", "slmlab.compare", "slmlab.scaling.commands",
                   "slmlab.deploy.commands"):
        try:
            register = importlib.import_module(module).register
        except ImportError:
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: learner-facing errors are printed without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SlmLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
