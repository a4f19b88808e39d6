"""Grafana dashboards as JSON (Grafana's dashboard model), and every panel's query run and plotted with matplotlib.

    panels = [Panel("p95 TTFT", [ttft_p95_expr()], unit="s"), Panel("tokens/s", ["sum(rate(...[30s]))"])]
    board = dashboard("SLM service", panels)          # import it in Grafana (Dashboards → Import)
    save_dashboard(board, "slm-service.json")
    plot_dashboard(board, prom.client, start, end)    # the same queries, against the live Prometheus

Grafana itself is not installed here: the plot runs each panel's ``targets[].expr`` through Prometheus' range
API, with Grafana's ``$__rate_interval``/``$__interval``/``$__range`` filled in the way Grafana fills them.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

SCHEMA_VERSION = 39  # Grafana 10.x/11.x dashboard model
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}  # bound to a real data source at import
PANEL_TYPES = ("timeseries", "stat", "gauge")
UNIT_LABELS = {"s": "seconds", "percentunit": "share (0-1)", "short": "", "none": "", "reqps": "requests/s"}
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: a title, its PromQL queries, their legends ({{job}} style), a unit and a type."""

    title: str
    exprs: Sequence[str]
    unit: str = "short"
    kind: str = "timeseries"
    legends: Sequence[str] = field(default_factory=tuple)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.exprs or not all(isinstance(e, str) and e.strip() for e in self.exprs):
            raise SlmLabError(f"Panel {self.title!r} has no PromQL query.", "Pass exprs=['sum(rate(x[30s]))'].")
        if self.kind not in PANEL_TYPES:
            raise SlmLabError(f"Panel {self.title!r}: unknown type {self.kind!r}.", f"Use one of {PANEL_TYPES}.")


def _ref_id(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"Q{index}"


def panel_json(panel: Panel, panel_id: int, x: int, y: int, width: int = 12, height: int = 8) -> dict[str, Any]:
    """A panel in Grafana's JSON model: type, gridPos, datasource, targets (refId, expr, legendFormat), unit."""
    legends = (list(panel.legends) + ["{{job}}"] * len(panel.exprs))[:len(panel.exprs)]  # one per query
    targets = [{"refId": _ref_id(i), "datasource": dict(DATASOURCE), "expr": expr, "range": True,
                "legendFormat": legend} for i, (expr, legend) in enumerate(zip(panel.exprs, legends, strict=True))]
    return {"id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
            "datasource": dict(DATASOURCE), "gridPos": {"h": height, "w": width, "x": x, "y": y},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}}}


