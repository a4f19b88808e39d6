"""ONNX Runtime quantization of an exported model, and a side-by-side comparison of the variants.

Four variants of one model, each a folder that ONNX Runtime GenAI and plain onnxruntime both run:

    fp32          the ORT GenAI model builder's export (GGUF -> HF folder -> ONNX), already fused
    int8-dynamic  onnxruntime.quantization.quantize_dynamic() on fp32's model.onnx: int8 weights, activations
                  quantized on the fly (MatMul -> DynamicQuantizeLinear + MatMulInteger)
    int8, int4    the model builder's weight-only block quantization (MatMul -> MatMulNBits)

    folders = prepare(["fp32", "int8-dynamic", "int4"])   # built once (cached), in a child process
    results = [measure(folders[v], PROMPT, text, variant=v) for v in folders]
    table = compare(results)                                # size, decode speed, agreement with fp32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.backends.base import release_memory
from slmlab.convert import gguf_to_onnx as convert
from slmlab.errors import SlmLabError
from slmlab.measure.evaluate import same_prefix
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.process import run_worker, worker_main

VARIANTS = {
    "hf": "the Hugging Face folder transformers reads: the GGUF's weights dequantized to fp32 safetensors",
    "fp32": "ORT GenAI model builder, fp32: the exported graph, fused (GroupQueryAttention, SkipSimplifiedLayerNorm)",
    "int8-dynamic": "onnxruntime.quantization.quantize_dynamic on the fp32 graph: int8 weights, "
                    "activations quantized at run time (MatMulInteger)",
    "int8": "ORT GenAI model builder, int8: weight-only, block-wise (MatMulNBits, 8 bits)",
    "int4": "ORT GenAI model builder, int4: weight-only, block-wise (MatMulNBits, 4 bits)",
}
ONNX_VARIANTS = tuple(v for v in VARIANTS if v != "hf")
DYNAMIC_SUFFIX = "-ort-int8-dynamic"
# What `slmlab setup onnx` builds: every ONNX folder the notebooks open.
SETUP_VARIANTS = ("hf", "fp32", "int8-dynamic", "int8", "int4")


def _check_variant(variant: str) -> str:
    key = str(variant).strip().lower()
    if key not in VARIANTS:
        raise SlmLabError(f"Unknown variant '{variant}'.", f"Use one of {', '.join(VARIANTS)}.")
    return key


# ------------------------------------------------------------------------------------------------ building

def quantize_int8_dynamic(fp32_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                          per_channel: bool = False, force: bool = False) -> Path:
    """int8 dynamic quantization of an ORT GenAI fp32 folder with onnxruntime.quantization.quantize_dynamic, cached.

    The folder's other files (genai_config.json, tokenizer, chat template) are copied, so the result runs in ORT
    GenAI too. The quantizer runs in a child process: it holds the whole fp32 graph in memory (~1.8 GB peak for
    SmolLM2-135M), and that memory goes away with it.
    """
    src = Path(fp32_dir).expanduser()
    marker = convert.read_marker(src)
    if not (src / "genai_config.json").is_file() or not (src / "model.onnx").is_file():
        raise SlmLabError(f"{src} is not an ORT GenAI model folder (no genai_config.json / model.onnx).",
                          "Build one first: fp32_dir = slmlab.convert.onnx_quantize.prepare(['fp32'])['fp32'].")
    if marker is not None and marker.get("precision") not in (None, "fp32"):
        raise SlmLabError(f"{src.name} is already quantized ({marker['precision']}); quantize_dynamic expects fp32.",
                          "Pass the fp32 folder: prepare(['fp32'])['fp32'].")
    convert._require({"onnxruntime": convert.PIP_ONNX, "onnx": convert.PIP_ONNX})
    name = src.name.removesuffix("-ort-fp32")
    out = Path(out_dir) if out_dir is not None else convert.converted_dir() / (
        f"{name}{DYNAMIC_SUFFIX}" + ("-per-channel" if per_channel else ""))
    # The source's identity: its own marker (source SHA-256 + build time) when slmlab built it, else its files.
    source_id = (hashlib.sha256(json.dumps(marker, sort_keys=True).encode()).hexdigest() if marker
                 else convert._folder_sha256(src))

    def build(tmp: Path) -> dict[str, Any]:
        for path in src.iterdir():  # everything but the graph and the builder's log
            if path.is_file() and path.name not in ("model.onnx", "model.onnx.data", "builder.log", convert.MARKER):
                shutil.copy2(path, tmp / path.name)
        convert._say(f"quantizing {src.name}/model.onnx to int8 with onnxruntime.quantization.quantize_dynamic "
                     "(about 10 s, 1.8 GB of memory, in a child process)")
        _run_quantizer(src / "model.onnx", tmp / "model.onnx", per_channel)
        return {"precision": "int8-dynamic", "execution_provider": "cpu", "per_channel": per_channel,
                "quantizer": "onnxruntime.quantization.quantize_dynamic"}

    return convert._build(out, src, {"source_id": source_id, "per_channel": per_channel}, "ort-int8-dynamic",
                          build, force)


def _run_quantizer(model_in: Path, model_out: Path, per_channel: bool) -> None:
    """quantize_dynamic in a child process (its memory leaves with it); its output kept in quantize.log."""
    run_worker("slmlab.convert.onnx_quantize", ["quantize", model_in, model_out]
               + (["--per-channel"] if per_channel else []),
               what="onnxruntime's quantize_dynamic", log_path=model_out.parent / "quantize.log",
               hint="Check that onnxruntime and onnx are installed (pip install -e '.[onnx]') and that the fp32 "
                    "folder is complete (rebuild it with force=True).")


def _quantize_in_this_process(model_in: str, model_out: str, per_channel: bool) -> None:
    """What the child process runs: quantize_dynamic, weights int8, the data next to the graph (model.onnx.data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_in, model_out, weight_type=QuantType.QInt8, per_channel=per_channel,
                     use_external_data_format=True)
    if not Path(model_out).is_file():
        raise SlmLabError(f"onnxruntime's quantize_dynamic wrote no {model_out}.",
                          "Check that the fp32 folder is complete (rebuild it with force=True).")


