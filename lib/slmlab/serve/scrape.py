"""Read a server's Prometheus ``/metrics`` page from Python: samples by name and labels, histogram quantiles.

    samples = scrape.fetch(server.url)                       # or scrape.parse(text)
    samples.value("slmlab_completion_tokens_total", model="smollm2-135m-instruct")
    scrape.histogram_quantile(0.5, samples.buckets("slmlab_time_to_first_token_seconds"))

Parsing is prometheus_client's own (``text_string_to_metric_families``); ``histogram_quantile`` interpolates
inside the bucket the quantile falls in, as PromQL's ``histogram_quantile()`` does, so the numbers match what a
Grafana panel over the same metric shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slmlab.errors import SlmLabError, did_you_mean


@dataclass(frozen=True)
class Sample:
    """One line of the exposition format: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


class Samples:
    """Every sample of one scrape, looked up by name and (a subset of) labels."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def names(self) -> list[str]:
        """The sample names present, sorted."""
        return sorted({s.name for s in self.samples})

    def select(self, name: str, **labels: str) -> list[Sample]:
        """The samples called `name` whose labels include `labels`."""
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items())]

    def value(self, name: str, *, default: float | None = None, **labels: str) -> float:
        """The sum of the samples called `name` with these labels (e.g. a counter over all its status codes)."""
        found = self.select(name, **labels)
        if not found:
            if default is not None:
                return default
            raise SlmLabError(f"No sample {name}{labels or ''} in this scrape.",
                              f"{did_you_mean(name, self.names(), n=5)}Check the name (counters end in _total, "
                              "histograms in _bucket/_sum/_count).")
        return float(sum(s.value for s in found))

    def buckets(self, histogram: str, **labels: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets as sorted (upper bound, count) pairs, the last one (inf, total)."""
        counts: dict[float, float] = {}
        for s in self.select(f"{histogram}_bucket", **labels):
            bound = float(s.labels["le"])
            counts[bound] = counts.get(bound, 0.0) + s.value  # several label sets: add them up, as sum by (le)
        if not counts:
            raise SlmLabError(f"No histogram {histogram}{labels or ''} in this scrape.",
                              "Pass the histogram's base name, without _bucket (e.g. "
                              "'slmlab_time_to_first_token_seconds').")
        return sorted(counts.items())


def parse(text: str) -> Samples:
    """Samples from Prometheus' text exposition format (what ``GET /metrics`` answers)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return Samples([Sample(s.name, dict(s.labels), float(s.value))
                        for family in text_string_to_metric_families(text) for s in family.samples])
    except ValueError as exc:
        raise SlmLabError(f"This is not Prometheus' text format: {exc}",
                          "Pass the body of a /metrics answer (text/plain; version=0.0.4).") from None


def get_ok(root: str, path: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10,
           transport: Any = None, what: str = "the server", status_hint: str = "") -> Any:
    """``GET root+path`` answered 200 (the httpx response); a server that is down or says no is a clear SlmLabError."""
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=timeout, transport=transport) as client:
            answer = client.get(f"{root}{path}", headers=dict(headers or {}))
    except httpx.HTTPError as exc:
        raise SlmLabError(f"Cannot read {root}{path}: {type(exc).__name__}: {exc}".rstrip(),
                          f"Is {what} running? Check its URL and port.") from None
    if answer.status_code != 200:
        raise SlmLabError(f"{root}{path} answered HTTP {answer.status_code}: {answer.text[:200]}".rstrip(": "),
                          status_hint or "Check the path and whether the server needs an API key.")
    return answer


def fetch(url: Any, path: str = "/metrics", timeout: float = 10, headers: Mapping[str, str] | None = None,
          transport: Any = None) -> Samples:
    """Scrape a server (its root URL, or a ServerProcess) now; `transport` is httpx's (tests pass a mock)."""
    root = str(getattr(url, "url", url)).rstrip("/")
    answer = get_ok(root, path, headers=headers, timeout=timeout, transport=transport,
                    status_hint="A 401 means /metrics needs an API key here; not every server exports metrics.")
    return parse(answer.text)


