"""The course's time and memory budgets, checked against measured notebook runs (CI parameters, 2 cores).

    print(budget_report(results))   # per notebook, per part, the whole course: measured vs. budget

Budgets (from the course's issues): the whole course in 10 minutes, part 1 in 4; a notebook's kernel and
everything it starts under 1.5 GB, except where a notebook starts a server that alone needs more (vLLM):
those are listed with the reason, not hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmlab.course.execute import RunResult

COURSE_SECONDS = 600
PART_SECONDS = {"01-foundations": 240}
NOTEBOOK_RSS_BYTES = 1.5e9
# Notebooks that start a server whose own footprint is over the notebook budget, and why.
RSS_EXCEPTIONS = {
    "01-vllm-openai-server": "vLLM's CPU server alone holds ~3.8 GB",
}


def part_of(notebook: str | Path) -> str:
    """The course part a notebook belongs to: its folder name (e.g. 01-foundations), or 'setup'."""
    parent = Path(notebook).parent.name
    return parent if parent not in ("", "solutions", "labs") else "setup"


def limit_note(result: RunResult) -> str:
    """'cgroup peak 612 of 2147 MB' for a run inside a memory limit, else ''."""
    if not result.memory_limit_bytes:
        return ""
    return f"cgroup peak {(result.cgroup_peak_bytes or 0) / 1e6:.0f} of {result.memory_limit_bytes / 1e6:.0f} MB"


def budget_rows(results: Sequence[RunResult], part_seconds: Mapping[str, float] | None = None,
                course_seconds: float = COURSE_SECONDS, rss_bytes: float = NOTEBOOK_RSS_BYTES) -> list[dict]:
    """One row per notebook, per part and for the course: measured, budget, and whether it is within."""
    part_seconds = PART_SECONDS if part_seconds is None else part_seconds
    rows = []
    for r in results:
        name = Path(r.notebook).stem
        exception = RSS_EXCEPTIONS.get(name)
        rows.append({"what": f"{part_of(r.notebook)}/{name}", "seconds": round(r.seconds, 1),
                     "peak_rss_mb": round(r.peak_rss_bytes / 1e6), "budget": f"≤ {rss_bytes / 1e6:.0f} MB",
                     "within": r.peak_rss_bytes <= rss_bytes or bool(exception),
                     "note": "; ".join(filter(None, [limit_note(r), exception]))})
    parts: dict[str, float] = {}
    for r in results:
        parts[part_of(r.notebook)] = parts.get(part_of(r.notebook), 0.0) + r.seconds
    for part, seconds in parts.items():
        limit = part_seconds.get(part)
        rows.append({"what": f"part {part}", "seconds": round(seconds, 1), "peak_rss_mb": None,
                     "budget": f"≤ {limit:.0f} s" if limit else "", "within": limit is None or seconds <= limit,
                     "note": ""})
    total = sum(r.seconds for r in results)
    rows.append({"what": "course", "seconds": round(total, 1), "peak_rss_mb": None,
                 "budget": f"≤ {course_seconds:.0f} s", "within": total <= course_seconds,
                 "note": "" if len(parts) > 1 else "only some parts ran"})
    return rows


def budget_report(results: Sequence[RunResult], **budgets: Any) -> str:
    """budget_rows() as an aligned text table, with ✓ / ✗ per row."""
    rows = budget_rows(results, **budgets)
    width = max(len(r["what"]) for r in rows)
    lines = []
    for r in rows:
        rss = f"{r['peak_rss_mb']:>6} MB" if r["peak_rss_mb"] is not None else " " * 9
        mark = "✓" if r["within"] else "✗"
        lines.append(f"{mark} {r['what']:<{width}}  {r['seconds']:>7.1f} s  {rss}  {r['budget']:<11} {r['note']}")
    return "\n".join(lines)
