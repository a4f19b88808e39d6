"""One model, every engine: cold start, TTFT, decode speed, peak memory and disk size, measured the same way.

:func:`measure_engine` measures one engine in a fresh Python process (``python -m slmlab.measure.compare --worker``),
so its peak RSS is its own and its cold start really starts from nothing. :func:`compare_engines` runs them
one after another into a DataFrame; :func:`plot_comparison` draws it; :func:`overhead_ratios` sets each served
engine against the in-process engine running the same weights; :func:`decision_table` and :func:`pick` turn
the measured rows into recommendations with rules over the numbers.

Every engine gets the same chat prompts, greedily, with the same token budget, and is timed on the client
side of its stream (so a server's HTTP, JSON and queueing are inside the figures):

- ``ready_s``: from starting the measuring process until the engine can take a request (loaded, served);
- ``cold_start_s``: from starting the measuring process to the end of the first complete answer
  (Python start, imports, loading, for a served engine starting its server, and one answer);
- ``ttft_s``: from the request to the first streamed piece, median over prompts x repeats after a warm-up;
- ``decode_tok_s``: (completion tokens - 1) / seconds from the first to the last piece, median likewise;
- ``latency_s``: the whole request, median likewise;
- ``peak_rss_mb``: VmHWM of the process that holds the model: the measuring process for an in-process engine
  and for Foundry Local (its web service runs inside the process that hosts it), the server's process for Ollama;
- ``disk_mb``: the size of the model files the engine loads (the GGUF, or the ONNX Runtime GenAI folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from slmlab.errors import SlmLabError, did_you_mean
from slmlab.measure.rss_probe import peak_rss
from slmlab.process import run_worker, worker_main

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

N_CTX = 2048  # the context every engine is given (KV caches sized alike)
DEFAULT_PROMPTS = ("Explain in two sentences what a barometer measures.", "Write a haiku about the sea.")


@dataclass(frozen=True)
class ComparedEngine:
    """How one engine runs the model: in-process or served, on which runtime and weights."""

    name: str  # the key used everywhere ("llamacpp", "ollama", ...)
    label: str  # what a table shows
    mode: str  # "in-process" | "served"
    runtime: str  # the inference library underneath
    weights: str  # "gguf" | "onnx"
    baseline: str | None = None  # for a served engine: the in-process engine on the same runtime and weights


COMPARED_ENGINES: dict[str, ComparedEngine] = {s.name: s for s in [
    ComparedEngine("llamacpp", "llama.cpp (in-process)", "in-process", "llama.cpp", "gguf"),
    ComparedEngine("ollama", "Ollama API (served)", "served", "llama.cpp", "gguf", baseline="llamacpp"),
    ComparedEngine("onnx", "ORT GenAI (in-process)", "in-process", "onnxruntime-genai", "onnx"),
    ComparedEngine("foundry", "Foundry Local (served)", "served", "onnxruntime-genai", "onnx", baseline="onnx"),
    ComparedEngine("hf", "transformers (in-process)", "in-process", "transformers", "gguf"),
]}
METRICS = {  # column -> (unit, True when higher is better)
    "cold_start_s": ("s", False), "ttft_s": ("s", False), "decode_tok_s": ("tok/s", True),
    "peak_rss_mb": ("MB", False), "disk_mb": ("MB", False),
}


def _spec(engine: str) -> ComparedEngine:
    key = str(engine).strip().lower()
    if key not in COMPARED_ENGINES:
        raise SlmLabError(f"'{engine}' is not an engine slmlab.measure.compare measures.",
                          f"{did_you_mean(key, COMPARED_ENGINES, n=1)}Engines: {', '.join(COMPARED_ENGINES)}.")
    return COMPARED_ENGINES[key]


# ----------------------------------------------------------------------------- measuring (in the worker)


def _disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (links followed: the bytes the engine reads)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _openai_api(url: str) -> bool:
    """True when GET {url}/v1/models answers 200 with a model list (an OpenAI-compatible API is there)."""
    import httpx

    try:
        reply = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=5, trust_env=False)
        return reply.status_code == 200 and isinstance(reply.json().get("data"), list)
    except (httpx.HTTPError, ValueError):
        return False


@dataclass
class _Opened:
    backend: Any  # a slmlab Backend
    rss_pid: int | str  # whose VmHWM is the engine's memory
    files: Path  # what it loads from disk
    openai_api: bool


@contextmanager
def _open_engine(spec: ComparedEngine, model: str) -> Iterator[_Opened]:
    """The engine loaded (a served one started and connected), ready to answer; everything closed after."""
    from slmlab.backends import open_backend
    from slmlab.models.resolver import resolve

    with ExitStack() as stack:
        if spec.name in ("llamacpp", "hf"):
            resolved = resolve(model)
            kwargs = {"n_ctx": N_CTX} if spec.name == "llamacpp" else {}
            backend = open_backend(spec.name, resolved, **kwargs)
            stack.callback(backend.close)
            yield _Opened(backend, "self", resolved.path, False)
        elif spec.name == "ollama":
            from slmlab.serve.ollama import ollama_name, ollama_server

            resolved = resolve(model)
            server = stack.enter_context(ollama_server([ollama_name(resolved.name)], n_ctx=N_CTX, keep_alive="-1"))
            backend = open_backend("ollama", resolved, host=server.url)
            stack.callback(backend.close)
            assert server.pid is not None, "a started server has a process"
            yield _Opened(backend, server.pid, resolved.path, _openai_api(server.url))
        elif spec.name in ("onnx", "foundry"):
            from slmlab.convert.gguf_to_onnx import ort_genai_folder
            from slmlab.foundry import local as foundry_local

            folder = ort_genai_folder(model, "int8")
            view = foundry_local.context_view(folder, min(N_CTX, _trained_context(folder)))
            if spec.name == "onnx":
                backend = open_backend("onnx", view)
            else:
                from slmlab.backends.openai_http import OpenAIBackend

                stack.callback(foundry_local.shutdown)
                service = stack.enter_context(foundry_local.web_service(view))
                backend = OpenAIBackend(service.base_url, model=service.model_id)
            stack.callback(backend.close)
            api = spec.name == "foundry" and _openai_api(service.url)
            yield _Opened(backend, "self", folder, api)
        else:  # pragma: no cover - COMPARED_ENGINES and this function are kept in step
            raise SlmLabError(f"No way to open '{spec.name}'.", "Add it to slmlab.measure.compare._open_engine.")


def _trained_context(folder: Path) -> int:
    config = json.loads((folder / "genai_config.json").read_text())
    return int(config["model"].get("context_length") or config["search"]["max_length"])


def _timed_answer(backend: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    """Stream one greedy chat answer; time it on this side of the stream."""
    stamps: list[float] = []
    start = perf_counter()
    for _ in backend.stream([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0):
        stamps.append(perf_counter())
    end = perf_counter()
    gen = backend.last
    tokens = gen.completion_tokens if gen is not None else len(stamps)
    decode = (tokens - 1) / (stamps[-1] - stamps[0]) if tokens > 1 and len(stamps) > 1 and stamps[-1] > stamps[0] \
        else float("nan")
    return {"ttft_s": (stamps[0] if stamps else end) - start, "decode_tok_s": decode, "latency_s": end - start,
            "tokens": tokens, "text": gen.text if gen is not None else ""}


def measure_here(engine: str, model: str = "smollm2-135m-instruct", *, prompts: Sequence[str] = DEFAULT_PROMPTS,
                 max_tokens: int = 32, repeats: int = 3, warmup: int = 1, started: float | None = None
                 ) -> dict[str, Any]:
    """Measure `engine` in this process (the worker's job); `started` is the wall-clock time the process began."""
    spec = _spec(engine)
    began = started if started is not None else time.time()
    with _open_engine(spec, model) as opened:
        ready = time.time() - began
        first = _timed_answer(opened.backend, prompts[0], max_tokens)
        cold = time.time() - began
        for _ in range(warmup):
            _timed_answer(opened.backend, prompts[0], min(max_tokens, 8))
        runs = [_timed_answer(opened.backend, p, max_tokens) for _ in range(repeats) for p in prompts]
        peak = peak_rss(opened.rss_pid)
        disk = _disk_bytes(opened.files)
        api = opened.openai_api

    def med(key: str) -> float:
        values = [r[key] for r in runs if r[key] == r[key]]  # NaN (one token only) left out
        return round(statistics.median(values), 4) if values else float("nan")

    return {"engine": spec.name, "label": spec.label, "mode": spec.mode, "runtime": spec.runtime,
            "weights": spec.weights, "disk_mb": round(disk / 1e6, 1), "ready_s": round(ready, 2),
            "cold_start_s": round(cold, 2), "ttft_s": med("ttft_s"), "decode_tok_s": round(med("decode_tok_s"), 1),
            "latency_s": med("latency_s"), "peak_rss_mb": round(peak / 1e6, 1),
            "rss_of": "server process" if opened.rss_pid != "self" else "this engine's process",
            "openai_api": api, "completion_tokens": int(statistics.median(r["tokens"] for r in runs)),
            "runs": len(runs), "answer": first["text"]}


# ----------------------------------------------------------------------------- measuring (from the notebook)


def measure_engine(engine: str, model: str = "smollm2-135m-instruct", *, prompts: Sequence[str] = DEFAULT_PROMPTS,
                   max_tokens: int = 32, repeats: int = 3, warmup: int = 1, timeout: float = 300) -> dict[str, Any]:
    """Measure one engine in a fresh Python process and return its row (see the module's docstring)."""
    spec = _spec(engine)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for name, value, low in (("max_tokens", max_tokens, 2), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SlmLabError(f"{name}={value!r} is not usable.", f"Use a whole number >= {low}.")
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise SlmLabError(f"prompts={prompts!r} has no usable prompt.", "Pass a list of non-empty strings.")
    args = [spec.name, "--model", model, "--prompts", json.dumps(prompts), "--max-tokens", max_tokens,
            "--repeats", repeats, "--warmup", warmup, "--started", repr(time.time())]
    return run_worker("slmlab.measure.compare", args, timeout=timeout, what=f"Measuring {spec.label}",
                      hint="Use fewer repeats or tokens, or pass a larger timeout=.")


def compare_engines(engines: Sequence[str] = tuple(COMPARED_ENGINES), model: str = "smollm2-135m-instruct", *,
                    prompts: Sequence[str] = DEFAULT_PROMPTS, max_tokens: int = 32, repeats: int = 3,
                    warmup: int = 1, show_progress: bool = True, timeout: float = 300) -> pd.DataFrame:
    """Measure each engine in turn (each in its own process) into one DataFrame, one row per engine."""
    from slmlab.progress import progress

    names = [_spec(e).name for e in engines]
    if not names:
        raise SlmLabError("No engines to compare.", f"Pass some of: {', '.join(COMPARED_ENGINES)}.")
    rows = []
    for name in progress(names, desc="measuring", unit="engine", disable=not show_progress):
        rows.append(measure_engine(name, model, prompts=prompts, max_tokens=max_tokens, repeats=repeats,
                                   warmup=warmup, timeout=timeout))
    return table(rows)


def table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows from measure_engine (and/or tables from compare_engines) as one DataFrame indexed by engine."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    records = [dict(r) for part in rows for r in (part.to_dict("records") if isinstance(part, pd.DataFrame)
                                                 else [part])]
    if not records or any("engine" not in r for r in records):
        raise SlmLabError("These are not rows of measure_engine().", "Pass the dicts measure_engine() returned.")
    engines = [r["engine"] for r in records]
    if len(set(engines)) < len(engines):
        raise SlmLabError(f"An engine appears twice: {engines}.", "Keep one row per engine.")
    return pd.DataFrame(records).set_index("engine", drop=False).rename_axis(None)