def histogram_quantile(q: float, buckets: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> float:
    """The `q`-quantile (0..1) of a histogram from its cumulative buckets, computed as PromQL's histogram_quantile.

    `buckets` are (upper bound ``le``, cumulative count) pairs, or a mapping ``{le: count}``; bounds may be the
    ``le`` strings ("0.5", "+Inf"). As in Prometheus: buckets with the same bound are added up, counts made
    monotonic; the rank ``q * total`` is found in the first bucket whose count reaches it and interpolated
    linearly between that bucket's lower bound (0 for the lowest bucket, unless its bound is <= 0: then that
    bound) and its upper bound; a rank in the +Inf bucket gives the highest finite bound. NaN when there are no
    observations or no finite bucket (and for q = 0 when the lowest bucket is empty). Where PromQL answers a
    malformed call with a number (q outside 0..1: -Inf or +Inf; no +Inf bucket: NaN), this raises a SlmLabError.
    """
    if not (isinstance(q, int | float) and 0 <= q <= 1):
        raise SlmLabError(f"Quantile {q!r} is outside 0..1.", "E.g. 0.5 for the median, 0.95 for p95.")
    pairs = _cumulative_buckets(buckets)
    if not pairs or not math.isinf(pairs[-1][0]) or pairs[-1][0] < 0:
        raise SlmLabError("A histogram's buckets must end with the +Inf bucket.",
                          "Pass every `le` bucket, including le='+Inf' (Samples.buckets(name) gives them all).")
    total = pairs[-1][1]
    if len(pairs) < 2 or total <= 0:
        return math.nan
    rank = q * total
    b = next(i for i, (_, count) in enumerate(pairs) if count >= rank or i == len(pairs) - 1)
    if b == len(pairs) - 1:
        return pairs[-2][0]
    if b == 0 and pairs[0][0] <= 0:
        return pairs[0][0]
    start, below = pairs[b - 1] if b > 0 else (0.0, 0.0)
    end, count = pairs[b]
    if count == below:  # q = 0 and the lowest bucket empty: 0/0, NaN in PromQL too
        return math.nan
    return start + (end - start) * (rank - below) / (count - below)


def _cumulative_buckets(buckets: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> list[tuple[float, float]]:
    """Sorted (bound, count) pairs as PromQL prepares them: equal bounds added up, counts never decreasing
    (a count within 1e-12 of the one before taken as equal to it, then the running maximum)."""
    items = buckets.items() if isinstance(buckets, Mapping) else buckets
    merged: dict[float, float] = {}
    try:
        for bound, count in items:
            merged[float(bound)] = merged.get(float(bound), 0.0) + float(count)
    except (TypeError, ValueError) as exc:
        raise SlmLabError(f"These are not histogram buckets: {exc}.",
                          "Pass (le, cumulative count) pairs or a {le: count} mapping.") from None
    pairs, previous, highest = [], None, -math.inf
    for bound, count in sorted(merged.items()):
        if previous is not None and count not in (previous, 0) and abs(count - previous) / count <= 1e-12:
            count = previous  # a float rounding step, not a real decrease or increase
        else:
            previous = count
        highest = max(highest, count)
        pairs.append((bound, highest))
    return pairs


def histogram_mean(samples: Samples, histogram: str, **labels: str) -> float:
    """A histogram's exact mean: its _sum over its _count (NaN when it has no observation)."""
    count = samples.value(f"{histogram}_count", default=None, **labels)
    return samples.value(f"{histogram}_sum", default=None, **labels) / count if count else math.nan


def generation_tok_s(samples: Samples, model: str, route: str = "/v1/chat/completions") -> float:
    """Tokens per second of model time, from the course's service metrics.

    Generated tokens over the time chat requests spent with the model: their total duration
    (``slmlab_http_request_duration_seconds_sum``) minus the time they waited for it
    (``slmlab_queue_wait_seconds_sum``). Prefill counts as model time.
    """
    tokens = samples.value("slmlab_completion_tokens_total", model=model)
    busy = (samples.value("slmlab_http_request_duration_seconds_sum", route=route)
            - samples.value("slmlab_queue_wait_seconds_sum", model=model))
    return tokens / busy if busy > 0 else math.nan
