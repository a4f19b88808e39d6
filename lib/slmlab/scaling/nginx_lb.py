"""nginx as a load balancer in front of model-server replicas: a generated config, checked, run, and read back.

    with nginx_load_balancer(["127.0.0.1:8001", "127.0.0.1:8002"]) as lb:
        load_test(lb.url, concurrency=4)
        lb.requests()          # nginx's access log: which replica served each request, retries included
        lb.upstream_status()   # per replica: answers its health check?, requests served, failed attempts

The config is a complete nginx.conf (no system config is read): ``daemon off`` so that `ServerProcess` owns
the master process, pid file, temp paths and the access log in a private folder, the error log on stderr
(the server's log). The upstream block balances with ``least_conn`` (the request goes to the replica with the
fewest active requests), marks a replica unavailable for ``fail_timeout`` after ``max_fails`` failed attempts,
and ``proxy_next_upstream`` passes a failed attempt on to the next replica. nginx does not pass on a POST
once it has been sent to a replica unless ``non_idempotent`` is listed (nginx ≥ 1.9.13): a chat request has no
side effects, so it is listed here. Nothing can be passed on once the response has started streaming to the
client: that failure only a retrying client can repair (`slmlab.scaling.retry`). Streaming (SSE) needs
``proxy_buffering off`` so every token reaches the client when the replica sends it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.process import HOST, ServerProcess, free_port

METHODS = ("least_conn", "round_robin", "ip_hash", "random two least_conn")
NEXT_UPSTREAM = ("error", "timeout", "http_502", "http_503", "non_idempotent")
STATUS_PATH = "/nginx_status"  # nginx's stub_status: answers 200 from nginx itself (readiness)
UPSTREAM_HEADER = "X-Upstream"  # which replica(s) answered, added to every response
LOG_FORMAT = ('{"msec":"$msec","status":"$status","method":"$request_method","uri":"$uri",'
              '"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
              '"request_time":"$request_time","upstream_response_time":"$upstream_response_time"}')
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def nginx_binary() -> str:
    """The nginx executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if
                                           os.access(p, os.X_OK)), None)
    if not found:
        raise SlmLabError("nginx is not installed.", "Install it: sudo apt-get install nginx (Debian/Ubuntu), "
                          "brew install nginx (macOS); the course only runs the binary, no system service.")
    return found


def backend_address(backend: Any) -> str:
    """'host:port' for a ServerProcess, a URL such as http://127.0.0.1:8001, or a 'host:port' string."""
    if isinstance(backend, ServerProcess):
        return f"{HOST}:{backend.port}"
    text = str(backend).strip()
    text = re.sub(r"^https?://", "", text).rstrip("/")
    if not _ADDRESS.match(text) or not 0 < int(text.rsplit(":", 1)[1]) < 65536:
        raise SlmLabError(f"Backend {backend!r} is not a host:port address.",
                          "Pass '127.0.0.1:8001', 'http://127.0.0.1:8001' or a started ServerProcess.")
    return text


