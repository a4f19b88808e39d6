"""`slmlab compare`: the local engines measured side by side, each in its own process."""

from __future__ import annotations

import argparse

from slmlab.errors import SlmLabError


def cmd_compare(args: argparse.Namespace) -> int:
    """Measure the engines, print the table, the served/in-process ratios and the decisions."""
    import pandas as pd

    from slmlab.measure.compare import compare_engines, decision_table, overhead_ratios, parse_prompts, plot_comparison

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    df = compare_engines(engines, args.model, prompts=parse_prompts(args.prompts), max_tokens=args.max_tokens,
                         repeats=args.repeats, warmup=args.warmup)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(df[["mode", "disk_mb", "ready_s", "cold_start_s", "ttft_s", "decode_tok_s", "latency_s",
                  "peak_rss_mb", "rss_of", "openai_api"]].to_string())
        try:
            ratios = overhead_ratios(df)
            print("\nserved / in-process (decode: in-process / served):")
            print(ratios.to_string(index=False))
        except SlmLabError as exc:
            print(f"\n{exc.problem}")
        print()
        print(decision_table(df).to_string(index=False))
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        plot_comparison(df).savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `compare` to slmlab's subcommands."""
    from slmlab.measure.compare import add_measure_arguments

    parser = sub.add_parser("compare", help="measure local engines side by side (each in its own process)",
                            description="Cold start, TTFT, decode tok/s, peak RSS and disk of each engine on the "
                                        "same model and prompts, the served/in-process ratios and a decision table.")
    add_measure_arguments(parser)
    parser.add_argument("--csv", help="also write the table to this CSV file")
    parser.add_argument("--plot", help="also save the bar charts to this PNG file")
    parser.set_defaults(func=cmd_compare)
