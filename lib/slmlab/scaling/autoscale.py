"""Autoscaling on load: per-replica capacity from load tests, an HPA target, and the HPA's algorithm replayed.

The HorizontalPodAutoscaler (Kubernetes docs, "Horizontal Pod Autoscaling", algorithm details) runs every
15 s (`--horizontal-pod-autoscaler-sync-period`) and computes

    desiredReplicas = ceil(currentReplicas × currentMetricValue / desiredMetricValue)

skipping any change while the ratio is within the tolerance (0.1 by default) of 1. For an ``AverageValue``
target the metric is the average over the pods (e.g. requests per second per pod). Its ``behavior`` then
smooths the recommendation: a **stabilization window** (scale-up default 0 s, scale-down 300 s) takes the
lowest recommendation of the window when scaling up and the highest when scaling down, and **policies**
cap the change per period (scale-up default: +100 % or +4 pods per 15 s, whichever is more; scale-down
default: −100 % per 15 s). `simulate_hpa` replays a requests-per-second trace through exactly that loop,
with new pods serving only after a start-up delay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance
SYNC_PERIOD_S = 15  # --horizontal-pod-autoscaler-sync-period
TRACE_PATH = Path(__file__).resolve().parents[3] / "data" / "scaling" / "trace.csv"


# ---------------------------------------------------------------------------------------------- capacity

@dataclass(frozen=True)
class Capacity:
    """What one replica sustains: requests/s at the largest load that kept p95 latency within the SLO."""

    requests_per_second: float
    concurrency: int
    p95_e2el_ms: float
    slo_p95_ms: float


def replica_capacity(table: Any, slo_p95_ms: float, metric: str = "p95_e2el_ms") -> Capacity:
    """Per-replica capacity from one replica's load tests (`slmlab.measure.loadtest.summary_table` rows).

    The highest request throughput among the runs whose `metric` (p95 end-to-end latency, ms) met the SLO.
    """
    for column in ("request_throughput", "concurrency", metric):
        if column not in getattr(table, "columns", []):
            raise SlmLabError(f"The table has no column {column!r}.",
                              "Pass slmlab.measure.loadtest.summary_table(...) of load tests on ONE replica.")
    if not slo_p95_ms > 0:
        raise SlmLabError(f"slo_p95_ms={slo_p95_ms!r} must be > 0.", "E.g. slo_p95_ms=3000 (3 s).")
    within = table[table[metric] <= slo_p95_ms]
    if within.empty:
        raise SlmLabError(f"No load test met the SLO (p95 ≤ {slo_p95_ms:g} ms); the best p95 was "
                          f"{table[metric].min():.0f} ms.", "Relax the SLO, or test at lower concurrency.")
    best = within.loc[within["request_throughput"].idxmax()]
    return Capacity(float(best["request_throughput"]), int(best["concurrency"]), float(best[metric]), slo_p95_ms)


def hpa_target(capacity_rps: float, utilization: float = 0.7) -> float:
    """The HPA's per-pod target (averageValue) for a requests/s metric: capacity × target utilization.

    Headroom (1 − utilization) absorbs the load that arrives while new pods start and the HPA's 15 s lag.
    """
    if not capacity_rps > 0:
        raise SlmLabError(f"capacity_rps={capacity_rps!r} must be > 0.", "Measure it with replica_capacity().")
    if not 0 < utilization <= 1:
        raise SlmLabError(f"utilization={utilization!r} must be in (0, 1].", "E.g. 0.7: 30 % headroom.")
    return capacity_rps * utilization


def quantity(value: float) -> str:
    """A Kubernetes quantity for `value`: whole numbers as is, otherwise in thousandths ('560m')."""
    if value <= 0:
        raise SlmLabError(f"{value!r} is not a positive quantity.", "An HPA target must be > 0.")
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def hpa_manifest(name: str, metric: str, average_value: float, min_replicas: int = 1, max_replicas: int = 10,
                 namespace: str = "slm", scale_down_window_s: int = 300) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler on a per-pod metric (e.g. requests per second) with averageValue.

    The metric must reach the metrics API (e.g. through prometheus-adapter from the server's /metrics);
    validate the result with `slmlab.deploy.k8s.validate_manifest`.
    """
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": metric},
                                                  "target": {"type": "AverageValue",
                                                             "averageValue": quantity(average_value)}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": scale_down_window_s}},
        },
    }


# ---------------------------------------------------------------------------------------------- the algorithm

