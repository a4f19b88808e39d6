"""Drills on the running bundle: does the memory the footprint computed hold under a long-context load, and
what does too little memory look like (the kernel's OOM killer, exit 137)?

    trials = memory_drill("out/", runtime)      # the computed limit, 30 % below it, and one between the
    for t in trials: print(t.line())            # engine's memory at rest and under load

Each trial runs the engine alone with one memory limit, sends `concurrency` chat requests of about
`prompt_tokens` tokens at once (every slot's KV cache in use), and reads the cgroup's peak memory.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slmlab.containers.run import exit_reason, peak_memory_bytes
from slmlab.containers.runtime import Runtime
from slmlab.deploy.render import bundle_plan
from slmlab.deploy.run import BundleRun
from slmlab.errors import SlmLabError

MIB = 2**20
TOKENS_PER_LINE = 16  # SmolLM2's tokenizer on long_prompt's lines (measured: 250 lines, 3920 tokens)


@dataclass
class MemoryTrial:
    """One engine run under one memory limit."""

    label: str
    limit_mi: int
    asked: int = 0
    answered: int = 0
    start_peak_mi: float | None = None  # after loading, before the requests
    load_peak_mi: float | None = None  # after the requests (None: it did not survive them)
    exit_code: int | None = None
    oom_killed: bool = False
    outcome: str = ""
    kernel: str = ""  # the kernel's OOM line, when it killed the engine
    seconds: float = 0.0

    @property
    def held(self) -> bool:
        """It answered every request and is still running."""
        return self.answered == self.asked and self.asked > 0 and not self.oom_killed and self.exit_code is None

    def line(self) -> str:
        """One line for the notebook or the terminal."""
        peaks = "/".join("-" if p is None else f"{p:.0f}" for p in (self.start_peak_mi, self.load_peak_mi))
        return (f"{self.label:<28} limit {self.limit_mi:5d} MiB  peak at rest/under load {peaks:>9} MiB  "
                f"answered {self.answered}/{self.asked}  {self.outcome}")


def long_prompt(tokens: int, seed: int = 0) -> str:
    """A prompt of about `tokens` tokens (distinct per seed, so no prompt cache is shared)."""
    lines = max(1, tokens // TOKENS_PER_LINE)
    return f"Story {seed}. " + " ".join(f"Line {i}: the quick brown fox {seed} jumps over the lazy dog."
                                        for i in range(lines))


def _ask(url: str, key: str, prompt: str) -> bool:
    import httpx

    try:
        answer = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=900,
                            json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 16})
        return answer.status_code == 200
    except httpx.HTTPError:
        return False


def memory_trial(folder: str | Path, runtime: Runtime, limit_mi: int, label: str, prompt_tokens: int = 2000,
                 concurrency: int = 2) -> MemoryTrial:
    """Run the engine with this memory limit and a long-context load; what happened, measured."""
    trial = MemoryTrial(label, limit_mi)
    begin = time.perf_counter()
    run = BundleRun(folder, runtime, components=("engine",), engine_memory_mb=limit_mi)
    try:
        with run:
            assert run.engine is not None
            trial.start_peak_mi = peak_memory_bytes(runtime, run.engine.name) / MIB
            trial.asked = concurrency
            prompts = [long_prompt(prompt_tokens, seed) for seed in range(concurrency)]
            url = run.engine.url()
            with ThreadPoolExecutor(concurrency) as pool:
                trial.answered = sum(pool.map(lambda p: _ask(url, run.api_key, p), prompts))
            time.sleep(1)
            if run.engine.state().get("Status") == "running":
                trial.load_peak_mi = peak_memory_bytes(runtime, run.engine.name) / MIB
            else:
                _record_exit(trial, run.engine.exit_state())
    except SlmLabError:
        if run.engine is None or not run.engine.last_state:
            raise
        _record_exit(trial, run.engine.last_state)  # it died while loading
    trial.seconds = time.perf_counter() - begin
    trial.outcome = trial.outcome or "held"
    return trial


def _record_exit(trial: MemoryTrial, state: dict) -> None:
    trial.exit_code, trial.oom_killed = state.get("ExitCode"), bool(state.get("OOMKilled"))
    trial.kernel = str(state.get("KernelLog", ""))
    trial.outcome = exit_reason(state, trial.limit_mi) + (" while loading" if trial.asked == 0 else " under load")


def memory_drill(folder: str | Path, runtime: Runtime, prompt_tokens: int = 2000,
                 concurrency: int = 2) -> list[MemoryTrial]:
    """The computed limit, 30 % below it, and a limit between the engine's peak at rest and under load."""
    plan = bundle_plan(folder)
    computed = memory_trial(folder, runtime, plan.memory_mi, "computed (footprint x 1.2)", prompt_tokens,
                            concurrency)
    trials = [computed, memory_trial(folder, runtime, int(plan.memory_mi * 0.7), "30 % below the computed",
                                     prompt_tokens, concurrency)]
    if computed.start_peak_mi and computed.load_peak_mi and computed.load_peak_mi - computed.start_peak_mi > 4:
        between = int((computed.start_peak_mi + computed.load_peak_mi) / 2)
        trials.append(memory_trial(folder, runtime, between, "between rest and load peaks", prompt_tokens,
                                   concurrency))
    return trials
