"""Load and Prometheus through the containers: the course's load test (and the openai client) go through the
running gateway container to the engine container, while a real Prometheus scrapes both with the bundle's own
scrape jobs (prometheus/prometheus.yml: job names, labels, the engine's bearer token), pointed at the ports the
containers publish on 127.0.0.1 instead of the compose network's service names.

    with BundleRun(folder, runtime) as run, bundle_prometheus(run) as prom:
        load = load_through(run, prom, concurrency=2, num_requests=8)
        print("\\n".join(load.lines()))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.deploy.run import BundleRun
from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import LoadTestResult, load_test
from slmlab.monitoring.prometheus_server import PrometheusServer, ScrapeTarget, prometheus_server

# what each engine's own /metrics counts as generated tokens (the gateway's is slmlab_completion_tokens_total)
ENGINE_TOKENS = {"llamacpp-server": "llamacpp:tokens_predicted_total", "ort-service": "slmlab_completion_tokens_total",
                 "vllm": "vllm:generation_tokens_total"}
CHAT_ROUTE = "/v1/chat/completions"


def bundle_scrape_targets(folder: str | Path, addresses: Mapping[str, str],
                          credentials_file: str = "") -> list[ScrapeTarget]:
    """The scrape jobs of the bundle's prometheus/prometheus.yml, each target `service:port` replaced by the address
    that service publishes here (`addresses`: compose service name -> host:port); a bearer token's file replaced by
    `credentials_file`. Jobs whose services do not run here are left out (Prometheus itself is the host's)."""
    import yaml

    path = Path(folder) / "prometheus" / "prometheus.yml"
    if not path.is_file():
        raise SlmLabError(f"{path} does not exist.", "Render the bundle again: slmlab deploy render SPEC --out DIR")
    targets = []
    for job in yaml.safe_load(path.read_text(encoding="utf-8")).get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            services = [str(t).split(":")[0] for t in static.get("targets") or []]
            if services and all(s in addresses for s in services):
                token = credentials_file if job.get("authorization") else ""
                if job.get("authorization") and not credentials_file:
                    raise SlmLabError(f"Prometheus' job {job['job_name']} needs the API key as a file.",
                                      "Run the bundle with auth, or pass credentials_file.")
                targets.append(ScrapeTarget(str(job["job_name"]), tuple(addresses[s] for s in services),
                                            str(job.get("metrics_path", "/metrics")),
                                            {str(k): str(v) for k, v in (static.get("labels") or {}).items()}, token))
    return targets


def bundle_prometheus(run: BundleRun, scrape_interval: str = "1s") -> PrometheusServer:
    """A Prometheus (not started: use it in a `with` block) scraping the running bundle's engine and gateway."""
    addresses = {component: box.url().split("://", 1)[1] for component, box in
                 (("engine", run.engine), ("gateway", run.gateway)) if box is not None}
    key_file = str(run.key_file) if run.key_file else ""
    return prometheus_server(bundle_scrape_targets(run.folder, addresses, key_file), scrape_interval=scrape_interval,
                             evaluation_interval=scrape_interval)


def counters(prom: PrometheusServer, engine_job: str, engine_key: str) -> dict[str, float]:
    """What Prometheus has now: the gateway's answered chat requests and generated tokens, the engine's tokens."""
    queries = {"gateway chat requests (200)": f'sum(slmlab_http_requests_total{{job="gateway", route="{CHAT_ROUTE}", '
                                              'status="200"})',
               "gateway completion tokens": 'sum(slmlab_completion_tokens_total{job="gateway"})'}
    if engine_key in ENGINE_TOKENS:
        queries["engine generated tokens"] = f'sum({{__name__="{ENGINE_TOKENS[engine_key]}", job="{engine_job}"}})'
    out = {}
    for name, expr in queries.items():
        frame = prom.client.query(expr)
        out[name] = float(frame["value"].iloc[0]) if len(frame) else 0.0
    return out


@dataclass
class BundleLoad:
    """A load test through the gateway container and what Prometheus counted meanwhile."""

    result: LoadTestResult
    targets: Any  # Prometheus' targets table: job, scrape_url, health
    counted: dict[str, float] = field(default_factory=dict)  # each counter's increase during the load

    @property
    def ok(self) -> int:
        """Requests the load test saw answered."""
        return int(self.result.requests["ok"].sum())

    def lines(self) -> list[str]:
        """The load test's figures, the scrape targets, and the counters' increases."""
        summary = self.result.summary()
        lines = [f"load test through the gateway: {self.ok}/{len(self.result.requests)} answered, "
                 f"{summary.get('output_throughput', 0):.1f} tokens/s, p95 TTFT "
                 f"{summary.get('p95_ttft_ms', 0):.0f} ms"]
        lines += [f"scraped: {row.job:<16} {row.scrape_url}  {row.health}" for row in self.targets.itertuples()]
        lines += [f"Prometheus counted: {name} +{value:g}" for name, value in self.counted.items()]
        return lines


def load_through(run: BundleRun, prom: PrometheusServer, concurrency: int = 2, num_requests: int = 8,
                 max_tokens: int = 16, settle_s: float = 15) -> BundleLoad:
    """The course's load test through the gateway container, then Prometheus' counters until they show it all:
    every answered request and every token the load test received, on the gateway and on the engine (or until
    `settle_s` passed: each target's last scrape may lag the last answer by an interval)."""
    if run.gateway is None:
        raise SlmLabError("The bundle runs without its gateway.", "Start BundleRun with the gateway.")
    targets = prom.wait_for_targets()
    engine_job = next((str(t.job) for t in prom.targets if t.job != "gateway"), "")
    before = counters(prom, engine_job, run.plan.engine.key)
    result = load_test(run.gateway.url(), api="chat", model=run.plan.served_name, api_key=run.api_key or None,
                       concurrency=concurrency, num_requests=num_requests, max_tokens=max_tokens,
                       show_progress=False)
    load = BundleLoad(result, targets)
    deadline = time.monotonic() + settle_s
    while True:
        after = counters(prom, engine_job, run.plan.engine.key)
        load.counted = {name: after[name] - before.get(name, 0.0) for name in after}
        if _settled(load) or time.monotonic() > deadline:
            return load
        time.sleep(0.5)


def _settled(load: BundleLoad) -> bool:
    """Prometheus shows every answered request and every received token (on the engine too, where it counts them)."""
    tokens = float(load.result.requests["output_tokens"].sum())
    counted = load.counted
    return (counted["gateway chat requests (200)"] >= load.ok and counted["gateway completion tokens"] >= tokens
            and counted.get("engine generated tokens", tokens) >= tokens)
