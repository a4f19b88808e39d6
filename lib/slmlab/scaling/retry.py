"""Streaming chat clients that retry a failed request, and an account of what was lost.

A load balancer can pass a request to another replica only until the response has begun: once tokens are
streaming, a replica that dies cuts the stream off, and only the client can repair that by asking again.
`retrying_requests` runs `num_requests` streaming chat requests with `concurrency` in flight; each one that
fails (connection error, HTTP 5xx, or a stream that ends without ``data: [DONE]``) is sent again, up to
`retries` more times, after `backoff_s` × 2^attempt seconds. `events` run during the test, e.g. a replica
killed after 2 s::

    run = retrying_requests(lb.url, num_requests=16, concurrency=4, retries=2,
                            events=[(2.0, lambda: replicas.kill(1))])
    run.summary()   # sent, succeeded, lost, retried, attempts …

Retrying is safe here because a chat completion changes nothing on the server (it is idempotent in effect);
an API with side effects needs an idempotency key before a client may retry it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import DEFAULT_PROMPTS, endpoint
from slmlab.scaling.nginx_lb import UPSTREAM_HEADER

REQUEST_COLUMNS = ["request", "ok", "attempts", "replicas", "errors", "start_s", "end_s", "e2el_s", "chunks", "text"]


@dataclass
class RetryRun:
    """A finished run: one row per request (`requests`, a DataFrame), the events' times, the settings."""

    requests: Any
    duration_s: float
    events_s: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """sent, succeeded, lost (failed even after retries), retried (needed > 1 attempt), attempts, errors seen."""
        df = self.requests
        errors = [e for errs in df["errors"] for e in errs]
        return {"retries allowed": self.settings.get("retries"), "sent": len(df), "succeeded": int(df["ok"].sum()),
                "lost": int((~df["ok"]).sum()), "retried": int((df["attempts"] > 1).sum()),
                "attempts": int(df["attempts"].sum()), "failed attempts": len(errors),
                "duration_s": round(self.duration_s, 2)}


async def _attempt(client: Any, url: str, body: dict[str, Any], timeout: float) -> tuple[bool, str, str, int, str]:
    """One streaming request: (ok, error, replica that answered, chunks with text, text)."""
    import httpx

    replica, chunks, pieces, done = "", 0, [], False
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body) as response:
                replica = response.headers.get(UPSTREAM_HEADER, "")
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace").strip()
                    return False, f"HTTP {response.status_code}: {detail[:120]}", replica, 0, ""
                async for line in response.aiter_lines():
                    line = line.strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    choices = json.loads(data).get("choices") or []
                    text = ((choices[0].get("delta") or {}).get("content") or "") if choices else ""
                    if text:
                        chunks += 1
                        pieces.append(text)
    except TimeoutError:
        return False, f"timed out after {timeout:g} s", replica, chunks, "".join(pieces)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}".rstrip(": "), replica, chunks, "".join(pieces)
    except ValueError as exc:
        return False, f"bad stream: {exc}", replica, chunks, "".join(pieces)
    if not done:
        return False, "stream ended without [DONE] (cut off)", replica, chunks, "".join(pieces)
    return True, "", replica, chunks, "".join(pieces)


async def aretrying_requests(url: Any, num_requests: int = 16, concurrency: int = 4, max_tokens: int = 32,
                             retries: int = 2, backoff_s: float = 0.2, timeout: float = 120,
                             prompts: Sequence[str] = DEFAULT_PROMPTS,
                             events: Sequence[tuple[float, Callable[[], Any]]] = ()) -> RetryRun:
    """The async form of `retrying_requests`."""
    import httpx

    for name, value in (("num_requests", num_requests), ("concurrency", concurrency), ("max_tokens", max_tokens)):
        if not isinstance(value, int) or value < 1:
            raise SlmLabError(f"{name}={value!r} must be a whole number ≥ 1.", f"E.g. {name}=4.")
    if not isinstance(retries, int) or retries < 0:
        raise SlmLabError(f"retries={retries!r} must be a whole number ≥ 0.", "0 means: never retry.")
    target = endpoint(url, api="chat")
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []
    events_s: list[float] = []
    clock = time.perf_counter()

    async def one(i: int, client: Any) -> None:
        body = {"messages": [{"role": "user", "content": prompts[i % len(prompts)]}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True}
        async with gate:
            start = time.perf_counter() - clock
            attempts, replicas, errors, ok, chunks, text = 0, [], [], False, 0, ""
            while not ok and attempts <= retries:
                if attempts:
                    await asyncio.sleep(backoff_s * 2 ** (attempts - 1))
                attempts += 1
                ok, error, replica, chunks, text = await _attempt(client, target.url, body, timeout)
                replicas.append(replica)
                if error:
                    errors.append(error)
            end = time.perf_counter() - clock
        rows.append({"request": i, "ok": ok, "attempts": attempts, "replicas": replicas, "errors": errors,
                     "start_s": start, "end_s": end, "e2el_s": end - start, "chunks": chunks, "text": text})

    async def fire(at_s: float, action: Callable[[], Any]) -> None:
        await asyncio.sleep(max(0.0, at_s - (time.perf_counter() - clock)))
        events_s.append(time.perf_counter() - clock)
        await asyncio.to_thread(action)

    async with httpx.AsyncClient(trust_env=False, timeout=timeout,
                                 limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        tasks = [asyncio.create_task(fire(at, action)) for at, action in events]
        tasks += [asyncio.create_task(one(i, client)) for i in range(num_requests)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
    import pandas as pd

    frame = pd.DataFrame(sorted(rows, key=lambda r: r["request"]), columns=REQUEST_COLUMNS)
    settings = {"url": target.url, "num_requests": num_requests, "concurrency": concurrency,
                "max_tokens": max_tokens, "retries": retries, "backoff_s": backoff_s}
    return RetryRun(frame, time.perf_counter() - clock, events_s, settings)


def retrying_requests(url: Any, **kwargs: Any) -> RetryRun:
    """Streaming chat requests that retry on failure, with `events` run during the test (module docstring).

    `url` is the server's (or load balancer's) root URL or a ServerProcess-like object with `.url`. Works inside
    Jupyter too (runs its own event loop in a worker thread).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aretrying_requests(url, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, aretrying_requests(url, **kwargs)).result()