def dashboard(title: str, panels: Sequence[Panel], uid: str | None = None, refresh: str = "5s",
              time_from: str = "now-15m", columns: int = 2) -> dict[str, Any]:
    """A Grafana dashboard (JSON model, schemaVersion 39) with `panels` laid out `columns` to a row.

    It declares a Prometheus data-source input (``DS_PROMETHEUS``) so that Grafana's Import dialog asks which
    Prometheus to use.
    """
    if not panels:
        raise SlmLabError("A dashboard needs at least one panel.", "Pass a list of Panel(...).")
    if columns < 1 or 24 % columns:
        raise SlmLabError(f"columns={columns!r} does not divide Grafana's 24-unit grid.", "Use 1, 2, 3, 4 or 6.")
    width = 24 // columns
    slug = uid or re.sub(r"[^a-z0-9-]+", "-", title.lower()).strip("-")[:40]
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus",
                      "pluginName": "Prometheus"}],
        "uid": slug, "title": title, "tags": ["slmlab", "llm"], "timezone": "browser", "editable": True,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": refresh,
        "time": {"from": time_from, "to": "now"}, "templating": {"list": []}, "annotations": {"list": []},
        "panels": [panel_json(p, i + 1, (i % columns) * width, (i // columns) * 8, width)
                   for i, p in enumerate(panels)],
    }


def save_dashboard(board: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the dashboard JSON to `path` (what Grafana's Import or a provisioning folder reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(board, indent=2) + "\n")
    return path


def load_dashboard(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A dashboard from a JSON file, JSON text or a dict; checked to have panels with targets."""
    if isinstance(source, Mapping):
        board = dict(source)
    else:
        text = str(source)
        try:
            board = json.loads(text if text.lstrip().startswith("{") else read_text(text, "dashboard"))
        except (OSError, ValueError) as exc:
            raise SlmLabError(f"Cannot read a dashboard from {text[:80]!r}: {exc}",
                              "Pass a Grafana dashboard JSON file, its text, or a dict.") from None
    if not isinstance(board.get("panels"), list) or not board["panels"]:
        raise SlmLabError("The dashboard has no panels.", "A Grafana dashboard JSON has a non-empty 'panels' list.")
    return board


def dashboard_queries(board: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every (panel title, refId, expr) of the dashboard, rows nested in row panels included."""
    found = []

    def visit(panels: Sequence[Mapping[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", ""), target.get("refId", ""), target["expr"]))
            visit(panel.get("panels", []))

    visit(board.get("panels", []))
    return found


def expand_variables(expr: str, step_s: float, range_s: float, scrape_interval_s: float = 1.0) -> str:
    """Fill Grafana's $__rate_interval, $__interval and $__range as Grafana does for a Prometheus panel.

    $__rate_interval = max($__interval + scrape interval, 4 × scrape interval), so rate() always sees ≥ 2 samples.
    """
    rate = max(step_s + scrape_interval_s, 4 * scrape_interval_s)
    values = {"$__rate_interval": rate, "$__interval": step_s, "$__range": range_s}
    for name in sorted(values, key=len, reverse=True):  # $__interval is a prefix of $__interval_ms
        expr = expr.replace(name, f"{max(1, math.ceil(values[name]))}s")
    return expr


def legend_text(legend: str, labels: Mapping[str, Any], fallback: str) -> str:
    """A legendFormat like '{{job}} p95' filled with a series' labels (Grafana's rule)."""
    if not legend:
        return fallback
    return _LEGEND.sub(lambda m: str(labels.get(m.group(1), "")), legend)


def query_panels(board: Mapping[str, Any], client: Any, start: float, end: float | None = None,
                 step: float = 1.0, scrape_interval_s: float = 1.0) -> Any:
    """Run every panel's queries as range queries: one long DataFrame (panel, refId, legend, time, value, error)."""
    import pandas as pd

    end = time.time() if end is None else end
    frames = []
    for panel in load_dashboard(board)["panels"]:
        for target in panel.get("targets", []):
            expr = expand_variables(target["expr"], step, end - start, scrape_interval_s)
            try:
                data = client.query_range(expr, start, end, step)
                error = ""
            except SlmLabError as exc:
                data, error = pd.DataFrame(columns=["time", "value", "series"]), exc.problem
            if data.empty:
                frames.append(pd.DataFrame([{"panel": panel["title"], "refId": target["refId"], "legend": "",
                                             "time": math.nan, "value": math.nan, "error": error or "no data"}]))
                continue
            legend = [legend_text(target.get("legendFormat", ""), row, row["series"])
                      for row in data.to_dict("records")]
            frames.append(data.assign(panel=panel["title"], refId=target["refId"], legend=legend, error="")
                          [["panel", "refId", "legend", "time", "value", "error"]])
    return pd.concat(frames, ignore_index=True)


def plot_dashboard(board: Mapping[str, Any], client: Any, start: float, end: float | None = None,
                   step: float = 1.0, scrape_interval_s: float = 1.0, columns: int = 2,
                   marks: Mapping[str, float] | None = None) -> Any:
    """Plot every panel from live range queries with matplotlib, one subplot per panel; returns the figure.

    `marks` are events to draw as vertical lines (label → unix time), e.g. {"server killed": t}.
    """
    import matplotlib.pyplot as plt

    board = load_dashboard(board)
    end = time.time() if end is None else end
    data = query_panels(board, client, start, end, step, scrape_interval_s)
    panels = board["panels"]
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):  # the last row may have empty axes
        mine = data[data["panel"] == panel["title"]]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        drawn = 0
        for (ref, legend), series in mine.dropna(subset=["time"]).groupby(["refId", "legend"], sort=False):
            ax.plot(series["time"] - start, series["value"], label=legend if legend else ref)
            drawn += 1
        if drawn:
            ax.legend(fontsize=7, loc="best")
            if (mine["value"].dropna() >= 0).all():
                ax.set_ylim(bottom=0)
        else:
            problem = "; ".join(sorted(set(mine["error"]))) or "no data"
            ax.text(0.5, 0.5, problem[:120], ha="center", va="center", fontsize=8, wrap=True,
                    transform=ax.transAxes)
        for label, at in (marks or {}).items():
            ax.axvline(at - start, color="red", linestyle="--", linewidth=1)
            ax.text(at - start, 1.0, f" {label}", color="red", fontsize=7, va="top",
                    transform=ax.get_xaxis_transform())
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlim(0, end - start)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel(UNIT_LABELS.get(unit, unit))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(board.get("title", ""))
    fig.tight_layout()
    return fig


def llm_dashboard(servers: Sequence[str] = ("gateway", "ollama"), window: str = "30s",
                  title: str = "SLM service") -> dict[str, Any]:
    """A dashboard of the four LLM signals (p95 TTFT, tokens/s, queue depth, error rate) plus `up`, for `servers`.

    `window` is rate()'s range; Grafana's "$__rate_interval" also works (it adapts to the zoom, but a short one
    leaves gaps in a quantile of sparse requests).
    """
    from slmlab.monitoring.queries import llm_queries

    per = {s: llm_queries(s, window) for s in servers}

    def pick(*signals: str) -> list[tuple[str, str]]:
        return [(q[sig], "{{job}}" + (" (prefill)" if sig == "p95_prefill_s" else ""))
                for q in per.values() for sig in signals if sig in q]

    spec = [("p95 time to first token", pick("p95_ttft_s", "p95_prefill_s"), "s"),
            ("generated tokens per second", pick("tokens_per_s"), "short"),
            ("queue depth (requests waiting)", pick("queue_depth"), "short"),
            ("error rate (share of requests)", pick("error_rate"), "percentunit"),
            ("KV cache usage", pick("kv_cache_usage"), "percentunit"),
            ("targets up", [("up", "{{job}}")], "short")]
    return dashboard(title, [Panel(name, [e for e, _ in queries], unit=unit, legends=[lg for _, lg in queries])
                             for name, queries, unit in spec if queries])
