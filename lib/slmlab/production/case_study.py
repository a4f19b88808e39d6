"""The chapter's case study, Phi-4-mini-instruct (3.8B), sized, rendered and priced without its weights, and the
same flow run on SmolLM2, measured.

    fit = footprint_table("phi-4-mini-instruct", ("F16", "Q8_0", "Q4_K_M"), PRESETS)   # GB needed vs. each preset
    speed = roofline_table("phi-4-mini-instruct", "Q4_K_M", PRESETS, batch=8)          # tokens/s the memory allows
    cost = cost_table(speed)                                                            # USD per million tokens

Decoding one token reads every weight once, plus the KV cache of the tokens so far, so a preset's memory bandwidth
caps it: tokens/s ≤ bandwidth / (weight bytes + KV bytes). A batch of B sequences reads the weights once for B
tokens, so the cap rises with B until compute (2 FLOPs per parameter per token) becomes the limit. The bandwidths,
peak compute and prices below are parameters, each with its source: replace them with your own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slmlab.errors import SlmLabError
from slmlab.models import catalog, footprint
from slmlab.models.hardware import get_preset

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Figure:
    """A number taken from somewhere else, and where."""

    value: float
    source: str


# Peak memory bandwidth, GB/s (10^9 bytes per second), from the vendors' data sheets or the memory's standard.
BANDWIDTH_GB_S: dict[str, Figure] = {
    "raspberry-pi-5": Figure(17.1, "LPDDR4X-4267 on a 32-bit bus (Raspberry Pi 5 product brief): 4267 MT/s × 4 B"),
    "laptop-8gb": Figure(51.2, "dual-channel DDR4-3200 (JEDEC): 2 channels × 8 B × 3200 MT/s"),
    "laptop-16gb": Figure(51.2, "dual-channel DDR4-3200 (JEDEC): 2 channels × 8 B × 3200 MT/s"),
    "mac-m2-16gb": Figure(100.0, "Apple M2: 100 GB/s unified memory bandwidth (Apple's announcement, 2022)"),
    "t4": Figure(320.0, "NVIDIA T4 data sheet: 320 GB/s GDDR6"),
    "l4": Figure(300.0, "NVIDIA L4 data sheet: 300 GB/s GDDR6"),
    "a100-80gb": Figure(2039.0, "NVIDIA A100 80GB SXM data sheet: 2,039 GB/s HBM2e (PCIe: 1,935)"),
    "h100-80gb": Figure(3350.0, "NVIDIA H100 SXM data sheet: 3.35 TB/s HBM3 (PCIe: 2 TB/s)"),
}
# Peak dense 16-bit (GPU tensor cores) or FP32 (CPU SIMD) compute, TFLOPS.
PEAK_TFLOPS: dict[str, Figure] = {
    "raspberry-pi-5": Figure(0.15, "4 Cortex-A76 × 2.4 GHz × 16 FP32 FLOPs/cycle (2 × 128-bit FMA): an estimate"),
    "laptop-8gb": Figure(0.38, "4 cores × 3 GHz × 32 FP32 FLOPs/cycle (2 × 256-bit FMA, AVX2): an estimate"),
    "laptop-16gb": Figure(0.77, "8 cores × 3 GHz × 32 FP32 FLOPs/cycle (2 × 256-bit FMA, AVX2): an estimate"),
    "mac-m2-16gb": Figure(3.6, "Apple M2 GPU: 3.6 TFLOPS FP32 (Apple's announcement, 2022)"),
    "t4": Figure(65.0, "NVIDIA T4 data sheet: 65 TFLOPS FP16 (tensor cores)"),
    "l4": Figure(121.0, "NVIDIA L4 data sheet: 242 TFLOPS FP16 with sparsity, 121 dense"),
    "a100-80gb": Figure(312.0, "NVIDIA A100 data sheet: 312 TFLOPS BF16 dense"),
    "h100-80gb": Figure(989.0, "NVIDIA H100 SXM data sheet: 989 TFLOPS BF16 dense"),
}
# What an hour of each preset costs to rent (USD, on-demand list prices, us-east-1, Linux) as the course recorded
# them; prices change and differ by region and commitment: pass your own quote to cost_table.
PRICE_PER_HOUR_USD: dict[str, Figure] = {
    "laptop-8gb": Figure(0.1785, "AWS c7i.xlarge (4 vCPU, 8 GiB), the cloud twin of the preset"),
    "laptop-16gb": Figure(0.357, "AWS c7i.2xlarge (8 vCPU, 16 GiB)"),
    "t4": Figure(0.526, "AWS g4dn.xlarge (1 × T4)"),
    "l4": Figure(0.8048, "AWS g6.xlarge (1 × L4)"),
    "a100-80gb": Figure(5.12, "AWS p4de.24xlarge ($40.96/h for 8 × A100 80GB) per GPU"),
    "h100-80gb": Figure(12.29, "AWS p5.48xlarge ($98.32/h for 8 × H100 at launch) per GPU; AWS lowered P5 prices "
                               "in 2025: use your quote"),
}
PRESETS = ("raspberry-pi-5", "laptop-8gb", "laptop-16gb", "mac-m2-16gb", "t4", "l4", "a100-80gb", "h100-80gb")
CPU_PRESETS = ("raspberry-pi-5", "laptop-8gb", "laptop-16gb")
GPU_PRESETS = ("t4", "l4", "a100-80gb", "h100-80gb")


def _model(key: str) -> catalog.ModelSpec:
    spec = catalog.CATALOG.get(key)
    if spec is None:
        raise SlmLabError(f"{key!r} is not in the course catalog.",
                          "`slmlab models` lists it; e.g. phi-4-mini-instruct.")
    return spec


def _figure(table: Mapping[str, Figure], preset: str, what: str) -> Figure:
    if preset not in table:
        raise SlmLabError(f"No {what} is recorded for the preset {preset!r}.",
                          f"Presets with one: {', '.join(table)}; or pass your own table.")
    return table[preset]


def footprint_table(model: str, quants: Sequence[str], presets: Sequence[str] = PRESETS,
                    context: int = 4096) -> pd.DataFrame:
    """GB needed (weights + KV cache for `context` + overhead) per quantization, against each preset's memory."""
    import pandas as pd

    rows = footprint.fit_grid([_model(model)], [get_preset(p) for p in presets], quants=tuple(quants),
                              contexts=(context,))
    return pd.DataFrame(rows)[["quant", "hardware", "total_gb", "budget_gb", "use", "verdict"]]


