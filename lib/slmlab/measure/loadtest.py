"""Load-test an LLM server: concurrent streaming clients, and the figures ``vllm bench serve`` reports.

Works against any OpenAI-compatible server (``/v1/chat/completions`` or ``/v1/completions``: vLLM, llama.cpp,
Foundry Local …) and Ollama's ``/api/chat``. Clients are async httpx streams, either a fixed number in flight
(``concurrency``, a closed loop) or arriving at a request ``rate`` (a Poisson process, or gamma-distributed
gaps with ``burstiness`` ≠ 1, as vLLM's benchmark does), or both (a rate capped by a concurrency). A run stops
after ``num_requests`` or once ``time_limit`` s have passed (no request starts after it; each request has
its own ``timeout``), so it always ends by itself::

    result = load_test(server.url, concurrency=4, num_requests=16, max_tokens=32)
    result.requests      # one row per request (a pandas DataFrame)
    result.summary()     # throughput, mean/median/p50/p95/p99 of TTFT, TPOT, ITL and end-to-end latency
    print(result.report())

Definitions, the same as ``vllm bench serve`` (vllm/benchmarks/serve.py, calculate_metrics):

- **TTFT**: from sending the request to the first streamed piece of text (for an empty answer, to its first
  answer chunk). vLLM's client stops the clock at the first chunk with a choice even if it is empty; waiting
  for text is the same on vLLM and fairer on servers that send an empty role chunk first.
- **ITL** (inter-token latency): the gaps between consecutive streamed pieces after the first one (one piece
  is one token for vLLM and llama.cpp; a server that bundles tokens shows fewer, longer gaps). Pooled over all
  requests for the percentiles.
- **TPOT** (time per output token, excluding the first): ``(e2e - TTFT) / (output tokens - 1)``, per request
  with more than one output token.
- **E2E latency**: from sending the request to its last streamed chunk.
- **Throughput**: successful requests, output tokens, and input+output tokens per second of the whole run
  (from the first request sent to the last one finished). Failed requests only count as failures.

Token counts come from the server's ``usage`` when it sends one (vLLM does, with ``stream_options``; Ollama sends
``eval_count``); otherwise the output tokens are the streamed pieces counted (column ``tokens_from``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from slmlab.errors import SlmLabError, did_you_mean

APIS = ("chat", "completions", "ollama")
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "ollama": "/api/chat"}
DEFAULT_PERCENTILES = (50, 95, 99)
METRICS = ("ttft", "tpot", "itl", "e2el")  # vLLM's names: e2el is the end-to-end latency
METRIC_NAMES = {"ttft": "Time to First Token", "tpot": "Time per Output Token (excl. 1st token)",
                "itl": "Inter-token Latency", "e2el": "End-to-end Latency"}
# Short, varied prompts: a load test measures the server, not the prompt set.
DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Explain what a barometer measures.",
    "Give three tips for staying focused while studying.",
    "Write a haiku about the sea.",
    "What is 17 times 3?",
    "Describe a sunrise in two sentences.",
    "Name three planets of the solar system.",
    "Why do leaves change colour in autumn?",
)
REQUEST_COLUMNS = ["request", "prompt_index", "start_s", "end_s", "ok", "status", "error", "ttft_s", "e2el_s",
                   "tpot_s", "output_tokens", "prompt_tokens", "tokens_from", "chunks", "itl_s", "queue_s", "text"]


# ---------------------------------------------------------------------------------------------- the target

@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the full URL, which API it speaks, the model name and an optional API key."""

    url: str
    api: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed with the endpoint

    @property
    def root(self) -> str:
        """The server's root URL (scheme://host:port)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


def endpoint(url: Any, api: str | None = None, model: str | None = None, api_key: str | None = None) -> Endpoint:
    """An Endpoint from a server's root URL (or a ServerProcess) plus `api`, or from a full endpoint URL.

    `api` is "chat" (/v1/chat/completions), "completions" (/v1/completions) or "ollama" (/api/chat); a URL that
    already ends with one of those paths sets it (and must agree with `api` when both are given).
    """
    text = str(getattr(url, "url", url) or "").strip().rstrip("/")
    if not text:
        raise SlmLabError("No server URL given.", "Pass e.g. 'http://127.0.0.1:8000' or a ServerProcess.")
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SlmLabError(f"{text!r} is not an http(s) URL.", "Pass e.g. 'http://127.0.0.1:8000'.")
    if api is not None and api not in APIS:
        raise SlmLabError(f"Unknown api {api!r}.", f"Use one of {', '.join(APIS)}.")
    from_path = next((name for name, path in PATHS.items() if parts.path.endswith(path)), None)
    if from_path and api and api != from_path:
        raise SlmLabError(f"The URL {text} is the {from_path!r} endpoint, but api={api!r} was asked for.",
                          "Pass the server's root URL with api=…, or the endpoint's URL alone.")
    chosen = from_path or api or "chat"
    if from_path:
        full = text
    else:
        base = parts.path.removesuffix("/v1").removesuffix("/api")
        full = f"{parts.scheme}://{parts.netloc}{base}{PATHS[chosen]}"
    return Endpoint(full, chosen, model, api_key)


def _headers(target: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


async def _discover_model(client: Any, target: Endpoint) -> str:
    """The first model the server lists (/v1/models, or /api/tags for Ollama)."""
    import httpx

    path = "/api/tags" if target.api == "ollama" else "/v1/models"
    try:
        answer = await client.get(f"{target.root}{path}", headers=_headers(target), timeout=10)
    except httpx.HTTPError as exc:
        raise SlmLabError(f"Cannot reach {target.root}{path}: {type(exc).__name__} {exc}".rstrip(),
                          "Start the server first (e.g. `with slmlab.serve.llama_server() as server:`) and "
                          "check the host and port.") from None
    if answer.status_code == 401:
        raise SlmLabError(f"{target.root}{path} answered 401 Unauthorized.", "Pass the server's api_key=.")
    if answer.status_code != 200:
        raise SlmLabError(f"{target.root}{path} answered HTTP {answer.status_code}.",
                          "Pass model= explicitly, or check that this is an OpenAI-compatible or Ollama server.")
    data = answer.json()
    names = ([m.get("name") for m in data.get("models", [])] if target.api == "ollama"
             else [m.get("id") for m in data.get("data", [])])
    if not names:
        raise SlmLabError(f"{target.root} lists no model.", "Load a model on the server, or pass model=.")
    return names[0]


# ---------------------------------------------------------------------------------------------- one request

@dataclass
class RequestRecord:
    """What one request measured (times in seconds; `start`/`end` on the run's clock)."""

    request: int
    prompt_index: int
    arrival: float = 0.0  # when it was due (rate) or ready to go (concurrency)
    start: float = 0.0  # when it was sent
    end: float = 0.0  # when its last chunk arrived (or it failed)
    ok: bool = False
    status: int | None = None
    error: str = ""
    ttft: float = math.nan
    output_tokens: int = 0
    prompt_tokens: float = math.nan
    tokens_from: str = "chunks"
    chunks: int = 0
    itl: list[float] = field(default_factory=list)
    text: str = ""

    @property
    def e2el(self) -> float:
        """End-to-end latency: sent to last chunk."""
        return self.end - self.start if self.ok else math.nan

    @property
    def tpot(self) -> float:
        """Time per output token after the first (vLLM's TPOT); NaN with fewer than 2 output tokens."""
        if not self.ok or self.output_tokens < 2:
            return math.nan
        return (self.e2el - self.ttft) / (self.output_tokens - 1)


def _payload(target: Endpoint, prompt: Any, max_tokens: int, temperature: float, seed: int | None,
             extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    if target.api == "ollama":
        options: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature}
        if seed is not None:
            options["seed"] = seed
        body: dict[str, Any] = {"model": target.model, "messages": messages, "stream": True, "options": options}
    else:
        body = {"model": target.model, "max_tokens": max_tokens, "temperature": temperature, "stream": True,
                "stream_options": {"include_usage": True}}
        if seed is not None:
            body["seed"] = seed
        if target.api == "chat":
            body["messages"] = messages
        else:
            body["prompt"] = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in messages)
    body.update(extra_body or {})
    return body


