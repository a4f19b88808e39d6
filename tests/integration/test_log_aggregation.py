"""Log aggregation end to end: a real rsyslogd on 127.0.0.1 collects the JSON logs of the Ollama-API server
(llama.cpp, SmolLM2) and of the FastAPI gateway in front of it; one request is followed by its id from the
gateway to the engine, and killing the engine leaves ERROR lines with the failing requests' ids."""

from __future__ import annotations

import shutil

import pytest

from slmlab.errors import SlmLabError
from slmlab.monitoring import log_queries

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsyslogd") or shutil.which("/usr/sbin/rsyslogd")),
                                 reason="Debian's rsyslog package is not installed")]
PROMPT = "Tell me about the private matter of Ms Example, account 1234."


def test_rsyslog_starts_checks_and_stops_and_keeps_non_json_apart():
    import logging
    import logging.handlers
    import socket

    from slmlab.monitoring.aggregator import rsyslog_server

    agg = rsyslog_server()
    workdir = agg.workdir
    with agg:
        assert "End of config validation run" in agg.check_config() and agg.running
        sender = logging.handlers.SysLogHandler(address=("127.0.0.1", agg.port), socktype=socket.SOCK_STREAM)
        sender.append_nul = False
        for message in ('1 2026-12-02T10:00:00.000Z host probe 1 - - {"msg": "json", "level": "INFO"}\n',
                        "1 2026-12-02T10:00:00.000Z host probe 1 - - plain text\n"):
            sender.emit(logging.makeLogRecord({"msg": message, "levelno": logging.INFO, "levelname": "INFO"}))
        sender.close()
        agg.wait_for_lines(1)
        agg.settle()
        table = agg.read()
        assert list(table["msg"]) == ["json"] and list(table["app"]) == ["probe"]
        assert "plain text" in agg.unparsed_file.read_text()
        with pytest.raises(SlmLabError, match="No request line of gateway, ollama for request id nobody"):
            agg.wait_for_request("nobody", timeout=0.3)
    assert not agg.running and not workdir.exists()


def test_one_request_followed_from_gateway_to_engine_and_the_engine_killed():
    import httpx

    from slmlab.monitoring.aggregator import rsyslog_server
    from slmlab.monitoring.fault import kill_server
    from slmlab.serve.gateway.server import app_server
    from slmlab.serve.ollama.server import ollama_server

    with rsyslog_server() as agg, ollama_server(log_format="json", log_syslog=agg.address) as ollama, \
            app_server(engine="openai", model=None, upstream_url=f"{ollama.url}/v1", served_model_name="smollm2:135m",
                       log_format="json", log_syslog=agg.address) as gateway:
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}
        with httpx.Client(base_url=gateway.url, timeout=60, trust_env=False) as client:
            given = client.post("/v1/chat/completions", json={**body, "stream": True},
                                headers={"X-Request-ID": "trace-me-1"})
            made = client.post("/v1/chat/completions", json=body)
            for rid in ("trace-me-1", made.headers["x-request-id"]):  # servers log after answering: wait for it
                agg.wait_for_request(rid)
            kill_server(ollama)
            failed = client.post("/v1/chat/completions", json=body)
        assert given.status_code == made.status_code == 200 and failed.status_code >= 500
        assert given.headers["x-request-id"] == "trace-me-1" and len(made.headers["x-request-id"]) == 32
        agg.wait_for_lines(5)
        agg.settle()
        table = agg.read()
        text = agg.log_file.read_text()

    assert PROMPT not in text and "Ms Example" not in text  # never the prompt
    for rid in ("trace-me-1", made.headers["x-request-id"]):
        trace = log_queries.follow(table, rid)
        lines = log_queries.requests_of(trace)
        assert set(lines["service"]) == {"gateway", "ollama"}, trace.to_string()
        gateway_line = lines[lines["service"] == "gateway"].iloc[0]
        engine_line = lines[lines["service"] == "ollama"].iloc[0]
        assert gateway_line["status"] == engine_line["status"] == 200
        assert gateway_line["model"] == "smollm2:135m" and engine_line["completion_tokens"] > 0
        assert gateway_line["latency_ms"] >= engine_line["latency_ms"]  # the engine's time is inside the gateway's
        assert set(trace["app"]) == {"gateway", "ollama"}  # rsyslog's app name (the syslog header's APP-NAME)
    assert int(lines[lines["service"] == "gateway"]["completion_tokens"].iloc[0]) > 0
    broken = log_queries.follow(table, failed.headers["x-request-id"])
    assert set(broken["level"]) == {"ERROR"} and set(broken["service"]) == {"gateway"}
    assert any("upstream" in msg for msg in broken["msg"]), broken.to_string()
    assert log_queries.errors_per_interval(table, "1min")["gateway"].sum() >= 2
    assert list(log_queries.slowest(table, 1)["request_id"])[0] in ("trace-me-1", made.headers["x-request-id"])