def bytes_per_token(model: str, quant: str, context_fill: int = 1024, batch: int = 1) -> float:
    """Bytes one decoding step reads: the weights once, plus each sequence's KV cache of `context_fill` tokens."""
    spec = _model(model)
    weights = footprint.estimate(spec, quant, min(4096, spec.context)).weights_gb * 1e9
    return weights + batch * footprint.kv_cache_bytes(spec, context_fill)


def roofline_tok_s(model: str, quant: str, bandwidth_gb_s: float, peak_tflops: float | None = None,
                   batch: int = 1, context_fill: int = 1024) -> float:
    """Tokens/s a batch of `batch` sequences can decode at most: memory-bound B × bandwidth / bytes per step,
    and never above the compute bound peak FLOPs / (2 × parameters)."""
    if bandwidth_gb_s <= 0 or batch < 1:
        raise SlmLabError(f"bandwidth {bandwidth_gb_s} GB/s, batch {batch}: both must be positive.",
                          "Pass the memory bandwidth in GB/s and a batch of at least 1.")
    memory_bound = batch * bandwidth_gb_s * 1e9 / bytes_per_token(model, quant, context_fill, batch)
    if peak_tflops is None:
        return memory_bound
    return min(memory_bound, peak_tflops * 1e12 / (2 * _model(model).params_b * 1e9))


def roofline_table(model: str, quant: str, presets: Sequence[str] = PRESETS, batch: int = 8,
                   context_fill: int = 1024, bandwidth: Mapping[str, Figure] = BANDWIDTH_GB_S,
                   compute: Mapping[str, Figure] = PEAK_TFLOPS) -> pd.DataFrame:
    """Per preset: bandwidth, the decode roofline for one sequence and for `batch`, and which bound holds."""
    import pandas as pd

    rows = []
    for preset in presets:
        bw, peak = _figure(bandwidth, preset, "bandwidth").value, _figure(compute, preset, "peak compute").value
        one = roofline_tok_s(model, quant, bw, peak, 1, context_fill)
        many = roofline_tok_s(model, quant, bw, peak, batch, context_fill)
        memory_bound = roofline_tok_s(model, quant, bw, None, batch, context_fill)
        rows.append({"hardware": preset, "bandwidth_gb_s": bw, "tok_s_batch1": round(one, 1),
                     f"tok_s_batch{batch}": round(many, 1),
                     "bound": "memory" if memory_bound <= many + 1e-9 else "compute"})
    return pd.DataFrame(rows)


