"""One generation on the runner's worker thread, seen from the event loop as a stream of events.

Loading the model and checking the request (context length, options) happen before :meth:`Generation.start`
returns, so their errors are HTTP errors; later failures arrive as an ``("error", message)`` event, which the
routes write as an ``{"error": ...}`` line once the answer has started.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

from slmlab.backends.base import GenerationOptions
from slmlab.errors import SlmLabError
from slmlab.monitoring.structured_log import annotate
from slmlab.serve.ollama.protocol import ApiError, error_message, ns
from slmlab.serve.ollama.registry import ModelEntry
from slmlab.serve.ollama.runner import Loaded
from slmlab.serve.ollama.state import ServerState

log = logging.getLogger("slmlab.ollama")
# Ollama's sampling defaults (a request's options and a Modelfile's PARAMETERs override them).
DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}


@dataclass
class Finished:
    """The end of a generation: its timing fields (nanoseconds), why it stopped, the context tokens if asked."""

    stats: dict[str, int]
    reason: str
    context: list[int] | None = None


Event = tuple[str, Any]  # ("piece", text), ("done", Finished) or ("error", message)


def generation_kwargs(options: dict[str, Any], n_ctx: int, prompt_tokens: int) -> dict[str, Any]:
    """Ollama options as slmlab generation options (num_predict -1 or absent: as much as the context holds)."""
    merged = {**DEFAULTS, **options}
    room = max(1, n_ctx - prompt_tokens - 1)
    num_predict = merged.get("num_predict", -1)
    seed = merged.get("seed")
    checked = GenerationOptions(  # checked here, so bad values are 400s and not failures mid-stream
        max_tokens=min(num_predict, room) if num_predict and num_predict > 0 else room,
        temperature=max(0.0, float(merged["temperature"])),
        top_p=min(1.0, float(merged["top_p"])) if merged["top_p"] > 0 else 1.0,
        top_k=max(0, int(merged["top_k"])),
        seed=seed if isinstance(seed, int) and seed >= 0 else None,
        stop=tuple(merged.get("stop") or ()))
    return asdict(checked)


class Generation:
    """A prompt built on the worker (`build_prompt` gets the loaded model), generated there, streamed here."""

    def __init__(self, state: ServerState, entry: ModelEntry, options: dict[str, Any], keep_alive: float,
                 build_prompt: Callable[[Loaded], str], want_context: bool = False, endpoint: str = "") -> None:
        self.state, self.entry, self.options, self.keep_alive = state, entry, options, keep_alive
        self.build_prompt, self.want_context, self.endpoint = build_prompt, want_context, endpoint
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.cancel = threading.Event()
        self.t0 = 0.0  # set by start()

    async def start(self) -> AsyncIterator[Event]:
        """Load and check on the worker (errors raise here as ApiError), then the events of the generation."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[float] = loop.create_future()
        self.t0 = time.perf_counter()
        self.state.runner.worker.submit(self._work, loop, started)
        try:
            await started
        except asyncio.CancelledError:
            self.cancel.set()
            raise
        except ApiError:
            raise
        except SlmLabError as exc:
            raise ApiError(400, error_message(exc)) from None
        except Exception as exc:
            log.exception("generation failed to start")
            raise ApiError(500, f"{type(exc).__name__}: {exc}") from None
        return self._events()

    def _work(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[float]) -> None:
        """On the worker thread: load, build and check the prompt, then generate piece by piece."""
        runner = self.state.runner

        def settle(fn: Callable[[Any], None], value: Any) -> None:
            loop.call_soon_threadsafe(lambda: None if started.done() else fn(value))

        def put(item: Event) -> None:
            loop.call_soon_threadsafe(self.queue.put_nowait, item)

        loaded = None
        try:
            loaded, load_s = runner.acquire(self.entry, runner.context_size(self.entry, self.options))
            prompt = self.build_prompt(loaded)
            n_prompt = len(runner.tokenize(loaded, prompt)) + 1
            pieces = runner.stream(loaded, prompt, generation_kwargs(self.options, loaded.engine.n_ctx, n_prompt),
                                   self.cancel)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the request's error
            if loaded is not None:
                runner.release(loaded, self.keep_alive)
            settle(started.set_exception, exc)
            return
        settle(started.set_result, load_s)
        try:
            for piece in pieces:
                put(("piece", piece))
            if not self.cancel.is_set():
                put(("done", self._finished(loaded, prompt, load_s)))
        except BaseException as exc:  # noqa: BLE001
            put(("error", exc))
        finally:
            runner.release(loaded, self.keep_alive)

    def _finished(self, loaded: Loaded, prompt: str, load_s: float) -> Finished:
        result = loaded.engine.handle.last
        timings = result.timings
        eval_s = result.extra.get("engine_eval_s") or max(timings.ttft_s + timings.eval_s - timings.prompt_eval_s,
                                                          0.0)
        stats = {"load_duration": ns(load_s), "prompt_eval_count": result.prompt_tokens,
                 "prompt_eval_duration": ns(timings.prompt_eval_s), "eval_count": result.completion_tokens,
                 "eval_duration": ns(eval_s)}
        context = self.state.runner.tokenize(loaded, prompt + result.text) if self.want_context else None
        return Finished(stats, "length" if result.finish_reason == "length" else "stop", context)

    async def _events(self) -> AsyncIterator[Event]:
        """The pieces, then ("done", Finished) with total_duration added, or ("error", message)."""
        try:
            while True:
                kind, value = await self.queue.get()
                if kind == "piece":
                    yield kind, value
                elif kind == "done":
                    value.stats = {"total_duration": ns(time.perf_counter() - self.t0), **value.stats}
                    self.state.metrics.observe_generation(self.entry.name, value.stats)
                    annotate(model=self.entry.name, prompt_tokens=value.stats.get("prompt_eval_count"),
                             completion_tokens=value.stats.get("eval_count"), outcome=value.reason)
                    yield kind, value
                    return
                else:
                    self.state.metrics.errors.labels(self.endpoint).inc()
                    annotate(model=self.entry.name, outcome="error")
                    log.error("generation failed: %s", value)
                    yield "error", error_message(value)
                    return
        finally:
            self.cancel.set()  # the client went away, or we are done: stop generating


async def load_only(state: ServerState, entry: ModelEntry, keep_alive: float) -> str:
    """An empty prompt loads the model (or, with keep_alive 0, unloads it): Ollama's "load"/"unload"."""
    runner = state.runner
    if keep_alive == 0:
        await runner.run(runner.unload, entry.name)
        return "unload"

    def load() -> None:
        loaded, _ = runner.acquire(entry, runner.context_size(entry, entry.parameters))
        runner.release(loaded, keep_alive)

    try:
        await runner.run(load)
    except SlmLabError as exc:
        raise ApiError(500, error_message(exc)) from None
    return "load"

