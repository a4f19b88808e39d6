"""Memory a model needs: weights at a quantization + KV cache for a context + runtime overhead.

The estimate is checked in the test suite against the measured peak RSS of SmolLM2 in llama-cpp-python.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmlab.errors import SlmLabError
from slmlab.models.catalog import ModelSpec
from slmlab.models.hardware import Hardware

GB = 1e9
# llama.cpp's own table (tools/quantize/quantize.cpp, `llama-quantize --help`): file size of
# Llama-3-8B (8.03e9 parameters) in GiB and perplexity increase vs. F16, per quantization mix.
LLAMA3_8B_PARAMS = 8.03e9
LLAMACPP_QUANT_TABLE: dict[str, tuple[float, float]] = {
    "Q2_K": (2.96, 3.5199), "Q3_K_S": (3.41, 1.6321), "Q3_K_M": (3.74, 0.6569), "Q3_K_L": (4.03, 0.5562),
    "Q4_0": (4.34, 0.4685), "Q4_1": (4.78, 0.4511), "Q4_K_S": (4.37, 0.2689), "Q4_K_M": (4.58, 0.1754),
    "Q5_0": (5.21, 0.1316), "Q5_1": (5.65, 0.1062), "Q5_K_S": (5.21, 0.1049), "Q5_K_M": (5.33, 0.0569),
    "Q6_K": (6.14, 0.0217), "Q8_0": (7.96, 0.0026),
}
UNQUANTIZED = {"F32": 32.0, "F16": 16.0, "BF16": 16.0}
# llama.cpp's ternary types for models trained ternary (BitNet b1.58); `llama-quantize --help` lists them as 1.69 and
# 2.06 bpw: the block's own bits, from gguf's GGML_QUANT_SIZES. A real model keeps embeddings and output at more bits.
TERNARY = ("TQ1_0", "TQ2_0")
# Other frameworks' 4- and 8-bit formats, from how they store a group: bits + (scale bits + bias/zero bits) / group.
# MLX (mlx_lm convert -q): groups of 64, a scale and a bias in the model's float type (16-bit for a bf16/f16 model;
# a 32-bit source such as the course's HF folder makes 32-bit ones: 5.0 bits, which notebook 1.6 measures).
# ONNX int4 (ORT GenAI model builder, MatMulNBits): blocks of 32, a 32-bit scale on CPU, symmetric (no zero point).
OTHER_FORMATS: dict[str, float] = {"MLX_4BIT": 4 + (16 + 16) / 64, "MLX_8BIT": 8 + (16 + 16) / 64,
                                   "ONNX_INT4": 4 + 32 / 32, "ONNX_INT8": 8 + 32 / 32}
RUNTIME_BASE_GB = 0.064  # Python + llama.cpp libraries, measured on this project's CI machine
COMPUTE_FRACTION = 0.08  # compute buffers, as a fraction of the weights
GPU_CONTEXT_GB = 0.5  # CUDA context and cuBLAS workspace on an NVIDIA GPU
FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"


def quant_types() -> list[str]:
    """Quantization types the calculator knows, from most to fewest bits."""
    return sorted({*UNQUANTIZED, *LLAMACPP_QUANT_TABLE, *TERNARY, *OTHER_FORMATS}, key=bits_per_weight, reverse=True)


def bits_per_weight(qtype: str) -> float:
    """Average bits per weight of a GGUF quantization, mixes included (e.g. Q4_K_M ≈ 4.9), or of OTHER_FORMATS."""
    key = qtype.upper()
    if key in UNQUANTIZED:
        return UNQUANTIZED[key]
    if key in LLAMACPP_QUANT_TABLE:
        gib, _ = LLAMACPP_QUANT_TABLE[key]
        return gib * 2**30 * 8 / LLAMA3_8B_PARAMS
    if key in TERNARY:
        return block_bits_per_weight(key)
    if key in OTHER_FORMATS:
        return OTHER_FORMATS[key]
    raise SlmLabError(f"Unknown quantization type '{qtype}'.", f"Use one of: {', '.join(quant_types())}.")


def block_bits_per_weight(tensor_type: str) -> float:
    """Exact bits per weight of one GGML tensor type (block size and bytes from the gguf package)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[tensor_type.upper()]]
    except KeyError:
        raise SlmLabError(f"Unknown GGML tensor type '{tensor_type}'.",
                          f"Use one of: {', '.join(t.name for t in GGMLQuantizationType)}.") from None
    return nbytes * 8 / block