def render_config(backends: Sequence[Any], port: int, prefix: str | os.PathLike, method: str = "least_conn",
                  max_fails: int = 1, fail_timeout: int = 10, next_upstream: Sequence[str] = NEXT_UPSTREAM,
                  tries: int = 0, upstream: str = "replicas", read_timeout: int = 300, keepalive: int = 0) -> str:
    """A complete nginx.conf that balances `backends` on 127.0.0.1:`port` (temp files and logs under `prefix`).

    `method`: least_conn (default), round_robin, ip_hash or "random two least_conn"; `max_fails` failed
    attempts within `fail_timeout` s take a replica out for `fail_timeout` s (0: never); `next_upstream` lists
    when a request is passed to the next replica ([] or ["off"]: never); `tries` caps the attempts (0: all
    replicas). `keepalive` idle connections per worker are kept open to the replicas (0, the default: none).
    llama-server closes its side after every streamed answer although its headers offer keep-alive; nginx
    may reuse such a cached connection in the instant before it sees the close, the request fails on it, and
    with max_fails=1 that takes a healthy replica out for fail_timeout. Turn keepalive on only for servers
    that keep their connections open (measured in tests/integration/test_scaling.py).
    """
    addresses = [backend_address(b) for b in backends]
    if not addresses:
        raise SlmLabError("No backends given.", "Pass at least one replica, e.g. ['127.0.0.1:8001'].")
    if method not in METHODS:
        raise SlmLabError(f"Unknown balancing method {method!r}.", f"Use one of: {', '.join(METHODS)}.")
    for name, value in (("max_fails", max_fails), ("fail_timeout", fail_timeout), ("tries", tries),
                        ("read_timeout", read_timeout), ("keepalive", keepalive)):
        if not isinstance(value, int) or value < 0:
            raise SlmLabError(f"{name}={value!r} must be a whole number ≥ 0.", f"E.g. {name}=1.")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise SlmLabError(f"port={port!r} is not a TCP port.", "Use a number in 1..65535.")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", upstream):
        raise SlmLabError(f"Upstream name {upstream!r} is not a plain name.", "Use letters, digits and _.")
    cases = list(next_upstream) or ["off"]
    reuse = (f"        keepalive {keepalive};           # reuse connections to the replicas ...\n"
             "        keepalive_timeout 4s;   # ... idle for less than the replicas' own 5 s\n" if keepalive else
             "        # no keepalive: llama-server closes each connection after a streamed answer (render_config)\n")
    root = Path(prefix).resolve()
    balance = "" if method == "round_robin" else f"        {method};\n"
    servers = "".join(f"        server {a} max_fails={max_fails} fail_timeout={fail_timeout}s;\n" for a in addresses)
    temp = "".join(f"    {kind}_temp_path {root / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                        "scgi"))
    return f"""# Generated by slmlab.scaling.nginx_lb: a load balancer for {len(addresses)} model-server replica(s).
# Run: nginx -c THIS_FILE -p {root}/   (check first with: nginx -t -c THIS_FILE -p {root}/)
daemon off;                      # stay in the foreground: the process that started nginx stops it
worker_processes 1;
pid {root / 'nginx.pid'};
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    log_format upstreams escape=json '{LOG_FORMAT}';
    access_log {root / 'access.log'} upstreams;
{temp}
    upstream {upstream} {{
{balance}        zone {upstream} 64k;       # state shared by all worker processes
{servers}{reuse}    }}

    server {{
        listen {HOST}:{port};

        location = {STATUS_PATH} {{
            stub_status;                 # nginx's own counters; answers while nginx runs (readiness)
        }}

        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;         # stream tokens (SSE) to the client as they come
            proxy_cache off;
            proxy_connect_timeout 2s;
            proxy_read_timeout {read_timeout}s;
            proxy_next_upstream {' '.join(cases)};
            proxy_next_upstream_tries {tries};
            add_header {UPSTREAM_HEADER} $upstream_addr always;
        }}
    }}
}}
"""


def check_config(config: str | os.PathLike, prefix: str | os.PathLike) -> str:
    """Run ``nginx -t`` on a config file (or text); returns nginx's report, raises SlmLabError when it is rejected."""
    prefix = Path(prefix).resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    path = Path(config) if not isinstance(config, str) or "\n" not in config else None
    if path is None:
        path = prefix / "nginx-check.conf"
        path.write_text(str(config), encoding="utf-8")
    if not path.is_file():
        raise SlmLabError(f"No nginx config at {path}.", "Write the config with render_config() first.")
    done = subprocess.run([nginx_binary(), "-t", "-e", "stderr", "-c", str(path.resolve()), "-p", f"{prefix}/"],
                          capture_output=True, text=True, timeout=30)
    report = (done.stderr + done.stdout).strip()
    if done.returncode != 0:
        problems = [re.sub(r"^\d+#\d+: ", "", line.split("] ", 1)[-1]) for line in report.splitlines()
                    if "[emerg]" in line or "[alert]" in line]
        raise SlmLabError(f"nginx rejected {path}: " + ("; ".join(problems) or report),
                          "Fix the directive named above (file:line); nginx's directives are documented at "
                          "https://nginx.org/en/docs/dirindex.html.")
    return report


class LoadBalancer:
    """nginx running a generated config on 127.0.0.1, as a context manager (see the module's docstring)."""

    def __init__(self, backends: Sequence[Any], port: int | None = None, workdir: str | os.PathLike | None = None,
                 startup_timeout: float = 15, **options: Any) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not workdir:
            self._tmp = tempfile.TemporaryDirectory(prefix="slmlab-nginx-")
            workdir = self._tmp.name
        self.prefix = Path(workdir).resolve()
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.prefix.chmod(0o755)  # nginx's workers (user nobody when started as root) write temp files here
        self.port = port or free_port()
        self.backends = [backend_address(b) for b in backends]
        self.config = render_config(self.backends, self.port, self.prefix, **options)
        self.config_path = self.prefix / "nginx.conf"
        self.config_path.write_text(self.config, encoding="utf-8")
        self.check_report = check_config(self.config_path, self.prefix)
        self.access_log = self.prefix / "access.log"
        self.server = ServerProcess([nginx_binary(), "-e", "stderr", "-c", str(self.config_path), "-p",
                                     f"{self.prefix}/"], port=self.port, ready_url=STATUS_PATH, name="nginx-lb",
                                    startup_timeout=startup_timeout, stop_timeout=5)

    @property
    def url(self) -> str:
        """The balancer's root URL (what clients call instead of a replica)."""
        return self.server.url

    def start(self) -> LoadBalancer:
        """Start nginx and wait until it answers."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop nginx (and remove its private folder when it made one)."""
        self.server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LoadBalancer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def requests(self) -> Any:
        """nginx's access log as a DataFrame: one row per client request, with every replica it tried.

        Columns: time_s, status, method, uri, upstream (the last replica tried), attempts (how many replicas),
        upstreams (all tried, in order), upstream_statuses, request_time_s.
        """
        import pandas as pd

        rows = []
        if self.access_log.exists():
            for line in self.access_log.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                # "a, b" = tried a then b; " : " separates upstream groups (an internal redirect)
                tried = [u for u in (s.strip() for s in entry["upstream"].replace(" : ", ", ").split(",")) if u]
                rows.append({"time_s": float(entry["msec"]), "status": int(entry["status"]), "method": entry["method"],
                             "uri": entry["uri"], "upstream": tried[-1] if tried else "", "attempts": len(tried),
                             "upstreams": tried,
                             "upstream_statuses": [s.strip() for s in entry["upstream_status"].split(",") if s.strip()],
                             "request_time_s": float(entry["request_time"] or "nan")})
        return pd.DataFrame(rows, columns=["time_s", "status", "method", "uri", "upstream", "attempts", "upstreams",
                                           "upstream_statuses", "request_time_s"])

    def upstream_status(self, uri_prefix: str = "/v1/") -> Any:
        """Per replica: does it answer /v1/models now, requests it served, attempts on it that failed.

        `served` counts responses the replica began (a stream cut off by a crash counts: nginx logs 200 once the
        header is sent); `failed_attempts` counts attempts nginx gave up on and passed to another replica.
        """
        import httpx
        import pandas as pd

        log = self.requests()
        log = log[log["uri"].str.startswith(uri_prefix)] if len(log) else log
        rows = []
        with httpx.Client(trust_env=False, timeout=2) as client:
            for address in self.backends:
                try:
                    up = client.get(f"http://{address}/v1/models").status_code == 200
                except httpx.HTTPError:
                    up = False
                served = failed = 0
                for tried, statuses in zip(log["upstreams"], log["upstream_statuses"], strict=True):
                    for i, (who, status) in enumerate(zip(tried, statuses + [""] * len(tried), strict=False)):
                        if who != address:
                            continue
                        if i == len(tried) - 1 and status.startswith(("2", "4")):
                            served += 1
                        else:
                            failed += 1
                rows.append({"replica": address, "answers": up, "served": served, "failed_attempts": failed})
        return pd.DataFrame(rows)


def nginx_load_balancer(backends: Sequence[Any], port: int | None = None, **options: Any) -> LoadBalancer:
    """A LoadBalancer over `backends` (not started: use it in a `with` block). Options: see render_config."""
    return LoadBalancer(backends, port=port, **options)
