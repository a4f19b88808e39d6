"""slmlab.scaling: nginx over real llama-server replicas (least_conn, a killed replica, retries) and the HPA's
algorithm."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from slmlab.deploy.k8s import Manifest, validate_manifest
from slmlab.errors import SlmLabError
from slmlab.scaling import autoscale
from slmlab.scaling.autoscale import HPA, Policy, ScalingRules, desired_replicas
from slmlab.scaling.nginx_lb import check_config, nginx_load_balancer, render_config
from slmlab.scaling.replicas import Replicas
from slmlab.scaling.retry import retrying_requests

# ---------------------------------------------------------------------------------------------- nginx config


@pytest.mark.fast
def test_config_balances_least_conn_and_streams(tmp_path):
    text = render_config(["127.0.0.1:8001", "http://127.0.0.1:8002/"], 8080, tmp_path, max_fails=2, fail_timeout=5)
    for line in ("daemon off;", "least_conn;", "server 127.0.0.1:8001 max_fails=2 fail_timeout=5s;",
                 "server 127.0.0.1:8002 max_fails=2 fail_timeout=5s;", "listen 127.0.0.1:8080;",
                 "proxy_buffering off;", "proxy_next_upstream error timeout http_502 http_503 non_idempotent;"):
        assert line in text
    assert "keepalive " not in text  # llama-server closes after a streamed answer: no cached connections
    assert "syntax is ok" in check_config(text, tmp_path)
    reusing = render_config(["127.0.0.1:8001"], 8080, tmp_path, keepalive=16)
    assert "keepalive 16;" in reusing and "keepalive_timeout 4s;" in reusing
    assert "syntax is ok" in check_config(reusing, tmp_path)
    assert "least_conn" not in render_config(["127.0.0.1:8001"], 8080, tmp_path, method="round_robin")


@pytest.mark.fast
def test_bad_config_is_a_clear_error(tmp_path):
    text = render_config(["127.0.0.1:8001"], 8080, tmp_path, next_upstream=["error", "http_999"])
    with pytest.raises(SlmLabError, match='nginx rejected .*invalid value "http_999"'):
        check_config(text, tmp_path)
    with pytest.raises(SlmLabError, match="not a host:port"):
        render_config(["localhost"], 8080, tmp_path)
    with pytest.raises(SlmLabError, match="Unknown balancing method"):
        render_config(["127.0.0.1:8001"], 8080, tmp_path, method="fastest")
    with pytest.raises(SlmLabError, match="No backends"):
        render_config([], 8080, tmp_path)


# ---------------------------------------------------------------------------------------------- HPA maths

@pytest.mark.fast
def test_desired_replicas_matches_the_documented_formula():
    assert desired_replicas(50, 90, 75) == 60  # the docs' example: 50 × 90/75
    assert desired_replicas(1, 200, 100) == 2  # "current 200m, target 100m: replicas doubled"
    assert desired_replicas(1, 50, 100) == 1  # ceil(0.5)
    assert desired_replicas(4, 50, 100) == 2  # halved
    assert desired_replicas(3, 0.6, 0.2) == 9  # no float drift to 10
    assert desired_replicas(4, 1.09, 1.0) == 4  # within the 0.1 tolerance: no change
    assert desired_replicas(4, 0.91, 1.0) == 4
    assert desired_replicas(4, 1.11, 1.0) == 5  # ceil(4.44)
    assert desired_replicas(4, 1.05, 1.0, tolerance=0.0) == 5
    with pytest.raises(SlmLabError, match="target"):
        desired_replicas(2, 1.0, 0)


@pytest.mark.fast
def test_scale_down_stabilization_follows_the_kep_example():
    # KEP-853: 600 s window, one sync a minute, current 10; the largest recommendation of the window wins.
    hpa = HPA(min_replicas=1, max_replicas=20, scale_down=ScalingRules(600, (Policy("Pods", 5, 600),)))
    for minute, rec in enumerate([10, 9, 8, 9, 9, 8, 9, 8, 9, 8]):
        assert hpa.stabilize(minute * 60, 10, rec) == 10
    assert hpa.stabilize(600, 10, 7) == 9  # the 10 left the window


@pytest.mark.fast
def test_scale_up_policies_and_limits():
    hpa = HPA(min_replicas=1, max_replicas=30, target=1.0)  # defaults: max(+100 %, +4 pods) per 15 s
    assert hpa.step(0, 1, 50.0) == 5  # +4 pods beats +100 % (2)
    assert HPA(max_replicas=30).step(0, 10, 50.0) == 20  # +100 % beats +4
    assert HPA(max_replicas=8).step(0, 6, 50.0) == 8  # maxReplicas caps it
    slow = HPA(max_replicas=30, scale_up=ScalingRules(0, (Policy("Pods", 1, 60),)))
    assert slow.step(0, 2, 10.0) == 3
    assert slow.step(15, 3, 10.0) == 3  # one pod per 60 s already used
    assert slow.step(75, 3, 10.0) == 4
    down = HPA(min_replicas=2, max_replicas=10)  # default scale-down window: 300 s
    assert down.step(0, 6, 1.0) == 6
    assert down.step(15, 6, 0.1) == 6  # the 6 recommended 15 s ago still holds
    assert down.step(315, 6, 0.1) == 2  # window passed; minReplicas floors it


@pytest.mark.fast
def test_capacity_target_and_manifest():
    table = pd.DataFrame({"concurrency": [1, 2, 4], "request_throughput": [1.0, 1.6, 1.8],
                          "p95_e2el_ms": [900.0, 1500.0, 3200.0]})
    cap = autoscale.replica_capacity(table, slo_p95_ms=2000)
    assert (cap.requests_per_second, cap.concurrency) == (1.6, 2)
    with pytest.raises(SlmLabError, match="No load test met the SLO"):
        autoscale.replica_capacity(table, slo_p95_ms=500)
    target = autoscale.hpa_target(cap.requests_per_second, utilization=0.7)
    assert math.isclose(target, 1.12)
    assert autoscale.quantity(target) == "1120m" and autoscale.quantity(2.0) == "2"
    manifest = autoscale.hpa_manifest("slm-engine", "requests_per_second", target, 1, 8)
    assert validate_manifest(Manifest("hpa.yaml", 0, manifest)) == []
    assert manifest["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "1120m"


@pytest.mark.fast
def test_simulation_tracks_demand(tmp_path):
    trace = pd.DataFrame({"time_s": [0, 600, 601, 1800], "requests_per_second": [1.0, 1.0, 3.5, 3.5]})
    sim = autoscale.simulate_hpa(trace, capacity_rps=1.2, target=1.0, max_replicas=10, startup_s=30)
    assert sim.loc[sim["time_s"] < 600, "replicas"].eq(1).all()
    assert sim["replicas"].iloc[-1] == 4 and sim["ready"].iloc[-1] == 4  # ceil(3.5 / 1.0)
    first_up = sim.index[sim["replicas"] > 1][0]
    assert sim.loc[first_up, "ready"] == 1  # the new pods are still starting …
    assert sim["overloaded"].any() and not sim["overloaded"].iloc[-1]  # … so the step overloads, briefly
    summary = autoscale.simulation_summary(sim)
    assert summary["peak_replicas"] == 4 and summary["overloaded_minutes"] > 0
    day = autoscale.load_trace()
    assert len(day) == 1440 and day["requests_per_second"].max() > 5
    windows = tmp_path / "windows.csv"  # a UTF-8 byte-order mark and CRLF, as Excel or Notepad save it
    windows.write_bytes(b"\xef\xbb\xbftime_s,requests_per_second\r\n0,1.5\r\n60,2\r\n")
    assert autoscale.load_trace(windows).to_dict("list") == {"time_s": [0, 60], "requests_per_second": [1.5, 2.0]}
    bad = tmp_path / "bad.csv"
    bad.write_text("t,rps\n0,1\n")
    with pytest.raises(SlmLabError, match="no column"):
        autoscale.load_trace(bad)


# ---------------------------------------------------------------------------------------------- real servers

@pytest.fixture(scope="module")
def cluster():
    with Replicas(2, n_threads=1, n_ctx=512) as replicas:
        with nginx_load_balancer(replicas.servers, fail_timeout=5) as lb:
            yield replicas, lb


@pytest.mark.slow
def test_replicas_are_llama_servers_with_their_slots(cluster):
    from slmlab.serve.llama_server import LlamaServer, slots

    replicas, _ = cluster
    assert all(isinstance(server, LlamaServer) for server in replicas.servers) and replicas.parallel == 2
    for server in replicas.servers:
        assert server.cmd[server.cmd.index("--threads") + 1] == "1"  # pinned: replicas × threads ≤ cores
        assert [slot["n_ctx"] for slot in slots(server)] == [512, 512]  # two slots of 512 tokens each
    with pytest.raises(SlmLabError, match="parallel"):
        Replicas(1, parallel=0)


@pytest.mark.slow
def test_llama_server_closes_the_connection_after_a_streamed_answer(cluster):
    """Why the balancer keeps no connections to the replicas (render_config's `keepalive`): llama-server offers
    keep-alive in its headers, yet a second request on the connection of a streamed answer finds it closed. If
    this test fails, llama-server keeps its connections now and keepalive can be turned back on."""
    import http.client
    import json

    replicas, _ = cluster
    conn = http.client.HTTPConnection("127.0.0.1", replicas.servers[0].port, timeout=60)
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True})
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status == 200 and "timeout=" in (first.getheader("Keep-Alive") or "")  # keep-alive offered
        first.read()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
    finally:
        conn.close()


@pytest.mark.slow
def test_least_conn_spreads_requests_over_both_replicas(cluster):
    replicas, lb = cluster
    run = retrying_requests(lb, num_requests=6, concurrency=2, max_tokens=8, retries=0)
    assert run.summary()["succeeded"] == 6
    status = lb.upstream_status()
    assert status["answers"].all()
    assert (status["served"] >= 2).all(), status  # two in flight: least_conn sends them to different replicas
    assert set(status["replica"]) == set(replicas.addresses)
    assert set(lb.requests()["upstream"]) >= set(replicas.addresses)


@pytest.mark.slow
def test_a_killed_replica_loses_no_request_the_client_retries(cluster):
    replicas, lb = cluster
    try:
        run = retrying_requests(lb, num_requests=12, concurrency=4, max_tokens=32, retries=2,
                                events=[(0.5, lambda: replicas.kill(1))])
        summary = run.summary()
        assert replicas.running() == [True, False]
        assert summary["sent"] == 12 and summary["lost"] == 0, run.requests
        status = lb.upstream_status().set_index("replica")
        assert not status.loc[replicas.addresses[1], "answers"]
        assert status.loc[replicas.addresses[1], "failed_attempts"] >= 1  # the kill did hit requests
        after = retrying_requests(lb, num_requests=2, concurrency=2, max_tokens=4, retries=0)
        assert after.summary()["lost"] == 0  # nginx no longer sends to the dead replica (or passes it on)
    finally:
        if not replicas.running()[1]:
            replicas.restart(1)
    assert replicas.running() == [True, True]


@pytest.mark.fast
def test_scale_simulate_command_prints_the_replay(capsys, tmp_path):
    from slmlab.cli import main

    png = tmp_path / "replay.png"
    assert main(["scale", "simulate", "--target", "0.7", "--target", "1.0", "--max-replicas", "30",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "1440 trace rows" in out and "76.98" in out and "59.10" in out  # the notebook's table, from the CLI
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["scale", "simulate", "--trace", str(tmp_path / "nope.csv")]) == 2
    assert "No trace at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["scale", "simulate", "--capacity", "0"])
    assert "must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_scale_lb_command_serves_through_nginx_and_stops_everything():
    import re
    import subprocess
    import sys

    import httpx

    from slmlab.process import port_in_use

    command = [sys.executable, "-m", "slmlab.cli", "scale", "lb", "--replicas", "2", "--seconds", "60"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("try:"):
                break
        url = re.search(r"load balancer: (http://127\.0\.0\.1:\d+)/v1", "".join(lines)).group(1)
        answers = [httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                                   "max_tokens": 4}, timeout=60, trust_env=False)
                   for _ in range(2)]
        ports = re.findall(r"replica-\d: http://127\.0\.0\.1:(\d+)", "".join(lines))
        proc.send_signal(2)  # Ctrl-C
        rest = proc.stdout.read()
        assert proc.wait(30) == 0, rest
    assert [a.status_code for a in answers] == [200, 200]
    assert "stopped nginx and 2 replica(s)" in rest and len(ports) == 2
    for port in [url.rsplit(":", 1)[1], *ports]:
        assert not port_in_use(int(port))
