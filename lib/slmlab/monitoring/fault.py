"""Fault injection for monitoring drills: kill a server the hard way while load runs in the background.

    future = in_background(load_test, gateway.url, rate=2, num_requests=20)
    killed_at = kill_server(ollama)          # SIGKILL to its whole process group, as an OOM kill would
    result = future.result()
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from slmlab.errors import SlmLabError


def kill_server(server: Any, sig: int = signal.SIGKILL, timeout: float = 10) -> float:
    """Send `sig` (default SIGKILL: no clean shutdown) to a running ServerProcess's group; the unix time it died."""
    if not getattr(server, "running", False):
        raise SlmLabError(f"{server!r} is not running.", "Start it first; a fault drill kills a live server.")
    try:
        os.killpg(server.pid, sig)
    except ProcessLookupError:
        pass
    try:
        server.proc.wait(timeout)
    except Exception as exc:  # subprocess.TimeoutExpired: a signal it may ignore (SIGTERM)
        raise SlmLabError(f"{server.name} is still running {timeout:g} s after signal {sig}.",
                          "Use the default SIGKILL, which cannot be ignored.") from exc
    return time.time()


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def in_background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
    """Run fn(*args, **kwargs) in a worker thread (e.g. a load test while a fault is injected); a Future."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="slmlab-fault")
    return _POOL.submit(fn, *args, **kwargs)
