"""Questions asked of the aggregated JSON logs, in pandas: what LogQL or Elasticsearch queries would ask.

    table = read_jsonl(agg.log_file)                 # one row per line; "time" parsed, UTC
    errors_per_interval(table, "1min")               # sum by (service) (count_over_time({level="ERROR"}[1m]))
    slowest(table, 5)                                # the request lines with the largest latency_ms
    follow(table, request_id)                        # one request's lines, gateway then engine, in time order
    alert_log_timeline(timeline, table)              # alert state changes and error lines on one time axis
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

COLUMNS = ["time", "service", "level", "logger", "msg", "request_id", "method", "path", "status", "latency_ms",
           "model", "prompt_tokens", "completion_tokens", "outcome", "error"]
REQUEST_LOGGER = "slmlab.request"


def read_jsonl(source: str | os.PathLike | Iterable[str]) -> Any:
    """JSON lines (a file, or the lines themselves) as a DataFrame with at least COLUMNS; time as UTC datetimes.

    A line that is not a JSON object is skipped (the aggregator only writes JSON, but a file may be cut mid-line).
    """
    import pandas as pd

    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise SlmLabError(f"No log file at {path}.", "Pass the aggregator's log_file (agg.log_file).")
        lines: Iterable[str] = path.read_text(errors="replace").splitlines()
    else:
        lines = source
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = None
    table["time"] = pd.to_datetime(table["time"], utc=True, errors="coerce", format="ISO8601")
    for column in ("status", "latency_ms", "prompt_tokens", "completion_tokens"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    order = COLUMNS + [c for c in table.columns if c not in COLUMNS]
    return table[order].sort_values("time", kind="stable").reset_index(drop=True)


def requests_of(table: Any, service: str | None = None) -> Any:
    """Only the request lines (one per HTTP request), of one service or all."""
    rows = table[table["logger"] == REQUEST_LOGGER]
    return rows[rows["service"] == service] if service else rows


def errors_per_interval(table: Any, interval: str = "1min", by: str = "service") -> Any:
    """ERROR lines counted per `interval` (a pandas offset: "1min", "1s") and per `by`: rows are intervals."""
    import pandas as pd

    errors = table[table["level"] == "ERROR"]
    if errors.empty:
        return pd.DataFrame()
    return errors.set_index("time").groupby(by).resample(interval).size().unstack(by, fill_value=0).fillna(0)


def slowest(table: Any, n: int = 5, service: str | None = None) -> Any:
    """The `n` request lines with the largest latency_ms (of one service, or all)."""
    if not isinstance(n, int) or n < 1:
        raise SlmLabError(f"n={n!r} is not a positive number of requests.", "Pass e.g. n=5.")
    return requests_of(table, service).nlargest(n, "latency_ms")


def follow(table: Any, request_id: str) -> Any:
    """Every line that carries `request_id`, in time order: the gateway's, then the engine's behind it."""
    if not request_id:
        raise SlmLabError("No request id given.", "Take one from the request_id column (e.g. of slowest()).")
    return table[table["request_id"] == request_id].sort_values("time", kind="stable")


def alert_log_timeline(timeline: Any, table: Any, marks: Mapping[str, float] | None = None,
                       zero: float | None = None) -> Any:
    """Alert state changes (an alert_timeline: time, alertname, state) and each service's first and last ERROR
    line, plus `marks` ({"ollama killed": epoch}), in time order; "t (s)" counts from `zero` (default: the first)."""
    import pandas as pd

    firsts = timeline.drop_duplicates(["alertname", "state"]) if len(timeline) else timeline
    events = [{"time": float(row["time"]), "event": f"{row['alertname']} {row['state']}", "source": "prometheus"}
              for _, row in firsts.iterrows()]
    for name, at in (marks or {}).items():
        events.append({"time": float(at), "event": name, "source": "drill"})
    errors = table[table["level"] == "ERROR"].dropna(subset=["time"])
    for service, rows in errors.groupby("service"):
        stamps = rows["time"].map(lambda t: t.timestamp())
        events.append({"time": float(stamps.min()), "event": f"first ERROR line ({len(rows)} in all)",
                       "source": service})
        events.append({"time": float(stamps.max()), "event": "last ERROR line", "source": service})
    frame = pd.DataFrame(events, columns=["time", "event", "source"]).sort_values("time", kind="stable")
    start = zero if zero is not None else (frame["time"].min() if len(frame) else 0.0)
    frame.insert(0, "t (s)", (frame["time"] - start).round(2))
    return frame.reset_index(drop=True)


def errors_between(table: Any, start: float, end: float, service: str | None = None) -> int:
    """How many ERROR lines (of one service, or all) fall in [start, end) (epoch seconds)."""
    import pandas as pd

    rows = table[table["level"] == "ERROR"]
    if service:
        rows = rows[rows["service"] == service]
    lo, hi = pd.Timestamp(start, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC")
    return int(((rows["time"] >= lo) & (rows["time"] < hi)).sum())