def _openai_piece(data: dict[str, Any], chat: bool) -> tuple[str | None, dict[str, Any] | None]:
    """(text of this chunk or None when it has no choice, usage or None) for an OpenAI stream chunk."""
    usage = data.get("usage") or None
    choices = data.get("choices") or []
    if not choices:
        return None, usage
    choice = choices[0]
    text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
    return text or "", usage


async def _one_request(client: Any, target: Endpoint, record: RequestRecord, body: dict[str, Any],
                       clock: float, timeout: float) -> None:
    """Send one streaming request and fill `record` (never raises except on cancellation)."""
    import httpx

    record.start = time.perf_counter() - clock
    last = record.start
    first_choice: float | None = None
    pieces: list[str] = []
    chat = target.api == "chat"
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", target.url, json=body, headers=_headers(target)) as response:
                record.status = response.status_code
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace").strip().replace("\n", " ")
                    record.error = f"HTTP {response.status_code}: {detail[:200]}"
                else:
                    async for line in response.aiter_lines():
                        line = line.strip()
                        if not line or line.startswith(":"):
                            continue
                        if target.api == "ollama":
                            data = json.loads(line)
                            if data.get("error"):
                                record.error = f"server error: {data['error']}"
                                break
                            text = (data.get("message") or {}).get("content") or ""
                            usage = ({"completion_tokens": data.get("eval_count"),
                                      "prompt_tokens": data.get("prompt_eval_count")} if data.get("done") else None)
                            has_choice = True
                        else:
                            if not line.startswith("data:"):
                                continue
                            chunk = line[5:].strip()
                            if chunk == "[DONE]":
                                break
                            data = json.loads(chunk)
                            if data.get("error"):
                                record.error = f"server error: {data['error']}"
                                break
                            text, usage = _openai_piece(data, chat)
                            has_choice = text is not None
                        now = time.perf_counter() - clock
                        if text:
                            if record.chunks == 0:
                                record.ttft = now - record.start
                            else:
                                record.itl.append(now - last)
                            record.chunks += 1
                            pieces.append(text)
                        if has_choice:  # the trailing usage-only chunk carries no token: it does not end the request
                            last = now
                            first_choice = now if first_choice is None else first_choice
                        if usage and usage.get("completion_tokens") is not None:
                            record.output_tokens = int(usage["completion_tokens"])
                            record.tokens_from = "usage"
                            if usage.get("prompt_tokens") is not None:
                                record.prompt_tokens = float(usage["prompt_tokens"])
                    if not record.error and record.chunks == 0:
                        if first_choice is None:
                            record.error = "the stream ended without any answer chunk (no TTFT)"
                        else:  # an empty answer (e.g. end-of-text at once): its first chunk is the TTFT
                            record.ttft = first_choice - record.start
    except TimeoutError:
        record.error = f"timed out after {timeout:g} s"
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    except (ValueError, KeyError, TypeError) as exc:
        record.error = f"bad stream: {type(exc).__name__}: {exc}"
    record.end = last if not record.error else time.perf_counter() - clock
    record.text = "".join(pieces)
    record.ok = not record.error
    if record.ok and record.tokens_from == "chunks":
        record.output_tokens = record.chunks


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class LoadTestResult:
    """A finished load test: per-request rows, the run's duration and settings."""

    requests: Any  # pandas.DataFrame, one row per request (REQUEST_COLUMNS)
    duration_s: float
    settings: dict[str, Any]

    def summary(self, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, float]:
        """The figures `vllm bench serve` prints (throughputs, mean/median/std/percentiles in ms)."""
        return summarize(self.requests, self.duration_s, percentiles)

    def report(self, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> str:
        """A text report laid out like `vllm bench serve`'s."""
        return format_report(self.summary(percentiles), percentiles, self.settings)

    def errors(self) -> Any:
        """The failed requests' rows."""
        return self.requests[~self.requests["ok"]]

    def plot(self, **kwargs: Any) -> Any:
        """A matplotlib figure of this run (see plot_requests)."""
        return plot_requests(self, **kwargs)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<LoadTestResult {self.settings.get('api')}: {s['successful_requests']:.0f} ok, "
                f"{s['failed_requests']:.0f} failed in {self.duration_s:.1f} s, "
                f"{s['output_throughput']:.1f} output tok/s, p95 TTFT {s['p95_ttft_ms']:.0f} ms>")


