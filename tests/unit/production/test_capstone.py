"""The capstone's grade by outcome: alert rules judged by promtool on synthetic histories, the bundle's limit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from slmlab import deploy
from slmlab.deploy.render import render_to
from slmlab.errors import SlmLabError
from slmlab.monitoring import AlertRule, alerts
from slmlab.production import capstone

METRIC = "slmlab_time_to_first_token_seconds"
needs_promtool = pytest.mark.skipif(not (shutil.which("promtool") or Path("/usr/bin/promtool").exists()),
                                    reason="promtool (Debian's prometheus package) is not installed")


class RecordedPrometheus:
    """What the live Prometheus answered for the gateway's TTFT buckets (two label sets, the gateway's buckets)."""

    def query(self, expr: str) -> pd.DataFrame:
        assert expr == f"{METRIC}_bucket"
        bounds = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf")
        rows = [{"__name__": f"{METRIC}_bucket", "instance": "127.0.0.1:8000", "job": job, "le": le, "value": 1.0}
                for job in ("gateway", "gateway-b") for le in bounds]
        return pd.DataFrame(rows)


def rule(expr: str, for_: str = "2m") -> AlertRule:
    return AlertRule("TTFTOverSLO", expr=expr, for_=for_, severity="page", summary="p95 TTFT high")


@needs_promtool
def test_a_good_rule_is_silent_within_the_slo_and_fires_over_it():
    good = rule(f"{alerts.ttft_p95_expr(METRIC, '2m')} > 1.0")
    verdict = capstone.slo_rule_verdict(good, RecordedPrometheus(), METRIC, slo_s=1.0)
    assert verdict.ok, verdict.detail


@needs_promtool
@pytest.mark.parametrize(("expr", "for_", "failure"), [
    (f"{alerts.ttft_p95_expr(METRIC, '2m')} < 1.0", "2m", "silent_within_slo"),  # the comparison turned round
    (f"{alerts.ttft_p95_expr(METRIC, '2m')} > 1.0", "30m", "fires_over_slo"),  # waits longer than the test
    (f"{alerts.ttft_p95_expr(METRIC, '2m')} > 5.0", "2m", "fires_over_slo"),  # the wrong threshold
])
def test_a_wrong_rule_is_caught_by_its_behaviour(expr: str, for_: str, failure: str):
    verdict = capstone.slo_rule_verdict(rule(expr, for_), RecordedPrometheus(), METRIC, slo_s=1.0)
    assert verdict.valid and not getattr(verdict, failure) and not verdict.ok, verdict


@needs_promtool
def test_an_invalid_rule_is_named_by_promtool():
    verdict = capstone.slo_rule_verdict(rule("histogram_quantile(0.95, sum by (le) (rate(x[2m]))"),
                                        RecordedPrometheus(), METRIC, slo_s=1.0)
    assert not verdict.valid and not verdict.ok and verdict.detail


def test_no_histogram_yet_is_a_clear_error():
    class Empty:
        def query(self, expr: str) -> pd.DataFrame:
            return pd.DataFrame(columns=["value", "time"])

    with pytest.raises(SlmLabError, match="no slmlab_time_to_first_token_seconds_bucket series yet"):
        capstone.histogram_series(Empty(), METRIC)


def test_the_bundle_engine_limit_is_read_in_megabytes(tmp_path: Path):
    spec = deploy.DeploymentSpec(name="capstone", quantization="Q4_K_M", context=2048, parallel=4)
    render_to(spec, tmp_path)
    assert capstone.engine_memory_limit_mb(tmp_path) == pytest.approx(spec.plan().memory_mi * 1.048576)
    with pytest.raises(SlmLabError, match="is not a folder|no engine workload"):
        capstone.engine_memory_limit_mb(tmp_path / "missing")


def test_bad_concurrency_levels_are_named():
    with pytest.raises(SlmLabError, match="Concurrency 0 is not a whole number"):
        capstone.concurrency_sweep("http://127.0.0.1:9", [0], slo_p95_ttft_s=1.0)


def test_the_report_lists_decisions_outcome_and_readiness():
    outcome = capstone.outcome_table({"fits the pod": (True, "300 MB ≤ 400 MB"), "SLO held": (False, "p95 3 s")})
    text = capstone.report_markdown("Capstone", {"quantization": "Q4_K_M fits"}, outcome, "| item | status |")
    assert "- **quantization**: Q4_K_M fits" in text
    assert "| fits the pod | yes | 300 MB ≤ 400 MB |" in text and "| SLO held | **no** | p95 3 s |" in text
    assert text.index("## Outcome") < text.index("## Production readiness")
