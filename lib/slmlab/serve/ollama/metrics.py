"""Prometheus metrics for the Ollama-compatible server (Ollama itself exports none), built from the timing
fields every generation already reports (nanoseconds in the API, seconds here as Prometheus prefers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "slmlab_ollama"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Counters and histograms on a private registry, rendered by ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, loaded_models: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=reg)
        self.request_seconds = Histogram(f"{PREFIX}_request_duration_seconds", "HTTP request latency (until the "
                                         "handler returns; streams end later)", ["endpoint"], buckets=_LATENCY,
                                         registry=reg)
        self.total_seconds = Histogram(f"{PREFIX}_total_duration_seconds", "total_duration of generations",
                                       ["model"], buckets=_LATENCY, registry=reg)
        self.load_seconds = Histogram(f"{PREFIX}_load_duration_seconds", "load_duration: model loading per request "
                                      "(near 0 when warm)", ["model"], buckets=_LATENCY, registry=reg)
        self.prompt_eval_seconds = Histogram(f"{PREFIX}_prompt_eval_duration_seconds", "prompt_eval_duration "
                                             "(prefill)", ["model"], buckets=_LATENCY, registry=reg)
        self.eval_seconds = Histogram(f"{PREFIX}_eval_duration_seconds", "eval_duration (decode)", ["model"],
                                      buckets=_LATENCY, registry=reg)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "prompt_eval_count summed", ["model"], registry=reg)
        self.eval_tokens = Counter(f"{PREFIX}_eval_tokens", "eval_count summed (generated tokens)", ["model"],
                                   registry=reg)
        self.decode_speed = Gauge(f"{PREFIX}_eval_tokens_per_second", "decode speed of the latest generation "
                                  "(eval_count / eval_duration)", ["model"], registry=reg)
        self.errors = Counter(f"{PREFIX}_errors", "requests answered with an error (also mid-stream)",
                              ["endpoint"], registry=reg)
        self.loaded = Gauge(f"{PREFIX}_loaded_models", "models loaded in memory now", registry=reg)
        if loaded_models is not None:
            self.loaded.set_function(lambda: float(loaded_models()))

    def declare_model(self, model: str) -> None:
        """Create `model`'s counters and histograms at 0, so `rate()` sees its first generation as an increase."""
        for metric in (self.total_seconds, self.load_seconds, self.prompt_eval_seconds, self.eval_seconds,
                       self.prompt_tokens, self.eval_tokens):
            metric.labels(model)

    def observe_generation(self, model: str, stats: Mapping[str, Any]) -> None:
        """Record a final chunk's timing fields (nanoseconds)."""
        ns = 1e-9
        self.total_seconds.labels(model).observe(stats.get("total_duration", 0) * ns)
        self.load_seconds.labels(model).observe(stats.get("load_duration", 0) * ns)
        if "prompt_eval_duration" in stats:
            self.prompt_eval_seconds.labels(model).observe(stats["prompt_eval_duration"] * ns)
        if "eval_duration" in stats:
            self.eval_seconds.labels(model).observe(stats["eval_duration"] * ns)
        self.prompt_tokens.labels(model).inc(stats.get("prompt_eval_count", 0))
        self.eval_tokens.labels(model).inc(stats.get("eval_count", 0))
        if stats.get("eval_count") and stats.get("eval_duration"):
            self.decode_speed.labels(model).set(stats["eval_count"] / (stats["eval_duration"] * ns))

    def render(self) -> bytes:
        return generate_latest(self.registry)