def _arrival_gaps(n: int, rate: float | None, burstiness: float, rng: random.Random) -> list[float]:
    """Gaps between request arrivals: 0 without a rate; gamma(burstiness, 1/(rate*burstiness)) otherwise.

    burstiness 1 is a Poisson process (exponential gaps), as in vLLM's benchmark; inf gives constant gaps.
    """
    if rate is None or math.isinf(rate):
        return [0.0] * n
    if math.isinf(burstiness):
        return [1.0 / rate] * n
    theta = 1.0 / (rate * burstiness)
    return [rng.gammavariate(burstiness, theta) for _ in range(n)]


def _check_settings(concurrency: int | None, rate: float | None, burstiness: float, num_requests: int,
                    time_limit: float, timeout: float, max_tokens: int, warmups: int = 0) -> None:
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise SlmLabError(f"concurrency={concurrency!r} must be a whole number ≥ 1.",
                          "E.g. concurrency=4 keeps 4 requests in flight (None: unbounded, with a rate).")
    if rate is not None and not (isinstance(rate, int | float) and rate > 0):
        raise SlmLabError(f"rate={rate!r} must be a number of requests per second > 0.",
                          "E.g. rate=2.0, or rate=None to send as fast as `concurrency` allows.")
    if concurrency is None and rate is None:
        raise SlmLabError("Neither concurrency nor rate was given: the run would open every request at once.",
                          "Pass concurrency=N (closed loop), rate=R (requests per second), or both.")
    if not burstiness > 0:
        raise SlmLabError(f"burstiness={burstiness!r} must be > 0.", "1.0 is a Poisson process.")
    if not isinstance(num_requests, int) or num_requests < 1:
        raise SlmLabError(f"num_requests={num_requests!r} must be a whole number ≥ 1.", "E.g. num_requests=16.")
    if not (time_limit > 0 and timeout > 0):
        raise SlmLabError(f"time_limit={time_limit!r} and timeout={timeout!r} must be > 0 seconds.",
                          "E.g. time_limit=60, timeout=60.")
    if not isinstance(warmups, int) or warmups < 0:
        raise SlmLabError(f"warmups={warmups!r} must be a whole number ≥ 0.", "E.g. warmups=1.")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise SlmLabError(f"max_tokens={max_tokens!r} must be a whole number ≥ 1.", "E.g. max_tokens=64.")


