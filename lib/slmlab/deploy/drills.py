"""Drills on the running bundle: does the memory the footprint computed hold under a long-context load, and
what does too little memory look like (the kernel's OOM killer, exit 137)?

    trials = memory_drill("out/", runtime)      # the computed limit, 30 % below it, and one between the
    for t in trials: print(t.line())            # engine's memory at rest and under load

Each trial runs the engine alone with one memory limit, sends `concurrency` chat requests of about
`prompt_tokens` tokens at once (every slot's KV cache in use), and reads the cgroup's peak memory and the engine
process's own peak (VmHWM). They differ by the model file: llama.cpp maps the GGUF, and the kernel charges those
page-cache pages to the cgroup that first read them, so on a machine where the file is already cached (a second
run) the cgroup's peak leaves the weights out; a fresh node's first pod pays for them. So each trial first drops
the model file from the page cache where it can (podman as root: `evict_from_page_cache`), as on a fresh node.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slmlab.containers.run import evict_from_page_cache, exit_reason, peak_memory_bytes, process_peak_bytes
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
    process_peak_mi: float | None = None  # the engine process's VmHWM after the requests: with its mapped model
    exit_code: int | None = None
    oom_killed: bool = False
    outcome: str = ""
    kernel: str = ""  # the kernel's OOM line, when it killed the engine
    cold: bool = False  # the model file was dropped from the page cache first (as on a fresh node)
    seconds: float = 0.0

    @property
    def held(self) -> bool:
        """It answered every request and is still running."""
        return self.answered == self.asked and self.asked > 0 and not self.oom_killed and self.exit_code is None

    def line(self) -> str:
        """One line for the notebook or the terminal."""
        peaks = "/".join("-" if p is None else f"{p:.0f}" for p in (self.start_peak_mi, self.load_peak_mi,
                                                                     self.process_peak_mi))
        return (f"{self.label:<28} limit {self.limit_mi:5d} MiB  cgroup peak at rest/under load, process peak "
                f"{peaks:>11} MiB  answered {self.answered}/{self.asked}  {self.outcome}")


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
    if run.plan.engine.key == "llamacpp-server":  # as on a fresh node: the mapped model is charged to this pod
        trial.cold = evict_from_page_cache(runtime, run.plan.image_ref("engine"), "/models/model.gguf")
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
                trial.process_peak_mi = process_peak_bytes(runtime, run.engine.name) / MIB
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
                 concurrency: int = 2, below: bool = True) -> list[MemoryTrial]:
    """The computed limit, 30 % below it (unless not `below`: one engine run less), and a limit between the
    engine's peak at rest and under load."""
    plan = bundle_plan(folder)
    computed = memory_trial(folder, runtime, plan.memory_mi, "computed (footprint x 1.2)", prompt_tokens,
                            concurrency)
    trials = [computed]
    if below:
        trials.append(memory_trial(folder, runtime, int(plan.memory_mi * 0.7), "30 % below the computed",
                                   prompt_tokens, concurrency))
    if computed.start_peak_mi and computed.load_peak_mi and computed.load_peak_mi - computed.start_peak_mi > 4:
        # Below the footprint the kernel first takes back the mapped model's pages (they can be read again: slower,
        # not killed); what it cannot take back is the anonymous memory (KV cache, compute buffers). A limit between
        # that memory at rest and under load lets the engine start and kills it under the long requests.
        model_mi = _model_mi(folder) if computed.cold else 0.0
        between = int((computed.start_peak_mi + computed.load_peak_mi) / 2 - model_mi)
        trials.append(memory_trial(folder, runtime, between, "anonymous memory, rest..load", prompt_tokens,
                                   concurrency))
    return trials


def _model_mi(folder: str | Path) -> float:
    """The size of the GGUF the engine maps, MiB (the bundle's spec names the model; offline it is the bundled one)."""
    from slmlab.models.resolver import BUNDLED, resolve

    plan = bundle_plan(folder)
    if plan.model.key not in BUNDLED:
        return plan.footprint.weights_gb * 1e9 / MIB
    return resolve(plan.model.key).path.stat().st_size / MIB


