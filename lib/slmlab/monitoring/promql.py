"""A small client for Prometheus' HTTP API: PromQL instant and range queries as pandas DataFrames.

    prom = PromQL("http://127.0.0.1:9090")
    prom.query('up')                              # one row per series: its labels, then `value`
    prom.value('sum(rate(slmlab_completion_tokens_total[30s]))')   # one number
    prom.query_range('up', start, end, step=1)    # long format: time, value, series, labels

A query Prometheus rejects raises SlmLabError with Prometheus' own message (``parse error: …``), not an HTTP
traceback. Times are unix seconds (floats) or datetimes; ``step`` is in seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from slmlab.errors import SlmLabError


def _seconds(value: float | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, int | float) or math.isnan(value):
        raise SlmLabError(f"{value!r} is not a time.", "Pass unix seconds (time.time()) or a datetime.")
    return float(value)


def series_name(labels: Mapping[str, str]) -> str:
    """A series' labels as PromQL writes them: name{a="1", b="2"} (or {} when it has none)."""
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


class PromQL:
    """Prometheus' HTTP API at `url` (e.g. a PrometheusServer's url): queries, targets, alerts, rules."""

    def __init__(self, url: Any, timeout: float = 30.0) -> None:
        self.url = str(getattr(url, "url", url)).rstrip("/")
        import httpx

        self._client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)  # no proxy for 127.0.0.1

    def __repr__(self) -> str:
        return f"<PromQL {self.url}>"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> PromQL:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the raw API

    def api(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET /api/v1/<path> and return its `data`; Prometheus' error becomes a SlmLabError."""
        import httpx

        expr = (params or {}).get("query")
        try:
            answer = self._client.get(f"/api/v1/{path.lstrip('/')}", params=dict(params or {}))
        except httpx.HTTPError as exc:
            raise SlmLabError(f"Cannot reach Prometheus at {self.url}: {type(exc).__name__} {exc}".rstrip(),
                              "Start it first (slmlab.monitoring.prometheus_server(...)) and use its url.") from None
        try:
            body = answer.json()
        except ValueError:
            raise SlmLabError(f"{self.url}/api/v1/{path} answered HTTP {answer.status_code} without JSON.",
                              "Is this Prometheus? Its API lives under /api/v1.") from None
        if body.get("status") != "success":
            kind, message = body.get("errorType", "error"), body.get("error", f"HTTP {answer.status_code}")
            if expr is not None:
                raise SlmLabError(f"Prometheus rejected the PromQL {expr!r}: {kind}: {message}",
                                  "Fix the expression: check brackets, metric names (curl /metrics), that rate() "
                                  "gets a range like [30s], and that histogram_quantile gets `le` buckets.")
            raise SlmLabError(f"Prometheus answered {kind}: {message} for /api/v1/{path}.",
                              "Check the parameters passed.")
        return body["data"]

    # ------------------------------------------------------------------ queries

    def query(self, expr: str, at: float | datetime | None = None) -> Any:
        """An instant query: one row per series (its labels as columns, then `value`); a scalar gives one row."""
        import pandas as pd

        params: dict[str, Any] = {"query": _check_expr(expr)}
        if at is not None:
            params["time"] = _seconds(at)
        data = self.api("query", params)
        kind, result = data["resultType"], data["result"]
        if kind in ("scalar", "string"):
            return pd.DataFrame([{"value": _number(result[1]), "time": float(result[0])}])
        rows = [{**item["metric"], "value": _number(item["value"][1]), "time": float(item["value"][0])}
                for item in result]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["value", "time"])
        labels = _label_order(c for c in frame.columns if c not in ("value", "time"))
        return frame[labels + ["value", "time"]].sort_values(labels).reset_index(drop=True) if labels else frame

    def value(self, expr: str, at: float | datetime | None = None) -> float:
        """The one number an instant query gives (NaN when it gives no series; an error when it gives several)."""
        frame = self.query(expr, at)
        if frame.empty:
            return math.nan
        if len(frame) > 1:
            raise SlmLabError(f"{expr!r} gives {len(frame)} series, not one number:\n{frame.to_string(index=False)}",
                              "Aggregate them, e.g. sum(...) or sum by (le) (...) inside histogram_quantile.")
        return float(frame["value"].iloc[0])

    def query_range(self, expr: str, start: float | datetime, end: float | datetime | None = None,
                    step: float = 1.0) -> Any:
        """A range query in long format: columns time (unix s), value, series (its labels as text), then labels."""
        import pandas as pd

        begin = _seconds(start)
        finish = _seconds(end) or time.time()
        if begin is None:
            raise SlmLabError("query_range needs a start time.", "Pass unix seconds (time.time() - 60) or a datetime.")
        if not step > 0:
            raise SlmLabError(f"step={step!r} must be > 0 seconds.", "E.g. step=1 for a one-second resolution.")
        if finish < begin:
            raise SlmLabError(f"The range ends ({finish:.0f}) before it starts ({begin:.0f}).", "Swap start and end.")
        data = self.api("query_range", {"query": _check_expr(expr), "start": begin, "end": finish, "step": step})
        rows = []
        for item in data["result"]:
            name = series_name(item["metric"])
            rows += [{"time": float(t), "value": _number(v), "series": name, **item["metric"]}
                     for t, v in item["values"]]
        if not rows:
            return pd.DataFrame(columns=["time", "value", "series"])
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ what Prometheus knows

    def targets(self) -> Any:
        """The active scrape targets: job, instance, health (up/down/unknown), last error, scrape URL."""
        import pandas as pd

        rows = [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"), "health": t["health"],
                 "last_error": t.get("lastError", ""), "scrape_url": t.get("scrapeUrl", ""),
                 "last_scrape": t.get("lastScrape", "")} for t in self.api("targets")["activeTargets"]]
        return pd.DataFrame(rows, columns=["job", "instance", "health", "last_error", "scrape_url", "last_scrape"])

    def alerts(self) -> Any:
        """The alerts active now (pending or firing): alertname, state, labels, since when, value."""
        import pandas as pd

        rows = []
        for alert in self.api("alerts")["alerts"]:
            labels = dict(alert["labels"])
            rows.append({"alertname": labels.pop("alertname", ""), "state": alert["state"],
                         "labels": ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
                         "active_at": alert.get("activeAt", ""), "value": _number(alert.get("value", "nan")),
                         "summary": alert.get("annotations", {}).get("summary", "")})
        return pd.DataFrame(rows, columns=["alertname", "state", "labels", "active_at", "value", "summary"])

    def rules(self) -> Any:
        """The loaded rules: group, name, type (alerting/recording), health, state, query."""
        import pandas as pd

        rows = [{"group": group["name"], "name": rule["name"], "type": rule["type"], "health": rule.get("health"),
                 "state": rule.get("state", ""), "query": rule["query"], "last_error": rule.get("lastError", "")}
                for group in self.api("rules")["groups"] for rule in group["rules"]]
        return pd.DataFrame(rows, columns=["group", "name", "type", "health", "state", "query", "last_error"])

    def metric_names(self) -> list[str]:
        """Every metric name Prometheus has stored."""
        return list(self.api("label/__name__/values"))


def _label_order(labels: Iterable[str]) -> list[str]:
    """Label columns in a stable, readable order: __name__ and job first (instance ports change run to run)."""
    first = ("__name__", "job")
    names = set(labels)
    return [n for n in first if n in names] + sorted(names - set(first))


def _check_expr(expr: Any) -> str:
    if not isinstance(expr, str) or not expr.strip():
        raise SlmLabError(f"{expr!r} is not a PromQL expression.", "Pass a string, e.g. 'up' or 'rate(x[30s])'.")
    return expr


def _number(text: Any) -> float:
    try:
        return float(text)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings: float() reads them all
    except (TypeError, ValueError):
        return math.nan