async def aload_test(url: Any, prompts: Sequence[Any] = DEFAULT_PROMPTS, *, api: str | None = None,
                     model: str | None = None, api_key: str | None = None, concurrency: int | None = 1,
                     rate: float | None = None, burstiness: float = 1.0, num_requests: int = 16,
                     time_limit: float = 120, max_tokens: int = 64, temperature: float = 0.0,
                     timeout: float = 60, seed: int | None = 0, extra_body: Mapping[str, Any] | None = None,
                     warmups: int = 0, show_progress: bool = True, transport: Any = None) -> LoadTestResult:
    """The async form of load_test (await it inside a running event loop)."""
    import httpx

    _check_settings(concurrency, rate, burstiness, num_requests, time_limit, timeout, max_tokens, warmups)
    prompts = list(prompts)
    if not prompts:
        raise SlmLabError("No prompts given.", "Pass a list of strings (or of chat message lists).")
    target = endpoint(url, api, model, api_key)
    limits = httpx.Limits(max_connections=max(concurrency or 0, 1) if rate is None else None,
                          max_keepalive_connections=None)
    client_timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
    async with httpx.AsyncClient(timeout=client_timeout, limits=limits, trust_env=False,
                                 transport=transport) as client:
        if target.model is None:
            target = Endpoint(target.url, target.api, await _discover_model(client, target), target.api_key)
        for _ in range(warmups):  # one at a time, not recorded: a cold server's first answer is slow
            await _one_request(client, target, RequestRecord(-1, 0), _payload(target, prompts[0], max_tokens,
                                                                                temperature, seed, extra_body),
                               time.perf_counter(), timeout)
        rng = random.Random(seed)
        gaps = _arrival_gaps(num_requests, rate, burstiness, rng)
        gate = asyncio.Semaphore(concurrency) if concurrency else None
        records: list[RequestRecord] = []
        bar = _progress(num_requests, target, show_progress)
        clock = time.perf_counter()
        deadline = clock + time_limit

        async def run_one(record: RequestRecord, body: dict[str, Any]) -> None:
            if gate is None:
                await _one_request(client, target, record, body, clock, timeout)
            else:
                async with gate:
                    if time.perf_counter() >= deadline:  # waited past the time limit: never sent
                        record.error = "not sent: time limit reached"
                        return
                    await _one_request(client, target, record, body, clock, timeout)
            if bar is not None:
                bar.update(1)

        tasks: list[asyncio.Task] = []
        try:
            next_arrival = clock
            for i in range(num_requests):
                next_arrival += gaps[i]
                delay = next_arrival - time.perf_counter()
                if next_arrival >= deadline:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
                record = RequestRecord(i, i % len(prompts), arrival=time.perf_counter() - clock)
                body = _payload(target, prompts[i % len(prompts)], max_tokens, temperature,
                                None if seed is None else seed + i, extra_body)
                records.append(record)
                tasks.append(asyncio.create_task(run_one(record, body)))
                if gate is not None and rate is None:
                    await asyncio.sleep(0)  # let it take its slot before the next one queues
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if bar is not None:
                bar.close()
        duration = time.perf_counter() - clock
    sent = [r for r in records if r.error != "not sent: time limit reached"]
    settings = {"url": target.url, "api": target.api, "model": target.model, "concurrency": concurrency,
                "rate": rate, "burstiness": burstiness, "num_requests": num_requests, "sent": len(sent),
                "time_limit": time_limit, "max_tokens": max_tokens, "temperature": temperature, "warmups": warmups}
    return LoadTestResult(records_frame(sent), duration, settings)


