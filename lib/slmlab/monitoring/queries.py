"""The PromQL an LLM service is watched with, for each server's metric names.

Four signals (the "golden signals" for an LLM endpoint): p95 time to first token, generated tokens per second,
queue depth (requests waiting for the model) and error rate. Each server names its metrics differently:

- ``gateway``: the course's FastAPI service (``slmlab_*``, lib/slmlab/serve/metrics.py);
- ``ollama``: the course's Ollama-API server (``slmlab_ollama_*``; a real Ollama exports no metrics);
- ``vllm``: vLLM's own (``vllm:*``; current names: ``vllm:time_to_first_token_seconds``,
  ``vllm:kv_cache_usage_perc``; ``vllm:gpu_cache_usage_perc`` is retired).

``window`` is the range rate() looks back over: at least 4 scrape intervals, longer for smoother lines.
"""

from __future__ import annotations

from slmlab.errors import SlmLabError
from slmlab.monitoring.alerts import error_ratio_expr, share, ttft_p95_expr
from slmlab.serve import scrape

SERVERS = ("gateway", "ollama", "vllm")
SIGNALS = ("p95_ttft_s", "tokens_per_s", "queue_depth", "error_rate")


def llm_queries(server: str = "gateway", window: str = "30s") -> dict[str, str]:
    """PromQL for each signal (p95_ttft_s, tokens_per_s, queue_depth, error_rate, plus extras) on `server`."""
    if server == "gateway":
        return {"p95_ttft_s": ttft_p95_expr("slmlab_time_to_first_token_seconds", window),
                "tokens_per_s": f"sum by (job) (rate(slmlab_completion_tokens_total[{window}]))",
                "queue_depth": "sum by (job) (slmlab_generations_waiting)",
                "error_rate": error_ratio_expr(window, zero_without_errors=True),
                "requests_in_flight": "sum by (job) (slmlab_http_requests_in_flight)"}
    if server == "ollama":
        # No TTFT histogram here: the prefill time (prompt_eval_duration) is the server-side part of it.
        return {"p95_prefill_s": ttft_p95_expr("slmlab_ollama_prompt_eval_duration_seconds", window),
                "tokens_per_s": f"sum by (job) (rate(slmlab_ollama_eval_tokens_total[{window}]))",
                "error_rate": share(
                    f"sum by (job) (rate(slmlab_ollama_errors_total[{window}]))",
                    f'sum by (job) (rate(slmlab_ollama_requests_total{{endpoint!="/metrics"}}[{window}]))'),
                "loaded_models": "sum by (job) (slmlab_ollama_loaded_models)"}
    if server == "vllm":
        failed = 'finished_reason=~"abort|error"'
        return {"p95_ttft_s": ttft_p95_expr("vllm:time_to_first_token_seconds", window),
                "tokens_per_s": f"sum by (job) (rate(vllm:generation_tokens_total[{window}]))",
                "queue_depth": "sum by (job) (vllm:num_requests_waiting)",
                "running": "sum by (job) (vllm:num_requests_running)",
                "kv_cache_usage": "max by (job) (vllm:kv_cache_usage_perc)",
                "error_rate": share(f"sum by (job) (rate(vllm:request_success_total{{{failed}}}[{window}]))",
                                    f"sum by (job) (rate(vllm:request_success_total[{window}]))")}
    raise SlmLabError(f"No queries for server {server!r}.", f"Use one of {', '.join(SERVERS)}.")


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile in Python: `buckets` maps each upper bound `le` to its cumulative count.

    The quantile's rank is located in the first bucket whose count reaches it, and interpolated linearly
    between that bucket's lower and upper bound (the lowest bucket starts at 0); a rank in the +Inf bucket
    gives the highest finite bound. This is why a p95 from a histogram is only as precise as its buckets.
    (The one implementation is slmlab.serve.scrape.histogram_quantile.)
    """
    return scrape.histogram_quantile(q, buckets)


def buckets_of(frame: object) -> dict[float, float]:
    """{le: count} from a query result with an `le` column (e.g. of sum by (le) (increase(x_bucket[1m])))."""
    return {float(le): float(v) for le, v in zip(frame["le"], frame["value"], strict=True)}  # type: ignore[index]
