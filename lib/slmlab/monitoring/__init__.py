"""Watch served models: a real Prometheus scraping our servers, PromQL, alert rules, Grafana dashboards.

- ``prometheus_server``: Prometheus (Debian's binary) on 127.0.0.1 with a generated config and rule files;
- ``promql``: instant and range queries as pandas DataFrames, targets, alerts, rules;
- ``queries``: the PromQL for p95 TTFT, tokens/s, queue depth and error rate, per server type;
- ``alerts``: alert rules as YAML, ``promtool check rules`` / ``test rules``, watching an alert fire;
- ``promtool``: the one wrapper around promtool (check config, check rules, test rules) every check uses;
- ``grafana``: dashboard JSON, and every panel's query run against Prometheus and plotted with matplotlib;
- ``logs``: the servers' captured logs as one table (what Loki or Elasticsearch would index);
- ``structured_log``: the servers' JSON log lines, one per request, with a request id passed on upstream;
- ``aggregator``: rsyslog (Debian's) on 127.0.0.1 collecting those lines over TCP syslog into one JSON-lines file;
- ``log_queries``: errors per minute, the slowest requests, one request followed by its id, alerts and logs lined up.
"""

from slmlab.monitoring.aggregator import RsyslogServer, rsyslog_server
from slmlab.monitoring.alerts import (
    AlertRule,
    alert_timeline,
    check_rules,
    default_rules,
    duration_seconds,
    error_ratio_expr,
    rules_yaml,
    run_rule_tests,
    target_down_test,
    ttft_p95_expr,
    watch_alerts,
)
from slmlab.monitoring.fault import in_background, kill_server
from slmlab.monitoring.grafana import Panel, dashboard, llm_dashboard, plot_dashboard, query_panels, save_dashboard
from slmlab.monitoring.logs import collect_logs
from slmlab.monitoring.prometheus_server import PrometheusServer, ScrapeTarget, prometheus_server, scrape_target
from slmlab.monitoring.promql import PromQL
from slmlab.monitoring.queries import histogram_quantile, llm_queries

__all__ = [
    "alert_timeline", "AlertRule", "check_rules", "collect_logs", "dashboard", "default_rules", "duration_seconds",
    "error_ratio_expr", "histogram_quantile", "in_background", "kill_server", "llm_dashboard", "llm_queries",
    "Panel", "plot_dashboard", "prometheus_server", "PrometheusServer", "PromQL", "query_panels", "rules_yaml",
    "rsyslog_server", "RsyslogServer", "run_rule_tests", "save_dashboard", "scrape_target", "ScrapeTarget",
    "target_down_test", "ttft_p95_expr", "watch_alerts",
]
