"""One model in several formats, measured side by side: size, bits per weight, decode speed, memory, perplexity.

Every variant runs in a fresh Python process (:func:`slmlab.process.run_worker`), with its own engine:

    gguf   llama.cpp through llama-cpp-python
    onnx   ONNX Runtime: plain onnxruntime scores the text (ORT GenAI returns the last position's logits only),
           ONNX Runtime GenAI generates
    mlx    Apple MLX through mlx_lm (on Linux: its CPU backend)
    litert LiteRT's interpreter (ai-edge-litert) on a litert-torch .tflite: its `prefill_32` and `decode` signatures

Each gets the *same token ids*: the held-out text's first tokens, scored in one window (every token predicted from
all the tokens before it), and one chat prompt, after which it decodes greedily, timed token by token after a
short warm-up run. Its peak RSS (VmHWM) is its own process's::

    ids, prompt = token_ids(hf_dir, text, 256), prompt_ids(hf_dir, "What is the capital of France?")
    runs = [measure(label, fmt, path, ids, prompt) for label, (fmt, path) in variants.items()]
    table = compare(runs, reference="F16 (reference)", parameters=134_515_008)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.process import run_worker, worker_main

WARMUP_PROMPT = 8  # the warm-up run (first calls allocate and compile) decodes after this many prompt tokens
FORMATS = {"gguf": "llama.cpp (llama-cpp-python)", "onnx": "ONNX Runtime (+ GenAI for decoding)",
           "mlx": "Apple MLX (mlx_lm, CPU backend on Linux)", "litert": "LiteRT (ai-edge-litert's interpreter)"}
WEIGHT_FILES = {"onnx": "model.onnx*", "mlx": "*.safetensors", "litert": "*.tflite"}  # in a model folder


def check_format(fmt: str) -> str:
    """The format's key, or a clear error."""
    key = str(fmt).strip().lower()
    if key not in FORMATS:
        raise SlmLabError(f"Unknown format {fmt!r}.", f"Use one of: {', '.join(FORMATS)}.")
    return key


def size_bytes(fmt: str, path: str | os.PathLike) -> int:
    """Bytes of the weights: a GGUF file; an ONNX folder's model.onnx + model.onnx.data; an MLX folder's safetensors;
    a LiteRT folder's .tflite file."""
    fmt, path = check_format(fmt), Path(path)
    if fmt == "gguf":
        if not path.is_file():
            raise SlmLabError(f"{path} is not a GGUF file.", "Pass the path of a .gguf file.")
        return path.stat().st_size
    files = list(path.glob(WEIGHT_FILES[fmt]))
    if not path.is_dir() or not files:
        what = WEIGHT_FILES[fmt]
        raise SlmLabError(f"{path} is not a {fmt} model folder (no {what}).", f"Build the {fmt} variant first.")
    return sum(p.stat().st_size for p in files)


def _tokenizer(hf_dir: str | os.PathLike) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(hf_dir))


def token_ids(hf_dir: str | os.PathLike, text: str, count: int) -> list[int]:
    """The first `count` token ids of `text` with the HF folder's tokenizer (the same vocabulary in every format)."""
    if not isinstance(count, int) or count < 2:
        raise SlmLabError(f"count={count!r}: perplexity needs at least two tokens.", "Use e.g. 256.")
    ids = list(_tokenizer(hf_dir)(text, add_special_tokens=False)["input_ids"])
    if len(ids) < count:
        raise SlmLabError(f"The text has {len(ids)} tokens, fewer than the {count} asked for.",
                          "Pass a longer text or a smaller count.")
    return ids[:count]


