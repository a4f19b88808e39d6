"""slmlab.measure.compare: engines measured one per process, served vs in-process ratios, decisions from the numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from slmlab.errors import SlmLabError  # noqa: E402
from slmlab.measure import compare  # noqa: E402


def table() -> pd.DataFrame:
    """Rows shaped like compare_engines' (numbers chosen so each rule has one clear winner)."""
    rows = [
        ("llamacpp", "in-process", 98.4, 1.0, 0.05, 100.0, 0.40, 200.0, False),
        ("ollama", "served", 98.4, 3.0, 0.08, 80.0, 0.55, 260.0, True),
        ("onnx", "in-process", 270.6, 2.0, 0.04, 40.0, 0.80, 300.0, False),
        ("foundry", "served", 270.6, 6.0, 0.06, 38.0, 0.85, 380.0, True),
    ]
    columns = ["engine", "mode", "disk_mb", "cold_start_s", "ttft_s", "decode_tok_s", "latency_s", "peak_rss_mb",
               "openai_api"]
    return pd.DataFrame(rows, columns=columns)


@pytest.mark.fast
def test_overhead_ratios_pair_each_served_engine_with_its_in_process_runtime():
    ratios = compare.overhead_ratios(table()).set_index("served")
    ollama = ratios.loc[compare.COMPARED_ENGINES["ollama"].label]
    assert ollama["in-process"] == compare.COMPARED_ENGINES["llamacpp"].label
    assert ollama["latency"] == pytest.approx(0.55 / 0.40, abs=0.01)
    assert ollama["decode_slowdown"] == pytest.approx(100 / 80, abs=0.01)
    assert ollama["peak_rss"] == pytest.approx(1.3)
    foundry = ratios.loc[compare.COMPARED_ENGINES["foundry"].label]
    assert foundry["cold_start"] == pytest.approx(3.0) and foundry["ttft"] == pytest.approx(1.5)
    with pytest.raises(SlmLabError, match="baseline"):
        compare.overhead_ratios(table().iloc[[1, 2]])  # ollama without llamacpp, onnx without foundry


@pytest.mark.fast
def test_decision_table_is_derived_from_the_numbers():
    df = table()
    decided = compare.decision_table(df).set_index("need")["engine"].to_dict()
    assert decided == {"lowest memory": "llamacpp", "fastest cold start": "llamacpp", "fastest first token": "onnx",
                       "fastest decode": "llamacpp", "smallest download": "llamacpp = ollama",
                       "OpenAI-compatible API": "ollama"}
    df.loc[df.engine == "onnx", "disk_mb"] = 98.4  # a tie is said, not hidden
    tie = compare.decision_table(df).set_index("need").loc["smallest download"]
    assert tie["engine"] == "llamacpp = ollama = onnx" and "a tie" in tie["why (measured)"]
    # change a number and the recommendation follows it
    df.loc[df.engine == "foundry", "peak_rss_mb"] = 150.0
    assert compare.decision_table(df).set_index("need").loc["lowest memory", "engine"] == "foundry"
    why = compare.decision_table(df).set_index("need").loc["lowest memory", "why (measured)"]
    assert "150 MB vs 200 MB (llamacpp)" in why


@pytest.mark.fast
def test_needs_pick_the_fastest_engine_that_meets_them_or_none():
    df = table()
    assert compare.pick(df, {"max_peak_rss_mb": 512, "openai_api": True}) == "ollama"
    assert compare.pick(df, {"min_cold_start_s": 1.5, "openai_api": False}) == "onnx"
    assert compare.pick(df, {"max_cold_start_s": 2.5}, by="peak_rss_mb", best="min") == "llamacpp"
    assert compare.pick(df, {"max_peak_rss_mb": 100}) is None
    row = compare.decision_table(df, {"max_peak_rss_mb": 100, "openai_api": True}).iloc[-1]
    assert row["engine"] == "none" and "ollama: max_peak_rss_mb" in row["why (measured)"]
    assert "llamacpp: max_peak_rss_mb, openai_api" in row["why (measured)"]
    with pytest.raises(SlmLabError, match="names no column"):
        compare.pick(df, {"max_ram": 512})
    with pytest.raises(SlmLabError, match="not a mapping"):
        compare.meets(df, ["max_peak_rss_mb"])


