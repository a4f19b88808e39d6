"""llama.cpp's own programs against llama-cpp-python: three ratios, measured side by side in one run.

1. **Batching: aggregate output tok/s at concurrency 8 over concurrency 1** (slmlab.measure.loadtest, the same
   prompts and settings for both): ``llama-server --parallel 8`` (slots decoded together, continuous batching) and
   llama-cpp-python's server (one sequence at a time). Goal for llama-server: >= 2.0. The two concurrencies
   alternate over ``--rounds`` rounds and the ratio is of their medians. Measured for the default model (Q4_1, which
   ggml multiplies with its vector-dot kernel: llamafile's tiled matrix-multiply kernels take Q8_0, Q4_0 and Q5_0 but
   not Q4_1) and for its Q8_0 quantization (tiled kernels: a batch of rows shares each weight load).
2. **Single-request latency, llama-server / in-process llama-cpp-python**: the same prompts, greedy, one request at
   a time, rotating the order every repeat; both keep the KV cache between requests, as in
   benchmarks/served_vs_inprocess.py, and both run without flash attention (the binding's default). Per prompt the
   ratio of median wall times; goal: median <= 1.10.
3. **Decode speed, llama-bench / the Python binding**: ``llama-bench -p 0 -n N`` (N tokens decoded one at a time
   from an empty cache, its mean tok/s over its repetitions) against ``Llama.eval`` called token by token from
   Python the same way (wall clock, ctypes and logits copy included), same threads, flash attention off (the
   binding's default) on both. Goal: >= 0.95 (the course's build is as fast as the binding's).

All three use the programs built by ``slmlab setup llamacpp`` and the same llama.cpp threads (the physical cores).
Run: .venv/bin/python benchmarks/llama_server_vs_python.py [--repeats 5] [--max-tokens 48] [--part 1|2|3]
On a 2-core machine shared with other work the numbers move between runs; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from time import perf_counter
from types import SimpleNamespace

from slmlab.backends.base import GenerationOptions, llamacpp_kwargs
from slmlab.backends.openai_http import OpenAIBackend
from slmlab.measure.loadtest import DEFAULT_PROMPTS, load_test
from slmlab.models.hardware import physical_cores
from slmlab.models.resolver import load_llama, resolve
from slmlab.serve import llamacpp_server
from slmlab.serve.llama_server import llama_server, llamacpp_metrics
from slmlab.setup.llamacpp import llamacpp_program

N_CTX = 2048
SLOTS = 8
PROMPTS = ["Explain what a barometer measures.", "Write a haiku about the sea.",
           "Give three tips for staying focused while studying."]


# ----------------------------------------------------------------------------- 1. batching


def throughput_ratio(name: str, server, requests: int, max_tokens: int, rounds: int) -> float:
    """Output tok/s at concurrency 8 and 1 against a started server, in `rounds` interleaved rounds (other work on a
    small machine comes and goes); print each round and the ratio of the medians."""
    results: dict[int, list[float]] = {1: [], SLOTS: []}
    load_test(server, concurrency=1, num_requests=1, max_tokens=8, show_progress=False)  # warm-up
    for round_ in range(rounds):
        for concurrency in ((1, SLOTS) if round_ % 2 == 0 else (SLOTS, 1)):
            result = load_test(server, list(DEFAULT_PROMPTS), concurrency=concurrency,
                               num_requests=requests if concurrency == 1 else max(requests, 2 * SLOTS),
                               max_tokens=max_tokens, time_limit=300, timeout=300, show_progress=False)
            s = result.summary()
            results[concurrency].append(s["output_throughput"])
            print(f"   {name:17} round {round_ + 1} concurrency {concurrency}: {s['successful_requests']:.0f} ok / "
                  f"{s['failed_requests']:.0f} failed, {s['total_output_tokens']:4.0f} tokens, "
                  f"{s['output_throughput']:6.1f} output tok/s, median TTFT {s['median_ttft_ms']:6.0f} ms, "
                  f"median TPOT {s['median_tpot_ms']:5.1f} ms, most in flight {s['max_concurrent_requests']:.0f}")
    one, many = statistics.median(results[1]), statistics.median(results[SLOTS])
    ratio = many / one if one else float("nan")
    print(f"   {name:17} medians: {one:.1f} tok/s at 1, {many:.1f} tok/s at {SLOTS}; ratio {ratio:.2f}")
    return ratio


def batching(model: str, requests: int, max_tokens: int, thread_counts: list[int], rounds: int) -> dict[str, float]:
    """Part 1 for the model as it is and for its Q8_0 quantization (same tensors, a batched matrix-multiply kernel)."""
    from slmlab.convert.quantize import quantize

    print(f"1. aggregate output throughput, concurrency {SLOTS} vs 1 ({max_tokens} new tokens max, greedy), "
          f"{rounds} interleaved rounds")
    q8 = quantize(model, "Q8_0", show_progress=False).resolved
    ratios = {}
    for label, reference in ((f"{model} ({resolve(model).inspect().file_type})", model), (f"{model} Q8_0", q8)):
        for threads in thread_counts:
            with llama_server(reference, parallel=SLOTS, n_ctx=N_CTX, threads=threads) as server:
                print(f"   {label}: llama-server --parallel {SLOTS} --threads {threads} (ready in "
                      f"{server.startup_s:.1f} s)")
                ratios[f"{label}, llama-server, {threads} thread(s)"] = throughput_ratio(
                    "llama-server", server, requests, max_tokens, rounds)
                busy = llamacpp_metrics(server)["llamacpp:n_busy_slots_per_decode"]
                print(f"   llama-server's own count: {busy:.2f} busy slots per llama_decode() call on average")
            with llamacpp_server(reference, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads) as server:
                print(f"   {label}: llama-cpp-python's server, {threads} thread(s)")
                ratios[f"{label}, llama-cpp-python server, {threads} thread(s)"] = throughput_ratio(
                    "llama-cpp-python", server, requests, max_tokens, rounds)
    for name, value in ratios.items():
        if "llama-server" in name:
            print(f"   {name}: c{SLOTS} / c1 = {value:.2f} (goal >= 2.0) {'OK' if value >= 2.0 else 'BELOW GOAL'}")
    return {f"{name}: c{SLOTS} / c1": value for name, value in ratios.items()}


# ----------------------------------------------------------------------------- 2. single-request latency


class CacheKeepingLlama:
    """llama-cpp-python in this process, keeping its KV cache between calls as a server does."""

    def __init__(self, model: str, threads: int) -> None:
        self.llm = load_llama(model, n_ctx=N_CTX, seed=0, n_threads=threads, n_threads_batch=threads)

    def chat(self, prompt: str, max_tokens: int) -> SimpleNamespace:
        kwargs = llamacpp_kwargs(GenerationOptions(max_tokens=max_tokens, seed=0))
        pieces = [chunk["choices"][0]["delta"].get("content") or "" for chunk in
                  self.llm.create_chat_completion([{"role": "user", "content": prompt}], stream=True, **kwargs)]
        return SimpleNamespace(text="".join(pieces), completion_tokens=sum(1 for p in pieces if p))


def latency(model: str, repeats: int, max_tokens: int) -> dict[str, float]:
    threads = physical_cores()
    local = CacheKeepingLlama(model, threads)
    ratios, same_everywhere = [], True
    print(f"2. single-request latency: llama-server (--parallel {SLOTS}, streamed over HTTP) vs llama-cpp-python in "
          f"this process; greedy, {max_tokens} new tokens max, {threads} thread(s), {repeats} interleaved repeats")
    # flash attention off, as the binding's default: the same computation on both sides, so the difference is serving
    no_fa = ["--flash-attn", "off"]
    with llama_server(model, parallel=SLOTS, n_ctx=N_CTX, threads=threads, extra_args=no_fa) as server:
        remote = OpenAIBackend(server.url)
        runners = {"in-process": local, "llama-server": remote}
        for backend in runners.values():  # warm-up
            backend.chat(PROMPTS[0], max_tokens=8)
        names = list(runners)
        for prompt in PROMPTS:
            walls: dict[str, list[float]] = {name: [] for name in runners}
            texts: dict[str, set[str]] = {name: set() for name in runners}
            for i in range(repeats):
                for name in names[i % 2:] + names[:i % 2]:  # rotate who goes first
                    start = perf_counter()
                    gen = runners[name].chat(prompt, max_tokens=max_tokens)
                    walls[name].append(perf_counter() - start)
                    texts[name].add(gen.text)
            med = {name: statistics.median(w) for name, w in walls.items()}
            ratio = med["llama-server"] / med["in-process"]
            ratios.append(ratio)
            same = texts["llama-server"] == texts["in-process"]
            same_everywhere = same_everywhere and same
            print(f"   {prompt[:40]!r:44} in-process {med['in-process'] * 1000:5.0f} ms, llama-server "
                  f"{med['llama-server'] * 1000:5.0f} ms, ratio {ratio:.3f} ({'same answer' if same else 'DIFFERENT'})")
        remote.close()
    local.llm.close()
    overall = statistics.median(ratios)
    print(f"   latency ratio llama-server / in-process (median over prompts): {overall:.3f} (goal <= 1.10) "
          f"{'OK' if overall <= 1.10 else 'ABOVE GOAL'}")
    return {"latency llama-server / in-process": overall}


# ----------------------------------------------------------------------------- 3. decode speed


def llama_bench_decode(model_path: str, tokens: int, repeats: int, threads: int) -> float:
    """llama-bench's mean decode tok/s for `tokens` tokens from an empty cache (its tg test), flash attention off
    as in the binding's default."""
    cmd = [str(llamacpp_program("llama-bench")), "-m", model_path, "-p", "0", "-n", str(tokens), "-t", str(threads),
           "-r", str(repeats), "-fa", "off", "-o", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    rows = json.loads(done.stdout)
    return float(rows[0]["avg_ts"])


def binding_decode(llm, tokens: int, repeats: int) -> float:
    """Mean wall-clock tok/s of ``Llama.eval`` called token by token from Python, from an empty cache each time."""
    token = llm.tokenize(b"Hello", add_bos=False)[0]
    speeds = []
    for run in range(repeats + 1):  # the first run warms up, as llama-bench's does
        llm.reset()
        llm._ctx.kv_cache_clear()
        start = perf_counter()
        for _ in range(tokens):
            llm.eval([token])
        if run:
            speeds.append(tokens / (perf_counter() - start))
    return statistics.mean(speeds)


def decode(model: str, tokens: int, repeats: int) -> dict[str, float]:
    threads = physical_cores()
    path = str(resolve(model).path)
    print(f"3. decode: {tokens} tokens one at a time from an empty cache, {threads} thread(s), flash attention off, "
          f"{repeats} repetitions each, three interleaved rounds")
    llm = load_llama(model, n_ctx=N_CTX, seed=0, n_threads=threads, n_threads_batch=threads)
    bench, binding = [], []
    for _ in range(3):
        bench.append(llama_bench_decode(path, tokens, repeats, threads))
        binding.append(binding_decode(llm, tokens, repeats))
        print(f"   llama-bench {bench[-1]:6.1f} tok/s, Python binding {binding[-1]:6.1f} tok/s")
    llm.close()
    b, w = statistics.median(bench), statistics.median(binding)
    ratio = b / w
    print(f"   medians: llama-bench {b:6.1f} tok/s, binding {w:6.1f} tok/s; llama-bench / binding: {ratio:.3f} "
          f"(goal >= 0.95) {'OK' if ratio >= 0.95 else 'BELOW GOAL'}")
    return {"decode llama-bench / binding": ratio}


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=8, help=f"requests at concurrency 1 ({2 * SLOTS} at {SLOTS})")
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of concurrency 1 and 8 in part 1")
    parser.add_argument("--part", choices=["1", "2", "3", "all"], default="all", help="run one comparison only")
    parser.add_argument("--threads", type=int, action="append",
                        help="llama.cpp threads of the servers in part 1, repeatable (default: all physical cores; "
                             "one fewer leaves a core to the load generator and the HTTP threads)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped by `timeout`: stop the servers too

    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} "
          f"CPUs (other work on the machine moves every number below)")
    ratios: dict[str, float] = {}
    if args.part in ("1", "all"):
        cores = physical_cores()
        ratios |= batching(args.model, args.requests, args.max_tokens,
                           args.threads or [cores], args.rounds)
    if args.part in ("2", "all"):
        ratios |= latency(args.model, args.repeats, args.max_tokens)
    if args.part in ("3", "all"):
        ratios |= decode(args.model, args.decode_tokens, args.repeats)
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("ratios:")
    for name, value in ratios.items():
        print(f"   {name:66} {value:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
