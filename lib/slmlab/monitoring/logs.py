"""The servers' captured logs as one table: what a log aggregator (Loki, Elasticsearch) would index.

    table = collect_logs({"gateway": gateway, "ollama": ollama, "prometheus": prom})
    table[table.level == "ERROR"]                    # like LogQL {source="gateway"} |= "ERROR"
    table.groupby(["source", "status"]).size()       # like sum by (status) (count_over_time(...))

Every line is parsed into the fields it has: the course servers' JSON lines (``--log-format json``, see
``structured_log``: time, level, logger, msg, method, path, status), Prometheus' logfmt
(``ts=… level=… msg=…``), Python logging
(``2026-01-01 10:00:00,123 INFO name: message`` or ``INFO:     name: message``) and uvicorn's access log
(``127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK``: method, path, status). Lines matching none
keep their text as the message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

COLUMNS = ["source", "line", "time", "level", "logger", "message", "method", "path", "status"]
_PY_TIME = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?)\s+(?P<level>[A-Z]+)\s+"
                      r"(?P<logger>[\w.\-]+):\s?(?P<message>.*)$")
_PY_LEVEL = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<message>.*)$")
_ACCESS = re.compile(r'^(?P<client>\S+) - "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_LOGGER = re.compile(r"^(?P<logger>[\w.\-]+): (?P<message>.*)$")


def parse_line(line: str) -> dict[str, Any]:
    """One log line as fields: time, level, logger, message, and method/path/status for an access-log line."""
    row: dict[str, Any] = {"time": "", "level": "", "logger": "", "message": line, "method": "", "path": "",
                           "status": ""}
    text = line.strip()
    if text.startswith("{"):  # a JSON log line (slmlab.monitoring.structured_log)
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if isinstance(fields, dict):
            row.update(time=str(fields.get("time", "")), level=str(fields.get("level", "")).upper(),
                       logger=str(fields.get("logger", "")), message=str(fields.get("msg", "")),
                       method=str(fields.get("method", "")), path=str(fields.get("path", "")),
                       status=str(fields.get("status", "")))
            return row
    if text.startswith("ts=") and " level=" in text:  # Prometheus (go-kit logfmt)
        try:
            fields = dict(part.split("=", 1) for part in shlex.split(text) if "=" in part)
        except ValueError:
            fields = {}
        if fields:
            row.update(time=fields.get("ts", ""), level=fields.get("level", "").upper(),
                       logger=fields.get("component", fields.get("caller", "")),
                       message=" ".join([fields.get("msg", "")] + [f"{k}={v}" for k, v in fields.items()
                                                                   if k not in ("ts", "level", "caller", "msg",
                                                                                "component")]).strip())
            return row
    match = _PY_TIME.match(text)
    if match:
        row.update(match.groupdict())
    else:
        match = _PY_LEVEL.match(text)
        if match:
            row.update(level=match["level"], message=match["message"].strip())
            inner = _LOGGER.match(row["message"])
            if inner and not _ACCESS.match(row["message"]):
                row.update(logger=inner["logger"], message=inner["message"])
    access = _ACCESS.match(row["message"])
    if access:
        row.update(logger=row["logger"] or "uvicorn.access", method=access["method"], path=access["path"],
                   status=access["status"])
    return row


def parse_log(path: str | os.PathLike, source: str = "") -> Any:
    """A log file as a DataFrame (COLUMNS), one row per non-empty line."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SlmLabError(f"No log file at {path}.", "Pass a server's log_path (ServerProcess.log_path).")
    rows = [{"source": source or path.stem, "line": number, **parse_line(line)}
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    return pd.DataFrame(rows, columns=COLUMNS)


def collect_logs(sources: Mapping[str, Any]) -> Any:
    """Every source's log in one table (source → a ServerProcess, or a log file path)."""
    import pandas as pd

    frames = [parse_log(getattr(server, "log_path", server), name) for name, server in sources.items()]
    if not frames:
        raise SlmLabError("No log sources given.", "Pass e.g. {'gateway': gateway_server}.")
    return pd.concat(frames, ignore_index=True)
