"""A server that answers 503 to its first requests, then passes them on: the target of a retry exercise.

    with flaky_server(upstream=ollama_url, fail=2) as flaky:      # python -m slmlab.languages.flaky …
        ...  # a client calls flaky.url/api/chat: 503, 503, then the upstream's answer
        seen(flaky)   # [{"t": …, "method": "POST", "path": "/api/chat", "status": 503}, …]
        reset(flaky, fail=0)

Every request but its own (`/_flaky`, `/healthz`) is counted and logged with its arrival time, so a test can see
how many attempts a client made and how long it waited between them. The 503s carry ``Retry-After: 1`` and an
Ollama-style ``{"error": …}`` body; later requests go to the upstream unchanged (method, path, body, content type)
and its answer comes back whole.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slmlab.process import HOST, ServerProcess

CONTROL = "/_flaky"


class FlakyState:
    """How many requests still fail, and every counted request so far."""

    def __init__(self, upstream: str, fail: int, status: int) -> None:
        self.upstream, self.fail, self.status = upstream.rstrip("/"), fail, status
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_status(self, method: str, path: str) -> int | None:
        """The error status for this request while failures remain, else None (pass it on); logs it either way."""
        with self.lock:
            failing = self.fail > 0
            self.fail -= failing
            self.seen.append({"t": time.time(), "method": method, "path": path,
                              "status": self.status if failing else None})
            return self.status if failing else None


def make_handler(state: FlakyState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr (the log file)
            sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

        def _reply(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _control(self) -> None:
            if self.command == "POST":
                with state.lock:
                    state.fail = int(json.loads(self._body() or b"{}").get("fail", 0))
                    state.seen.clear()
            self._reply(200, json.dumps({"fail": state.fail, "seen": state.seen}).encode())

        def _handle(self) -> None:
            if self.path.startswith(CONTROL):
                return self._control()
            if self.path == "/healthz":
                return self._reply(200, b'{"status":"ok"}')
            body = self._body()
            status = state.next_status(self.command, self.path)
            if status is not None:
                error = {"error": f"flaky server: answering {status} on purpose ({state.fail} more to come)"}
                return self._reply(status, json.dumps(error).encode(), headers={"Retry-After": "1"})
            self._forward(body)

        def _forward(self, body: bytes) -> None:
            request = urllib.request.Request(state.upstream + self.path, data=body or None, method=self.command,
                                             headers={"Content-Type": self.headers.get("Content-Type",
                                                                                       "application/json")})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for 127.0.0.1
            try:
                with opener.open(request, timeout=300) as answer:
                    self._reply(answer.status, answer.read(), answer.headers.get("Content-Type", "application/json"))
            except urllib.error.HTTPError as err:
                self._reply(err.code, err.read(), err.headers.get("Content-Type", "application/json"))
            except OSError as err:
                self._reply(502, json.dumps({"error": f"upstream {state.upstream}: {err}"}).encode())

        do_GET = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815 - http.server's method names

    return Handler


def flaky_server(upstream: str, fail: int = 2, status: int = 503, port: int | None = None) -> ServerProcess:
    """The flaky server in front of `upstream` as a ServerProcess (not started: use it in a `with` block)."""
    cmd = [sys.executable, "-m", "slmlab.languages.flaky", "--upstream", upstream, "--fail", str(fail),
           "--status", str(status), "--port", "{port}"]
    return ServerProcess(cmd, port=port, ready_url="/healthz", name="flaky", startup_timeout=30)


def seen(server: Any) -> list[dict[str, Any]]:
    """The requests the flaky server counted since its start or last reset (arrival time, path, status sent)."""
    import httpx

    return httpx.get(f"{server.url}{CONTROL}", trust_env=False, timeout=10).json()["seen"]


def reset(server: Any, fail: int) -> None:
    """Forget the requests seen, and fail the next `fail` ones."""
    import httpx

    httpx.post(f"{server.url}{CONTROL}", json={"fail": fail}, trust_env=False, timeout=10).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slmlab.languages.flaky", description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="where requests go once the failures are used up")
    parser.add_argument("--fail", type=int, default=2, help="how many requests get the error status first")
    parser.add_argument("--status", type=int, default=503)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((HOST, args.port), make_handler(FlakyState(args.upstream, args.fail, args.status)))
    print(f"flaky server on http://{HOST}:{args.port}: {args.fail} × {args.status}, then {args.upstream}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
