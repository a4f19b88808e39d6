"""One model instance behind an async web app: loaded in a thread, `parallel` generations at a time, never blocking
the loop.

``ModelSlot`` owns the backend (or borrows one that was passed in). A generation runs in one of the slot's worker
threads and hands its text pieces to the event loop through an ``asyncio.Queue``; requests wait for a free place
on an ``asyncio.Semaphore``. An in-process model runs one generation at a time (``parallel=1``); a client of a
server with slots (llama-server ``--parallel``, vLLM; ``backend.concurrent``) may run as many as the server has,
and the server batches them. A place is freed when its worker thread has really stopped using the model — also when
the client left mid-stream (``Run.cancel()``: the worker stops after the piece it is generating).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slmlab.backends.base import Backend, Generation, Messages
from slmlab.errors import SlmLabError
from slmlab.monitoring.structured_log import annotate

log = logging.getLogger("slmlab.serve")


class SlotBusy(Exception):
    """Too many requests are already waiting for the model."""


class StartFailed(Exception):
    """The backend refused the request before generating (`error`); `model_alive` says whether it still answers."""

    def __init__(self, error: BaseException, model_alive: bool) -> None:
        super().__init__(str(error))
        self.error, self.model_alive = error, model_alive


@dataclass
class RunResult:
    """How a generation ended: finish_reason is stop | length | cancelled | error."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    generation: Generation | None = None


class Run:
    """A started generation: iterate it for text pieces (async); `cancel()` stops it; `result` is set at the end."""

    def __init__(self, queue: asyncio.Queue, cancel: threading.Event, started: float) -> None:
        self._queue, self._cancel, self.started = queue, cancel, started
        self.result: RunResult | None = None
        self.first_piece_at: float | None = None  # perf_counter() of the first piece
        self.queue_wait_s = 0.0  # how long the request waited for the model

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            kind, value = await self._queue.get()
            if kind == "piece":
                if self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                yield value
            elif kind == "end":
                self.result = value
                return
            else:  # "error" mid-stream
                self.result = RunResult("error", 0, 0)
                raise value

    def cancel(self) -> None:
        """Ask the worker to stop after the current piece (idempotent; harmless once it has ended)."""
        self._cancel.set()


