"""How fast, how much memory: load time, TTFT, prefill and decode speed, peak RSS; and the roofline.

Measured the way ``llama-bench`` does it (a prompt of N tokens, then M generated tokens, end-of-text
ignored), with a warm-up run and medians over repeats. Each model is measured in a fresh Python process
(``python -m slmlab.measure.bench``) so its peak RSS — the kernel's ``VmHWM`` — is its own and never carries over
from a model measured before it.

Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth:
``decode tok/s <= bandwidth / bytes read per token``. :func:`memory_bandwidth` measures the bandwidth
with a large numpy copy and :func:`decode_roofline` turns it into that ceiling.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from slmlab.errors import SlmLabError
from slmlab.measure.rss_probe import current_rss, peak_rss, reset_peak_rss
from slmlab.process import run_worker, worker_main

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from slmlab.models.resolver import ResolvedModel


@dataclass(frozen=True)
class BenchResult:
    """Speed and memory of one GGUF model in llama.cpp; times are medians over the repeats."""

    model: str
    path: str
    size_mb: float
    threads: int
    prompt_tokens: int
    gen_tokens: int
    repeats: int
    load_s: float
    ttft_s: float  # from the request to the first generated token (prefill + first sampling)
    prefill_tok_s: float  # prompt tokens per second of llama.cpp's prompt evaluation
    decode_tok_s: float  # generated tokens per second after the first one (wall clock, sampling included)
    peak_rss_mb: float  # the measuring process's VmHWM: Python + llama.cpp + model + KV cache
    base_rss_mb: float  # its RSS before loading the model (Python, numpy, llama.cpp libraries)
    isolated: bool  # measured in its own process

    def row(self) -> dict[str, Any]:
        """A flat dict for a table."""
        return asdict(self)


def _prompt_ids(llm: Any, n: int) -> list[int]:
    from slmlab.measure.evaluate import heldout_text

    ids = llm.tokenize(heldout_text().encode("utf-8"), add_bos=True, special=False)
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def _one_run(llm: Any, prompt: list[int], gen_tokens: int) -> tuple[float, float, float]:
    """(ttft_s, prefill_tok_s, decode_tok_s) for one prompt + generation, from an empty KV cache."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    stamps = []
    start = perf_counter()
    for _ in llm.generate(prompt, temp=0.0, reset=True):  # greedy; end-of-text is ignored, as in llama-bench
        stamps.append(perf_counter())
        if len(stamps) == gen_tokens:
            break
    perf = llama_cpp.llama_perf_context(llm.ctx)
    prefill = perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms > 0 else float("nan")
    spread = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    decode = (len(stamps) - 1) / spread if spread > 0 else float("nan")
    return stamps[0] - start, prefill, decode


def bench_here(model: ResolvedModel | str | os.PathLike | Any = None, *, prompt_tokens: int = 128, gen_tokens: int = 32,
               repeats: int = 3, warmup: int = 1, n_threads: int | None = None, n_ctx: int = 512) -> BenchResult:
    """Measure one model in this process; the peak RSS is only the model's own if VmHWM could be reset."""
    from slmlab.models.hardware import physical_cores
    from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, load_llama, resolve

    _check_sizes(prompt_tokens, gen_tokens, repeats, warmup, n_ctx)
    ref = model if model is not None else DEFAULT_MODEL
    ref = getattr(ref, "resolved", ref) if not isinstance(ref, str | os.PathLike) else ref
    resolved = ref if isinstance(ref, ResolvedModel) else resolve(ref)
    import llama_cpp  # noqa: F401  (its libraries count in the baseline, not in the model's memory)

    reset_peak_rss()  # where the kernel refuses, the peak includes whatever this process held before
    base = current_rss()
    threads = n_threads or physical_cores()
    start = perf_counter()
    llm = load_llama(resolved, n_ctx=n_ctx, n_threads=threads)
    load_s = perf_counter() - start
    try:
        prompt = _prompt_ids(llm, prompt_tokens)
        for _ in range(warmup):
            _one_run(llm, prompt, min(gen_tokens, 8))
        runs = [_one_run(llm, prompt, gen_tokens) for _ in range(repeats)]
        peak = peak_rss()
    finally:
        llm.close()
    ttft, prefill, decode = (statistics.median(r[i] for r in runs) for i in range(3))
    return BenchResult(resolved.name, str(resolved.path), round(resolved.size_bytes / 1e6, 1), threads, prompt_tokens,
                       gen_tokens, repeats, round(load_s, 3), round(ttft, 4), round(prefill, 1), round(decode, 1),
                       round(peak / 1e6, 1), round(base / 1e6, 1), isolated=False)


