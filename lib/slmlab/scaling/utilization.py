"""What a utilization gauge reads while a server batches: busy time against how full the batch is.

NVIDIA's GPU utilization (`DCGM_FI_DEV_GPU_UTIL`, `nvidia-smi`'s "GPU-Util") is NVML's "percent of time over the
past sample period during which one or more kernels was executing on the GPU" (NVML API reference,
nvmlUtilization_t). A server that batches runs kernels whenever **at least one** request is in flight, so the
gauge reads the share of time the server is *busy*, not how many of its batch slots are used. Both are measured
here from a load test's own request rows:

- `busy_fraction`: the union of the requests' [start, end] intervals over the run (what the gauge would read);
- `mean_in_flight`: the requests' summed durations over the run (Little's law), the batch's real occupancy.

With Poisson arrivals at λ requests/s, each taking T s, and slots to spare, the requests in flight are Poisson
with mean λT, so the busy share is 1 − e^(−λT) (`expected_busy_fraction`): about 63 % at one request per request
time, 86 % at two, whatever the number of slots. A GPU-utilization HPA target of 70 % therefore holds each pod at
a small fraction of what its batch can serve, and a target near 100 % can never see an overload.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from slmlab.errors import SlmLabError


def _rows(result: Any) -> tuple[Any, float]:
    """The successful requests of a LoadTestResult and its duration, checked."""
    ok = result.requests[result.requests["ok"]]
    if ok.empty or not result.duration_s > 0:
        raise SlmLabError("The load test has no successful request to measure.",
                          "Check the server answers (result.errors()), then run the load test again.")
    return ok, float(result.duration_s)


def busy_fraction(result: Any) -> float:
    """The share of the run during which at least one request was in flight (0-1): what a GPU-utilization
    gauge reads for a server that computes whenever it holds a request."""
    ok, duration = _rows(result)
    busy, reach = 0.0, -math.inf
    for start, end in sorted(zip(ok["start_s"], ok["end_s"], strict=True)):
        if end <= reach:
            continue
        busy += end - max(start, reach)
        reach = end
    return min(busy / duration, 1.0)


def mean_in_flight(result: Any) -> float:
    """The average number of requests in flight over the run (Little's law: summed durations / run time)."""
    ok, duration = _rows(result)
    return float((ok["end_s"] - ok["start_s"]).sum()) / duration


def expected_busy_fraction(rate: float, request_s: float) -> float:
    """The busy share for Poisson arrivals at `rate` req/s, each in flight `request_s` s, slots to spare:
    1 − e^(−rate × request_s)."""
    if rate < 0 or not request_s > 0:
        raise SlmLabError(f"rate={rate!r} and request_s={request_s!r}: need rate ≥ 0 and request_s > 0.",
                          "E.g. rate=0.5 (req/s per pod), request_s=2.0 (seconds per request).")
    return 1.0 - math.exp(-rate * request_s)


def gpu_utilization_percent(request_s: float) -> Callable[[float], float]:
    """The GPU-utilization gauge (0-100) of a pod as a function of its load (req/s), for `simulate_hpa(metric=)`."""
    expected_busy_fraction(0.0, request_s)  # checks request_s

    def percent(rate_per_pod: float) -> float:
        return 100.0 * expected_busy_fraction(rate_per_pod, request_s)

    return percent


def utilization_table(results: Mapping[Any, Any], slots: int) -> Any:
    """One row per load test: achieved req/s, busy % (the GPU gauge's reading), the 1 − e^(−λT) model with T the
    median request time of the lightest run, mean requests in flight and the share of `slots` they fill."""
    import pandas as pd

    if not results:
        raise SlmLabError("No load tests given.", "Pass {label: loadtest.load_test(server, rate=...)}.")
    if not isinstance(slots, int) or slots < 1:
        raise SlmLabError(f"slots={slots!r} must be a whole number ≥ 1.", "The server's --parallel.")
    rows = []
    for label, result in results.items():
        ok, duration = _rows(result)
        rows.append({"label": label, "requests_per_s": len(ok) / duration,
                     "median_request_s": float((ok["end_s"] - ok["start_s"]).median()),
                     "busy_percent": 100 * busy_fraction(result), "mean_in_flight": mean_in_flight(result)})
    table = pd.DataFrame(rows).sort_values("requests_per_s", ignore_index=True)
    request_s = float(table["median_request_s"].iloc[0])
    table["model_busy_percent"] = [100 * expected_busy_fraction(r, request_s) for r in table["requests_per_s"]]
    table["slots_used_percent"] = 100 * table["mean_in_flight"] / slots
    return table