# ----------------------------------------------------------------------------- reading the table


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SlmLabError(f"The table has no column(s) {', '.join(missing)}.",
                          f"Pass the DataFrame compare_engines() returned (columns: {', '.join(df.columns)}).")
    if df.empty:
        raise SlmLabError("The table has no rows.", "Measure some engines first with compare_engines().")


def overhead_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Each served engine against its in-process baseline (same runtime, same weights), both from `df`.

    Ratios are served / in-process for times and memory (above 1: serving costs), in-process / served for
    decode speed (above 1: serving is slower).
    """
    import pandas as pd

    _require(df, ["engine", "ttft_s", "latency_s", "decode_tok_s", "cold_start_s", "peak_rss_mb"])
    rows = []
    by_engine = df.set_index("engine", drop=False)
    for name in by_engine.index:
        spec = COMPARED_ENGINES.get(name)
        if spec is None or spec.baseline is None or spec.baseline not in by_engine.index:
            continue
        served, local = by_engine.loc[name], by_engine.loc[spec.baseline]
        rows.append({"served": spec.label, "in-process": COMPARED_ENGINES[spec.baseline].label,
                     "ttft": served.ttft_s / local.ttft_s, "latency": served.latency_s / local.latency_s,
                     "decode_slowdown": local.decode_tok_s / served.decode_tok_s,
                     "cold_start": served.cold_start_s / local.cold_start_s,
                     "peak_rss": served.peak_rss_mb / local.peak_rss_mb})
    if not rows:
        raise SlmLabError("No served engine has its in-process baseline in this table.",
                          "Measure pairs together: ['llamacpp', 'ollama'] and/or ['onnx', 'foundry'].")
    return pd.DataFrame(rows).round(2)


NEEDS = {  # the standard questions: need -> (column, "min" | "max")
    "lowest memory": ("peak_rss_mb", "min"),
    "fastest cold start": ("cold_start_s", "min"),
    "fastest first token": ("ttft_s", "min"),
    "fastest decode": ("decode_tok_s", "max"),
    "smallest download": ("disk_mb", "min"),
}


def pick(df: pd.DataFrame, needs: Mapping[str, Any], by: str = "decode_tok_s", best: str = "max") -> str | None:
    """The engine that meets every need and is best `by` a column; None when none meets them all.

    Needs are ``max_<column>: limit`` (at most), ``min_<column>: limit`` (at least) or ``<column>: value``
    (equal, e.g. ``openai_api: True``), e.g. ``{"max_peak_rss_mb": 512, "max_cold_start_s": 2}``.
    """
    fits = meets(df, needs)
    _require(df, [by])
    if fits.empty:
        return None
    ordered = fits.sort_values(by, ascending=best == "min", kind="stable")
    return str(ordered.iloc[0]["engine"])


def meets(df: pd.DataFrame, needs: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of `df` that meet every need (see :func:`pick` for how needs are written)."""
    _require(df, ["engine"])
    if not isinstance(needs, Mapping):
        raise SlmLabError(f"needs={needs!r} is not a mapping.",
                          "Pass e.g. {'max_peak_rss_mb': 512, 'openai_api': True}.")
    mask = df["engine"].notna()
    for key, limit in needs.items():
        prefix, _, rest = str(key).partition("_")
        if prefix in ("max", "min") and rest in df.columns:
            column = df[rest]
            mask &= column <= limit if prefix == "max" else column >= limit
        elif key in df.columns:
            mask &= df[key] == limit
        else:
            numeric = [c for c in df.columns if df[c].dtype.kind in "if"]
            raise SlmLabError(f"The need '{key}' names no column of the table.",
                              f"Write max_<column> or min_<column> (numeric columns: {', '.join(numeric)}) or a "
                              f"column to equal (e.g. openai_api).")
    return df[mask]


