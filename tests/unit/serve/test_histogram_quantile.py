"""slmlab.serve.scrape.histogram_quantile: PromQL's histogram_quantile, edge cases against values worked by hand.

Each expected value follows Prometheus' promql/quantile.go: rank = q * total; the first bucket whose cumulative
count reaches the rank; linear interpolation from the bucket below's bound (0 for the lowest) to its own.
"""

from __future__ import annotations

import math

import pytest

from slmlab.errors import SlmLabError
from slmlab.monitoring import queries
from slmlab.serve.scrape import histogram_quantile

INF = math.inf
BUCKETS = [(0.1, 2.0), (0.5, 6.0), (1.0, 8.0), (INF, 8.0)]  # 2 in (0, 0.1], 4 in (0.1, 0.5], 2 in (0.5, 1]


@pytest.mark.fast
@pytest.mark.parametrize("q,expected", [
    (0.5, 0.3),  # rank 4: bucket (0.1, 0.5] holds ranks 2..6 -> 0.1 + 0.4 * (4 - 2) / (6 - 2)
    (0.25, 0.1),  # rank 2: exactly the lowest bucket's count -> its upper bound
    (0.1, 0.04),  # rank 0.8 of the lowest bucket's 2, from 0 to 0.1 -> 0.1 * 0.8 / 2
    (1.0, 1.0),  # rank 8: reached in (0.5, 1] -> 0.5 + 0.5 * (8 - 6) / (8 - 6)
    (0.0, 0.0),  # rank 0: the lowest bucket, from its lower bound 0
])
def test_linear_interpolation_inside_the_bucket(q: float, expected: float):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


@pytest.mark.fast
def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound():
    assert histogram_quantile(0.99, [(1.0, 1.0), (2.0, 5.0), (INF, 10.0)]) == 2.0  # rank 9.9 > 5
    assert histogram_quantile(0.05, [(1.0, 1.0), (INF, 10.0)]) == pytest.approx(0.5)  # rank 0.5 of 1 in (0, 1]


@pytest.mark.fast
@pytest.mark.parametrize("buckets", [
    [(1.0, 0.0), (INF, 0.0)],  # no observations
    [(INF, 5.0)],  # only the +Inf bucket: no finite bound to answer with
])
def test_nan_without_observations_or_finite_buckets(buckets):
    assert math.isnan(histogram_quantile(0.5, buckets))


@pytest.mark.fast
def test_q_zero_with_an_empty_lowest_bucket_is_nan_as_in_promql():
    buckets = [(1.0, 0.0), (2.0, 4.0), (INF, 4.0)]
    assert math.isnan(histogram_quantile(0.0, buckets))  # 0 * (0 / 0) in quantile.go
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.5)  # rank 2 of (1, 2]'s 4 -> 1 + 1 * 2 / 4


@pytest.mark.fast
def test_a_lowest_bound_at_or_below_zero_is_returned_as_it_is():
    negative = [(-1.0, 2.0), (1.0, 4.0), (INF, 4.0)]
    assert histogram_quantile(0.25, negative) == -1.0  # rank 1 in the lowest bucket: no lower bound to start at
    assert histogram_quantile(0.75, negative) == pytest.approx(0.0)  # rank 3 -> -1 + 2 * (3 - 2) / (4 - 2)
    assert histogram_quantile(0.5, [(0.0, 1.0), (1.0, 2.0), (INF, 2.0)]) == 0.0


@pytest.mark.fast
def test_buckets_with_the_same_bound_are_added_up():
    twice = [(1.0, 2.0), (1.0, 2.0), (2.0, 4.0), (2.0, 4.0), (INF, 4.0), (INF, 4.0)]  # two series, as sum by (le)
    assert histogram_quantile(0.75, twice) == pytest.approx(1.5)  # (1, 4), (2, 8): rank 6 -> 1 + 1 * 2 / 4


@pytest.mark.fast
def test_counts_are_made_monotonic_first():
    broken = [(1.0, 5.0), (2.0, 3.0), (4.0, 10.0), (INF, 10.0)]  # 3 < 5: read as 5 (rate() noise)
    assert histogram_quantile(0.6, broken) == pytest.approx(2.4)  # rank 6 in (2, 4] from 5 -> 2 + 2 * 1 / 5


@pytest.mark.fast
def test_float_rounding_between_counts_is_not_an_observation():
    tiny = 3.0 + 3e-13  # within 1e-12 of 3: quantile.go's correctPrecisionErrors takes it as 3
    assert histogram_quantile(1.0, [(1.0, 3.0), (2.0, tiny), (INF, tiny)]) == 1.0  # not 2.0


@pytest.mark.fast
def test_a_mapping_and_le_strings_are_accepted():
    assert histogram_quantile(0.5, dict(BUCKETS)) == histogram_quantile(0.5, BUCKETS)
    assert histogram_quantile(0.5, {"0.5": 1, "+Inf": 2}) == 0.5  # rank 1 = the lowest bucket's count
    assert queries.histogram_quantile(0.95, {1.0: 8, 5.0: 8, 10.0: 10, INF: 10}) == pytest.approx(8.75)


@pytest.mark.fast
@pytest.mark.parametrize("q,buckets,message", [
    (95, BUCKETS, "outside 0..1"), (-0.1, BUCKETS, "outside 0..1"), (math.nan, BUCKETS, "outside 0..1"),
    (0.5, [(1.0, 3.0)], r"\+Inf bucket"), (0.5, [], r"\+Inf bucket"), (0.5, [("x", 1.0)], "not histogram buckets"),
])
def test_malformed_calls_are_clear_errors(q, buckets, message):
    with pytest.raises(SlmLabError, match=message):
        histogram_quantile(q, buckets)