def load_test(url: Any, prompts: Sequence[Any] = DEFAULT_PROMPTS, **kwargs: Any) -> LoadTestResult:
    """Load-test a server and return per-request rows and a summary (see the module's docstring).

    `url` is a server's root URL or a ServerProcess (with `api` = "chat", "completions" or "ollama"), or a full
    endpoint URL. `concurrency` requests stay in flight (closed loop); with `rate`, requests arrive as a Poisson
    process (gamma gaps for `burstiness` ≠ 1) and `concurrency` caps them (None: no cap). The run ends after
    `num_requests`, or when `time_limit` s have passed (no request starts after it). `model` defaults to the
    first one the server lists; `extra_body` is merged into every request body; `warmups` requests are sent one
    at a time first and not recorded (vllm bench's --num-warmups). Works inside Jupyter too.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aload_test(url, prompts, **kwargs))
    # A notebook already runs an event loop in this thread: run ours in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, aload_test(url, prompts, **kwargs)).result()


def _progress(total: int, target: Endpoint, show: bool) -> Any:
    if not show:
        return None
    from slmlab.progress import progress

    return progress(total=total, desc=f"load test {target.api}", unit="req")


def records_frame(records: Sequence[RequestRecord]) -> Any:
    """One DataFrame row per request (times in seconds; `itl_s` holds each request's list of gaps)."""
    import pandas as pd

    rows = [{"request": r.request, "prompt_index": r.prompt_index, "start_s": r.start, "end_s": r.end, "ok": r.ok,
             "status": r.status, "error": r.error, "ttft_s": r.ttft, "e2el_s": r.e2el, "tpot_s": r.tpot,
             "output_tokens": r.output_tokens if r.ok else 0, "prompt_tokens": r.prompt_tokens,
             "tokens_from": r.tokens_from, "chunks": r.chunks, "itl_s": list(r.itl),
             "queue_s": max(0.0, r.start - r.arrival), "text": r.text} for r in records]
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)


# ---------------------------------------------------------------------------------------------- statistics