def prompt_ids(hf_dir: str | os.PathLike, question: str) -> list[int]:
    """The chat prompt's token ids: `question` as one user message, through the folder's chat template."""
    ids = _tokenizer(hf_dir).apply_chat_template([{"role": "user", "content": question}],
                                                 add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def decode(hf_dir: str | os.PathLike, ids: Sequence[int]) -> str:
    """Text of token ids, special tokens left out."""
    return _tokenizer(hf_dir).decode(list(ids), skip_special_tokens=True)


@dataclass
class FormatRun:
    """One variant measured: where it is, its size, decode speed, peak memory, and its scores on the token ids."""

    label: str
    format: str
    path: Path
    size_bytes: int
    decode_tok_s: float
    peak_rss_mb: float
    load_s: float
    generated: list[int]
    nll: list[float] = field(repr=False)  # -log p of each token from the second on
    argmax: list[int] = field(repr=False)  # the most likely next token at each position but the last

    @property
    def perplexity(self) -> float:
        """exp(mean negative log-likelihood) over the scored tokens."""
        return math.exp(statistics.fmean(self.nll))


def measure(label: str, fmt: str, path: str | os.PathLike, ids: Sequence[int], prompt: Sequence[int],
            gen_tokens: int = 32, threads: int | None = None, timeout: float = 600) -> FormatRun:
    """Measure one variant in a fresh process: load, score `ids`, decode `gen_tokens` greedily after `prompt`."""
    fmt, path = check_format(fmt), Path(path).expanduser()
    size = size_bytes(fmt, path)
    if len(ids) < 2 or not prompt:
        raise SlmLabError("Nothing to measure: need at least two token ids to score and a prompt.",
                          "Use token_ids(hf_dir, text, 256) and prompt_ids(hf_dir, question).")
    if not isinstance(gen_tokens, int) or gen_tokens < 2:
        raise SlmLabError(f"gen_tokens={gen_tokens!r}: a decode speed needs two tokens or more.", "Use e.g. 32.")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ids": list(map(int, ids)), "prompt": list(map(int, prompt))}, handle)
    try:
        row = run_worker("slmlab.measure.formats",
                         [fmt, path, handle.name, "--gen", gen_tokens, *(["--threads", threads] if threads else [])],
                         timeout=timeout, what=f"Measuring {label} ({FORMATS[fmt]})",
                         hint="Check that the variant loads in its engine on its own.")
    finally:
        os.unlink(handle.name)
    return FormatRun(label, fmt, path, size, row["decode_tok_s"], row["peak_rss_mb"], row["load_s"],
                     row["generated"], row["nll"], row["argmax"])


def agreement(reference: FormatRun, other: FormatRun) -> float:
    """Fraction of positions where `other`'s most likely next token is the reference's."""
    if len(reference.argmax) != len(other.argmax):
        raise SlmLabError(f"{reference.label} and {other.label} scored different numbers of tokens.",
                          "Measure both with the same ids.")
    return sum(a == b for a, b in zip(reference.argmax, other.argmax, strict=True)) / len(reference.argmax)


def compare(runs: Sequence[FormatRun], reference: str, parameters: int) -> Any:
    """A pandas DataFrame, one row per variant: size, bits per weight, speed, memory, perplexity, agreement."""
    import pandas as pd

    by_label = {r.label: r for r in runs}
    if reference not in by_label:
        raise SlmLabError(f"No measured variant is labelled {reference!r}.", f"Measured: {', '.join(by_label)}.")
    if not isinstance(parameters, int) or parameters <= 0:
        raise SlmLabError(f"parameters={parameters!r} is not a parameter count.",
                          "Pass the model's, e.g. from its GGUF (inspect().parameter_count).")
    ref = by_label[reference]
    rows = [{"variant": r.label, "format": r.format, "size_mb": round(r.size_bytes / 1e6, 1),
             "bits_per_weight": round(r.size_bytes * 8 / parameters, 2), "decode_tok_s": round(r.decode_tok_s, 1),
             "peak_rss_mb": round(r.peak_rss_mb), "perplexity": round(r.perplexity, 2),
             "delta_pct": round((r.perplexity / ref.perplexity - 1) * 100, 1),
             "agreement": round(agreement(ref, r), 3)} for r in runs]
    return pd.DataFrame(rows).set_index("variant")


def plot(table: Any, title: str = "") -> Any:
    """Four bar charts from compare()'s table: size, decode speed, perplexity (log scale), agreement."""
    import matplotlib.pyplot as plt

    panels = [("size_mb", "size on disk (MB)", "{:.0f}", False), ("decode_tok_s", "decode (tokens/s)", "{:.0f}", False),
              ("perplexity", "perplexity (log scale, lower is better)", "{:.3g}", True),
              ("agreement", "next-token agreement with the reference", "{:.0%}", False)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    colors = {"gguf": "tab:blue", "onnx": "tab:orange", "mlx": "tab:green", "litert": "tab:red"}
    for ax, (column, label, fmt, log) in zip(axes, panels, strict=True):
        values = table[column].astype(float)
        bars = ax.bar(table.index, values, color=[colors.get(f, "tab:gray") for f in table["format"]])
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ child process

def nll_and_argmax(rows: Any, ids: Sequence[int]) -> tuple[list[float], list[int]]:
    """Row i of `rows` (logits) predicts ids[i + 1]: -log softmax at that id, and the row's argmax, in float64."""
    import numpy as np

    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] < len(ids) - 1:
        raise SlmLabError(f"Logits of shape {rows.shape} cannot score {len(ids)} tokens.", "This is a bug in slmlab.")
    nll: list[float] = []
    best: list[int] = []
    targets = np.asarray(ids[1:])
    for start in range(0, len(targets), 64):
        chunk = rows[start:min(start + 64, len(targets))].astype(np.float64)
        top = chunk.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(chunk - top).sum(axis=1, keepdims=True)))[:, 0]
        picks = targets[start:start + len(chunk)]
        nll.extend((lse - chunk[np.arange(len(chunk)), picks]).tolist())
        best.extend(chunk.argmax(axis=1).tolist())
    return nll, best


