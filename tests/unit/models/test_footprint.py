"""slmlab.models.footprint: the arithmetic, the verdicts, and the estimate against a measured peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slmlab.errors import SlmLabError
from slmlab.models import catalog, footprint, hardware

SMOL = catalog.get("smollm2-135m-instruct")


@pytest.mark.fast
def test_bits_per_weight_of_plain_types_match_ggml_block_sizes():
    assert footprint.block_bits_per_weight("Q8_0") == 8.5  # 32 weights in 34 bytes
    assert footprint.block_bits_per_weight("Q4_0") == 4.5
    assert footprint.block_bits_per_weight("Q4_K") == 4.5
    assert footprint.bits_per_weight("F16") == 16
    # llama.cpp's size table for the mixes agrees with the block sizes within a few percent
    assert footprint.bits_per_weight("Q8_0") == pytest.approx(8.5, rel=0.02)
    assert 4.8 < footprint.bits_per_weight("Q4_K_M") < 5.0


@pytest.mark.fast
def test_kv_cache_formula_for_smollm2():
    # 2 (K and V) x 30 layers x 3 KV heads x 64 dims x 2 bytes = 23,040 bytes per token
    assert footprint.kv_cache_bytes(SMOL, 1) == 23_040
    assert footprint.kv_cache_bytes(SMOL, 8192) == 23_040 * 8192


@pytest.mark.fast
def test_verdicts_follow_the_budget():
    tiny = footprint.estimate(SMOL, "Q4_K_M", 2048, hardware.get_preset("binder-2gb"))
    assert tiny.verdict == footprint.FITS
    big = footprint.estimate(catalog.get("qwen3-8b"), "Q4_K_M", 4096, hardware.get_preset("binder-2gb"))
    assert big.verdict == footprint.NO_FIT
    on_h100 = footprint.estimate(catalog.get("qwen3-8b"), "Q4_K_M", 4096, hardware.get_preset("h100-80gb"))
    assert on_h100.verdict == footprint.FITS and on_h100.overhead_gb > big.overhead_gb  # CUDA context
    rows = footprint.fit_table(catalog.by_tier("medium"), hardware.get_preset("t4"), "F16")
    assert {r["verdict"] for r in rows} == {footprint.NO_FIT}


@pytest.mark.fast
def test_bad_input_is_explained():
    with pytest.raises(SlmLabError, match="Unknown quantization type 'Q4_K_X'.*\n.*Q4_K_M"):
        footprint.bits_per_weight("Q4_K_X")
    with pytest.raises(SlmLabError, match="trained for 8192 tokens of context, not 100000"):
        footprint.estimate(SMOL, context=100_000)
    with pytest.raises(SlmLabError, match="Unknown hardware preset 'rpi5'.*\n.*raspberry-pi-5"):
        hardware.get_preset("rpi5")


# Peak RSS from /proc (VmHWM): unlike ru_maxrss it starts afresh at exec, not at the parent's peak.
MEASURE = """
import json, re, sys
from pathlib import Path
from slmlab import models
llm = models.load_llama(n_ctx=int(sys.argv[1]))
llm.create_chat_completion(messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"peak_rss": peak_kb * 1024, "file_bytes": models.resolve().size_bytes}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
@pytest.mark.parametrize("context", [512, 8192])
def test_estimate_is_within_25_percent_of_measured_peak_rss(context):
    out = subprocess.run([sys.executable, "-c", MEASURE, str(context)], capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    est = footprint.estimate(SMOL, "Q4_1", context, weights_bytes=measured["file_bytes"])
    ratio = est.total_gb * 1e9 / measured["peak_rss"]
    assert 0.75 <= ratio <= 1.25, f"estimate {est.total_gb:.3f} GB vs measured {measured['peak_rss'] / 1e9:.3f} GB"


def test_the_landscape_notebooks_t4_claim_follows_the_estimate():
    """1.1's tier table says a 16 GB T4 holds the 14B models at 4 bits but not 30B: the weights alone say so."""
    from conftest import SOLUTIONS

    text = (SOLUTIONS / "01-foundations" / "01-slm-landscape.ipynb").read_text(encoding="utf-8")
    assert "a 16 GB T4 holds 14B at 4 bits, not 30B" in text
    t4 = hardware.get_preset("t4")
    weights_gb = {b: b * footprint.bits_per_weight("Q4_K_M") / 8 for b in (14, 30)}
    assert weights_gb[14] < t4.vram_gb < weights_gb[30]


def test_the_ternary_types_are_known_with_llama_cpps_bits():
    """TQ1_0/TQ2_0 (BitNet b1.58-style): 1.69 and 2.06 bits per weight, as `llama-quantize --help` says."""
    assert round(footprint.bits_per_weight("TQ1_0"), 2) == 1.69 and round(footprint.bits_per_weight("tq2_0"), 2) == 2.06
    assert footprint.quant_types()[-2:] == ["TQ2_0", "TQ1_0"]  # the fewest bits come last


def test_other_frameworks_formats_are_known_from_how_they_store_a_group():
    """MLX: 4-bit values in groups of 64 with a 16-bit scale and bias; ONNX int4: blocks of 32, a 32-bit scale."""
    from slmlab.convert.mlx_convert import group_bits

    assert footprint.bits_per_weight("mlx_4bit") == group_bits(4, 64) == 4.5
    assert footprint.bits_per_weight("ONNX_INT4") == 5.0
    assert {"MLX_4BIT", "MLX_8BIT", "ONNX_INT4", "ONNX_INT8"} <= set(footprint.quant_types())
    bitnet = catalog.get("bitnet-b1.58-2b-4t")
    ternary, mlx = (footprint.estimate(bitnet, quant, 4096) for quant in ("TQ1_0", "MLX_4BIT"))
    assert ternary.weights_gb < mlx.weights_gb
