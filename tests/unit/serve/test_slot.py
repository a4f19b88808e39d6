"""slmlab.serve.slot.ModelSlot: one in-process model runs one generation at a time; a client of a server with slots
runs as many as it is given, and each generation keeps its own record."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator

import pytest

from slmlab.backends.base import BackendBase, Generation, GenerationOptions, PieceStream, Timings
from slmlab.errors import SlmLabError
from slmlab.serve.slot import ModelSlot, RunResult


class PacedServer(BackendBase):
    """Answers `max_tokens` pieces, one every `pause` seconds, and counts the streams running at once (the most:
    `peak`). `concurrent` says whether it may be called from several threads, as an HTTP client of a server with
    slots may."""

    engine, model_name = "paced", "paced-model"

    def __init__(self, concurrent: bool, pause: float = 0.03) -> None:
        self.concurrent, self.pause = concurrent, pause
        self.active = self.peak = 0
        self._count = threading.Lock()

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> PieceStream:
        return PieceStream(self._pieces(opts.max_tokens))

    def _pieces(self, tokens: int) -> Generator[str, None, Generation]:
        with self._count:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            for i in range(tokens):
                time.sleep(self.pause)
                yield f"t{i} "
        finally:
            with self._count:
                self.active -= 1
        self.last = generation = Generation("", 3, tokens, "length", Timings(0, 0, 0, 0), self.engine, self.model_name)
        return generation

    def tokenize(self, text: str) -> list[int]:
        return [1]

    def close(self) -> None:
        pass


async def _answer(slot: ModelSlot, tokens: int) -> RunResult:
    run = await slot.start([{"role": "user", "content": "hi"}], {"max_tokens": tokens})
    async for _ in run:
        pass
    assert run.result is not None
    return run.result


async def _together(slot: ModelSlot, token_counts: list[int]) -> tuple[list[RunResult], int]:
    """Start every request at once; the results, and the most generations the slot had running."""
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, slot.running)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(_answer(slot, n) for n in token_counts))
    watcher.cancel()
    return list(results), most


@pytest.mark.fast
def test_a_client_of_a_server_with_slots_runs_generations_at_once_each_with_its_own_record():
    server = PacedServer(concurrent=True)
    slot = ModelSlot(server, parallel=3)
    results, most = asyncio.run(_together(slot, [4, 6, 8]))
    assert slot.parallel == 3 and server.peak == 3 and most == 3
    # each generation's own token count: with one shared `last`, a stream could report another one's
    assert [r.completion_tokens for r in results] == [4, 6, 8]
    assert [r.generation.completion_tokens for r in results if r.generation] == [4, 6, 8]
    assert slot.running == 0


@pytest.mark.fast
def test_more_requests_than_places_wait_and_an_in_process_model_runs_one_at_a_time():
    server = PacedServer(concurrent=True)
    results, most = asyncio.run(_together(ModelSlot(server, parallel=2), [3, 3, 3, 3]))
    assert server.peak == 2 and most == 2 and all(r.completion_tokens == 3 for r in results)
    in_process = PacedServer(concurrent=False)  # e.g. llama.cpp in this process: one context, one generation
    slot = ModelSlot(in_process, parallel=4)
    results, most = asyncio.run(_together(slot, [3, 3, 3]))
    assert slot.parallel == 1 and in_process.peak == 1 and most == 1
    assert [r.completion_tokens for r in results] == [3, 3, 3]


@pytest.mark.fast
@pytest.mark.parametrize("parallel", [0, -1, 1.5, True, "4"])
def test_a_parallel_that_is_not_a_count_is_refused(parallel):
    with pytest.raises(SlmLabError, match="is not a number of generations at a time"):
        ModelSlot(PacedServer(concurrent=True), parallel=parallel)