def cost_per_million(price_per_hour: float, tokens_per_s: float) -> float:
    """USD per million generated tokens at a sustained `tokens_per_s` on hardware renting at `price_per_hour`."""
    if tokens_per_s <= 0 or price_per_hour < 0:
        raise SlmLabError(f"{tokens_per_s} tokens/s at ${price_per_hour}/h cannot be priced.",
                          "Pass a positive speed and a price of at least 0.")
    return price_per_hour / (tokens_per_s * 3600) * 1e6


def cost_table(speed: pd.DataFrame, prices: Mapping[str, Figure] = PRICE_PER_HOUR_USD,
               efficiency: float = 0.6) -> pd.DataFrame:
    """USD per million tokens per preset at `efficiency` × each roofline column of `speed` (engines reach roughly
    half to four fifths of it on billion-parameter models); presets without a price are left out."""
    rows = []
    speed_columns = [c for c in speed.columns if c.startswith("tok_s_")]
    for record in speed.to_dict("records"):
        price = prices.get(record["hardware"])
        if price is None:
            continue
        row: dict[str, Any] = {"hardware": record["hardware"], "usd_per_hour": price.value}
        for column in speed_columns:
            row["usd_per_m_" + column.removeprefix("tok_s_")] = round(
                cost_per_million(price.value, efficiency * record[column]), 3)
        rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows)


def sources(*tables: Mapping[str, Figure]) -> pd.DataFrame:
    """Every figure used, with its source (for the notebook to show beside the results)."""
    import pandas as pd

    names = {id(BANDWIDTH_GB_S): "bandwidth GB/s", id(PEAK_TFLOPS): "peak TFLOPS", id(PRICE_PER_HOUR_USD): "USD/hour"}
    return pd.DataFrame([{"figure": names.get(id(t), "figure"), "hardware": k, "value": f.value, "source": f.source}
                         for t in (tables or (BANDWIDTH_GB_S, PEAK_TFLOPS, PRICE_PER_HOUR_USD)) for k, f in t.items()])


# Accelerators built around on-chip SRAM instead of off-chip DRAM/HBM: the bandwidth term of the roofline grows by
# orders of magnitude, the capacity per chip shrinks (vendor figures).
ACCELERATORS: dict[str, tuple[Figure, Figure]] = {  # name -> (bandwidth GB/s, memory GB per chip)
    "Groq LPU": (Figure(80_000.0, "Groq: 80 TB/s on-die SRAM bandwidth per chip"),
                 Figure(0.23, "Groq: 230 MB of SRAM per chip")),
    "Cerebras WSE-3": (Figure(21_000_000.0, "Cerebras: 21 PB/s on-wafer memory bandwidth"),
                       Figure(44.0, "Cerebras: 44 GB of on-wafer SRAM")),
}


def ridge_table(model: str, quant: str, presets: Sequence[str] = GPU_PRESETS, batches: Sequence[int] = (1, 8, 64),
                context_fill: int = 1024) -> pd.DataFrame:
    """The roofline's two sides: each preset's ridge point (peak FLOPs ÷ bandwidth: the FLOPs per byte above which
    compute, not memory, limits) against decoding's arithmetic intensity at each batch size (2 × parameters × batch
    FLOPs per step ÷ bytes read per step)."""
    import pandas as pd

    params = _model(model).params_b * 1e9
    rows = []
    for preset in presets:
        ridge = _figure(PEAK_TFLOPS, preset, "peak compute").value * 1e12 / (
            _figure(BANDWIDTH_GB_S, preset, "bandwidth").value * 1e9)
        row: dict[str, Any] = {"hardware": preset, "ridge_flops_per_byte": round(ridge, 1)}
        for batch in batches:
            row[f"intensity_batch{batch}"] = round(2 * params * batch / bytes_per_token(model, quant, context_fill,
                                                                                        batch), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def accelerator_table(model: str, quant: str, context_fill: int = 1024) -> pd.DataFrame:
    """For each SRAM accelerator: chips needed to hold the weights, and the batch-1 decode roofline if the weights
    stream from SRAM at the vendor's bandwidth (an upper bound: chip-to-chip links and compute cap it first)."""
    import math

    import pandas as pd

    need_gb = bytes_per_token(model, quant, context_fill) / 1e9
    return pd.DataFrame([{"accelerator": name, "bandwidth_gb_s": bw.value, "gb_per_chip": mem.value,
                          "chips_for_weights": math.ceil(need_gb / mem.value),
                          "tok_s_batch1_bound": round(roofline_tok_s(model, quant, bw.value, None, 1, context_fill))}
                         for name, (bw, mem) in ACCELERATORS.items()])