def variant_folder(variant: str, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL) -> Path:
    """The folder of one variant of `model`, built in this process if it is not cached yet."""
    variant = _check_variant(variant)
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    hf = resolved.path if resolved.format == "hf-folder" else convert.gguf_to_hf(resolved)
    if variant == "hf":
        return hf
    if variant == "int8-dynamic":
        return quantize_int8_dynamic(convert.hf_to_ort_genai(hf, "fp32"))
    return convert.hf_to_ort_genai(hf, variant)


def expected_folder(variant: str, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL) -> Path:
    """Where `variant` of `model` is cached (whether or not it is built yet)."""
    variant = _check_variant(variant)
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format == "hf-folder":
        name = resolved.path.name.removesuffix("-hf")
        if variant == "hf":
            return resolved.path
    else:
        name = resolved.name
    suffix = {"hf": "-hf", "int8-dynamic": DYNAMIC_SUFFIX}.get(variant, f"-ort-{variant}")
    return convert.converted_dir() / f"{name}{suffix}"


def prepare(variants: Sequence[str] = ("fp32", "int8-dynamic", "int4"),
            model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL) -> dict[str, Path]:
    """The folders of `variants` of `model`; any not built yet are built (once, cached) in a child process.

    A child process keeps this one small: converting loads torch and the fp32 model (~1.8 GB at its peak), and
    a Jupyter kernel would keep much of that memory after the conversion ends. The child's progress is printed.
    A first run for SmolLM2-135M takes about a minute on 2 cores; later runs find the cache at once.
    """
    wanted = [_check_variant(v) for v in variants]
    missing = [v for v in wanted if convert.read_marker(expected_folder(v, model)) is None]
    if missing and not isinstance(model, ResolvedModel):
        hf_missing = convert.read_marker(expected_folder("hf", model)) is None
        if hf_missing:  # its own child: the GGUF -> HF step loads torch, whose memory only leaves with the process
            _build_in_child(["hf"], model)
        if [v for v in missing if v != "hf"]:  # this child only starts the builder / quantizer processes
            _build_in_child([v for v in missing if v != "hf"], model)
    return {v: variant_folder(v, model) for v in wanted}


def _build_in_child(variants: Sequence[str], model: str | os.PathLike) -> None:
    convert._say(f"building {', '.join(variants)} for {model} in a child process (once; cached afterwards)")
    run_worker("slmlab.convert.onnx_quantize", ["prepare", *variants, "--model", model], echo=True,
               what=f"Building {', '.join(variants)}",
               hint="Read the output above; run slmlab.convert.onnx_quantize.variant_folder(variant) to see the "
                    "error in this process.")


# ------------------------------------------------------------------------------------------------ looking inside

def folder_mb(folder: str | os.PathLike) -> float:
    """Size of the model files (model.onnx + its external data) in MB, or of every file for an HF folder."""
    root = Path(folder)
    files = [p for p in root.iterdir() if p.is_file() and p.name.startswith("model.")] or \
        [p for p in root.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 1)