def kv_cache_bytes(spec: ModelSpec, context: int, bytes_per_value: float = 2.0) -> float:
    """K and V for every layer: 2 × layers × kv_heads × head_dim × context × bytes (f16 = 2)."""
    return 2 * spec.layers * spec.kv_heads * spec.head_dim * context * bytes_per_value


@dataclass(frozen=True)
class Footprint:
    """An estimate, in GB (10^9 bytes), and how it compares with a machine."""

    model: str
    quant: str
    context: int
    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    hardware: str | None = None
    budget_gb: float | None = None

    @property
    def total_gb(self) -> float:
        """Weights + KV cache + overhead."""
        return self.weights_gb + self.kv_cache_gb + self.overhead_gb

    @property
    def verdict(self) -> str | None:
        """fits (≤ 80 % of the budget), tight (≤ 100 %), or does not fit."""
        if self.budget_gb is None:
            return None
        use = self.total_gb / self.budget_gb
        return FITS if use <= 0.8 else TIGHT if use <= 1.0 else NO_FIT

    def row(self) -> dict[str, object]:
        """A flat dict for a table."""
        return {"model": self.model, "quant": self.quant, "context": self.context,
                "weights_gb": round(self.weights_gb, 3), "kv_cache_gb": round(self.kv_cache_gb, 3),
                "overhead_gb": round(self.overhead_gb, 3), "total_gb": round(self.total_gb, 3),
                "hardware": self.hardware, "budget_gb": self.budget_gb, "verdict": self.verdict}


def estimate(spec: ModelSpec, quant: str = "Q4_K_M", context: int = 4096, hardware: Hardware | None = None,
             weights_bytes: int | None = None, kv_bytes_per_value: float = 2.0) -> Footprint:
    """Estimate memory for `spec` at `quant` and `context`; pass `weights_bytes` for a real file's size."""
    if context <= 0:
        raise SlmLabError(f"Context length must be positive, got {context}.", "Use e.g. context=4096.")
    if context > spec.context:
        raise SlmLabError(f"{spec.key} was trained for {spec.context} tokens of context, not {context}.",
                          f"Use context ≤ {spec.context}.")
    weights = weights_bytes if weights_bytes is not None else spec.params_b * 1e9 * bits_per_weight(quant) / 8
    overhead = RUNTIME_BASE_GB * GB + COMPUTE_FRACTION * weights
    if hardware is not None and hardware.vram_gb:
        overhead += GPU_CONTEXT_GB * GB
    kv_cache = kv_cache_bytes(spec, context, kv_bytes_per_value)
    return Footprint(spec.key, quant.upper(), context, weights / GB, kv_cache / GB, overhead / GB,
                     hardware.key if hardware else None, hardware.model_memory_gb * 2**30 / GB if hardware else None)


def fit_table(specs: list[ModelSpec], hardware: Hardware, quant: str = "Q4_K_M", context: int = 4096) -> list[dict]:
    """One row per model: its footprint on `hardware` (context capped at each model's own limit)."""
    return [estimate(s, quant, min(context, s.context), hardware).row() | {"tier": s.tier, "params_b": s.params_b}
            for s in specs]


TOO_LONG = "context too long"


def fit_grid(specs: list[ModelSpec], presets: list[Hardware], quants: list[str] | tuple[str, ...] = ("Q4_K_M",),
             contexts: list[int] | tuple[int, ...] = (4096,)) -> list[dict]:
    """Every model × preset × quantization × context: total GB, share of the budget (`use`) and verdict.

    A context longer than a model was trained for gives `use` NaN and the verdict "context too long".
    """
    rows = []
    for spec in specs:
        for hw in presets:
            for quant in quants:
                for context in contexts:
                    base = {"model": spec.key, "params_b": spec.params_b, "tier": spec.tier, "hardware": hw.key,
                            "quant": quant.upper(), "context": context}
                    budget = hw.model_memory_gb * 2**30 / GB
                    if context > spec.context:
                        rows.append(base | {"total_gb": float("nan"), "budget_gb": budget,
                                            "use": float("nan"), "verdict": TOO_LONG})
                        continue
                    est = estimate(spec, quant, context, hw)
                    rows.append(base | {"total_gb": est.total_gb, "budget_gb": budget,
                                        "use": est.total_gb / budget, "verdict": est.verdict})
    return rows