@dataclass
class FaultDrill:
    """The engine killed under load, with a restart policy and a client that retries."""

    requests: int = 0
    answered: int = 0  # by the client with retries
    restarts: int = 0  # the engine container's restart count afterwards
    down_seconds: float | None = None  # from the kill until /health answered again
    probe_statuses: dict[int, int] | None = None  # what a client without retries saw meanwhile: status -> count
    retry_after: set[str] | None = None  # the Retry-After values the 502s carried

    @property
    def lost(self) -> int:
        """Requests the retrying client did not get answered."""
        return self.requests - self.answered

    def lines(self) -> list[str]:
        """What happened, for the notebook or the terminal."""
        return [f"engine killed under load; back after {self.down_seconds or 0:.1f} s (restarts: {self.restarts})",
                f"a client without retries saw: {dict(sorted((self.probe_statuses or {}).items()))}, "
                f"Retry-After {sorted(self.retry_after or [])}",
                f"the client with retries: {self.answered}/{self.requests} answered, {self.lost} lost"]


def fault_drill(folder: str | Path, runtime: Runtime, requests: int = 16, concurrency: int = 2,
                kill_after: int = 4) -> FaultDrill:
    """Kill the engine (SIGKILL to its process, as a crash would) after `kill_after` answers; `restart: always`
    brings it back; the gateway answers 502 + Retry-After meanwhile; the openai client retries."""
    import openai

    drill = FaultDrill(requests=requests, probe_statuses={}, retry_after=set())
    with BundleRun(folder, runtime, restart="always") as run:
        assert run.engine is not None and run.gateway is not None
        client = openai.OpenAI(base_url=run.base_url, api_key=run.api_key, max_retries=8, timeout=120)
        done: list[int] = []

        def one(i: int) -> bool:
            answer = client.chat.completions.create(model=run.plan.served_name, max_tokens=12,
                                                    messages=[{"role": "user", "content": f"Count to {i}."}])
            done.append(i)
            return bool(answer.choices)

        with ThreadPoolExecutor(concurrency + 1) as pool:
            answers = [pool.submit(one, i) for i in range(requests)]
            while len(done) < kill_after:
                time.sleep(0.1)
            drill.down_seconds = _kill_and_watch(runtime, run, drill)
            drill.answered = sum(1 for a in answers if _ok(a))
        restarts = runtime.output(["inspect", "--format", "{{.RestartCount}}", run.engine.name], what="restarts")
        drill.restarts = int(restarts or 0)
    return drill


def _ok(future: object) -> bool:
    try:
        return bool(future.result())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a request the retries could not save counts as lost
        return False


def _kill_and_watch(runtime: Runtime, run: BundleRun, drill: FaultDrill) -> float:
    """SIGKILL the engine's process; probe the gateway (no retries) until the engine's /health answers again."""
    import os
    import signal

    import httpx

    assert run.engine is not None and run.gateway is not None
    pid = int(runtime.output(["inspect", "--format", "{{.State.Pid}}", run.engine.name], what="engine pid"))
    killed = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    body = {"model": run.plan.served_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    while time.perf_counter() - killed < 120:
        answer = httpx.post(run.base_url + "/chat/completions", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {run.api_key}"})
        assert drill.probe_statuses is not None and drill.retry_after is not None
        drill.probe_statuses[answer.status_code] = drill.probe_statuses.get(answer.status_code, 0) + 1
        if answer.status_code != 200 and "retry-after" in answer.headers:
            drill.retry_after.add(answer.headers["retry-after"])
        if answer.status_code == 200:
            return time.perf_counter() - killed
        time.sleep(0.2)
    raise SlmLabError("The engine did not come back within 120 s of being killed.",
                      f"Look at `{runtime.name} ps -a` and its logs: does the restart policy work here?")
