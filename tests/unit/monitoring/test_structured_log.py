"""slmlab.monitoring.structured_log and log_queries: JSON log lines, the request id, the queries (fast, offline).

The middleware runs in a real Starlette app (TestClient); the rsyslog config is checked by Debian's rsyslogd -N1.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from slmlab.errors import SlmLabError
from slmlab.monitoring import log_queries, structured_log
from slmlab.monitoring.structured_log import JsonFormatter, RequestLogMiddleware, SyslogJsonFormatter, annotate

pytestmark = pytest.mark.fast


def record(msg: str = "hello %s", args: tuple = ("world",), level: int = logging.INFO, **fields) -> logging.LogRecord:
    rec = logging.LogRecord("slmlab.request", level, __file__, 1, msg, args, None)
    if fields:
        rec.fields = fields
    return rec


def test_json_lines_carry_only_the_allowed_fields():
    line = json.loads(JsonFormatter("gateway").format(record(status=200, latency_ms=12.5, prompt="my secret text",
                                                             authorization="Bearer sk-123")))
    assert line["msg"] == "hello world" and line["service"] == "gateway" and line["level"] == "INFO"
    assert line["status"] == 200 and line["latency_ms"] == 12.5 and line["time"].endswith("Z")
    assert "prompt" not in line and "authorization" not in line
    with pytest.raises(SlmLabError, match="may not carry"):
        annotate(prompt="text")


def test_syslog_lines_are_rfc5424_with_json_as_message():
    text = SyslogJsonFormatter("ollama").format(record(status=502))
    version, stamp, host, app, pid, msgid, sd, payload = text.split(" ", 7)
    assert (version, app, msgid, sd) == ("1", "ollama", "request", "-") and pid.isdigit() and stamp.endswith("Z")
    assert json.loads(payload)["status"] == 502 and text.endswith("\n") and host


def test_request_ids_are_accepted_only_when_they_look_like_ids():
    assert structured_log.accept_request_id("req-42.a:b") == "req-42.a:b"
    for bad in (None, "", "x" * 65, 'a" forged=1', "line\nbreak"):
        made = structured_log.accept_request_id(bad)
        assert made != bad and len(made) == 32
    assert structured_log.request_id() is None and structured_log.upstream_headers() == {}
    annotate(model="m")  # outside a request: nothing happens


def test_syslog_addresses_are_checked():
    assert structured_log.parse_syslog_address("tcp://127.0.0.1:5514")[:2] == ("127.0.0.1", 5514)
    for bad in ("http://127.0.0.1:1", "tcp://127.0.0.1", "udp://:5"):
        with pytest.raises(SlmLabError, match="not a syslog address"):
            structured_log.parse_syslog_address(bad)
    with pytest.raises(SlmLabError, match="Cannot reach the log aggregator"):
        structured_log.syslog_handler("tcp://127.0.0.1:1", "gateway")


def test_middleware_logs_one_line_per_request_with_its_id(caplog):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    seen = {}

    async def chat(request):
        seen["id"] = structured_log.request_id()
        annotate(model="smollm2", completion_tokens=7)
        return JSONResponse({"ok": True}, status_code=502 if request.query_params.get("fail") else 200)

    async def metrics(request):
        return JSONResponse({})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"]), Route("/metrics", metrics)])
    app.add_middleware(RequestLogMiddleware, service="gateway")
    with caplog.at_level(logging.INFO, logger="slmlab.request"), TestClient(app) as client:
        given = client.post("/v1/chat", headers={"X-Request-ID": "abc-1"}, json={"messages": "secret"})
        made = client.post("/v1/chat?fail=1")
        client.get("/metrics")
    assert given.headers["x-request-id"] == "abc-1" == seen["id"] or seen
    assert len(made.headers["x-request-id"]) == 32
    lines = [r for r in caplog.records if r.name == "slmlab.request"]
    assert len(lines) == 2  # /metrics (scraped every second) is not logged
    first, second = (r.fields for r in lines)
    assert first["request_id"] == "abc-1" and first["status"] == 200 and first["completion_tokens"] == 7
    assert second["status"] == 502 and lines[1].levelno == logging.ERROR and second["outcome"] == "server_error"
    assert "secret" not in JsonFormatter("gateway").format(lines[0])


def lines_of(*rows: dict) -> list[str]:
    return [json.dumps(row) for row in rows]


def test_queries_count_errors_find_the_slowest_and_follow_an_id():
    req = log_queries.REQUEST_LOGGER
    table = log_queries.read_jsonl(lines_of(
        {"time": "2026-12-02T10:00:01.000Z", "service": "gateway", "level": "INFO", "logger": req, "request_id": "a",
         "status": 200, "latency_ms": 900},
        {"time": "2026-12-02T10:00:00.500Z", "service": "ollama", "level": "INFO", "logger": req, "request_id": "a",
         "status": 200, "latency_ms": 850},
        {"time": "2026-12-02T10:00:30Z", "service": "gateway", "level": "ERROR", "logger": req, "request_id": "b",
         "status": 502, "latency_ms": 3},
        {"time": "2026-12-02T10:01:10Z", "service": "gateway", "level": "ERROR", "logger": "slmlab.serve",
         "request_id": "c", "msg": "the upstream model server failed"},
    ) + ["not json"])
    assert len(table) == 4 and str(table["time"].dt.tz) == "UTC"
    per_minute = log_queries.errors_per_interval(table, "1min")
    assert list(per_minute["gateway"]) == [1, 1]
    assert list(log_queries.slowest(table, 1)["request_id"]) == ["a"]
    assert list(log_queries.follow(table, "a")["service"]) == ["ollama", "gateway"]  # time order
    with pytest.raises(SlmLabError):
        log_queries.slowest(table, 0)
    with pytest.raises(SlmLabError, match="No log file"):
        log_queries.read_jsonl("/nonexistent.jsonl")


def test_alert_timeline_and_error_lines_on_one_axis():
    import pandas as pd

    table = log_queries.read_jsonl(lines_of(
        {"time": "2026-12-02T10:00:03Z", "service": "gateway", "level": "ERROR", "logger": "x"},
        {"time": "2026-12-02T10:00:05Z", "service": "gateway", "level": "ERROR", "logger": "x"}))
    t0 = pd.Timestamp("2026-12-02T10:00:00Z").timestamp()
    timeline = pd.DataFrame([{"time": t0 + 4, "alertname": "TargetDown", "state": "pending"},
                             {"time": t0 + 7, "alertname": "TargetDown", "state": "firing"}])
    events = log_queries.alert_log_timeline(timeline, table, {"killed": t0 + 2.5}, zero=t0 + 2.5)
    assert list(events["event"]) == ["killed", "first ERROR line (2 in all)", "TargetDown pending", "last ERROR line",
                                     "TargetDown firing"]
    assert list(events["t (s)"]) == [0.0, 0.5, 1.5, 2.5, 4.5]
    assert log_queries.errors_between(table, t0 + 4, t0 + 7) == 1


@pytest.mark.skipif(not (shutil.which("rsyslogd") or shutil.which("/usr/sbin/rsyslogd")),
                    reason="Debian's rsyslog package is not installed")
def test_generated_rsyslog_config_passes_rsyslogd_check(tmp_path):
    from slmlab.monitoring import aggregator

    path = tmp_path / "rsyslog.conf"
    path.write_text(aggregator.rsyslog_config(tmp_path, 5514))
    assert "End of config validation run" in aggregator.check_config(path)
    path.write_text(aggregator.rsyslog_config(tmp_path, 5514).replace('type="omfile"', 'type="omnothing"', 1))
    with pytest.raises(SlmLabError, match="rsyslogd -N1 rejects"):
        aggregator.check_config(path)
    with pytest.raises(SlmLabError, match="not a TCP port"):
        aggregator.rsyslog_config(tmp_path, 70000)


def test_captured_json_lines_parse_into_the_log_table():
    from slmlab.monitoring import logs

    line = JsonFormatter("gateway").format(record(method="POST", path="/v1/chat/completions", status=503))
    row = logs.parse_line(line)
    assert (row["level"], row["logger"], row["path"], row["status"]) == ("INFO", "slmlab.request",
                                                                         "/v1/chat/completions", "503")
