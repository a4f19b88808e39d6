"""Prometheus metrics for the course's FastAPI service, on a registry of its own (one per app).

HTTP side (an ASGI middleware, so 401/413/429 answers and whole streams count too):
``slmlab_http_requests_total{route,method,status}``, ``slmlab_http_request_duration_seconds{route}`` (until the
last byte of the answer, streams included), ``slmlab_http_requests_in_flight``, ``slmlab_http_rejected_total{reason}``.
Model side: ``slmlab_time_to_first_token_seconds{model}`` (from the request's arrival, queueing included),
``slmlab_queue_wait_seconds{model}``, ``slmlab_prompt_tokens_total{model}``, ``slmlab_completion_tokens_total{model}``,
``slmlab_generations_total{model,outcome}`` (outcome: stop, length, cancelled, error), ``slmlab_model_ready``,
``slmlab_generations_running`` and ``slmlab_generations_waiting`` (the load: what an autoscaler scales on).
Routes are labelled by their template (``/v1/chat/completions``), unknown paths as ``other``: a scanner trying
10,000 URLs cannot blow up the number of series.

Label values known in advance (every rejection reason; the served model and each outcome, once the model is loaded)
are created at 0, as Prometheus' instrumentation guide advises: a series that first appears at 1 gives `rate()` and
`increase()` nothing to compare with, so the first request after a restart would be invisible to alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "slmlab"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)


REJECTION_REASONS = ("unauthorized", "rate_limited", "too_large", "bad_request", "over_context", "busy",
                     "unavailable", "upstream_error")
OUTCOMES = ("stop", "length", "cancelled", "error")


class ServiceMetrics:
    """The service's counters, histograms and gauges on a private CollectorRegistry; ``render()`` is /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by route template, method "
                                "and status code", ["route", "method", "status"], registry=reg)
        self.latency = Histogram(f"{PREFIX}_http_request_duration_seconds", "From the request's arrival to the "
                                 "last byte of the answer (streams included)", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=reg)
        self.in_flight = Gauge(f"{PREFIX}_http_requests_in_flight", "HTTP requests being answered now",
                               registry=reg)
        self.rejected = Counter(f"{PREFIX}_http_rejected", "Requests refused before reaching the model, by reason "
                                f"({', '.join(REJECTION_REASONS)})", ["reason"], registry=reg)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)  # at 0 from the start
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "From the request's arrival to the first "
                              "generated text (queueing included)", ["model"], buckets=TTFT_BUCKETS, registry=reg)
        self.queue_wait = Histogram(f"{PREFIX}_queue_wait_seconds", "Time a request waited for the model "
                                    "(its places: one in-process, the upstream's slots over HTTP)", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens processed", ["model"], registry=reg)
        self.completion_tokens = Counter(f"{PREFIX}_completion_tokens", "Tokens generated (also those of streams "
                                         "the client left)", ["model"], registry=reg)
        self.generations = Counter(f"{PREFIX}_generations", "Generations by how they ended (stop, length, "
                                   "cancelled, error)", ["model", "outcome"], registry=reg)
        self.waiting = Gauge(f"{PREFIX}_generations_waiting", "Requests waiting for the model", registry=reg)
        self.running = Gauge(f"{PREFIX}_generations_running", "Generations running now (at most 1 in-process, the "
                             "upstream's slots over HTTP); running + waiting is the load an autoscaler can use",
                             registry=reg)
        self.ready = Gauge(f"{PREFIX}_model_ready", "1 when the model is loaded and answers (as of the latest "
                           "/readyz), else 0", registry=reg)

    def declare_model(self, model: str) -> None:
        """Create `model`'s series at 0 (tokens, TTFT, queue wait, each outcome), so its first request counts."""
        for metric in (self.ttft, self.queue_wait, self.prompt_tokens, self.completion_tokens):
            metric.labels(model)
        for outcome in OUTCOMES:
            self.generations.labels(model, outcome)

    def observe_generation(self, model: str, outcome: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one generation's end."""
        self.generations.labels(model, outcome).inc()
        self.prompt_tokens.labels(model).inc(max(0, prompt_tokens))
        self.completion_tokens.labels(model).inc(max(0, completion_tokens))

    def render(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP request by route template and status, and times it to its last byte."""

    def __init__(self, app: Any, metrics: ServiceMetrics, routes: Callable[[], Sequence[Any]]) -> None:
        self.app, self.metrics, self._routes = app, metrics, routes

    def route_of(self, scope: dict) -> str:
        """The route template a request matches (``/v1/chat/completions``), or ``other``."""
        from starlette.routing import Match

        for route in self._routes():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", "other") or "other"
        return "other"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, start, status = self.route_of(scope), time.perf_counter(), 500
        self.metrics.in_flight.inc()

        async def timed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
