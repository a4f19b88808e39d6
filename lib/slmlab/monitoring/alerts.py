"""Alerting rules for LLM servers as Prometheus rule files, checked and unit-tested with promtool.

    rules = default_rules(for_="5s")                  # target down, high p95 TTFT, high error rate
    text = rules_yaml(rules)                          # the rule file Prometheus loads
    check_rules(text)                                 # [] when promtool accepts it, else its messages
    run_rule_tests(text, [target_down_test(rules[0])])  # promtool test rules: (passed, output)
    watch_alerts(prom.client, "TargetDown")           # inactive → pending → firing, as /api/v1/alerts shows it

An alert is *pending* while its expression is true for less than its ``for:`` duration, then *firing*.
`check_rules` and `run_rule_tests` are `slmlab.monitoring.promtool`'s, here beside the rules they check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.monitoring.promtool import check_rules, run_rule_tests

_LABEL_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule: name, PromQL condition, how long it must hold, severity and a summary template."""

    name: str
    expr: str
    for_: str = "1m"
    severity: str = "warning"
    summary: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    runbook_url: str = ""  # where on-call reads what to do (annotations.runbook_url, as Alertmanager shows it)

    def as_dict(self) -> dict[str, Any]:
        """The rule as it appears in a rule file."""
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr, "for": self.for_,
                                "labels": {"severity": self.severity, **self.labels}}
        annotations = {"summary": self.summary, "runbook_url": self.runbook_url}
        if any(annotations.values()):
            rule["annotations"] = {key: value for key, value in annotations.items() if value}
        return rule


def ttft_p95_expr(metric: str = "slmlab_time_to_first_token_seconds", window: str = "1m",
                  by: Sequence[str] = ("job",), quantile: float = 0.95) -> str:
    """PromQL for a quantile of a TTFT histogram: histogram_quantile over the rate of its _bucket series."""
    keys = ", ".join([*by, "le"])
    return f"histogram_quantile({quantile:g}, sum by ({keys}) (rate({metric}_bucket[{window}])))"


def error_ratio_expr(window: str = "1m", by: Sequence[str] = ("job",), zero_without_errors: bool = False) -> str:
    """PromQL for the share of the gateway's API requests answered with a 5xx status (scrapes of /metrics excluded).

    With `zero_without_errors`, 0 rather than no result while no 5xx has ever been answered (see `share`).
    """
    keys = ", ".join(by)
    api = 'route=~"/v1/.*|/api/.*"'
    failed = f'sum by ({keys}) (rate(slmlab_http_requests_total{{{api}, status=~"5.."}}[{window}]))'
    total = f"sum by ({keys}) (rate(slmlab_http_requests_total{{{api}}}[{window}]))"
    return share(failed, total) if zero_without_errors else f"{failed}\n  /\n{total}"


def share(part: str, whole: str) -> str:
    """PromQL for part / whole that is 0, not empty, while `part` has no series: a counter labelled with a status
    or an error kind appears at its first increment, so before the first error there is nothing to divide."""
    return f"(\n  {part}\n  or\n  {whole} * 0\n)\n  /\n{whole}"


def default_rules(for_: str = "1m", ttft_p95_s: float = 5.0, error_ratio: float = 0.05,
                  window: str = "1m") -> list[AlertRule]:
    """Three alerts every LLM endpoint wants: a target is down, p95 TTFT is too high, too many 5xx answers.

    The TTFT rule covers our servers (slmlab_time_to_first_token_seconds) and vLLM
    (vllm:time_to_first_token_seconds); `for_` is the duration each condition must hold before it fires.
    """
    ttft = (f"(\n  {ttft_p95_expr('slmlab_time_to_first_token_seconds', window)}\n  or\n  "
            f"{ttft_p95_expr('vllm:time_to_first_token_seconds', window)}\n) > {ttft_p95_s:g}")
    return [
        AlertRule("TargetDown", "up == 0", for_, "critical",
                  "{{ $labels.job }} ({{ $labels.instance }}) does not answer Prometheus' scrapes"),
        AlertRule("HighTimeToFirstTokenP95", ttft, for_, "warning",
                  f"p95 time to first token of {{{{ $labels.job }}}} is above {ttft_p95_s:g} s"),
        AlertRule("HighErrorRate", f"(\n{error_ratio_expr(window)}\n) > {error_ratio:g}", for_, "critical",
                  f"more than {error_ratio:.0%} of {{{{ $labels.job }}}}'s API requests fail with 5xx"),
    ]


def rules_yaml(rules: Sequence[AlertRule], group: str = "slmlab-llm") -> str:
    """A Prometheus rule file with `rules` in one group."""
    import yaml

    if not rules:
        raise SlmLabError("No rules given.", "Pass a list of AlertRule, e.g. default_rules().")
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise SlmLabError(f"Alert names repeat: {names}.", "Give every rule its own name.")
    return yaml.dump({"groups": [{"name": group, "rules": [r.as_dict() for r in rules]}]}, Dumper=_block_dumper(),
                     sort_keys=False, width=120, allow_unicode=True)


