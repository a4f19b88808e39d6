"""The landscape notebook's library: fit grids, the largest model that fits, the heat map, measured RSS."""

from __future__ import annotations

import math
import sys

import pytest

from slmlab.errors import SlmLabError
from slmlab.models import catalog, footprint, hardware

PI, BINDER, H100 = (hardware.get_preset(k) for k in ("raspberry-pi-5", "binder-2gb", "h100-80gb"))
ALL = list(catalog.CATALOG.values())


@pytest.mark.fast
def test_fit_grid_has_one_row_per_combination_and_agrees_with_estimate():
    rows = footprint.fit_grid(ALL[:3], [PI, BINDER], ["Q8_0", "Q4_K_M"], [2048, 4096])
    assert len(rows) == 3 * 2 * 2 * 2
    row = next(r for r in rows if (r["model"], r["hardware"], r["quant"], r["context"]) ==
               ("smollm2-360m-instruct", "binder-2gb", "Q8_0", 4096))
    est = footprint.estimate(catalog.get("smollm2-360m-instruct"), "Q8_0", 4096, BINDER)
    assert row["total_gb"] == est.total_gb and row["verdict"] == est.verdict
    assert row["use"] == pytest.approx(est.total_gb / est.budget_gb)


@pytest.mark.fast
def test_fit_grid_marks_contexts_beyond_training_instead_of_capping():
    [row] = footprint.fit_grid([catalog.get("bitnet-b1.58-2b-4t")], [H100], ["Q4_K_M"], [8192])
    assert row["verdict"] == footprint.TOO_LONG and math.isnan(row["use"])


@pytest.mark.fast
def test_largest_fitting_prefers_more_parameters_and_respects_the_budget():
    best = footprint.largest_fitting(BINDER, "Q4_K_M", 4096)
    assert footprint.estimate(best, "Q4_K_M", 4096, BINDER).verdict == footprint.FITS
    bigger = [s for s in ALL if s.params_b > best.params_b and s.context >= 4096]
    assert all(footprint.estimate(s, "Q4_K_M", 4096, BINDER).verdict != footprint.FITS for s in bigger)
    assert footprint.largest_fitting(H100, "Q4_K_M", 4096).key == "qwen3-14b"  # the catalog's largest
    # ties on parameters go to the smaller footprint: Qwen3-1.7B (GQA) beats SmolLM2-1.7B (32 KV heads)
    pair = [catalog.get("smollm2-1.7b-instruct"), catalog.get("qwen3-1.7b")]
    assert footprint.largest_fitting(PI, "Q8_0", 8192, specs=pair).key == "qwen3-1.7b"


@pytest.mark.fast
def test_largest_fitting_excludes_short_contexts_and_says_none():
    phi4_and_qwen8b = [catalog.get("phi-4"), catalog.get("qwen3-8b")]
    assert footprint.largest_fitting(H100, "F16", 16384, specs=phi4_and_qwen8b).key == "phi-4"
    assert footprint.largest_fitting(H100, "F16", 32768, specs=phi4_and_qwen8b).key == "qwen3-8b"  # phi-4: 16k
    assert footprint.largest_fitting(BINDER, "F16", 32768, specs=[catalog.get("qwen3-8b")]) is None


@pytest.mark.fast
def test_heat_map_colours_each_cell_by_its_verdict():
    import matplotlib

    matplotlib.use("Agg")
    rows = footprint.fit_grid(ALL, [PI, BINDER, H100], ["Q4_K_M"], [8192])
    ax = footprint.plot_fit_grid(rows)
    image = ax.get_images()[0].get_array()
    assert image.shape == (len(ALL), 3)
    assert image.mask.sum() == sum(r["verdict"] == footprint.TOO_LONG for r in rows)
    texts = {t.get_text() for t in ax.texts}
    assert "n/a" in texts and f"{rows[0]['total_gb']:.1f}" in texts
    with pytest.raises(SlmLabError, match="Several rows share one"):
        footprint.plot_fit_grid(footprint.fit_grid(ALL[:2], [PI], ["Q8_0", "Q4_0"]))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM comes from /proc")
def test_measured_peak_rss_grows_with_the_kv_cache_as_the_estimate_says():
    small, large = (footprint.measure_peak_rss(n_ctx=n) for n in (512, 8192))
    assert small.file_bytes == large.file_bytes and 40e6 < small.baseline_bytes < small.peak_bytes
    grown = large.peak_bytes - small.peak_bytes
    kv = footprint.kv_cache_bytes(catalog.get("smollm2-135m-instruct"), 8192 - 512)
    assert 0.8 * kv < grown < 1.3 * kv, (grown, kv)


@pytest.mark.fast
def test_measuring_an_unknown_model_fails_with_the_reason():
    with pytest.raises(SlmLabError, match=r"^Unknown model 'no-such-model'.*\n.*Bundled models"):
        footprint.measure_peak_rss("no-such-model", 512)


@pytest.mark.fast
def test_rss_readings_of_this_process():
    from slmlab.measure import rss_probe

    now, peak = rss_probe.current_rss(), rss_probe.peak_rss()
    assert 10e6 < now <= peak