def op_counts(folder: str | os.PathLike) -> dict[str, int]:
    """How many nodes of each operator type the folder's model.onnx holds (weights not loaded), most common first."""
    import onnx

    graph = onnx.load(str(Path(folder) / "model.onnx"), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


# ------------------------------------------------------------------------------------------------ measuring

@dataclass
class Measured:
    """One variant measured: size, load time, decode speed, its greedy answer, its argmax over a held-out text."""

    variant: str
    folder: Path
    size_mb: float
    load_s: float
    decode_tok_s: float
    answer: str
    answer_ids: list[int]
    tokens: list[int] = field(repr=False)  # the held-out text's token ids
    argmax: list[int] = field(repr=False)  # the most likely next token at each position (teacher forcing)


def measure(folder: str | os.PathLike, messages: str | Sequence[Mapping[str, str]], text: str,
            variant: str | None = None, max_tokens: int = 48, score_tokens: int = 512, repeats: int = 3) -> Measured:
    """Measure one ORT GenAI folder: load, decode speed (median of `repeats` greedy answers, after a warm-up),
    and the argmax next token over the first `score_tokens` tokens of `text`.

    One model at a time: ORT GenAI's model is closed before plain onnxruntime scores the text, so the peak
    memory is about one copy of the weights.
    """
    from slmlab.backends.onnx import OrtGenAIBackend, folder_next_token_argmax

    if not isinstance(repeats, int) or repeats < 1:
        raise SlmLabError(f"repeats={repeats!r}: need at least one timed run.", "Use repeats=1 or more.")
    folder = Path(folder)
    with OrtGenAIBackend(folder) as backend:
        backend.chat(messages, max_tokens=4)  # warm-up: the first run allocates buffers
        runs = [backend.chat(messages, max_tokens=max_tokens) for _ in range(repeats)]
        tokens = backend.tokenize(text)[:score_tokens]
        load_s = backend.load_s
    release_memory()
    speeds = [r.decode_tok_s for r in runs if r.decode_tok_s]
    if len(tokens) < 2:
        raise SlmLabError("The held-out text is shorter than two tokens.", "Pass a paragraph or more.")
    return Measured(variant or folder.name, folder, folder_mb(folder), round(load_s, 2),
                    round(statistics.median(speeds), 1) if speeds else float("nan"), runs[-1].text,
                    list(runs[-1].extra["token_ids"]), tokens, folder_next_token_argmax(folder, tokens))


def agreement(reference: Measured, other: Measured) -> float:
    """Fraction of held-out positions where `other` picks the same next token as `reference`."""
    if reference.tokens != other.tokens:
        raise SlmLabError(f"{reference.variant} and {other.variant} scored different token ids.",
                          "Measure both with the same text and score_tokens.")
    return sum(a == b for a, b in zip(reference.argmax, other.argmax, strict=True)) / len(reference.argmax)



def compare(results: Sequence[Measured], reference: str = "fp32") -> Any:
    """A pandas DataFrame, one row per variant: size, decode speed, and agreement with the reference variant."""
    import pandas as pd

    by_name = {r.variant: r for r in results}
    if reference not in by_name:
        raise SlmLabError(f"No measured variant named '{reference}' to compare with.",
                          f"Measured: {', '.join(by_name) or 'none'}. Measure the reference variant too.")
    ref = by_name[reference]
    rows = []
    for r in results:
        rows.append({"variant": r.variant, "size_mb": r.size_mb, "size_vs_ref": round(r.size_mb / ref.size_mb, 2),
                     "load_s": r.load_s, "decode_tok_s": r.decode_tok_s,
                     "speedup": round(r.decode_tok_s / ref.decode_tok_s, 2),
                     "next_token_agreement": round(agreement(ref, r), 3),
                     "same_greedy_tokens": f"{same_prefix(ref.answer_ids, r.answer_ids)}/{len(ref.answer_ids)}"})
    return pd.DataFrame(rows).set_index("variant")


def plot(table: Any, title: str = "") -> Any:
    """Three bar charts from compare()'s table: size, decode speed, agreement with the reference. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = [("size_mb", "size on disk (MB)", "{:.0f}"), ("decode_tok_s", "decode speed (tokens/s)", "{:.0f}"),
              ("next_token_agreement", "next-token agreement with the reference", "{:.0%}")]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (column, label, fmt) in zip(axes, panels, strict=True):
        values = table[column].astype(float)
        bars = ax.bar(table.index, values, color=colors[: len(values)])
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.margins(y=0.15)
    axes[2].set_ylim(0, 1.15)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ child process

def _worker(argv: Sequence[str]) -> dict[str, Any]:
    """``--worker quantize IN OUT [--per-channel]`` (quantize_dynamic) or ``--worker prepare VARIANT... --model M``
    (build variants into the cache): what quantize_int8_dynamic and prepare run in a child process."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.convert.onnx_quantize")
    parser.add_argument("--worker", required=True, choices=["quantize", "prepare"])
    parser.add_argument("targets", nargs="+", help="quantize: MODEL_IN MODEL_OUT; prepare: the variants")
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if args.worker == "quantize":
        model_in, model_out = args.targets
        _quantize_in_this_process(model_in, model_out, args.per_channel)
        return {"model": model_out}
    return {"folders": {variant: str(variant_folder(variant, args.model)) for variant in args.targets}}


if __name__ == "__main__":
    worker_main(_worker)