def largest_fitting(hardware: Hardware, quant: str = "Q4_K_M", context: int = 4096,
                    specs: list[ModelSpec] | None = None, allow_tight: bool = False) -> ModelSpec | None:
    """The model with the most parameters that fits `hardware` (ties: the smaller footprint), or None.

    Models trained for less than `context` tokens do not qualify; "tight" counts only with allow_tight=True.
    """
    from slmlab.models.catalog import CATALOG

    ok = {FITS, TIGHT} if allow_tight else {FITS}
    candidates = [(s, estimate(s, quant, context, hardware)) for s in (specs or list(CATALOG.values()))
                  if context <= s.context]
    fitting = [(s, est) for s, est in candidates if est.verdict in ok]
    if not fitting:
        return None
    return max(fitting, key=lambda pair: (pair[0].params_b, -pair[1].total_gb))[0]


def plot_fit_grid(rows: list[dict], x: str = "hardware", y: str = "model", title: str = "", ax=None,
                  legend: bool = True):
    """A heat map of `use` (share of the memory budget): green fits, amber tight, red does not fit; GB in cells."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from matplotlib.colors import BoundaryNorm, ListedColormap

    frame = pd.DataFrame(rows)
    if frame.empty:
        raise SlmLabError("Nothing to plot: the grid has no rows.", "Pass the rows of footprint.fit_grid(...).")
    if frame.groupby([x, y]).size().max() > 1:
        raise SlmLabError(f"Several rows share one ({x}, {y}) cell.",
                          "Fix the other dimensions (one quant and one context, say) before plotting.")
    order_x = list(dict.fromkeys(frame[x]))
    order_y = list(dict.fromkeys(frame[y]))
    use = frame.pivot(index=y, columns=x, values="use").loc[order_y, order_x]
    total = frame.pivot(index=y, columns=x, values="total_gb").loc[order_y, order_x]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(order_x) + 3, 0.38 * len(order_y) + 1.5))
    cmap = ListedColormap(["#8fd19e", "#ffd166", "#ef7b7b"]).with_extremes(bad="#dddddd")
    norm = BoundaryNorm([0, 0.8, 1.0, 1e9], cmap.N)
    ax.imshow(np.ma.masked_invalid(use.to_numpy(dtype=float)), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(order_x)), [str(v) for v in order_x], rotation=30, ha="right")
    ax.set_yticks(range(len(order_y)), [str(v) for v in order_y])
    for i in range(len(order_y)):
        for j in range(len(order_x)):
            gb = total.iat[i, j]
            ax.text(j, i, "n/a" if np.isnan(gb) else f"{gb:.1f}", ha="center", va="center", fontsize=8)
    from matplotlib.patches import Patch

    if legend:
        ax.legend(handles=[Patch(color=c, label=lab) for c, lab in
                           zip(["#8fd19e", "#ffd166", "#ef7b7b", "#dddddd"], [FITS, TIGHT, NO_FIT, TOO_LONG],
                               strict=True)],
                  loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.set_title(title or f"GB needed, by {y} and {x}")
    return ax


@dataclass(frozen=True)
class RSSMeasurement:
    """Memory of a model loaded by llama-cpp-python in a fresh process, in bytes."""

    model: str
    n_ctx: int
    file_bytes: int  # the GGUF file
    baseline_bytes: int  # RSS after importing Python, slmlab and llama_cpp, before loading
    peak_bytes: int  # peak RSS (VmHWM) after loading and generating a few tokens


def measure_peak_rss(model: str = "smollm2-135m-instruct", n_ctx: int = 2048, timeout: float = 180) -> RSSMeasurement:
    """Load `model` in llama-cpp-python in a fresh Python process and measure its peak RSS (Linux: VmHWM)."""
    from slmlab.process import run_worker

    data = run_worker("slmlab.measure.rss_probe", [model, "--n-ctx", int(n_ctx)], timeout=timeout,
                      what=f"Loading {model} (n_ctx={n_ctx}) in a fresh process",
                      hint="Check the model reference with slmlab.models.resolver.resolve(model) first; for a slow "
                           "load, try a smaller model or context, or raise timeout=.")
    return RSSMeasurement(data["model"], data["n_ctx"], data["file_bytes"], data["baseline_bytes"], data["peak_bytes"])