def _check_sizes(prompt_tokens: int, gen_tokens: int, repeats: int, warmup: int, n_ctx: int) -> None:
    for name, value, low in (("prompt_tokens", prompt_tokens, 1), ("gen_tokens", gen_tokens, 2),
                             ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SlmLabError(f"{name}={value!r} is not usable.", f"Use a whole number >= {low}.")
    if prompt_tokens + gen_tokens > n_ctx:
        raise SlmLabError(f"prompt_tokens + gen_tokens = {prompt_tokens + gen_tokens} does not fit n_ctx={n_ctx}.",
                          f"Lower them or pass n_ctx={1 << (prompt_tokens + gen_tokens - 1).bit_length()}.")


def bench_model(model: ResolvedModel | str | os.PathLike | Any = None, *, prompt_tokens: int = 128,
                gen_tokens: int = 32, repeats: int = 3, warmup: int = 1, n_threads: int | None = None, n_ctx: int = 512,
                timeout: float = 300) -> BenchResult:
    """Measure one model in a fresh Python process (``python -m slmlab.measure.bench``): its own peak RSS."""
    from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve

    _check_sizes(prompt_tokens, gen_tokens, repeats, warmup, n_ctx)
    ref = model if model is not None else DEFAULT_MODEL
    ref = getattr(ref, "resolved", ref) if not isinstance(ref, str | os.PathLike) else ref
    resolved = ref if isinstance(ref, ResolvedModel) else resolve(ref)
    if resolved.format != "gguf":
        raise SlmLabError(f"{resolved.name} is not a GGUF model.", "Benchmark a .gguf file or a bundled GGUF model.")
    args = [resolved.path, "--name", resolved.name, "--prompt-tokens", prompt_tokens, "--gen-tokens", gen_tokens,
            "--repeats", repeats, "--warmup", warmup, "--n-ctx", n_ctx]
    args += ["--threads", n_threads] if n_threads else []
    row = run_worker("slmlab.measure.bench", args, timeout=timeout, what=f"Benchmarking {resolved.name}",
                     hint="Use fewer repeats or tokens, or pass a larger timeout=.")
    return BenchResult(**row)


def bench_variants(models: Mapping[str, Any] | Sequence[Any], *, prompt_tokens: int = 128, gen_tokens: int = 32,
                   repeats: int = 3, warmup: int = 1, n_threads: int | None = None, n_ctx: int = 512,
                   isolate: bool = True, show_progress: bool = True) -> pd.DataFrame:
    """Benchmark several models one after another; one row each (labelled by the mapping's keys)."""
    import pandas as pd

    from slmlab.progress import progress

    items = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not items:
        raise SlmLabError("No models to benchmark.", "Pass {'Q8_0': path_or_model, ...} or a list of models.")
    measure = bench_model if isolate else bench_here
    rows = []
    bar = progress(items, desc="benchmarking", unit="model", disable=not show_progress)
    for label, model in bar:
        result = measure(model, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repeats=repeats,
                         warmup=warmup, n_threads=n_threads, n_ctx=n_ctx)
        rows.append({"variant": label or result.model, **result.row()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the roofline


@dataclass(frozen=True)
class Bandwidth:
    """Memory bandwidth from copying a large array (bytes read + bytes written, per second)."""

    gb_s: float  # best of the repeats, 10^9 bytes per second
    median_gb_s: float
    array_mb: float
    repeats: int

    def __str__(self) -> str:
        return f"memory bandwidth ≈ {self.gb_s:.1f} GB/s (numpy copy of {self.array_mb:.0f} MB, best of {self.repeats})"


def memory_bandwidth(array_mb: float = 256, repeats: int = 5) -> Bandwidth:
    """Copy a float64 array much larger than the CPU caches and time it; counts read + write bytes.

    This is STREAM's "copy" figure, from one thread. It needs 2 x array_mb of memory while it runs.
    """
    import numpy as np

    usable_size = isinstance(array_mb, int | float) and 8 <= array_mb <= 4096
    if not usable_size or not (isinstance(repeats, int) and repeats >= 1):
        raise SlmLabError(f"array_mb={array_mb!r}, repeats={repeats!r} are not usable.",
                          "Use 8 <= array_mb <= 4096 (larger than the CPU's last-level cache) and repeats >= 1.")
    source = np.ones(int(array_mb * 1e6 / 8))
    target = np.empty_like(source)
    np.copyto(target, source)  # touch every page once before timing
    times = []
    for _ in range(repeats):
        start = perf_counter()
        np.copyto(target, source)
        times.append(perf_counter() - start)
    moved = 2 * source.nbytes
    del source, target
    return Bandwidth(round(moved / min(times) / 1e9, 2), round(moved / statistics.median(times) / 1e9, 2),
                     array_mb, repeats)


def decode_roofline(bytes_per_token: float, bandwidth_gb_s: float | Bandwidth) -> float:
    """The decode speed memory bandwidth allows: tokens/s = bandwidth / bytes read per generated token."""
    bw = bandwidth_gb_s.gb_s if isinstance(bandwidth_gb_s, Bandwidth) else bandwidth_gb_s
    if not bytes_per_token or bytes_per_token <= 0 or not bw or bw <= 0:
        raise SlmLabError(f"bytes_per_token={bytes_per_token!r}, bandwidth={bw!r} GB/s must both be positive.",
                          "Pass the model's weight bytes (e.g. its file size) and a measured bandwidth.")
    return bw * 1e9 / bytes_per_token


def add_roofline(table: pd.DataFrame, bandwidth: float | Bandwidth, size_column: str = "size_mb") -> pd.DataFrame:
    """Add `roofline_tok_s` (bandwidth / model bytes) and `of_roofline` (measured decode / roofline)."""
    out = table.copy()
    out["roofline_tok_s"] = [round(decode_roofline(mb * 1e6, bandwidth), 1) for mb in out[size_column]]
    out["of_roofline"] = (out["decode_tok_s"] / out["roofline_tok_s"]).round(2)
    return out


def plot_tradeoffs(table: pd.DataFrame, bandwidth: float | Bandwidth | None = None, *, size: str = "size_mb",
                   quality: str = "perplexity", speed: str = "decode_tok_s", label: str = "variant") -> Figure:
    """Two panels: size vs. quality (lower is better) and size vs. decode speed, with the roofline curve.

    The figure is made with pyplot, so a notebook shows it at the end of the cell (assign the result to
    avoid showing it twice); close it with ``plt.close(fig)`` when drawing many.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    missing = [c for c in (size, speed, label) if c not in table.columns]
    if missing:
        raise SlmLabError(f"The table has no column(s) {', '.join(missing)}.", f"Columns: {', '.join(table.columns)}.")
    panels = 2 if quality in table.columns else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), layout="constrained", squeeze=False)
    axes = axes[0]
    if panels == 2:
        ax = axes[0]
        ax.scatter(table[size], table[quality], color="tab:blue")
        for _, row in table.iterrows():
            ax.annotate(str(row[label]), (row[size], row[quality]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set(xlabel="file size (MB)", ylabel=f"{quality} (lower is better)", title="Size vs. quality")
    ax = axes[-1]
    ax.scatter(table[size], table[speed], color="tab:green", label="measured decode")
    for _, row in table.iterrows():
        ax.annotate(str(row[label]), (row[size], row[speed]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if bandwidth is not None:
        sizes = np.linspace(table[size].min() * 0.9, table[size].max() * 1.1, 50)
        ax.plot(sizes, [decode_roofline(s * 1e6, bandwidth) for s in sizes], "--", color="tab:red",
                label="roofline: bandwidth / size")
    ax.set(xlabel="file size (MB)", ylabel="tokens / s", title="Size vs. decode speed")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------- the worker process


def _worker(argv: Sequence[str]) -> dict[str, Any]:
    """``python -m slmlab.measure.bench --worker GGUF ...`` (what bench_model runs): benchmark here, one dict."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.measure.bench",
                                     description="benchmark one GGUF file (JSON out)")
    parser.add_argument("--worker", required=True, metavar="GGUF")
    parser.add_argument("--name", default=None)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=512)
    args = parser.parse_args(argv)
    from slmlab.models.gguf import check_gguf_file
    from slmlab.models.resolver import ResolvedModel

    path = check_gguf_file(args.worker)
    model = ResolvedModel(args.name or Path(path).stem, Path(path), "local", "gguf")
    result = bench_here(model, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, repeats=args.repeats,
                        warmup=args.warmup, n_threads=args.threads, n_ctx=args.n_ctx)
    # A fresh process: VmHWM is this model's peak whether or not it could be reset.
    return asdict(result) | {"isolated": True}


if __name__ == "__main__":
    worker_main(_worker)