def decision_table(df: pd.DataFrame, needs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Recommendations derived from the measured rows: the winner of each standard need, by how much, and
    (with `needs`) the fastest-decoding engine that meets all of them, or "none" with what rules each out."""
    import pandas as pd

    _require(df, ["engine", *(column for column, _ in NEEDS.values()), "openai_api", "latency_s"])
    rows = []
    for need, (column, best) in NEEDS.items():
        valid = df[df[column].notna()].sort_values(column, ascending=best == "min", kind="stable")
        if valid.empty:
            continue
        top = valid.iloc[0]
        unit = METRICS.get(column, ("", False))[0]
        tied = [str(e) for e in valid.loc[valid[column] == top[column], "engine"]]
        if len(tied) > 1:  # e.g. two engines reading the same GGUF: no winner on this need
            rows.append({"need": need, "engine": " = ".join(tied),
                         "why (measured)": f"{top[column]:g} {unit} each: a tie"})
            continue
        if len(valid) > 1:
            second = valid.iloc[1]
            factor = (top[column] / second[column]) if best == "max" else (second[column] / top[column])
            why = f"{top[column]:g} {unit} vs {second[column]:g} {unit} ({second['engine']}): {factor:.1f}x better"
        else:
            why = f"{top[column]:g} {unit} (the only one measured)"
        rows.append({"need": need, "engine": top["engine"], "why (measured)": why})
    served = df[df["openai_api"].astype(bool)].sort_values("latency_s", kind="stable")
    rows.append({"need": "OpenAI-compatible API", "engine": served.iloc[0]["engine"] if len(served) else "none",
                 "why (measured)": (f"/v1/models answered; lowest request latency among them "
                                    f"({served.iloc[0]['latency_s']:.3f} s)") if len(served)
                 else "no measured engine answered /v1/models"})
    if needs:
        choice = pick(df, needs)
        if choice is not None:
            why = f"meets {dict(needs)}; fastest decode among {list(meets(df, needs)['engine'])}"
        else:
            failed = []
            for _, row in df.iterrows():
                broken = [k for k in needs if meets(df.loc[[row.name]], {k: needs[k]}).empty]
                failed.append(f"{row['engine']}: {', '.join(broken)}")
            why = "no engine meets them all (" + "; ".join(failed) + ")"
        rows.append({"need": f"your needs {dict(needs)}", "engine": choice or "none", "why (measured)": why})
    return pd.DataFrame(rows)


def plot_comparison(df: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Figure:
    """One bar chart per metric, one bar per engine (in-process blue, served orange), the better end marked."""
    import matplotlib.pyplot as plt

    _require(df, ["engine", "mode", *metrics])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), layout="constrained", squeeze=False)
    colors = ["tab:orange" if m == "served" else "tab:blue" for m in df["mode"]]
    for ax, metric in zip(axes[0], metrics, strict=True):
        unit, higher = METRICS.get(metric, ("", False))
        ax.bar(df["engine"].astype(str), df[metric], color=colors)
        ax.set_title(f"{metric}\n({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:orange")]
    fig.legend(handles, ["in-process", "served"], loc="outside lower center", ncols=2, fontsize=8)
    return fig


# ----------------------------------------------------------------------------- the worker process


def add_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """The measurement options shared by `slmlab compare` and the ``--worker`` child it starts."""
    parser.add_argument("--engines", default=",".join(COMPARED_ENGINES),
                        help=f"comma-separated, of {', '.join(COMPARED_ENGINES)} (default: all)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", default=json.dumps(DEFAULT_PROMPTS), help="a JSON list of strings")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)


def parse_prompts(text: str) -> list[str]:
    """``--prompts``: a JSON list of strings, or a clear error."""
    try:
        prompts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlmLabError(f"--prompts {text!r} is not JSON: {exc.msg} (at character {exc.pos}).",
                          'Pass a JSON list of strings, e.g. --prompts \'["Why is the sky blue?"]\'.') from None
    return prompts


def main(argv: Sequence[str]) -> dict[str, Any]:
    """``python -m slmlab.measure.compare --worker ENGINE`` (what measure_engine runs): measure one engine here,
    its row as a dict."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.measure.compare", description="Measure one engine here.")
    add_measure_arguments(parser)
    parser.add_argument("--worker", required=True, choices=list(COMPARED_ENGINES),
                        help="measure this one engine (JSON out)")
    parser.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return measure_here(args.worker, args.model, prompts=parse_prompts(args.prompts), max_tokens=args.max_tokens,
                        repeats=args.repeats, warmup=args.warmup, started=args.started)


if __name__ == "__main__":
    worker_main(main)
