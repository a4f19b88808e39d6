"""slmlab.production.case_study and speculative: the roofline and cost arithmetic, and the figures' sources."""

from __future__ import annotations

import pytest

from slmlab.errors import SlmLabError
from slmlab.models import catalog, footprint
from slmlab.production import case_study as cs
from slmlab.production import speculative

pytestmark = pytest.mark.fast
PHI = "phi-4-mini-instruct"


def test_every_preset_has_a_bandwidth_and_compute_with_a_source() -> None:
    for table in (cs.BANDWIDTH_GB_S, cs.PEAK_TFLOPS):
        assert set(cs.PRESETS) <= set(table)
    assert all(f.source and f.value > 0 for t in (cs.BANDWIDTH_GB_S, cs.PEAK_TFLOPS, cs.PRICE_PER_HOUR_USD)
               for f in t.values())
    assert set(cs.sources().figure) == {"bandwidth GB/s", "peak TFLOPS", "USD/hour"}


def test_batch_one_is_bandwidth_over_bytes_and_batching_reads_weights_once() -> None:
    weights = footprint.estimate(catalog.get(PHI), "Q4_K_M").weights_gb * 1e9
    kv = footprint.kv_cache_bytes(catalog.get(PHI), 1024)
    assert cs.bytes_per_token(PHI, "Q4_K_M", 1024) == pytest.approx(weights + kv)
    assert cs.roofline_tok_s(PHI, "Q4_K_M", 300.0) == pytest.approx(300e9 / (weights + kv))
    assert cs.roofline_tok_s(PHI, "Q4_K_M", 300.0, batch=8) == pytest.approx(8 * 300e9 / (weights + 8 * kv))
    capped = cs.roofline_tok_s(PHI, "Q4_K_M", 300.0, peak_tflops=0.1, batch=8)
    assert capped == pytest.approx(0.1e12 / (2 * 3.8e9))
    with pytest.raises(SlmLabError):
        cs.roofline_tok_s(PHI, "Q4_K_M", 0.0)


def test_the_tables_agree_with_the_formulas() -> None:
    speed = cs.roofline_table(PHI, "Q4_K_M", ("t4", "laptop-8gb"), batch=8)
    t4 = speed.set_index("hardware").loc["t4"]
    assert t4.tok_s_batch1 == pytest.approx(cs.roofline_tok_s(PHI, "Q4_K_M", 320.0, 65.0), abs=0.06)
    assert t4.bound == "memory" and speed.set_index("hardware").loc["laptop-8gb", "bound"] == "compute"
    cost = cs.cost_table(speed, efficiency=0.5).set_index("hardware")
    assert cost.loc["t4", "usd_per_m_batch1"] == pytest.approx(0.526 / (0.5 * t4.tok_s_batch1 * 3600) * 1e6, rel=1e-3)
    assert cs.cost_per_million(3.6, 1000) == pytest.approx(1.0)
    fit = cs.footprint_table(PHI, ("F16", "Q4_K_M"), ("laptop-8gb", "a100-80gb"))
    verdicts = fit.set_index(["quant", "hardware"]).verdict
    assert verdicts[("F16", "laptop-8gb")] == "does not fit" and verdicts[("Q4_K_M", "laptop-8gb")] == "fits"


def test_ridge_points_show_decoding_is_memory_bound_on_gpus() -> None:
    ridges = cs.ridge_table(PHI, "Q4_K_M", ("t4", "h100-80gb"), batches=(1, 8))
    assert (ridges.intensity_batch1 < ridges.ridge_flops_per_byte).all()
    assert (ridges.intensity_batch8 > ridges.intensity_batch1).all()
    chips = cs.accelerator_table(PHI, "Q8_0").set_index("accelerator").chips_for_weights
    assert chips["Groq LPU"] > 1 and chips["Cerebras WSE-3"] == 1


def test_unknown_models_and_presets_are_named() -> None:
    with pytest.raises(SlmLabError, match="not in the course catalog"):
        cs.bytes_per_token("phi-9", "Q4_K_M")
    with pytest.raises(SlmLabError, match="No bandwidth"):
        cs.roofline_table(PHI, "Q4_K_M", ("binder-2gb",))


def test_draft_flags_and_the_acceptance_line() -> None:
    assert speculative.draft_args("d.gguf", 4) == ["--model-draft", "d.gguf", "--spec-type", "draft-simple",
                                                   "--spec-draft-n-max", "4"]
    with pytest.raises(SlmLabError):
        speculative.draft_args("d.gguf", 0)
    log = "slot print_timing: id  0 | task 0 | draft acceptance = 0.75000 (   18 accepted /    24 generated)"
    assert speculative._accepted({}, log) == (18, 24)
    assert speculative._accepted({"draft_n": 10, "draft_n_accepted": 7}, "") == (7, 10)
    with pytest.raises(SlmLabError, match="no draft acceptance"):
        speculative._accepted({}, "nothing here")
