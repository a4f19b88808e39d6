"""slmlab.scaling.utilization: busy time vs. batch occupancy, and the HPA replayed on a GPU-utilization gauge."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import LoadTestResult
from slmlab.scaling import autoscale, utilization

pytestmark = pytest.mark.fast


def result(spans: list[tuple[float, float]], duration_s: float, failed: int = 0) -> LoadTestResult:
    """A load test's rows: successful requests over `spans`, plus `failed` failed ones (which never count)."""
    rows = [{"start_s": s, "end_s": e, "ok": True} for s, e in spans]
    rows += [{"start_s": 0.0, "end_s": duration_s, "ok": False}] * failed
    return LoadTestResult(pd.DataFrame(rows), duration_s, {})


def test_busy_fraction_is_the_union_of_request_intervals_and_in_flight_their_sum() -> None:
    # [0,2] and [1,3] overlap into [0,3]; [5,6] is apart; [5.5,5.8] lies inside it: 4 s busy of 10
    run = result([(0, 2), (1, 3), (5, 6), (5.5, 5.8)], 10, failed=1)
    assert utilization.busy_fraction(run) == pytest.approx(0.4)
    assert utilization.mean_in_flight(run) == pytest.approx((2 + 2 + 1 + 0.3) / 10)
    with pytest.raises(SlmLabError, match="no successful request"):
        utilization.busy_fraction(result([], 10, failed=2))


def test_the_busy_model_saturates_whatever_the_number_of_slots() -> None:
    assert utilization.expected_busy_fraction(0, 2) == 0
    assert utilization.expected_busy_fraction(0.5, 2) == pytest.approx(1 - math.exp(-1))  # 63 %
    assert utilization.gpu_utilization_percent(8)(0.7) > 99  # 70 % of a 1 req/s, 8-slot pod reads > 99 %
    with pytest.raises(SlmLabError, match="request_s > 0"):
        utilization.gpu_utilization_percent(0)


def test_utilization_table_sets_the_gauge_beside_the_slots_actually_used() -> None:
    light = result([(0, 1), (4, 5)], 8)  # 0.25 req/s, 1 s each
    heavy = result([(0, 1), (0.5, 1.5), (1, 2), (3, 4)], 4)  # 1 req/s
    table = utilization.utilization_table({"light": light, "heavy": heavy}, slots=4)
    assert list(table["label"]) == ["light", "heavy"]  # sorted by the rate reached
    assert list(table["busy_percent"].round(1)) == [25.0, 75.0]
    assert list(table["slots_used_percent"].round(1)) == [6.2, 25.0]  # busy 75 % with a quarter of the slots used
    assert table["model_busy_percent"].iloc[1] == pytest.approx(100 * (1 - math.exp(-1)))
    with pytest.raises(SlmLabError, match="slots"):
        utilization.utilization_table({"light": light}, slots=0)


def test_an_hpa_on_gpu_utilization_overspends_at_70_and_is_blind_at_95() -> None:
    trace = pd.DataFrame({"time_s": [0, 1800, 1801, 7200], "requests_per_second": [1.0, 1.0, 6.0, 6.0]})
    gauge = utilization.gpu_utilization_percent(8)  # 8 s per request: a GPU pod batching 8 at 1 req/s
    by_requests = autoscale.simulate_hpa(trace, capacity_rps=1.0, target=0.7, max_replicas=40)
    by_gpu_70 = autoscale.simulate_hpa(trace, capacity_rps=1.0, target=70, max_replicas=40, metric=gauge)
    by_gpu_95 = autoscale.simulate_hpa(trace, capacity_rps=1.0, target=95, max_replicas=40, metric=gauge)
    hours = {name: autoscale.simulation_summary(sim)["replica_hours"]
             for name, sim in (("requests", by_requests), ("gpu70", by_gpu_70), ("gpu95", by_gpu_95))}
    assert hours["gpu70"] > 3 * hours["requests"]  # 70 % busy is about 0.15 req/s per pod
    assert by_gpu_95["metric"].max() <= 100 and by_gpu_95["replicas"].eq(1).all()  # 100/95 is within the tolerance
    assert by_gpu_95["overloaded"].mean() > 0.5 and not by_requests["overloaded"].iloc[-1]
    default = autoscale.simulate_hpa(trace, capacity_rps=1.0, target=0.7, max_replicas=40, metric=lambda r: r)
    pd.testing.assert_frame_equal(default, by_requests)  # the default metric is requests/s per pod