@pytest.mark.fast
def test_plot_has_one_panel_per_metric():
    import matplotlib.pyplot as plt

    fig = compare.plot_comparison(table())
    try:
        assert len(fig.axes) == len(compare.METRICS)
        assert [len(ax.patches) for ax in fig.axes] == [4] * len(compare.METRICS)
    finally:
        plt.close(fig)
    with pytest.raises(SlmLabError, match="no column"):
        compare.plot_comparison(table().drop(columns=["disk_mb"]))


@pytest.mark.fast
@pytest.mark.parametrize("kwargs,message", [
    ({"engine": "olama"}, "Did you mean 'ollama'"), ({"max_tokens": 1}, "max_tokens=1"),
    ({"repeats": 0}, "repeats=0"), ({"prompts": ["  "]}, "no usable prompt"),
])
def test_bad_requests_are_clear_errors_before_anything_starts(kwargs, message):
    with pytest.raises(SlmLabError, match=message):
        compare.measure_engine(**({"engine": "llamacpp"} | kwargs))


@pytest.mark.fast
def test_a_failing_worker_reports_the_problem_and_its_hint():
    with pytest.raises(SlmLabError, match="no-such-model") as err:
        compare.measure_engine("llamacpp", "no-such-model", max_tokens=4, repeats=1, timeout=60)
    assert err.value.hint


@pytest.fixture(scope="module")
def gguf_pair() -> pd.DataFrame:
    return compare.compare_engines(["llamacpp", "ollama"], max_tokens=8, repeats=1, warmup=0, show_progress=False)


@pytest.mark.slow
def test_llamacpp_and_the_ollama_api_are_measured_each_in_its_own_process(gguf_pair: pd.DataFrame):
    df = gguf_pair
    assert list(df["engine"]) == ["llamacpp", "ollama"]
    for _, row in df.iterrows():
        assert row["cold_start_s"] > row["ttft_s"] > 0 and row["decode_tok_s"] > 0
        assert 50 < row["peak_rss_mb"] < 2000 and row["disk_mb"] == pytest.approx(98.4, abs=1)
        assert row["completion_tokens"] == 8 and row["runs"] == 2
    assert df.loc["ollama", "rss_of"] == "server process" and df.loc["ollama", "openai_api"]
    assert not df.loc["llamacpp", "openai_api"]
    # same weights, same runtime, greedy: the same answer in-process and over the Ollama API
    assert df.loc["llamacpp", "answer"] == df.loc["ollama", "answer"] != ""
    ratios = compare.overhead_ratios(df)
    assert len(ratios) == 1 and ratios.loc[0, "latency"] > 0


@pytest.mark.fast
def test_rows_and_tables_join_into_one_table_indexed_by_engine():
    rows = table().to_dict("records")
    joined = compare.table([rows[0], table().iloc[1:3], rows[3]])
    assert list(joined.index) == ["llamacpp", "ollama", "onnx", "foundry"] == list(joined["engine"])
    with pytest.raises(SlmLabError, match="appears twice"):
        compare.table([rows[0], rows[0]])
    with pytest.raises(SlmLabError, match="not rows"):
        compare.table([{"decode_tok_s": 1.0}])


@pytest.mark.fast
@pytest.mark.parametrize("argv, message", [
    (["--engines", "llamacpp,tensorrt"], "tensorrt"),
    (["--prompts", "[\"unclosed"], "is not JSON"),
    (["--prompts", "[]"], "no usable prompt"),
])
def test_the_command_refuses_bad_options_with_a_clear_message(argv, message, capsys):
    from slmlab.cli import main

    assert main(["compare", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_prints_the_table_and_writes_csv_and_plot(tmp_path, capsys):
    from slmlab.cli import main

    csv, png = tmp_path / "engines.csv", tmp_path / "engines.png"
    assert main(["compare", "--engines", "llamacpp", "--max-tokens", "4", "--repeats", "1", "--warmup", "0",
                 "--csv", str(csv), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "decode_tok_s" in out and "has its in-process baseline" in out  # one engine: no ratio, and it says so
    written = pd.read_csv(csv)
    assert list(written["engine"]) == ["llamacpp"] and written.loc[0, "completion_tokens"] == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