def _block_dumper() -> type:
    """A SafeDumper that writes multi-line strings (PromQL) as `|` blocks, as people write rule files."""
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, text)
    return BlockDumper


def render_labels(template: str, labels: Mapping[str, str]) -> str:
    """Fill {{ $labels.x }} in an annotation template as Prometheus would (for unit-test expectations)."""
    return _LABEL_TEMPLATE.sub(lambda m: labels.get(m.group(1), ""), template)


def target_down_test(rule: AlertRule, job: str = "ollama", instance: str = "127.0.0.1:11434",
                     down_after_s: int = 3, for_s: int = 5) -> dict[str, Any]:
    """A promtool unit test for a `up == 0` rule with `for: {for_s}s`: silent while up and while pending, then firing.

    The series is up for `down_after_s` seconds (1 s samples), then 0; the alert must not fire while the target
    is up nor within its `for` duration, and must fire (with its labels and summary) once it has passed.
    """
    labels = {"job": job, "instance": instance}
    samples = " ".join(["1"] * down_after_s + ["0"] * (for_s + 5))
    fired = {"exp_labels": {**labels, "severity": rule.severity, **rule.labels}}
    if rule.summary:
        fired["exp_annotations"] = {"summary": render_labels(rule.summary, labels)}
    return {"interval": "1s",
            "input_series": [{"series": f'up{{job="{job}", instance="{instance}"}}', "values": samples}],
            "alert_rule_test": [
                {"eval_time": f"{down_after_s - 1}s", "alertname": rule.name, "exp_alerts": []},
                {"eval_time": f"{down_after_s + for_s - 1}s", "alertname": rule.name, "exp_alerts": []},
                {"eval_time": f"{down_after_s + for_s + 1}s", "alertname": rule.name, "exp_alerts": [fired]},
            ]}


def watch_alerts(client: Any, alertname: str, until: str = "firing", timeout: float = 60,
                 interval: float = 0.5) -> Any:
    """Poll /api/v1/alerts until `alertname` reaches state `until`; the states seen, one row per change.

    Columns: seconds (since the watch began), alertname, state (inactive, pending, firing), labels.
    Raises when the state is not reached within `timeout` seconds (with the states seen so far).
    """
    import pandas as pd

    if until not in ("pending", "firing", "inactive"):
        raise SlmLabError(f"until={until!r} is not an alert state.", "Use 'pending', 'firing' or 'inactive'.")
    begin, rows, last = time.monotonic(), [], None
    while True:
        table = client.alerts()
        mine = table[table["alertname"] == alertname]
        states = sorted(set(mine["state"])) or ["inactive"]
        state = "firing" if "firing" in states else states[0]
        labels = "; ".join(mine["labels"]) if len(mine) else ""
        if (state, labels) != last:
            rows.append({"seconds": round(time.monotonic() - begin, 1), "alertname": alertname, "state": state,
                         "labels": labels})
            last = (state, labels)
        if state == until:
            return pd.DataFrame(rows)
        if time.monotonic() - begin > timeout:
            raise SlmLabError(f"{alertname} did not become {until} within {timeout:g} s; states seen:\n"
                              f"{pd.DataFrame(rows).to_string(index=False)}",
                              "Check the rule's expr with client.query(...) and its for: duration "
                              "(client.rules() shows its health and last error).")
        time.sleep(interval)


def alert_timeline(client: Any, until_firing: Sequence[str], timeout: float = 60, interval: float = 0.5) -> Any:
    """Record every alert's state changes until all of `until_firing` fire (or `timeout` s pass); never raises.

    One row per change: seconds (since the recording began), time (unix), alertname, state, labels. An alert
    that leaves /api/v1/alerts shows as inactive.
    """
    import pandas as pd

    begin, rows = time.monotonic(), []
    last: dict[str, tuple[str, str]] = {}
    while True:
        table = client.alerts()
        now: dict[str, tuple[str, str]] = {}
        for name, group in table.groupby("alertname"):
            states = set(group["state"])
            now[name] = ("firing" if "firing" in states else "pending", "; ".join(group["labels"]))
        for name in set(last) | set(now):
            state = now.get(name, ("inactive", ""))
            if state != last.get(name, ("inactive", "")):
                rows.append({"seconds": round(time.monotonic() - begin, 1), "time": time.time(), "alertname": name,
                             "state": state[0], "labels": state[1]})
        last = {name: state for name, state in now.items()}
        if all(now.get(name, ("",))[0] == "firing" for name in until_firing) or time.monotonic() - begin > timeout:
            return pd.DataFrame(rows, columns=["seconds", "time", "alertname", "state", "labels"])
        time.sleep(interval)


def duration_seconds(text: str) -> float:
    """A Prometheus duration ('90s', '1m30s', '500ms') in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise SlmLabError(f"{text!r} is not a Prometheus duration.", "Write it like '5s', '1m' or '1m30s'.")
    return sum(int(n) * units[u] for n, u in parts)


__all__ = ["AlertRule", "alert_timeline", "check_rules", "default_rules", "duration_seconds", "error_ratio_expr",
           "render_labels", "rules_yaml", "run_rule_tests", "share", "target_down_test", "ttft_p95_expr",
           "watch_alerts"]
