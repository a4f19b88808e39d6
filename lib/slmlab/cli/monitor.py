"""`slmlab monitor …`: alert rules, dashboards, a local Prometheus, PromQL (registered by slmlab.cli)."""

from __future__ import annotations

import argparse
import sys


def _scrape(text: str) -> tuple[str, str]:
    job, sep, url = text.partition("=")
    if not sep or not job or not url:
        raise argparse.ArgumentTypeError(f"{text!r} is not JOB=URL, e.g. gateway=http://127.0.0.1:8000")
    return job, url


def cmd_rules(args: argparse.Namespace) -> int:
    """Print (or write) the default alert rules, checked and unit-tested with promtool."""
    from slmlab.monitoring import alerts

    rules = alerts.default_rules(for_=args.for_, ttft_p95_s=args.ttft_p95, error_ratio=args.error_ratio,
                                 window=args.window)
    text = alerts.rules_yaml(rules)
    problems = alerts.check_rules(text)
    passed, output = alerts.run_rule_tests(text, [alerts.target_down_test(rules[0], for_s=max(
        1, int(alerts.duration_seconds(args.for_))))]) if not problems else (False, "")
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    for problem in problems:
        print(f"promtool check rules: {problem}", file=sys.stderr)
    if not problems:
        print(f"promtool check rules: OK; promtool test rules (TargetDown): {'PASSED' if passed else output}",
              file=sys.stderr)
    return 0 if not problems and passed else 1


def cmd_check_rules(args: argparse.Namespace) -> int:
    """`promtool check rules` on each file; exit 1 when any is rejected."""
    from slmlab.monitoring.alerts import check_rules

    failed = 0
    for path in args.files:
        problems = check_rules(path)
        print(f"{path}: {'OK' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Write a Grafana dashboard (JSON model) of the LLM signals for the given server types."""
    from slmlab.monitoring.grafana import dashboard_queries, llm_dashboard, save_dashboard

    board = llm_dashboard([s.strip() for s in args.servers.split(",") if s.strip()], window=args.window,
                          title=args.title)
    path = save_dashboard(board, args.output)
    print(f"wrote {path}: {len(board['panels'])} panels, {len(dashboard_queries(board))} queries "
          f"(import it in Grafana: Dashboards → New → Import)")
    return 0


def cmd_prometheus(args: argparse.Namespace) -> int:
    """Start Prometheus on 127.0.0.1 scraping JOB=URL targets with the default rules; run until Ctrl-C."""
    import time

    from slmlab.monitoring import alerts, prometheus_server

    rules = alerts.rules_yaml(alerts.default_rules(for_=args.for_)) if not args.no_rules else None
    prom = prometheus_server(dict(args.scrape), rules=rules, scrape_interval=args.interval,
                             evaluation_interval=args.interval, port=args.port)
    with prom:
        print(f"Prometheus at {prom.url} (config {prom.config_path}, log {prom.log_path})")
        print(prom.wait_for_targets(timeout=args.wait)[["job", "health", "scrape_url"]].to_string(index=False))
        if args.once:
            return 0
        print("Ctrl-C stops it.")
        try:
            while prom.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Run one PromQL instant query against a Prometheus and print the series."""
    from slmlab.monitoring.promql import PromQL

    with PromQL(args.url) as client:
        table = client.query(args.expr)
    print(table.drop(columns=["time"]).to_string(index=False) if len(table) else "(no series)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `monitor` (rules, check-rules, dashboard, prometheus, query) to slmlab's subcommands."""
    mon = sub.add_parser("monitor", help="Prometheus alert rules, Grafana dashboards, a local Prometheus, PromQL",
                         description="Monitoring for served models (see notebook 3.4).")
    cmds = mon.add_subparsers(dest="monitor_command", required=True)

    rules = cmds.add_parser("rules", help="the default alert rules (target down, p95 TTFT, error rate), checked")
    rules.add_argument("--for", dest="for_", default="1m", help="how long each condition must hold (default 1m)")
    rules.add_argument("--ttft-p95", type=float, default=5.0, help="p95 TTFT threshold in seconds (default 5)")
    rules.add_argument("--error-ratio", type=float, default=0.05, help="5xx share threshold (default 0.05)")
    rules.add_argument("--window", default="1m", help="rate() window (default 1m)")
    rules.add_argument("-o", "--output", help="write the rule file here instead of printing it")
    rules.set_defaults(func=cmd_rules)

    check = cmds.add_parser("check-rules", help="promtool check rules on rule files")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_check_rules)

    board = cmds.add_parser("dashboard", help="write a Grafana dashboard JSON of the LLM signals")
    board.add_argument("--servers", default="gateway,ollama,vllm", help="server types: gateway, ollama, vllm")
    board.add_argument("--window", default="$__rate_interval", help="rate() window (default: Grafana's "
                                                                     "$__rate_interval)")
    board.add_argument("--title", default="SLM service")
    board.add_argument("-o", "--output", default="slm-service-dashboard.json")
    board.set_defaults(func=cmd_dashboard)

    prom = cmds.add_parser("prometheus", help="run Prometheus on 127.0.0.1 scraping running servers")
    prom.add_argument("--scrape", type=_scrape, action="append", required=True, metavar="JOB=URL",
                      help="a server to scrape, e.g. gateway=http://127.0.0.1:8000 (repeatable)")
    prom.add_argument("--interval", default="5s", help="scrape and rule evaluation interval (default 5s)")
    prom.add_argument("--for", dest="for_", default="1m", help="the alerts' for: duration (default 1m)")
    prom.add_argument("--no-rules", action="store_true", help="load no alert rules")
    prom.add_argument("--port", type=int, help="port (default: a free one)")
    prom.add_argument("--wait", type=float, default=60, help="seconds to wait for every target to be up")
    prom.add_argument("--once", action="store_true", help="stop once every target is up (a smoke test)")
    prom.set_defaults(func=cmd_prometheus)

    query = cmds.add_parser("query", help="one PromQL instant query")
    query.add_argument("expr")
    query.add_argument("--url", default="http://127.0.0.1:9090", help="Prometheus (default http://127.0.0.1:9090)")
    query.set_defaults(func=cmd_query)
