"""The part 1 subcommands of `slmlab`: quantize and bench (registered by slmlab.cli)."""

from __future__ import annotations

import argparse


def _types(text: str) -> list[str]:
    from slmlab.errors import SlmLabError
    from slmlab.quantize import check_type

    try:
        return [check_type(t) for t in text.split(",") if t.strip()]
    except SlmLabError as exc:  # argparse reports this as a usage error, with the hint
        raise argparse.ArgumentTypeError(f"{exc.problem} {exc.hint}") from None


def cmd_quantize(args: argparse.Namespace) -> int:
    """Quantize a GGUF model into several types with llama.cpp; print sizes and fallbacks."""
    from slmlab.quantize import fallback_summary, quantize_all, summary_table

    results = quantize_all(args.model, args.types, out_dir=args.out_dir, threads=args.threads, force=args.force)
    print(summary_table(results).to_string(index=False))
    for qtype, result in results.items():
        print(f"\n{qtype}: {result.path}")
        if args.fallbacks:
            table = fallback_summary(result)
            print(table.to_string(index=False) if not table.empty else "  no fallbacks")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark GGUF models (each in its own process) and print the table, with the roofline."""
    from slmlab.bench import add_roofline, bench_variants, memory_bandwidth

    table = bench_variants(args.models, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
                           repeats=args.repeats, n_threads=args.threads)
    columns = ["variant", "size_mb", "load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "peak_rss_mb"]
    if args.roofline:
        bandwidth = memory_bandwidth()
        print(bandwidth)
        table = add_roofline(table, bandwidth)
        columns += ["roofline_tok_s", "of_roofline"]
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        print(table[columns].to_string(index=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add quantize and bench to the `slmlab` command."""
    from slmlab.models import DEFAULT_MODEL
    from slmlab.quantize import QUANT_TYPES

    quant = subparsers.add_parser("quantize", help="re-quantize a GGUF model with llama.cpp (llama-quantize's code)")
    quant.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"model reference (default: {DEFAULT_MODEL})")
    quant.add_argument("--types", type=_types, default=list(QUANT_TYPES),
                       help=f"comma-separated types (default: {','.join(QUANT_TYPES)})")
    quant.add_argument("--out-dir", default=None, help="output folder (default: the slmlab cache)")
    quant.add_argument("--threads", type=int, default=None, help="quantizer threads (default: physical cores)")
    quant.add_argument("--force", action="store_true", help="quantize again even if a cached file exists")
    quant.add_argument("--fallbacks", action="store_true", help="list the tensors that fell back to another type")
    quant.set_defaults(func=cmd_quantize)

    bench = subparsers.add_parser("bench", help="load time, TTFT, prefill/decode tok/s and peak RSS of GGUF models")
    bench.add_argument("models", nargs="*", default=[DEFAULT_MODEL], help="model references or .gguf paths")
    bench.add_argument("--prompt-tokens", type=int, default=128)
    bench.add_argument("--gen-tokens", type=int, default=32)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--roofline", action="store_true", help="measure memory bandwidth and add the decode roofline")
    bench.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    bench.set_defaults(func=cmd_bench)
