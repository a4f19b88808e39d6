"""slmlab.measure.bench: speed and memory of GGUF models (each in its own process), memory bandwidth, the roofline."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure import bench


@pytest.mark.fast
def test_roofline_is_bandwidth_over_bytes_per_token():
    assert bench.decode_roofline(100e6, 20.0) == pytest.approx(200.0)
    bw = bench.Bandwidth(gb_s=10.0, median_gb_s=9.0, array_mb=64, repeats=3)
    assert bench.decode_roofline(50e6, bw) == pytest.approx(200.0)
    for bad in [(0, 10.0), (100e6, 0), (-1, 5.0)]:
        with pytest.raises(SlmLabError, match="must both be positive"):
            bench.decode_roofline(*bad)
    table = bench.add_roofline(pd.DataFrame({"size_mb": [100.0, 50.0], "decode_tok_s": [50.0, 100.0]}), 20.0)
    assert table["roofline_tok_s"].tolist() == [200.0, 400.0] and table["of_roofline"].tolist() == [0.25, 0.25]


@pytest.mark.fast
def test_memory_bandwidth_is_measured():
    result = bench.memory_bandwidth(array_mb=16, repeats=2)
    assert 0.1 < result.gb_s < 5000 and result.median_gb_s <= result.gb_s
    assert "GB/s" in str(result)
    with pytest.raises(SlmLabError, match="array_mb"):
        bench.memory_bandwidth(array_mb=1)


@pytest.mark.fast
def test_peak_rss_can_be_read_and_reset():
    import numpy as np

    from slmlab.measure.rss_probe import current_rss, peak_rss, reset_peak_rss

    before = current_rss()
    assert peak_rss() >= before > 10e6
    block = np.ones(40_000_000 // 8)  # 40 MB, touched
    assert peak_rss() >= before + 30e6
    del block
    if not reset_peak_rss():
        pytest.skip("this kernel does not let a process reset its VmHWM")
    assert peak_rss() < current_rss() + 10e6


@pytest.mark.fast
@pytest.mark.parametrize("kwargs,message", [
    ({"gen_tokens": 1}, "gen_tokens=1"), ({"repeats": 0}, "repeats=0"),
    ({"prompt_tokens": 500}, "does not fit n_ctx=512"),
])
def test_bad_sizes_are_clear_errors(kwargs, message):
    with pytest.raises(SlmLabError, match=message):
        bench.bench_model("smollm2-135m-instruct", **kwargs)


@pytest.mark.fast
def test_tradeoff_plot_has_quality_and_speed_panels():
    import matplotlib.pyplot as plt

    table = pd.DataFrame({"variant": ["Q8_0", "Q2_K"], "size_mb": [145.0, 88.0], "perplexity": [27.0, 39.0],
                          "decode_tok_s": [100.0, 120.0]})
    fig = bench.plot_tradeoffs(table, bandwidth=20.0)
    left, right = fig.axes
    assert "quality" in left.get_title() and "speed" in right.get_title()
    assert [line.get_label() for line in right.get_lines()] == ["roofline: bandwidth / size"]
    single = bench.plot_tradeoffs(table.drop(columns="perplexity"))
    assert len(single.axes) == 1
    plt.close(fig)
    plt.close(single)
    with pytest.raises(SlmLabError, match="no column"):
        bench.plot_tradeoffs(table.drop(columns="size_mb"))


# ----------------------------------------------------------------------------- with the model (~15 s)


@pytest.mark.slow
def test_a_model_measured_in_its_own_process_does_not_inherit_our_memory():
    import numpy as np

    ballast = np.ones(300_000_000 // 8)  # 300 MB held by this process while the model is measured elsewhere
    result = bench.bench_model("smollm2-135m-instruct", prompt_tokens=32, gen_tokens=8, repeats=2, warmup=1)
    del ballast
    assert result.isolated and result.model == "smollm2-135m-instruct"
    assert result.base_rss_mb < result.peak_rss_mb < 300  # Python + llama.cpp + 98 MB of weights, not our ballast
    assert result.peak_rss_mb - result.base_rss_mb > 0.8 * result.size_mb  # the weights were read into memory
    assert result.prefill_tok_s > 0 and result.decode_tok_s > 0 and 0 < result.ttft_s < 30 and result.load_s > 0


@pytest.mark.slow
def test_variants_table_and_cli(capsys):
    from slmlab.cli.bench import register

    table = bench.bench_variants({"a": "smollm2-135m-instruct"}, prompt_tokens=16, gen_tokens=4, repeats=1,
                                 show_progress=False)
    assert table["variant"].tolist() == ["a"] and (table["decode_tok_s"] > 0).all()
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "--prompt-tokens", "16", "--gen-tokens", "4", "--repeats", "1", "--roofline"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "memory bandwidth" in out and "roofline_tok_s" in out and "smollm2-135m-instruct" in out
