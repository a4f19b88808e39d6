"""slmlab.monitoring: a real Prometheus scraping real servers, PromQL, promtool-checked alert rules, dashboards.

Fast tests check the generated configs, rules and dashboards offline (promtool parses every PromQL query).
Slow tests share one stack: the Ollama-API server (llama.cpp, SmolLM2) behind the FastAPI gateway as a proxy,
both scraped by Prometheus; the last one kills the Ollama server and watches the alert fire.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time

import pytest

from slmlab.errors import SlmLabError
from slmlab.monitoring import alerts, grafana, logs, queries
from slmlab.monitoring.prometheus_server import prometheus_config, promtool_check_config, scrape_target

needs_prometheus = pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("promtool")),
                                      reason="Debian's prometheus package is not installed")


class FakeServer:
    url = "http://127.0.0.1:8123"


# ----------------------------------------------------------------------------- config (fast)


@pytest.mark.fast
def test_scrape_targets_from_servers_and_urls():
    assert scrape_target("gateway", FakeServer()).addresses == ("127.0.0.1:8123",)
    target = scrape_target("vllm", ["http://127.0.0.1:8000", "127.0.0.1:8001"], labels={"model": "smollm2"})
    assert target.addresses == ("127.0.0.1:8000", "127.0.0.1:8001") and target.metrics_path == "/metrics"
    assert scrape_target("custom", "http://127.0.0.1:9000/prom").metrics_path == "/prom"
    with pytest.raises(SlmLabError, match="job name"):
        scrape_target("bad job!", FakeServer())
    with pytest.raises(SlmLabError, match="host:port"):
        scrape_target("gateway", "http://localhost")


@needs_prometheus
@pytest.mark.fast
def test_generated_config_passes_promtool(tmp_path):
    import yaml

    config = prometheus_config([scrape_target("gateway", FakeServer()), scrape_target("ollama", "127.0.0.1:11434")],
                               scrape_interval="1s", evaluation_interval="1s")
    assert config["global"]["scrape_timeout"] == "1s"
    assert [job["job_name"] for job in config["scrape_configs"]] == ["gateway", "ollama"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    promtool_check_config(path)  # raises when promtool complains
    path.write_text(yaml.safe_dump({**config, "scrape_configs": [{"job_name": "x", "static_configs": "nope"}]}))
    with pytest.raises(SlmLabError, match="promtool check config"):
        promtool_check_config(path)
    with pytest.raises(SlmLabError, match="duration"):
        prometheus_config([], scrape_interval="1 second")
    with pytest.raises(SlmLabError, match="repeat"):
        prometheus_config([scrape_target("a", FakeServer()), scrape_target("a", FakeServer())])


@needs_prometheus
@pytest.mark.fast
def test_promtool_checks_a_kubernetes_config_even_without_kubernetes_discovery(tmp_path):
    import yaml

    from slmlab.monitoring import promtool

    config = {"scrape_configs": [{"job_name": "engine", "kubernetes_sd_configs": [{"role": "pod"}],
                                  "relabel_configs": [{"action": "keep", "source_labels": ["__meta_x"]}]}]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    notes: list[str] = []
    assert promtool.check_config(path, syntax_only=True, notes=notes) == []
    raw = promtool.complaints(promtool.run_promtool("check", "config", "--syntax-only", str(path)), path)
    assert (notes == [promtool.K8S_SD_NOTE]) == any(promtool.K8S_SD_MISSING in line for line in raw)
    config["scrape_configs"][0]["relabel_configs"][0]["action"] = "keepit"  # an error outside the discovery
    path.write_text(yaml.safe_dump(config))
    problems = promtool.check_config(path, syntax_only=True)
    assert len(problems) == 1 and "keepit" in problems[0]


# ----------------------------------------------------------------------------- rules (fast)


@needs_prometheus
@pytest.mark.fast
def test_default_rules_pass_promtool_and_their_unit_test():
    rules = alerts.default_rules(for_="5s")
    text = alerts.rules_yaml(rules)
    assert alerts.check_rules(text) == []
    names = [rule["alert"] for rule in __import__("yaml").safe_load(text)["groups"][0]["rules"]]
    assert names == ["TargetDown", "HighTimeToFirstTokenP95", "HighErrorRate"]
    assert "vllm:time_to_first_token_seconds_bucket" in text and "gpu_cache_usage_perc" not in text
    passed, output = alerts.run_rule_tests(text, [alerts.target_down_test(rules[0], for_s=5)])
    assert passed, output
    # The same test against a rule that waits longer must fail: the unit test can tell them apart.
    slow = alerts.rules_yaml([alerts.AlertRule("TargetDown", "up == 0", "30s", "critical", rules[0].summary)])
    passed, output = alerts.run_rule_tests(slow, [alerts.target_down_test(rules[0], for_s=5)])
    assert not passed and "TargetDown" in output


@needs_prometheus
@pytest.mark.fast
def test_broken_rules_get_promtools_message():
    problems = alerts.check_rules(alerts.rules_yaml([alerts.AlertRule("Bad", "rate(up[1m]", "1m")]))
    assert problems and "parse error" in problems[0] and "Bad" in problems[0]
    assert alerts.check_rules("groups:\n- name: x\n  rules:\n  - alert: A\n    expr: up\n    for: soon\n")
    assert not any(line.startswith(("Checking", "FAILED")) for line in problems)
    with pytest.raises(SlmLabError, match="repeat"):
        alerts.rules_yaml([alerts.AlertRule("A", "up"), alerts.AlertRule("A", "up")])


@needs_prometheus
@pytest.mark.fast
def test_every_dashboard_and_signal_query_parses():
    """promtool parses each query (as a recording rule): a typo in any PromQL fails here, offline."""
    exprs = [e for server in queries.SERVERS for e in queries.llm_queries(server).values()]
    board = grafana.llm_dashboard(("gateway", "ollama", "vllm"), window="$__rate_interval")
    exprs += [grafana.expand_variables(e, 1, 60) for _, _, e in grafana.dashboard_queries(board)]
    import yaml

    text = yaml.safe_dump({"groups": [{"name": "all", "rules": [{"record": f"q:{i}", "expr": e}
                                                                  for i, e in enumerate(exprs)]}]})
    assert alerts.check_rules(text) == []
    vllm = queries.llm_queries("vllm")
    assert "vllm:num_requests_waiting" in vllm["queue_depth"] and "vllm:kv_cache_usage_perc" in vllm["kv_cache_usage"]
    with pytest.raises(SlmLabError, match="No queries"):
        queries.llm_queries("tgi")


@pytest.mark.fast
def test_query_rows_are_ordered_by_job_not_by_port():
    import httpx

    from slmlab.monitoring.promql import PromQL

    def answer(request):
        series = [("127.0.0.1:40001", "ollama"), ("127.0.0.1:50002", "gateway"), ("127.0.0.1:30003", "victim")]
        result = [{"metric": {"__name__": "up", "instance": i, "job": j}, "value": [1.0, "1"]} for i, j in series]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    client = PromQL("http://prom.test")
    client._client = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    frame = client.query("up")
    assert list(frame.columns) == ["__name__", "job", "instance", "value", "time"]
    assert list(frame["job"]) == ["gateway", "ollama", "victim"]  # the instance's random port does not decide


@pytest.mark.fast
def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.5: 0, 1: 2, 5: 8, 10: 10, math.inf: 10}
    assert queries.histogram_quantile(0.95, buckets) == pytest.approx(8.75)  # 5 + 5 * (9.5 - 8) / 2
    assert queries.histogram_quantile(0.5, {1: 5, math.inf: 10}) == 1.0
    assert queries.histogram_quantile(0.99, {1: 5, 2: 5, math.inf: 10}) == 2.0  # in +Inf: the highest bound
    assert math.isnan(queries.histogram_quantile(0.5, {1: 0, math.inf: 0}))
    with pytest.raises(SlmLabError, match="Inf"):
        queries.histogram_quantile(0.5, {1: 3})


# ----------------------------------------------------------------------------- dashboards and logs (fast)


@pytest.mark.fast
def test_dashboard_json_follows_grafanas_model(tmp_path):
    board = grafana.llm_dashboard(("gateway", "vllm"))
    assert board["schemaVersion"] == grafana.SCHEMA_VERSION and board["__inputs"][0]["pluginId"] == "prometheus"
    cells = set()
    for panel in board["panels"]:
        assert panel["type"] == "timeseries" and panel["targets"] and panel["datasource"]["type"] == "prometheus"
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        cell = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & cell, "panels overlap"
        cells |= cell
    titles = [p["title"] for p in board["panels"]]
    assert "KV cache usage" in titles and "queue depth (requests waiting)" in titles
    path = grafana.save_dashboard(board, tmp_path / "board.json")
    assert grafana.dashboard_queries(grafana.load_dashboard(path)) == grafana.dashboard_queries(board)
    assert json.loads(path.read_text())["title"] == "SLM service"
    edited = tmp_path / "edited-on-windows.json"  # a UTF-8 byte-order mark and CRLF, as Notepad saves it
    edited.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    assert grafana.load_dashboard(edited) == grafana.load_dashboard(path)
    with pytest.raises(SlmLabError, match="no panels"):
        grafana.load_dashboard({"title": "empty", "panels": []})
    with pytest.raises(SlmLabError, match="no PromQL"):
        grafana.Panel("empty", [])


@pytest.mark.fast
def test_grafana_variables_and_legends():
    assert grafana.expand_variables("rate(x[$__rate_interval])", step_s=1, range_s=60) == "rate(x[4s])"
    assert grafana.expand_variables("rate(x[$__rate_interval])", step_s=15, range_s=60) == "rate(x[16s])"
    assert grafana.expand_variables("increase(x[$__range]) / $__interval", 2, 90) == "increase(x[90s]) / 2s"
    assert grafana.legend_text("{{job}} p95", {"job": "gateway"}, "fallback") == "gateway p95"
    assert grafana.legend_text("", {"job": "gateway"}, "fallback") == "fallback"


@pytest.mark.fast
def test_log_lines_of_each_server_are_parsed():
    prom = logs.parse_line('ts=2026-11-27T08:30:48.957Z caller=main.go:973 level=info msg="Server is ready."')
    assert prom["level"] == "INFO" and prom["message"] == "Server is ready." and prom["time"].startswith("2026")
    py = logs.parse_line("2026-11-27 08:27:08,137 INFO slmlab.ollama: loading smollm2:135m")
    assert (py["level"], py["logger"], py["message"]) == ("INFO", "slmlab.ollama", "loading smollm2:135m")
    access = logs.parse_line('INFO:     127.0.0.1:55006 - "POST /v1/chat/completions HTTP/1.1" 503 Service Unavailable')
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/chat/completions", "503")
    plain = logs.parse_line("ERROR:    slmlab.serve: the model failed")
    assert (plain["level"], plain["logger"], plain["message"]) == ("ERROR", "slmlab.serve", "the model failed")
    assert logs.parse_line("Traceback (most recent call last):")["level"] == ""
    with pytest.raises(SlmLabError, match="No log file"):
        logs.parse_log("/nonexistent/x.log")


def monitor_cli(*argv: str) -> int:
    import argparse

    from slmlab.cli.monitor import register

    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["monitor", *argv])
    return args.func(args)


@needs_prometheus
@pytest.mark.fast
def test_monitor_commands_write_checked_rules_and_dashboards(tmp_path, capsys):
    rules = tmp_path / "alerts.yml"
    assert monitor_cli("rules", "--for", "5s", "-o", str(rules)) == 0
    assert "PASSED" in capsys.readouterr().err and "TargetDown" in rules.read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(alerts.rules_yaml([alerts.AlertRule("Bad", "sum(up", "1m")]))
    assert monitor_cli("check-rules", str(rules), str(broken)) == 1
    out = capsys.readouterr().out
    assert f"{rules}: OK" in out and "parse error" in out
    board = tmp_path / "board.json"
    assert monitor_cli("dashboard", "--servers", "vllm", "-o", str(board)) == 0
    assert "vllm:kv_cache_usage_perc" in board.read_text()


# ----------------------------------------------------------------------------- a live stack (slow)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The Ollama-API server behind the gateway (as a proxy), both scraped every second by Prometheus.

    A third target, "victim" (a static /metrics file served by http.server), is the one the fault test kills,
    so that the order of the tests does not matter.
    """
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("Debian's prometheus package is not installed")
    from slmlab.measure.loadtest import load_test
    from slmlab.monitoring import prometheus_server
    from slmlab.process import ServerProcess
    from slmlab.serve.gateway.server import app_server
    from slmlab.serve.ollama.server import ollama_server

    static = tmp_path_factory.mktemp("victim")
    (static / "metrics").write_text("# TYPE victim_answers gauge\nvictim_answers 1\n")
    victim = ServerProcess([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"], ready_url="/metrics",
                           name="victim", cwd=static)
    with victim, ollama_server() as ollama, app_server(engine="openai", model=None, upstream_url=f"{ollama.url}/v1",
                                               served_model_name="smollm2:135m", log_level="info") as gateway:
        load_test(gateway.url, num_requests=1, max_tokens=4, show_progress=False)  # creates the metric series
        rules = alerts.rules_yaml(alerts.default_rules(for_="2s"))
        with prometheus_server({"gateway": gateway, "ollama": ollama, "victim": victim}, rules=rules) as prom:
            prom.wait_for_targets(timeout=60)
            time.sleep(1.5)  # one more scrape: the series' values before the load
            start = time.time()
            result = load_test(gateway.url, concurrency=2, num_requests=3, max_tokens=8, show_progress=False)
            time.sleep(2.5)  # two scrapes after the last answer
            yield {"ollama": ollama, "gateway": gateway, "victim": victim, "prom": prom, "start": start,
                   "result": result}


@pytest.mark.slow
def test_prometheus_scrapes_every_target(stack):
    prom = stack["prom"]
    targets = prom.client.targets()
    assert sorted(targets["job"]) == ["gateway", "ollama", "victim"]
    up = prom.client.query('up{job=~"gateway|ollama"}')
    assert sorted(up["job"]) == ["gateway", "ollama"] and (up["value"] == 1).all()
    rules = prom.client.rules()
    assert sorted(rules["name"]) == ["HighErrorRate", "HighTimeToFirstTokenP95", "TargetDown"]
    assert (rules["health"] == "ok").all(), rules.to_string()


@pytest.mark.slow
def test_bad_promql_gets_prometheus_message(stack):
    client = stack["prom"].client
    with pytest.raises(SlmLabError, match="parse error") as err:
        client.query("rate(slmlab_completion_tokens_total[30s]")
    assert "rate(slmlab_completion_tokens_total[30s]" in str(err.value) and "What to do" in str(err.value)
    with pytest.raises(SlmLabError, match="series, not one number"):
        client.value("up")
    assert math.isnan(client.value("no_such_metric_anywhere"))


@pytest.mark.slow
def test_p95_ttft_matches_the_histogram_and_the_load_test(stack):
    client, start = stack["prom"].client, stack["start"]
    assert stack["result"].summary()["successful_requests"] == 3
    window = f"{int(time.time() - start) + 5}s"
    at = time.time()
    p95 = client.value(alerts.ttft_p95_expr("slmlab_time_to_first_token_seconds", window, by=()), at=at)
    counts = client.query(f"sum by (le) (increase(slmlab_time_to_first_token_seconds_bucket[{window}]))", at=at)
    by_hand = queries.histogram_quantile(0.95, queries.buckets_of(counts))
    assert p95 == pytest.approx(by_hand, rel=1e-6)  # Prometheus' interpolation, redone in Python
    ttfts = stack["result"].requests["ttft_s"]
    edges = [0, *sorted(queries.buckets_of(counts))]
    low = max(e for e in edges if e <= ttfts.max() * 0.8)  # the server's clock starts a little earlier
    high = min(e for e in edges if e >= ttfts.max() * 1.2)
    # increase() extrapolates each bucket series to the window's edges on its own; over a few seconds that can move
    # an answer into the next bucket (seen under load). The exact counts (last minus first sample) cannot.
    buckets = f"slmlab_time_to_first_token_seconds_bucket[{window}]"
    exact_counts = client.query(f"sum by (le) (max_over_time({buckets}) - min_over_time({buckets}))", at=at)
    exact_p95 = queries.histogram_quantile(0.95, queries.buckets_of(exact_counts))
    assert low <= exact_p95 <= high, (exact_p95, p95, list(ttfts))
    generated = stack["result"].requests["output_tokens"].sum()
    counter = "slmlab_completion_tokens_total"  # counts since the server started: the window's first sample is
    exact = client.value(f"sum(max_over_time({counter}[{window}]) - min_over_time({counter}[{window}]))", at=at)
    assert exact == generated  # from before the load test, so the difference is exactly its tokens
    # increase() extrapolates to the window's edges (by up to half a scrape interval each): never less than that
    assert client.value(f"sum(increase({counter}[{window}]))", at=at) >= exact


@pytest.mark.slow
def test_error_rate_is_zero_not_empty_before_the_first_error(stack):
    client, start = stack["prom"].client, stack["start"]
    window = f"{int(time.time() - start) + 5}s"
    failed = 'slmlab_http_requests_total{route=~"/v1/.*|/api/.*", status=~"5.."}'
    assert client.query(failed).empty  # no 5xx answered yet, so no 5xx series at all
    plain = alerts.error_ratio_expr(window)
    assert client.query(plain).empty  # dividing nothing gives nothing: "no data" on a dashboard
    assert client.value(queries.llm_queries("gateway", window)["error_rate"]) == 0.0
    assert client.value(queries.llm_queries("ollama", window)["error_rate"]) == 0.0


@pytest.mark.slow
def test_dashboard_panels_run_against_live_prometheus(stack):
    import matplotlib

    matplotlib.use("Agg")
    board = grafana.llm_dashboard(("gateway", "ollama"))
    data = grafana.query_panels(board, stack["prom"].client, stack["start"] - 5)
    assert set(data["error"]) <= {"", "no data"}, data[data["error"] != ""].to_string()
    has_data = set(data.dropna(subset=["value"])["panel"])
    assert {"p95 time to first token", "generated tokens per second", "targets up"} <= has_data
    fig = grafana.plot_dashboard(board, stack["prom"].client, stack["start"] - 5)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == len(board["panels"])
    matplotlib.pyplot.close(fig)


@pytest.mark.slow
def test_set_rules_checks_before_reloading(stack):
    prom = stack["prom"]
    with pytest.raises(SlmLabError, match="promtool rejects"):
        prom.set_rules("mine.yml", alerts.rules_yaml([alerts.AlertRule("Broken", "sum(up", "1s")]))
    prom.set_rules("mine.yml", alerts.rules_yaml([alerts.AlertRule("GatewayUp", 'up{job="gateway"} == 1', "0s")],
                                                 group="mine"))
    assert "GatewayUp" in set(prom.client.rules()["name"])
    alerts.watch_alerts(prom.client, "GatewayUp", until="firing", timeout=15)


@pytest.mark.slow
def test_logs_of_the_stack_in_one_table(stack):
    table = logs.collect_logs({name: stack[name] for name in ("gateway", "ollama", "prom")})
    assert len(table) > 10
    assert set(table["source"]) == {"gateway", "ollama", "prom"}
    posts = table[(table["source"] == "gateway") & (table["path"] == "/v1/chat/completions")]
    assert len(posts) >= 4 and set(posts["status"]) == {"200"}
    assert "INFO" in set(table[table["source"] == "prom"]["level"])


@pytest.mark.slow
def test_killing_a_server_fires_target_down(stack):
    """SIGKILL the victim: `up` drops to 0 and TargetDown (for: 2s) goes pending, then firing."""
    from slmlab.monitoring.fault import kill_server

    client = stack["prom"].client
    assert client.alerts().query("alertname == 'TargetDown'").empty
    killed_at = kill_server(stack["victim"])
    assert not stack["victim"].running
    timeline = alerts.watch_alerts(client, "TargetDown", until="firing", timeout=30, interval=0.25)
    assert list(timeline["state"])[-2:] == ["pending", "firing"], timeline.to_string()
    assert "job=victim" in timeline["labels"].iloc[-1]
    assert time.time() - killed_at >= 2  # not before its for: duration
    assert client.value('up{job="victim"}') == 0 and client.value('up{job="gateway"}') == 1
    with pytest.raises(SlmLabError, match="not running"):
        kill_server(stack["victim"])


# ----------------------------------------------------------------------------- vLLM's own metric names (slow)