def summarize(requests: Any, duration_s: float, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, float]:
    """vLLM's serving-benchmark figures from per-request rows (as `records_frame` makes) and the run's duration.

    Keys: successful_requests, failed_requests, duration_s, total_input_tokens, total_output_tokens,
    request_throughput (req/s), output_throughput and total_token_throughput (tok/s), peak_output_throughput
    (the busiest whole second), max_concurrent_requests, error_rate, and for each of ttft, tpot, itl, e2el:
    mean_, median_, std_ and p<N>_ ..._ms. Latencies with no sample (e.g. no success) are NaN.
    """
    import numpy as np

    if not duration_s > 0:
        raise SlmLabError(f"duration_s={duration_s!r} must be > 0.", "Pass the run's wall time in seconds.")
    for p in percentiles:
        if not 0 <= p <= 100:
            raise SlmLabError(f"Percentile {p!r} is outside 0..100.", "E.g. percentiles=(50, 95, 99).")
    ok = requests[requests["ok"].astype(bool)] if len(requests) else requests
    completed, failed = len(ok), len(requests) - len(ok)
    total_out = int(ok["output_tokens"].sum()) if completed else 0
    total_in = float(ok["prompt_tokens"].sum(min_count=1)) if completed else math.nan
    samples = {
        "ttft": ok["ttft_s"].to_numpy(float) if completed else np.array([]),
        "tpot": ok["tpot_s"].dropna().to_numpy(float) if completed else np.array([]),
        "itl": np.array([gap for gaps in ok["itl_s"] for gap in gaps], dtype=float) if completed else np.array([]),
        "e2el": ok["e2el_s"].to_numpy(float) if completed else np.array([]),
    }
    out: dict[str, float] = {
        "successful_requests": completed, "failed_requests": failed, "duration_s": duration_s,
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": completed / duration_s, "output_throughput": total_out / duration_s,
        "total_token_throughput": ((0 if math.isnan(total_in) else total_in) + total_out) / duration_s,
        "peak_output_throughput": _peak_tokens_per_second(ok) if completed else 0.0,
        "max_concurrent_requests": _max_overlap(ok) if completed else 0,
        "error_rate": failed / len(requests) if len(requests) else 0.0,
    }
    for name, values in samples.items():
        ms = values * 1000
        has = ms.size > 0
        out[f"mean_{name}_ms"] = float(np.mean(ms)) if has else math.nan
        out[f"median_{name}_ms"] = float(np.median(ms)) if has else math.nan
        out[f"std_{name}_ms"] = float(np.std(ms)) if has else math.nan
        for p in percentiles:
            out[f"p{p:g}_{name}_ms"] = float(np.percentile(ms, p)) if has else math.nan
    return out


def _max_overlap(ok: Any) -> int:
    """The most requests in flight at the same instant (a sweep over start/end events)."""
    events = sorted([(s, 1) for s in ok["start_s"]] + [(e, -1) for e in ok["end_s"]], key=lambda ev: (ev[0], ev[1]))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def _peak_tokens_per_second(ok: Any) -> float:
    """Output tokens in the busiest whole second (token times: start + TTFT, then each ITL), as vLLM counts."""
    import numpy as np

    begin = float(ok["start_s"].min())
    times = []
    for start, ttft, gaps in zip(ok["start_s"], ok["ttft_s"], ok["itl_s"], strict=True):
        stamp = start + ttft
        times.append(stamp)
        for gap in gaps:
            stamp += gap
            times.append(stamp)
    buckets = np.bincount(np.floor(np.asarray(times) - begin).astype(int).clip(min=0))
    return float(buckets.max()) if buckets.size else 0.0


def format_report(summary: Mapping[str, float], percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                  settings: Mapping[str, Any] | None = None) -> str:
    """`vllm bench serve`'s result block for a summary."""
    def row(label: str, value: float, digits: int = 2) -> str:
        shown = "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"
        return f"{label:<40} {shown:<10}"

    lines = ["{s:{c}^50}".format(s=" Serving Benchmark Result ", c="=")]
    if settings:
        lines.append(f"{'Endpoint:':<40} {settings.get('api')} {settings.get('model')}")
        lines.append(f"{'Concurrency / request rate:':<40} {settings.get('concurrency')} / "
                     f"{settings.get('rate') or 'inf'}")
    lines += [row("Successful requests:", summary["successful_requests"], 0),
              row("Failed requests:", summary["failed_requests"], 0),
              row("Benchmark duration (s):", summary["duration_s"]),
              row("Total input tokens:", summary["total_input_tokens"], 0),
              row("Total generated tokens:", summary["total_output_tokens"], 0),
              row("Request throughput (req/s):", summary["request_throughput"]),
              row("Output token throughput (tok/s):", summary["output_throughput"]),
              row("Peak output token throughput (tok/s):", summary["peak_output_throughput"]),
              row("Peak concurrent requests:", summary["max_concurrent_requests"], 0),
              row("Total token throughput (tok/s):", summary["total_token_throughput"])]
    for name in METRICS:
        lines.append("{s:{c}^50}".format(s=METRIC_NAMES[name], c="-"))
        lines.append(row(f"Mean {name.upper()} (ms):", summary[f"mean_{name}_ms"]))
        lines.append(row(f"Median {name.upper()} (ms):", summary[f"median_{name}_ms"]))
        for p in percentiles:
            if p != 50 and f"p{p:g}_{name}_ms" in summary:  # p50 is the median
                lines.append(row(f"P{p:g} {name.upper()} (ms):", summary[f"p{p:g}_{name}_ms"]))
    lines.append("=" * 50)
    return "\n".join(lines)