class ModelSlot:
    """A backend (or a factory that loads one) used by `parallel` generations at a time.

    `source` is a Backend (borrowed: the caller closes it) or a callable returning one (owned: loaded by
    ``load()`` in a worker thread, closed by ``close()``). `max_waiting` requests may queue for the model;
    more get SlotBusy. `parallel` above 1 applies to backends that can run streams at once (``concurrent``, the
    HTTP clients); an in-process model runs one generation at a time whatever it says.
    """

    def __init__(self, source: Backend | Callable[[], Backend], max_waiting: int = 32, parallel: int = 1) -> None:
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise SlmLabError(f"parallel={parallel!r} is not a number of generations at a time.",
                              "Use 1 for an in-process model, or the slots of the server behind the backend.")
        if isinstance(source, Backend):
            self.backend: Backend | None = source
            self._factory, self.owned, self.state = None, False, "ready"
        elif callable(source):
            self.backend, self._factory, self.owned, self.state = None, source, True, "loading"
        else:
            raise SlmLabError(f"Cannot serve {source!r}: it is neither a backend nor a function that opens one.",
                              "Pass open_backend('llamacpp') or a factory like "
                              "lambda: open_backend('llamacpp', 'smollm2-135m-instruct').")
        self.error: str | None = None  # why loading failed
        self.reload_after_s = 5.0  # a failed load is tried again by probe() after this long (the upstream may come up)
        self._loaded_at = 0.0  # monotonic time of the latest load attempt
        self.max_waiting, self.waiting = max_waiting, 0
        self.requested_parallel = parallel
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="slmlab-model")
        self._places: asyncio.Semaphore | None = None
        self._busy = 0  # places taken: generations running (and a health check)

    # ------------------------------------------------------------------ lifecycle

    @property
    def parallel(self) -> int:
        """Generations at a time: the requested number for a concurrent backend, else 1."""
        concurrent = self.backend is not None and getattr(self.backend, "concurrent", False)
        return self.requested_parallel if concurrent else 1

    @property
    def places(self) -> asyncio.Semaphore:
        """Where requests wait for the model (made once the backend is known, with `parallel` places)."""
        if self._places is None:
            self._places = asyncio.Semaphore(self.parallel)
        return self._places

    async def _take(self) -> None:
        await self.places.acquire()
        self._busy += 1

    def _give_back(self) -> None:
        self._busy -= 1
        self.places.release()

    @property
    def model_name(self) -> str:
        """The backend's model name ('' until loaded)."""
        return getattr(self.backend, "model_name", "") or ""

    async def load(self) -> None:
        """Open the backend from the factory in the worker thread; a failure is kept in `error`, not raised."""
        if self._factory is None or self.backend is not None:
            return
        loop = asyncio.get_running_loop()
        self.state, self._loaded_at = "loading", time.monotonic()
        try:
            self.backend = await loop.run_in_executor(self._executor, self._factory)
            self.state = "ready"
            log.info("model %s loaded in %.2f s", self.model_name, getattr(self.backend, "load_s", 0.0))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            self.state, self.error = "failed", _message(exc)
            # The log gets the hint too: it is where a learner looks when app_server() times out.
            log.error("loading the model failed: %s", exc if isinstance(exc, SlmLabError) else self.error)

    async def close(self) -> None:
        """Close an owned backend (after the running generation) and stop the worker thread."""
        backend, self.backend, self.state = self.backend, None, "closed"
        if backend is not None and self.owned:
            await asyncio.get_running_loop().run_in_executor(self._executor, backend.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def probe(self, timeout: float = 5.0) -> tuple[bool, str]:
        """(ready, why): loaded, and the backend still answers a cheap call (busy counts as ready).

        A factory that failed is tried again (at most every `reload_after_s`): a gateway whose upstream server
        was not up yet becomes ready once it is, without a restart.
        """
        if (self.state == "failed" and self._factory is not None and self.backend is None
                and time.monotonic() - self._loaded_at >= self.reload_after_s):
            await self.load()
        if self.state != "ready" or self.backend is None:
            return False, self.error or self.state
        if self._busy:
            return True, "busy"
        loop = asyncio.get_running_loop()
        try:
            await self._take()
            try:
                await asyncio.wait_for(loop.run_in_executor(self._executor, _ping, self.backend), timeout)
            finally:
                self._give_back()
            return True, "ok"
        except TimeoutError:
            return False, f"the model did not answer a health check within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return False, _message(exc)

    # ------------------------------------------------------------------ generating

    @property
    def running(self) -> int:
        """Generations running now (a health check counts while it runs): at most `parallel`."""
        return self._busy

    async def start(self, payload: str | Messages, gen: dict[str, Any],
                    on_done: Callable[[RunResult], None] | None = None) -> Run:
        """Wait for the model, then start generating; raises StartFailed if the backend refuses the request.

        `on_done` gets the RunResult once the worker has finished (also when the client left), on the loop.
        """
        if self.state != "ready" or self.backend is None:
            raise StartFailed(SlmLabError(f"The model is not ready ({self.error or self.state}).",
                                          "Wait for /readyz to answer 200."), model_alive=False)
        if self.waiting >= self.max_waiting:
            raise SlotBusy()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        loop, cancel = asyncio.get_running_loop(), threading.Event()
        arrived = time.perf_counter()
        self.waiting += 1
        try:
            await self._take()
        finally:
            self.waiting -= 1
        run = Run(queue, cancel, arrived)
        run.queue_wait_s = time.perf_counter() - arrived

        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
                pass

        try:
            context = contextvars.copy_context()  # the request's id and log fields, in the worker thread too
            future = loop.run_in_executor(self._executor, context.run, _work, self.backend, payload, gen, cancel, put)
        except BaseException:
            self._give_back()
            raise

        def done(finished: asyncio.Future) -> None:
            # The place is free once the worker has really finished with the model, whoever stops waiting for it.
            self._give_back()
            result = None if finished.cancelled() or finished.exception() else finished.result()
            if on_done is not None and isinstance(result, RunResult):
                try:
                    on_done(result)
                except Exception:  # noqa: BLE001 - bookkeeping must never keep the slot
                    log.exception("on_done failed")

        future.add_done_callback(done)
        try:
            kind, value = await queue.get()
        except BaseException:  # the client left while the request was starting
            cancel.set()
            raise
        if kind == "start_error":
            await asyncio.shield(future)  # the worker returns at once; then the slot is free for the probe
            await asyncio.sleep(0)  # let the done callback give the place back
            raise StartFailed(value, model_alive=(await self.probe())[0])
        return run


def _work(backend: Backend, payload: str | Messages, gen: dict[str, Any], cancel: threading.Event,
          put: Callable[[tuple[str, Any]], None]) -> RunResult | None:
    """The worker thread: start the backend's stream, hand over its pieces, stop early when cancelled."""
    before = getattr(backend, "last", None)
    try:
        if cancel.is_set():
            raise SlmLabError("The request was cancelled before it started.")
        pieces = backend.stream(payload, **gen)
    except BaseException as exc:  # noqa: BLE001 - handed to the event loop
        put(("start_error", exc))
        return None
    put(("started", None))
    count, finished = 0, False
    try:
        for piece in pieces:
            count += 1
            put(("piece", piece))
            if cancel.is_set():
                break
        else:
            finished = True
    except BaseException as exc:  # noqa: BLE001
        log.error("generation failed after %d pieces: %s", count, _message(exc))
        put(("error", exc))
        annotate(outcome="error", completion_tokens=count)
        return RunResult("error", 0, count)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    # This stream's own record where the backend keeps one per stream (several may run at once), else its latest.
    last = getattr(pieces, "generation", None) or getattr(backend, "last", None)
    if finished and isinstance(last, Generation) and last is not before:
        result = RunResult(last.finish_reason, last.prompt_tokens, last.completion_tokens, last)
    else:  # cancelled (or a backend that keeps no `last`): pieces are a close count of tokens
        result = RunResult("cancelled" if not finished else "stop", 0, count)
    # Into the request's log line (the worker runs in the request's context): before "end" wakes the handler.
    annotate(prompt_tokens=result.prompt_tokens or None, completion_tokens=result.completion_tokens,
             outcome=result.finish_reason)
    put(("end", result))
    return result


def _ping(backend: Backend) -> None:
    """A cheap call that fails when the backend is closed or its server is gone."""
    models = getattr(backend, "models", None)
    if callable(models):
        models()
    else:
        backend.tokenize("ok")


def _message(exc: BaseException) -> str:
    if isinstance(exc, SlmLabError):
        return exc.problem
    return f"{type(exc).__name__}: {exc}"