def desired_replicas(current_replicas: int, current_metric: float, target: float,
                     tolerance: float = TOLERANCE) -> int:
    """The HPA formula: ceil(current_replicas × current_metric / target), unchanged within the tolerance."""
    if not isinstance(current_replicas, int) or current_replicas < 0:
        raise SlmLabError(f"current_replicas={current_replicas!r} must be a whole number ≥ 0.", "E.g. 3.")
    if not target > 0:
        raise SlmLabError(f"target={target!r} must be > 0.", "The HPA's averageValue, e.g. 0.5 (requests/s per pod).")
    if current_metric < 0:
        raise SlmLabError(f"current_metric={current_metric!r} must be ≥ 0.", "A load cannot be negative.")
    ratio = current_metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current_replicas
    return math.ceil(round(current_replicas * ratio, 9))  # round: 3 × (0.6/0.2) must give 9, not 10


@dataclass(frozen=True)
class Policy:
    """A scaling policy: at most `value` pods ("Pods") or percent ("Percent") of change per `period_s`."""

    kind: str
    value: int
    period_s: int

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent") or self.value <= 0 or self.period_s <= 0:
            raise SlmLabError(f"Bad scaling policy {self}.", 'Use Policy("Pods", 4, 15) or Policy("Percent", 100, 15).')


@dataclass(frozen=True)
class ScalingRules:
    """One direction of `behavior`: stabilization window, policies, selectPolicy (Max, Min or Disabled)."""

    stabilization_window_s: int
    policies: tuple[Policy, ...]
    select_policy: str = "Max"


DEFAULT_SCALE_UP = ScalingRules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(300, (Policy("Percent", 100, 15),))


