"""llama.cpp's own benchmark, ``llama-bench``, run and read through its JSON output (``-o json``).

``llama-bench -p P -n N`` times two tests on a model: processing a P-token prompt (``pp``) and generating N tokens
(``tg``), each repeated ``-r`` times after a warm-up; it calls ``llama_decode`` directly, with no sampling and no
Python. :func:`bench_table` runs it on several files; :func:`side_by_side` puts its numbers next to
``slmlab.measure.bench``'s (the same files through llama-cpp-python), with the ratio::

    cli = bench_table({"Q4_K_M": path}, prompt_tokens=128, gen_tokens=32, repetitions=3)
    side_by_side(speed, cli)     # speed = slmlab.measure.bench.bench_variants(...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from slmlab.convert.llamacpp_cli import existing_file, run_program, tail
from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    import pandas as pd


def bench_args(model: str | os.PathLike, *, prompt_tokens: int = 128, gen_tokens: int = 32, repetitions: int = 3,
               threads: int | None = None) -> list[str]:
    """The arguments of ``llama-bench -m MODEL -p P -n N -r R [-t T] -o json``."""
    for name, value in (("prompt_tokens", prompt_tokens), ("gen_tokens", gen_tokens), ("repetitions", repetitions)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SlmLabError(f"{name}={value!r} is not usable.", "Use a whole number >= 1.")
    path = existing_file(model, "model to benchmark")
    args = ["-m", str(path), "-p", str(prompt_tokens), "-n", str(gen_tokens), "-r", str(repetitions)]
    return args + (["-t", str(threads)] if threads else []) + ["-o", "json"]


def parse_bench_json(text: str) -> list[dict[str, Any]]:
    """The records of ``llama-bench -o json``, even with its log lines around the JSON (stderr merged in)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "["]
    ends = [i for i, line in enumerate(lines) if line.strip() == "]"]
    for start in starts:
        for end in (e for e in ends if e > start):
            try:
                records = json.loads("\n".join(lines[start:end + 1]))
            except ValueError:
                continue
            if isinstance(records, list) and all(isinstance(r, dict) and "avg_ts" in r for r in records):
                return records
    raise SlmLabError(f"llama-bench's output holds no JSON results. Its last lines:\n{tail(text)}",
                      "Run llama-bench with -o json (results on stdout), and read the lines above for its error.")


def speeds(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row from llama-bench's records: prompt processing and generation tok/s (mean and spread over repeats)."""
    row: dict[str, Any] = {}
    for record in records:
        test = "prefill" if int(record.get("n_prompt", 0)) > 0 and int(record.get("n_gen", 0)) == 0 else \
            "decode" if int(record.get("n_gen", 0)) > 0 and int(record.get("n_prompt", 0)) == 0 else None
        if test is None:
            continue  # a combined -pg test: not what the course compares
        tokens = record["n_prompt"] if test == "prefill" else record["n_gen"]
        row |= {f"{test}_tokens": int(tokens), f"{test}_tok_s": round(float(record["avg_ts"]), 1),
                f"{test}_sd": round(float(record.get("stddev_ts", 0.0)), 1)}
        row |= {"threads": int(record.get("n_threads", 0)), "build": f"b{record.get('build_number')}"}
    if "prefill_tok_s" not in row or "decode_tok_s" not in row:
        raise SlmLabError("llama-bench's results lack a prompt (pp) or a generation (tg) test.",
                          "Run it with both -p and -n greater than 0.")
    return row


def run_llama_bench(model: str | os.PathLike, *, prompt_tokens: int = 128, gen_tokens: int = 32,
                    repetitions: int = 3, threads: int | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run ``llama-bench`` on one GGUF file; its prefill and decode tok/s as one row."""
    args = bench_args(model, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repetitions=repetitions,
                      threads=threads)
    run = run_program("llama-bench", args, what=f"Benchmarking {os.fspath(model)} with llama-bench", timeout=timeout)
    return speeds(parse_bench_json(run.stdout))


def bench_table(models: Mapping[str, str | os.PathLike | Any], **options: Any) -> pd.DataFrame:
    """``llama-bench`` on each file of {label: path or model}: one row each (options as :func:`run_llama_bench`)."""
    import pandas as pd

    if not models:
        raise SlmLabError("No models to benchmark.", "Pass {'Q4_K_M': path, ...}.")
    rows = []
    for label, model in models.items():
        path = getattr(getattr(model, "resolved", model), "path", model)  # a QuantizedModel, ResolvedModel or path
        rows.append({"variant": label, **run_llama_bench(path, **options)})
    return pd.DataFrame(rows)


def side_by_side(slmlab: pd.DataFrame, cli: pd.DataFrame) -> pd.DataFrame:
    """slmlab bench's and llama-bench's tok/s for the same variants, with binding / llama-bench ratios."""
    merged = slmlab[["variant", "prefill_tok_s", "decode_tok_s"]].merge(
        cli[["variant", "prefill_tok_s", "decode_tok_s"]], on="variant", suffixes=("_slmlab", "_llama_bench"))
    if merged.empty:
        raise SlmLabError("The two tables share no variant.", "Benchmark the same labels with both tools.")
    for test in ("prefill", "decode"):
        merged[f"{test}_ratio"] = (merged[f"{test}_tok_s_slmlab"] / merged[f"{test}_tok_s_llama_bench"]).round(2)
    return merged[["variant", "prefill_tok_s_slmlab", "prefill_tok_s_llama_bench", "prefill_ratio",
                   "decode_tok_s_slmlab", "decode_tok_s_llama_bench", "decode_ratio"]]