def tokens_per_second(times: Sequence[float]) -> float:
    """Decode speed from the times each token arrived: the steps after the first, over the time they took."""
    if len(times) < 2 or times[-1] <= times[0]:
        raise SlmLabError("Fewer than two tokens were generated: no decode speed.",
                          "Ask for more tokens, or use a prompt the model does not end at once.")
    return (len(times) - 1) / (times[-1] - times[0])


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _gguf(path: str, ids: list[int], prompt: list[int], gen: int, threads: int | None) -> dict[str, Any]:
    from llama_cpp import Llama

    start = perf_counter()
    n_ctx = -(-max(len(ids), len(prompt) + gen) // 256) * 256
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=len(ids), logits_all=True, n_threads=threads, verbose=False)
    load_s = perf_counter() - start
    llm.eval(ids)
    nll, best = nll_and_argmax(llm.scores[:len(ids) - 1], ids)
    llm.close()
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, verbose=False)  # no logits kept: decode as served

    def run(count: int, prompt: list[int] = prompt) -> tuple[list[int], list[float]]:
        out, times = [], []
        llm.reset()  # no prefix reuse from the warm-up: every run evaluates its whole prompt
        for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            times.append(perf_counter())
            if len(out) == count or token == llm.token_eos():
                break
        return out, times

    run(2, prompt[:WARMUP_PROMPT])  # warm-up: a short prompt, two tokens
    out, times = run(gen)
    llm.close()
    return {"load_s": load_s, "nll": nll, "argmax": best, "generated": out, "times": times}