def summary_table(results: Mapping[Any, LoadTestResult], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Any:
    """One row per labelled run (e.g. {("vllm", 4): result, …}): its settings and summary, for comparing runs."""
    import pandas as pd

    rows = []
    for label, result in results.items():
        rows.append({"label": label, "concurrency": result.settings.get("concurrency"),
                     "rate": result.settings.get("rate"), **result.summary(percentiles)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- plots

def plot_requests(result: LoadTestResult, title: str | None = None) -> Any:
    """Three panels: each request on a timeline (queued, waiting for the first token, streaming), the TTFT and
    end-to-end latency distributions, and output tokens per second over the run."""
    import matplotlib.pyplot as plt
    import numpy as np

    df = result.requests
    ok = df[df["ok"]]
    fig, (ax_time, ax_dist, ax_tps) = plt.subplots(1, 3, figsize=(15, 4))
    for row_no, row in enumerate(df.itertuples()):
        if row.queue_s > 0:
            ax_time.barh(row_no, row.queue_s, left=row.start_s - row.queue_s, color="lightgrey")
        if row.ok:
            ax_time.barh(row_no, row.ttft_s, left=row.start_s, color="tab:orange")
            ax_time.barh(row_no, row.e2el_s - row.ttft_s, left=row.start_s + row.ttft_s, color="tab:blue")
        else:
            ax_time.barh(row_no, max(row.end_s - row.start_s, 0.01), left=row.start_s, color="tab:red")
    ax_time.set(xlabel="seconds since start", ylabel="request", title="requests (grey: queued, orange: TTFT, "
                "blue: streaming, red: failed)")
    ax_time.title.set_fontsize(9)
    if len(ok):
        bins = np.linspace(0, float(ok["e2el_s"].max()) * 1000 * 1.05, 30)
        ax_dist.hist(ok["ttft_s"] * 1000, bins=bins, alpha=0.7, label="TTFT")
        ax_dist.hist(ok["e2el_s"] * 1000, bins=bins, alpha=0.7, label="end-to-end")
        for p, style in zip(DEFAULT_PERCENTILES, (":", "--", "-"), strict=True):
            ax_dist.axvline(np.percentile(ok["e2el_s"] * 1000, p), color="k", linestyle=style, label=f"p{p} e2e")
        ax_dist.legend(fontsize=8)
        begin = float(ok["start_s"].min())
        stamps = []
        for start, ttft, gaps in zip(ok["start_s"], ok["ttft_s"], ok["itl_s"], strict=True):
            stamps.extend(start + ttft + np.concatenate([[0.0], np.cumsum(gaps)]))
        counts = np.bincount(np.floor(np.asarray(stamps) - begin).astype(int).clip(min=0))
        ax_tps.step(np.arange(len(counts)), counts, where="post")
    ax_dist.set(xlabel="milliseconds", ylabel="requests", title="latency distribution")
    ax_tps.set(xlabel="second of the run", ylabel="output tokens", title="output tokens per second")
    s = result.settings
    fig.suptitle(title or f"{s.get('model')} via {s.get('api')}: concurrency {s.get('concurrency')}, "
                 f"rate {s.get('rate') or 'inf'}")
    fig.tight_layout()
    return fig


def plot_summary(table: Any, x: str = "concurrency", group: str | None = "engine",
                 metrics: Sequence[str] = ("output_throughput", "p95_ttft_ms", "p95_e2el_ms")) -> Any:
    """Lines of summary metrics against `x` (e.g. concurrency), one line per `group` value, one panel per metric.

    `table` is summary_table()'s DataFrame (add the `group` column yourself, e.g. table["engine"] = …).
    """
    import matplotlib.pyplot as plt

    missing = [c for c in (x, *metrics, *([group] if group else [])) if c not in table.columns]
    if missing:
        raise SlmLabError(f"The table has no column(s) {', '.join(missing)}.",
                          f"Columns available: {', '.join(map(str, table.columns))}.")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    groups = table.groupby(group) if group else [("", table)]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for name, part in groups:
            part = part.sort_values(x)
            ax.plot(part[x], part[metric], marker="o", label=str(name) or None)
        ax.set(xlabel=x, title=metric.replace("_", " "))
        if group:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- server metrics

def parse_metrics(text: str, names: Sequence[str] | None = None) -> dict[str, float]:
    """Prometheus text format → {sample name: value summed over its label sets} (e.g. vLLM's per-engine gauges).

    Histograms give their `_sum`, `_count` and `_bucket` samples under those names. With `names`, only those.
    """
    from slmlab.serve.scrape import parse

    return _summed_by_name(parse(text), names)


def _summed_by_name(samples: Iterable[Any], names: Sequence[str] | None = None) -> dict[str, float]:
    values: dict[str, float] = {}
    for sample in samples:
        if names is None or sample.name in names:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def scrape_metrics(url: Any, names: Sequence[str] | None = None, api_key: str | None = None,
                   timeout: float = 5.0, transport: Any = None) -> dict[str, float]:
    """One scrape of a server's /metrics (`url`: its root URL or a ServerProcess) → parse_metrics' dict.

    Every name asked for must be exported: a missing one raises a SlmLabError naming the closest exported names
    (vLLM renames metrics between versions, e.g. vllm:gpu_cache_usage_perc became vllm:kv_cache_usage_perc).
    """
    from slmlab.serve.scrape import fetch

    root = endpoint(url).root
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    values = _summed_by_name(fetch(root, timeout=timeout, headers=headers, transport=transport))
    if names is None:
        return values
    missing = [name for name in names if name not in values]
    if missing:
        near = "".join(dict.fromkeys(did_you_mean(name, values, cutoff=0.6) for name in missing))
        raise SlmLabError(f"{root}/metrics exports no {', '.join(missing)}.",
                          f"{near}List what it exports with scrape_metrics(url).keys().")
    return {name: values[name] for name in names}


class MetricsWatch:
    """Scrape a server's /metrics every `interval` s in a background thread while a `with` block runs.

    The first scrape happens on entering (a wrong URL or metric name fails at once), the last on leaving.
    `frame()` gives one row per scrape: `t_s` (seconds since entering) and one column per metric.
    """

    def __init__(self, url: Any, names: Sequence[str], interval: float = 0.25, api_key: str | None = None,
                 transport: Any = None) -> None:
        if not names:
            raise SlmLabError("No metric names given to watch.", 'E.g. ["vllm:num_requests_running"].')
        if not interval > 0:
            raise SlmLabError(f"interval={interval!r} must be > 0 seconds.", "E.g. interval=0.25.")
        self.url, self.names, self.interval = url, list(names), interval
        self.api_key, self.transport = api_key, transport
        self.samples: list[dict[str, float]] = []
        self.errors: list[str] = []
        self._begin = 0.0
        self._stop: Any = None
        self._thread: Any = None

    def _scrape(self) -> None:
        values = scrape_metrics(self.url, self.names, self.api_key, transport=self.transport)
        self.samples.append({"t_s": time.perf_counter() - self._begin, **values})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._scrape()
            except SlmLabError as exc:  # a busy server may miss a scrape: note it, keep watching
                self.errors.append(exc.problem)

    def __enter__(self) -> MetricsWatch:
        import threading

        self._begin = time.perf_counter()
        self.samples, self.errors = [], []
        self._scrape()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._scrape()
        except SlmLabError as err:
            self.errors.append(err.problem)

    def frame(self) -> Any:
        """One row per scrape: t_s and the watched metrics."""
        import pandas as pd

        return pd.DataFrame(self.samples, columns=["t_s", *self.names])

    def plot(self, title: str = "server metrics during the run") -> Any:
        """One panel per watched metric against time."""
        import matplotlib.pyplot as plt

        df = self.frame()
        fig, axes = plt.subplots(1, len(self.names), figsize=(5 * len(self.names), 3.2), squeeze=False)
        for ax, name in zip(axes[0], self.names, strict=True):
            ax.step(df["t_s"], df[name], where="post")
            ax.set(xlabel="seconds", title=name)
        fig.suptitle(title)
        fig.tight_layout()
        return fig


def watch_metrics(url: Any, names: Sequence[str], interval: float = 0.25, api_key: str | None = None) -> MetricsWatch:
    """A MetricsWatch: `with watch_metrics(server, ["vllm:num_requests_running"]) as watch: load_test(…)`."""
    return MetricsWatch(url, names, interval=interval, api_key=api_key)
