"""`slmlab scale …`: model-server replicas behind nginx, and an HPA replay of a day of traffic (registered by
slmlab.cli)."""

from __future__ import annotations

import argparse


def _positive(kind: type) -> object:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    return parse


def cmd_lb(args: argparse.Namespace) -> int:
    """Start `--replicas` llama-servers and nginx in front of them on 127.0.0.1; run until Ctrl-C."""
    import time

    from slmlab.scaling.nginx_lb import nginx_load_balancer
    from slmlab.scaling.replicas import Replicas

    print(f"starting {args.replicas} llama-server replica(s) of {args.model}, {args.threads} thread(s) and "
          f"{args.parallel} slot(s) each …", flush=True)
    with Replicas(args.replicas, args.model, n_threads=args.threads, n_ctx=args.n_ctx,
                  parallel=args.parallel) as replicas, \
            nginx_load_balancer(replicas.servers, port=args.port, method=args.method) as balancer:
        print(f"load balancer: {balancer.url}/v1 (nginx {args.method}; config {balancer.config_path})")
        for name, url in zip([s.name for s in replicas.servers], replicas.urls, strict=True):
            print(f"  {name}: {url}")
        print(f"try: slmlab loadtest {balancer.url} -c {2 * args.replicas}", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        if deadline is None:
            print("Ctrl-C stops them all.", flush=True)
        try:
            while balancer.server.running and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        alive = sum(replicas.running())
    print(f"stopped nginx and {args.replicas} replica(s) ({alive} were still running)")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Replay a requests-per-second trace through the HPA's algorithm; print the summary, optionally a plot."""
    import pandas as pd

    from slmlab.scaling import autoscale

    trace = autoscale.load_trace(args.trace) if args.trace else autoscale.load_trace()
    runs = {}
    for given in args.target or [0.7]:
        target = given * args.capacity if args.relative else given
        runs[f"target {target:g} req/s per pod"] = autoscale.simulate_hpa(
            trace, capacity_rps=args.capacity, target=target, min_replicas=args.min_replicas,
            max_replicas=args.max_replicas, startup_s=args.startup)
    summary = pd.DataFrame({name: autoscale.simulation_summary(sim) for name, sim in runs.items()}).T
    print(f"{len(trace)} trace rows, capacity {args.capacity:g} req/s per replica, new pods serve after "
          f"{args.startup:g} s")
    print(summary.to_string())
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        autoscale.plot_simulation(runs, title="HPA replay").savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `scale lb` and `scale simulate` to slmlab's subcommands."""
    scale = sub.add_parser("scale", help="replicas behind nginx; an HPA replay of a day of traffic")
    parts = scale.add_subparsers(dest="scale_command", required=True)

    lb = parts.add_parser("lb", help="N llama-server replicas behind nginx on 127.0.0.1, until Ctrl-C")
    lb.add_argument("--replicas", type=_positive(int), default=2)
    lb.add_argument("--model", default="smollm2-135m-instruct")
    lb.add_argument("--threads", type=_positive(int), default=1, help="llama.cpp threads per replica (default 1; "
                                                                      "replicas × threads ≤ cores)")
    lb.add_argument("--parallel", type=_positive(int), default=2,
                    help="llama-server slots per replica: requests decoded together (default 2)")
    lb.add_argument("--n-ctx", type=_positive(int), default=2048, help="tokens per slot")
    lb.add_argument("--port", type=int, help="the balancer's port (default: a free one)")
    lb.add_argument("--method", choices=["least_conn", "round_robin", "ip_hash"], default="least_conn")
    lb.add_argument("--seconds", type=_positive(float), help="stop after this many seconds (default: Ctrl-C)")
    lb.set_defaults(func=cmd_lb)

    sim = parts.add_parser("simulate", help="replay a requests-per-second trace through the HPA's algorithm")
    sim.add_argument("--trace", help="CSV with time_s and requests_per_second (default: data/scaling/trace.csv)")
    sim.add_argument("--capacity", type=_positive(float), default=1.0, help="req/s one replica sustains")
    sim.add_argument("--target", type=_positive(float), action="append",
                     help="the HPA's per-pod target in req/s, repeatable (default 0.7)")
    sim.add_argument("--relative", action="store_true", help="read --target as a share of --capacity")
    sim.add_argument("--min-replicas", type=_positive(int), default=1)
    sim.add_argument("--max-replicas", type=_positive(int), default=20)
    sim.add_argument("--startup", type=_positive(float), default=30, help="seconds before a new pod serves")
    sim.add_argument("--plot", help="save the replay's plot to this PNG file")
    sim.set_defaults(func=cmd_simulate)

