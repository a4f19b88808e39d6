"""The capstone's measurements and its grade by outcome (notebook 04-capstone).

A learner ships one SLM service end to end and makes four decisions; each is graded by what it produces:

    table = candidates_table(model, ["Q8_0", "Q4_K_M", "Q2_K"], context=2048, parallel=4, memory_limit_mb=400)
    memory = server_memory_mb(engine)                  # the real llama-server's resident memory, its whole group
    sweep = concurrency_sweep(gateway.url, (1, 2, 4), api_key=key, slo_p95_ttft_s=2.0)
    verdict = slo_rule_verdict(my_rule, prom.client, "slmlab_time_to_first_token_seconds", slo_s=2.0)
    outcome = outcome_table(...)                       # one row per promise of the service, passed or not

`slo_rule_verdict` judges an alert rule by its behaviour, not its text: promtool evaluates it on two synthetic
histories of the service's own TTFT histogram (same series labels and buckets as the live Prometheus holds), one
inside the SLO (the rule must stay silent) and one twice over it (the rule must fire).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

SLOW_FACTOR = 2.0  # the "breached" history puts every answer between 1× and SLOW_FACTOR× the SLO
EVAL_MINUTES = 10  # promtool evaluates each rule this long after the synthetic history began


def candidates_table(model: Any, types: Sequence[str], *, context: int, parallel: int, memory_limit_mb: float,
                     baseline: str = "Q8_0", text: str | None = None, n_ctx: int = 256, chunks: int = 2,
                     show_progress: bool = True) -> Any:
    """One row per quantization of `model`: file size, bits per weight, perplexity (and % above `baseline`'s), the
    footprint estimate for `parallel` conversations of `context` tokens, and whether it fits `memory_limit_mb`."""
    import pandas as pd

    from slmlab.convert import quantize
    from slmlab.measure import evaluate
    from slmlab.models import catalog, footprint, resolve

    types = list(dict.fromkeys(t.upper() for t in types))
    if baseline.upper() not in types:
        raise SlmLabError(f"The baseline {baseline} is not among the types {types}.",
                          f"Add {baseline} to the types: the quality budget is measured against it.")
    resolved = model if hasattr(model, "inspect") else resolve(model)
    spec = catalog.get(resolved.name)
    parameters = resolved.inspect().parameter_count
    text = text if text is not None else evaluate.heldout_text()
    quantized = [t for t in types if t != "F16"]  # F16 is the reference itself, not a quantization
    made = quantize.quantize_all(resolved, quantized, show_progress=show_progress) if quantized else {}
    files = {qtype: Path(result.path) for qtype, result in made.items()}
    if "F16" in types:
        files = {"F16": Path(quantize.reference_f16(resolved, show_progress=show_progress).path), **files}
    rows = []
    for qtype, path in files.items():
        size = path.stat().st_size
        ppl = evaluate.chunked_perplexity(path, text, n_ctx=n_ctx, chunks=chunks)
        estimate = footprint.estimate(spec, qtype, context * parallel, weights_bytes=size)
        rows.append({"type": qtype, "size_mb": size / 1e6, "bits_per_weight": size * 8 / parameters,
                     "perplexity": ppl.value, "estimate_mb": estimate.total_gb * 1e3, "path": str(path)})
    table = pd.DataFrame(rows)
    base = float(table.loc[table["type"] == baseline.upper(), "perplexity"].iloc[0])
    table.insert(4, f"vs_{baseline.upper()}_pct", (table["perplexity"] / base - 1) * 100)
    table["fits"] = table["estimate_mb"] <= memory_limit_mb
    return table.sort_values("size_mb", ascending=False, ignore_index=True)


def server_memory_mb(server: Any) -> float:
    """Resident memory (MB) of a started server's whole process group (llama-server and anything it forked)."""
    import psutil

    from slmlab.process import group_members

    if getattr(server, "pid", None) is None or not server.running:
        raise SlmLabError(f"{getattr(server, 'name', server)} is not running.", "Measure it inside its `with` block.")
    total = 0
    for pid in group_members(server.pid) or [server.pid]:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total / 1e6


def concurrency_sweep(url: Any, levels: Sequence[int], *, slo_p95_ttft_s: float, api_key: str | None = None,
                      requests_per_level: int = 2, max_tokens: int = 24, model: str | None = None) -> Any:
    """Load-test `url` at each concurrency in `levels` (requests_per_level × concurrency requests each): one row
    per level with throughput, p95 TTFT and whether it is within the SLO. Failed requests count against it."""
    import pandas as pd

    from slmlab.measure.loadtest import load_test

    rows = []
    for level in levels:
        if not isinstance(level, int) or level < 1:
            raise SlmLabError(f"Concurrency {level!r} is not a whole number ≥ 1.", "Use levels such as (1, 2, 4).")
        result = load_test(url, concurrency=level, num_requests=requests_per_level * level, max_tokens=max_tokens,
                           api_key=api_key, model=model, show_progress=False)
        s = result.summary()
        p95 = s["p95_ttft_ms"] / 1000
        rows.append({"concurrency": level, "requests": s["successful_requests"] + s["failed_requests"],
                     "failed": s["failed_requests"], "request_throughput": s["request_throughput"],
                     "output_throughput": s["output_throughput"], "p95_ttft_s": p95,
                     "within_slo": bool(s["failed_requests"] == 0 and p95 <= slo_p95_ttft_s)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RuleVerdict:
    """How an alert rule behaved on the two synthetic histories."""

    valid: bool  # promtool check rules accepted it
    silent_within_slo: bool
    fires_over_slo: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.valid and self.silent_within_slo and self.fires_over_slo


def histogram_series(client: Any, metric: str) -> tuple[list[dict[str, str]], list[float]]:
    """The label sets (without `le`) and the finite bucket bounds of `metric`'s histogram as Prometheus holds it."""
    frame = client.query(f"{metric}_bucket")
    if not len(frame):
        raise SlmLabError(f"Prometheus has no {metric}_bucket series yet.",
                          "Send the service some requests and wait two scrapes, then ask again.")
    label_columns = [c for c in frame.columns if c not in ("le", "value", "timestamp", "time")]
    label_sets = [dict(items) for items in {tuple((c, str(row[c])) for c in label_columns if isinstance(row[c], str)
                                                  and row[c]) for _, row in frame.iterrows()}]
    bounds = sorted({float(le) for le in frame["le"] if le != "+Inf"})
    return label_sets, bounds


def _history(metric: str, labels: Mapping[str, str], bounds: Sequence[float], latency_s: float) -> list[dict]:
    """promtool input series: 60 answers a minute, each taking `latency_s`, for EVAL_MINUTES + 1 minutes."""
    series = []
    for le in [*bounds, math.inf]:
        per_minute = 60 if latency_s <= le else 0
        inner = ", ".join([*(f'{k}="{v}"' for k, v in sorted(labels.items())),
                           f'le="{"+Inf" if le == math.inf else repr(float(le))}"'])
        series.append({"series": f"{metric}_bucket{{{inner}}}", "values": f"0+{per_minute}x{EVAL_MINUTES + 1}"})
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series.append({"series": f"{metric}_count{{{inner}}}", "values": f"0+60x{EVAL_MINUTES + 1}"})
    return series


def slo_rule_verdict(rule: Any, client: Any, metric: str, slo_s: float) -> RuleVerdict:
    """Run `rule` (an AlertRule) with promtool on a history within the SLO and one over it: it must stay silent on
    the first and fire on the second (whatever labels it keeps). The histories copy the live series' labels."""
    from slmlab.monitoring import alerts

    text = alerts.rules_yaml([rule], group="capstone")
    problems = alerts.check_rules(text)
    if problems:
        return RuleVerdict(False, False, False, "; ".join(problems))
    label_sets, bounds = histogram_series(client, metric)
    fast_s = min(bounds) if min(bounds) < slo_s else slo_s / 2
    slow_s = next((b for b in bounds if slo_s < b <= SLOW_FACTOR * slo_s), SLOW_FACTOR * slo_s)
    verdicts = []
    for latency_s in (fast_s, slow_s):
        history = [s for labels in label_sets for s in _history(metric, labels, bounds, latency_s)]
        test = {"interval": "1m", "input_series": history,
                "alert_rule_test": [{"eval_time": f"{EVAL_MINUTES}m", "alertname": rule.name, "exp_alerts": []}]}
        passed, output = alerts.run_rule_tests(text, [test])
        fired = not passed and bool(re.search(r"got:\s*\[\s*\S", output))
        if not passed and not fired:
            return RuleVerdict(True, False, False, f"promtool could not evaluate the rule: {output.strip()[-400:]}")
        verdicts.append((latency_s, passed, output))
    (fast, silent, _), (slow, quiet_when_slow, _) = verdicts
    detail = (f"every answer in {fast:g} s (within the {slo_s:g} s SLO): {'silent' if silent else 'fired'}; "
              f"every answer in {slow:g} s (over it): {'silent' if quiet_when_slow else 'fired'}")
    return RuleVerdict(True, silent, not quiet_when_slow, detail)


def outcome_table(items: Mapping[str, tuple[bool, str]]) -> Any:
    """The grade by outcome: one row per promise of the service, passed or not, with its evidence."""
    import pandas as pd

    return pd.DataFrame([{"promise": name, "kept": bool(kept), "evidence": evidence}
                         for name, (kept, evidence) in items.items()])


def report_markdown(title: str, decisions: Mapping[str, str], outcome: Any, readiness_markdown: str) -> str:
    """The capstone report: the decisions and their reasons, the outcome table, then the readiness checklist."""
    lines = [f"# {title}", "", "## Decisions", ""]
    lines += [f"- **{name}**: {why}" for name, why in decisions.items()]
    lines += ["", "## Outcome", "", "| promise | kept | evidence |", "| --- | --- | --- |"]
    lines += [f"| {row.promise} | {'yes' if row.kept else '**no**'} | {row.evidence} |" for row in outcome.itertuples()]
    lines += ["", "## Production readiness", "", readiness_markdown.strip(), ""]
    return "\n".join(lines)


def engine_memory_limit_mb(folder: Any) -> float:
    """The memory limit (MB) of the engine container in a rendered bundle's manifests."""
    from slmlab.deploy.run import mebibytes
    from slmlab.production.bundle import Bundle, containers

    bundle = Bundle.load(folder)
    engine = bundle.workload("engine")
    if engine is None:
        raise SlmLabError(f"{folder} has no engine workload.", "Render the bundle with `slmlab deploy render` first.")
    limit = ((containers(engine)[0].get("resources") or {}).get("limits") or {}).get("memory")
    if not limit:
        raise SlmLabError(f"The engine in {folder} has no memory limit.", "Every container needs limits.memory.")
    return mebibytes(str(limit)) * 1.048576
