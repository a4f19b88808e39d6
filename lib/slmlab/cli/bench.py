"""`slmlab bench`: load time, TTFT, prefill/decode speed and peak RSS of GGUF models, each in its own process."""

from __future__ import annotations

import argparse


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark GGUF models (each in its own process) and print the table, with the roofline."""
    from slmlab.measure.bench import add_roofline, bench_variants, memory_bandwidth

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
    """Add `bench` to slmlab's subcommands."""
    from slmlab.models.resolver import DEFAULT_MODEL

    bench = subparsers.add_parser("bench", help="load time, TTFT, prefill/decode tok/s and peak RSS of GGUF models")
    bench.add_argument("models", nargs="*", default=[DEFAULT_MODEL], help="model references or .gguf paths")
    bench.add_argument("--prompt-tokens", type=int, default=128)
    bench.add_argument("--gen-tokens", type=int, default=32)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--roofline", action="store_true", help="measure memory bandwidth and add the decode roofline")
    bench.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    bench.set_defaults(func=cmd_bench)
