"""`slmlab loadtest URL …` (registered by slmlab.cli)."""

from __future__ import annotations

import argparse
import sys


def _percentiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 50,95,99") from None
    if not values or not all(0 <= p <= 100 for p in values):
        raise argparse.ArgumentTypeError(f"{text!r}: percentiles go from 0 to 100, e.g. 50,95,99")
    return values


def cmd_loadtest(args: argparse.Namespace) -> int:
    """Run a load test and print vllm-bench-style results; exit 1 when any request failed."""
    from slmlab.measure.loadtest import DEFAULT_PROMPTS, load_test

    prompts = args.prompt or list(DEFAULT_PROMPTS)
    concurrency = None if args.concurrency == 0 else args.concurrency
    result = load_test(args.url, prompts, api=args.api, model=args.model, api_key=args.api_key,
                       concurrency=concurrency, rate=args.rate, burstiness=args.burstiness,
                       num_requests=args.requests, time_limit=args.time_limit, max_tokens=args.max_tokens,
                       temperature=args.temperature, timeout=args.timeout, seed=args.seed, warmups=args.warmups)
    print(result.report(args.percentiles))
    errors = result.errors()
    for error, count in errors["error"].value_counts().head(5).items():
        print(f"{count} request(s) failed: {error}", file=sys.stderr)
    if args.csv:
        result.requests.drop(columns=["itl_s"]).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        result.plot().savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    return 1 if len(errors) else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `loadtest` to slmlab's subcommands."""
    lt = sub.add_parser("loadtest", help="load-test an OpenAI-compatible or Ollama server (TTFT, TPOT, ITL …)",
                        description="Streaming clients against URL; prints the figures `vllm bench serve` reports.")
    lt.add_argument("url", help="server root (http://127.0.0.1:8000) or a full endpoint URL (…/v1/chat/completions, "
                                "…/v1/completions, …/api/chat)")
    lt.add_argument("--api", choices=["chat", "completions", "ollama"],
                    help="which API, for a root URL (default: chat)")
    lt.add_argument("--model", help="model name (default: the first the server lists)")
    lt.add_argument("--api-key", help="bearer token for servers started with an API key")
    lt.add_argument("-c", "--concurrency", type=int, default=1,
                    help="requests in flight at most (0: no cap, needs --rate); default 1")
    lt.add_argument("--rate", type=float, help="requests per second, Poisson arrivals (default: as fast as "
                                               "--concurrency allows)")
    lt.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of arrival gaps (1: Poisson)")
    lt.add_argument("-n", "--requests", type=int, default=16, help="number of requests (default 16)")
    lt.add_argument("--time-limit", type=float, default=120, help="no request starts after this many seconds")
    lt.add_argument("--max-tokens", type=int, default=64)
    lt.add_argument("--temperature", type=float, default=0.0)
    lt.add_argument("--timeout", type=float, default=60, help="seconds one request may take")
    lt.add_argument("--seed", type=int, default=0)
    lt.add_argument("--warmups", type=int, default=0, help="requests sent first, one at a time, not recorded")
    lt.add_argument("--prompt", action="append", help="a prompt (repeat for several; default: 8 built-in ones)")
    lt.add_argument("--percentiles", type=_percentiles, default=(50, 95, 99), help="e.g. 50,95,99")
    lt.add_argument("--csv", help="write one row per request to this CSV file")
    lt.add_argument("--plot", help="save a plot of the run to this PNG file")
    lt.set_defaults(func=cmd_loadtest)
