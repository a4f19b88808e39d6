"""`slmlab quantize`: re-quantize a GGUF with llama.cpp's own quantizer."""

from __future__ import annotations

import argparse


def _types(text: str) -> list[str]:
    from slmlab.convert.quantize import check_type
    from slmlab.errors import SlmLabError

    try:
        return [check_type(t) for t in text.split(",") if t.strip()]
    except SlmLabError as exc:  # argparse reports this as a usage error, with the hint
        raise argparse.ArgumentTypeError(f"{exc.problem} {exc.hint}") from None


def cmd_quantize(args: argparse.Namespace) -> int:
    """Quantize a GGUF model into several types with llama.cpp; print sizes and fallbacks."""
    from slmlab.convert.quantize import fallback_summary, quantize_all, summary_table

    results = quantize_all(args.model, args.types, out_dir=args.out_dir, threads=args.threads, force=args.force)
    print(summary_table(results).to_string(index=False))
    for qtype, result in results.items():
        print(f"\n{qtype}: {result.path}")
        if args.fallbacks:
            table = fallback_summary(result)
            print(table.to_string(index=False) if not table.empty else "  no fallbacks")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `quantize` to slmlab's subcommands."""
    from slmlab.convert.quantize import QUANT_TYPES
    from slmlab.models.resolver import DEFAULT_MODEL

    quant = subparsers.add_parser("quantize", help="re-quantize a GGUF model with llama.cpp (llama-quantize's code)")
    quant.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"model reference (default: {DEFAULT_MODEL})")
    quant.add_argument("--types", type=_types, default=list(QUANT_TYPES),
                       help=f"comma-separated types (default: {','.join(QUANT_TYPES)})")
    quant.add_argument("--out-dir", default=None, help="output folder (default: the slmlab cache)")
    quant.add_argument("--threads", type=int, default=None, help="quantizer threads (default: physical cores)")
    quant.add_argument("--force", action="store_true", help="quantize again even if a cached file exists")
    quant.add_argument("--fallbacks", action="store_true", help="list the tensors that fell back to another type")
    quant.set_defaults(func=cmd_quantize)
