"""`slmlab models` (the catalog, footprints and verdicts for a hardware preset) and `slmlab inspect` (GGUF metadata)."""

from __future__ import annotations

import argparse


def cmd_models(args: argparse.Namespace) -> int:
    """List the catalog with tiers and, for a hardware preset, footprints and verdicts."""
    from rich.console import Console
    from rich.table import Table

    from slmlab import models
    from slmlab.models import catalog, footprint, hardware

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
        verdict = f"[{colors.get(est.verdict or '', 'white')}]{est.verdict}[/]"
        table.add_row(spec.key, spec.tier, f"{spec.params_b:g}", f"{est.weights_gb:.2f}", f"{est.kv_cache_gb:.2f}",
                      f"{est.total_gb:.2f}", verdict, offline, spec.license)
    Console(width=160).print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Resolve a model reference and print its GGUF metadata."""
    from slmlab.models.resolver import resolve

    resolved = resolve(args.model)
    sha256 = resolved.sha256 or "n/a"
    print(f"{resolved.name}: {resolved.path} ({resolved.source}, {resolved.size_mb} MB, sha256 {sha256})")
    if resolved.format == "gguf":
        for key, value in resolved.inspect().summary().items():
            print(f"  {key:15} {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `models` and `inspect` to slmlab's subcommands."""
    from slmlab.models.footprint import quant_types

    models = sub.add_parser("models", help="list the catalog with tiers and memory footprints")
    models.add_argument("--hardware", default="this-machine", help="preset, e.g. binder-2gb, t4, h100-80gb")
    models.add_argument("--quant", default="Q4_K_M", type=str.upper, choices=quant_types())
    models.add_argument("--context", default=4096, type=int, help="context length in tokens")
    models.add_argument("--tier", choices=["micro", "small", "medium"])
    models.set_defaults(func=cmd_models)

    inspect = sub.add_parser("inspect", help="resolve a model and show its GGUF metadata")
    inspect.add_argument("model", nargs="?", default="smollm2-135m-instruct")
    inspect.set_defaults(func=cmd_inspect)
