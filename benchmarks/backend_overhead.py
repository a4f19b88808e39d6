"""Does slmlab's LlamaCppBackend cost speed? Raw llama-cpp-python vs the backend, one process, same prompt.

Both load the same GGUF, start each call from an empty KV cache (the backend always does; the raw side
calls reset()), decode greedily, and alternate order every repeat. For each call:

    decode tok/s = completion tokens / (wall seconds of the call - llama.cpp's own prompt-eval seconds)
    end-to-end tok/s = completion tokens / wall seconds of the call

so the wrapper's whole cost (template, tokenizing, streaming, bookkeeping) is inside the wall time.
Goal: slmlab / raw >= 0.95.  Run: .venv/bin/python benchmarks/backend_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from time import perf_counter

import llama_cpp

from slmlab.backends.llamacpp import LlamaCppBackend
from slmlab.models.resolver import load_llama

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle."}]


def run_raw(llm: llama_cpp.Llama, max_tokens: int) -> tuple[int, float, float]:
    """(completion tokens, wall s, prompt-eval s) for one raw create_chat_completion call."""
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    start = perf_counter()
    out = llm.create_chat_completion(PROMPT, max_tokens=max_tokens, temperature=0.0)
    wall = perf_counter() - start
    return out["usage"]["completion_tokens"], wall, llama_cpp.llama_perf_context(llm.ctx).t_p_eval_ms / 1000


def run_slmlab(backend: LlamaCppBackend, max_tokens: int) -> tuple[int, float, float]:
    """(completion tokens, wall s, prompt-eval s) for one backend.chat call."""
    start = perf_counter()
    gen = backend.chat(PROMPT, max_tokens=max_tokens)
    wall = perf_counter() - start
    return gen.completion_tokens, wall, gen.timings.prompt_eval_s


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print per-repeat figures, medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)

    raw = load_llama(args.model, n_ctx=2048, seed=0)
    backend = LlamaCppBackend(args.model, n_ctx=2048, seed=0)
    runners = {"raw": lambda: run_raw(raw, args.max_tokens), "slmlab": lambda: run_slmlab(backend, args.max_tokens)}
    for run in runners.values():  # warm-up
        run()
    results: dict[str, list[tuple[int, float, float]]] = {"raw": [], "slmlab": []}
    for i in range(args.repeats):
        for name in (("raw", "slmlab") if i % 2 == 0 else ("slmlab", "raw")):
            results[name].append(runners[name]())
    backend.close()
    raw.close()

    medians = {}
    print(f"model {args.model}, {args.max_tokens} new tokens max, {args.repeats} interleaved repeats")
    for name, rows in results.items():
        tokens = {r[0] for r in rows}
        decode = [n / (wall - prompt) for n, wall, prompt in rows]
        e2e = [n / wall for n, wall, _ in rows]
        medians[name] = (statistics.median(decode), statistics.median(e2e))
        print(f"{name:>7}: completion tokens {sorted(tokens)}, decode tok/s median {medians[name][0]:6.1f} "
              f"(min {min(decode):.1f}, max {max(decode):.1f}), end-to-end tok/s median {medians[name][1]:6.1f}")
    ratio_decode = medians["slmlab"][0] / medians["raw"][0]
    ratio_e2e = medians["slmlab"][1] / medians["raw"][1]
    print(f"  ratio slmlab/raw: decode {ratio_decode:.3f}, end-to-end {ratio_e2e:.3f} (goal >= 0.95)")
    same = {r[0] for r in results["raw"]} == {r[0] for r in results["slmlab"]}
    if not same:
        print("  note: the two sides generated different token counts; compare with care")
    return 0 if ratio_decode >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