def _onnx(path: str, ids: list[int], prompt: list[int], gen: int, threads: int | None) -> dict[str, Any]:
    import onnxruntime_genai as og

    from slmlab.backends.onnx import _Decoder

    start = perf_counter()
    decoder = _Decoder(Path(path))
    load_s = perf_counter() - start
    logits, _ = decoder.run(ids, decoder.empty, len(ids))
    nll, best = nll_and_argmax(logits[:len(ids) - 1], ids)
    del decoder, logits
    config = og.Config(path)
    config.clear_providers()
    model = og.Model(config)
    eos = set(og.Tokenizer(model).eos_token_ids)

    def run(count: int, prompt: list[int] = prompt) -> tuple[list[int], list[float]]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + count, do_sample=False, repetition_penalty=1.0)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt)
        out: list[int] = []
        times: list[float] = []
        while len(out) < count and not generator.is_done():
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
            times.append(perf_counter())
            if out[-1] in eos:
                break
        return out, times

    run(2, prompt[:WARMUP_PROMPT])
    out, times = run(gen)
    return {"load_s": load_s, "nll": nll, "argmax": best, "generated": out, "times": times}


def _mlx(path: str, ids: list[int], prompt: list[int], gen: int, threads: int | None) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load, stream_generate

    start = perf_counter()
    model, tokenizer = load(path)[:2]
    load_s = perf_counter() - start
    logits = model(mx.array([ids]))[0, :len(ids) - 1].astype(mx.float32)
    nll, best = nll_and_argmax(np.array(logits), ids)
    del logits

    def run(count: int, prompt: list[int] = prompt) -> tuple[list[int], list[float]]:
        out, times = [], []
        for response in stream_generate(model, tokenizer, prompt, max_tokens=count):  # greedy: no sampler given
            out.append(int(response.token))
            times.append(perf_counter())
        return out, times

    run(2, prompt[:WARMUP_PROMPT])
    out, times = run(gen)
    return {"load_s": load_s, "nll": nll, "argmax": best, "generated": out, "times": times}


def _litert(path: str, ids: list[int], prompt: list[int], gen: int, threads: int | None) -> dict[str, Any]:
    from slmlab.backends.litert import LiteRtDecoder

    start = perf_counter()
    model = LiteRtDecoder(path, threads)
    load_s = perf_counter() - start
    nll, best = nll_and_argmax(model.score(ids), ids)  # `decode` returns logits, `prefill` only fills the cache
    eos = _litert_eos(Path(path))

    def run(count: int, prompt: list[int] = prompt) -> tuple[list[int], list[float]]:
        out, times = [], []
        for token in model.generate(prompt, count, eos):
            out.append(token)
            times.append(perf_counter())
        return out, times

    run(2, prompt[:WARMUP_PROMPT])
    out, times = run(gen)
    return {"load_s": load_s, "nll": nll, "argmax": best, "generated": out, "times": times}


def _litert_eos(folder: Path) -> set[int]:
    """The end-of-sequence ids of the model a LiteRT folder was converted from (its marker names the HF folder)."""
    from slmlab.convert.gguf_to_onnx import read_marker

    command = (read_marker(folder) or {}).get("command", [])
    source = next((arg.split("=", 1)[1] for arg in command if arg.startswith("--checkpoint_path=")), "")
    for name in ("generation_config.json", "config.json"):
        config = Path(source) / name
        if source and config.is_file():
            eos = json.loads(config.read_text()).get("eos_token_id")
            if eos is not None:
                return set(eos) if isinstance(eos, list) else {int(eos)}
    return set()


def _worker(argv: Sequence[str]) -> dict[str, Any]:
    """``--worker FORMAT PATH IDS_JSON --gen N [--threads T]``: what measure() runs in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.measure.formats")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("format", choices=list(FORMATS))
    parser.add_argument("path")
    parser.add_argument("ids_json")
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    data = json.loads(Path(args.ids_json).read_text())
    engine = {"gguf": _gguf, "onnx": _onnx, "mlx": _mlx, "litert": _litert}[args.format]
    result = engine(args.path, data["ids"], data["prompt"], args.gen, args.threads)
    times = result.pop("times")
    return {**result, "decode_tok_s": tokens_per_second(times), "peak_rss_mb": _peak_rss_mb()}


if __name__ == "__main__":
    worker_main(_worker)