@dataclass
class HPA:
    """The HPA controller's state: replicas, past recommendations and scale events (for windows and policies)."""

    min_replicas: int = 1
    max_replicas: int = 10
    target: float = 1.0
    tolerance: float = TOLERANCE
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, change in replicas)

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise SlmLabError(f"minReplicas={self.min_replicas}, maxReplicas={self.max_replicas}: need "
                              "1 ≤ min ≤ max.", "E.g. min_replicas=1, max_replicas=10.")

    def stabilize(self, now: float, current: int, recommended: int) -> int:
        """The stabilization windows: the lowest recent recommendation caps a scale-up, the highest a scale-down."""
        up, down = recommended, recommended
        for when, value in self.recommendations:
            if when > now - self.scale_up.stabilization_window_s:
                up = min(up, value)
            if when > now - self.scale_down.stabilization_window_s:
                down = max(down, value)
        self.recommendations.append((now, recommended))
        keep = max(self.scale_up.stabilization_window_s, self.scale_down.stabilization_window_s)
        self.recommendations = [(w, v) for w, v in self.recommendations if w > now - keep]
        result = current
        if result < up:
            result = up
        if result > down:
            result = down
        return result

    def _limit(self, now: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        limits = []
        for policy in rules.policies:
            changed = sum(d for w, d in self.events if w > now - policy.period_s and (d > 0) == up)
            start = current - changed  # replicas at the start of the policy's period
            if up:
                limits.append(start + policy.value if policy.kind == "Pods"
                              else math.ceil(start * (1 + policy.value / 100)))
            else:
                limits.append(start - policy.value if policy.kind == "Pods"
                              else math.floor(start * (1 - policy.value / 100)))
        pick = max if (rules.select_policy == "Max") == up else min  # Max: the policy allowing the most change
        return pick(limits)

    def step(self, now: float, current: int, current_metric: float) -> int:
        """One controller sync at time `now` (s): the replicas it sets, given `current` and the per-pod metric."""
        recommended = desired_replicas(current, current_metric, self.target, self.tolerance)
        recommended = min(max(recommended, self.min_replicas), self.max_replicas)
        stable = self.stabilize(now, current, recommended)
        if stable > current:
            stable = min(stable, self._limit(now, current, self.scale_up, up=True), self.max_replicas)
        elif stable < current:
            stable = max(stable, self._limit(now, current, self.scale_down, up=False), self.min_replicas)
        if stable != current:
            self.events.append((now, stable - current))
        return stable


def load_trace(path: str | Path = TRACE_PATH) -> Any:
    """A traffic trace: a DataFrame with time_s and requests_per_second (default: data/scaling/trace.csv)."""
    import io

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SlmLabError(f"No trace at {path}.", "Pass a CSV with columns time_s,requests_per_second.")
    trace = pd.read_csv(io.StringIO(read_text(path, "trace")), comment="#")
    missing = {"time_s", "requests_per_second"} - set(trace.columns)
    if missing:
        raise SlmLabError(f"{path} has no column(s) {', '.join(sorted(missing))}.",
                          "The trace needs columns time_s,requests_per_second.")
    if (trace["requests_per_second"] < 0).any() or not trace["time_s"].is_monotonic_increasing:
        raise SlmLabError(f"{path}: times must increase and rates be ≥ 0.", "Fix the trace's rows.")
    return trace


def simulate_hpa(trace: Any, capacity_rps: float, target: float, min_replicas: int = 1, max_replicas: int = 20,
                 startup_s: float = 30, sync_period_s: float = SYNC_PERIOD_S, initial_replicas: int | None = None,
                 metric: Callable[[float], float] | None = None, **behavior: Any) -> Any:
    """Replay a requests-per-second trace through the HPA loop; one row per sync.

    The load spreads evenly over the ready pods (a least-connections balancer); each ready pod reports
    `metric(its requests/s)` (default: the requests/s themselves; e.g. `utilization.gpu_utilization_percent`),
    pods still starting report 0, and the HPA reads the average over all pods. A pod the HPA adds serves after
    `startup_s`. `behavior`: scale_up=, scale_down=, tolerance= (see HPA). Columns: time_s, requests_per_second,
    replicas (what the HPA set), ready, per_pod_rps, metric (what the HPA read), capacity_rps (ready × capacity),
    overloaded (demand above capacity).
    """
    import numpy as np
    import pandas as pd

    if not capacity_rps > 0 or not target > 0:
        raise SlmLabError("capacity_rps and target must be > 0.", "Derive them with replica_capacity, hpa_target.")
    hpa = HPA(min_replicas=min_replicas, max_replicas=max_replicas, target=target, **behavior)
    times = np.asarray(trace["time_s"], dtype=float)
    rates = np.asarray(trace["requests_per_second"], dtype=float)
    ready = initial_replicas or min_replicas
    starting: list[float] = []  # when each pod that is not ready yet will be
    rows = []
    now = times[0]
    while now <= times[-1]:
        rate = float(np.interp(now, times, rates))
        ready += sum(1 for t in starting if t <= now)
        starting = [t for t in starting if t > now]
        replicas = ready + len(starting)
        # Pods still starting report no load: the HPA then assumes 0 for them when scaling up (as Kubernetes
        # does for pods without metrics), so the average is over all pods, not only the ready ones.
        per_ready = rate / max(ready, 1)
        read = (metric(per_ready) if metric else per_ready) * ready / replicas
        new = hpa.step(now, replicas, read)
        if new > replicas:
            starting += [now + startup_s] * (new - replicas)
        elif new < replicas:
            drop = replicas - new  # pods still starting go first
            cut = min(drop, len(starting))
            starting = starting[:len(starting) - cut]
            ready -= drop - cut
        rows.append({"time_s": now, "requests_per_second": rate, "replicas": new, "ready": ready,
                     "per_pod_rps": rate / max(ready, 1), "metric": read, "capacity_rps": ready * capacity_rps,
                     "overloaded": rate > ready * capacity_rps})
        now += sync_period_s
    return pd.DataFrame(rows)


def simulation_summary(sim: Any, sync_period_s: float = SYNC_PERIOD_S) -> dict[str, float]:
    """Replica-hours used, minutes overloaded, peak replicas and how many times the replica count changed."""
    changes = int((sim["replicas"].diff().fillna(0) != 0).sum())
    return {"replica_hours": round(float(sim["replicas"].sum()) * sync_period_s / 3600, 2),
            "overloaded_minutes": round(float(sim["overloaded"].sum()) * sync_period_s / 60, 1),
            "peak_replicas": int(sim["replicas"].max()), "scale_events": changes}


def plot_simulation(sims: Mapping[str, Any] | Any, title: str = "HPA replay") -> Any:
    """Demand vs. ready capacity (top) and replicas (bottom) over time, one line per simulation."""
    import matplotlib.pyplot as plt

    sims = sims if isinstance(sims, Mapping) else {"hpa": sims}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    first = next(iter(sims.values()))
    top.plot(first["time_s"] / 3600, first["requests_per_second"], color="k", label="demand (req/s)")
    for name, sim in sims.items():
        top.plot(sim["time_s"] / 3600, sim["capacity_rps"], label=f"capacity, {name}", alpha=0.8)
        bottom.step(sim["time_s"] / 3600, sim["replicas"], where="post", label=name)
    top.set(ylabel="requests / s", title=title)
    top.legend(fontsize=8)
    bottom.set(xlabel="hours", ylabel="replicas")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cases_table(cases: Sequence[tuple[int, float, float]], tolerance: float = TOLERANCE) -> Any:
    """desired_replicas for (current replicas, metric, target) cases, as a DataFrame (for worked examples)."""
    import pandas as pd

    return pd.DataFrame([{"current": c, "metric": m, "target": t, "ratio": round(m / t, 3),
                          "desired": desired_replicas(c, m, t, tolerance)} for c, m, t in cases])
