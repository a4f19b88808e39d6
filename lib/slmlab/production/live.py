"""A running service, asked what the readiness checklist needs: probes, auth, rate limits, metrics, logs.

    live = LiveService(server.url, api_key=key, log_path=server.log_path)
    live.get("/readyz")                    # (200, headers, body), asked once and remembered
    live.chat()                            # one short chat completion: fills the metrics and the log
    live.burst(61)                         # until the first 429 (or n requests)
    live.metric_names()                    # the names on /metrics

Requests go to 127.0.0.1 only (a server the notebook started); every answer is kept, so the evidence the
checklist prints is what the service said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

CHAT_PATH = "/v1/chat/completions"
CHEAP_PATH = "/v1/models"  # protected like the chat route, costs no model time: what the rate-limit probe calls


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), body text."""

    status: int
    headers: dict[str, str]
    text: str


@dataclass
class LiveService:
    """A service at `url` (127.0.0.1), the API key it accepts, and the file its output goes to."""

    url: str
    api_key: str | None = None
    log_path: str | Path | None = None
    model: str | None = None  # the model name for the chat request (default: the first of /v1/models)
    timeout: float = 60
    _seen: dict[tuple[str, str, bool], Answer] = field(default_factory=dict, repr=False)
    _burst: list[int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from slmlab.serve.gateway.security import is_loopback

        host = self.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if not is_loopback(host):
            raise SlmLabError(f"{self.url} is not on this machine.",
                              "The readiness probe only calls servers on 127.0.0.1 (start one with app_server).")

    def request(self, method: str, path: str, with_key: bool = True, body: dict[str, Any] | None = None) -> Answer:
        """Ask once (GETs are remembered): with the API key unless `with_key` is False."""
        import httpx

        memo = (method, path, with_key)
        if method == "GET" and memo in self._seen:
            return self._seen[memo]
        headers = {"Authorization": f"Bearer {self.api_key}"} if with_key and self.api_key else {}
        try:
            reply = httpx.request(method, self.url.rstrip("/") + path, headers=headers, json=body,
                                  timeout=self.timeout)
        except httpx.HTTPError as err:
            raise SlmLabError(f"{self.url}{path} did not answer: {err}", "Is the service still running?") from None
        answer = Answer(reply.status_code, {k.lower(): v for k, v in reply.headers.items()}, reply.text)
        self._seen[memo] = answer
        return answer

    def get(self, path: str, with_key: bool = True) -> Answer:
        """GET `path`."""
        return self.request("GET", path, with_key)

    def chat(self, prompt: str = "Say OK.", max_tokens: int = 4) -> Answer:
        """One short chat completion (greedy), once: it puts a request into the metrics and the log."""
        memo = ("POST", CHAT_PATH, True)
        if memo not in self._seen:
            model = self.model or self._first_model()
            self._seen[memo] = self.request("POST", CHAT_PATH, body={
                "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "temperature": 0})
        return self._seen[memo]

    def _first_model(self) -> str:
        answer = self.get(CHEAP_PATH)
        try:
            return str(json.loads(answer.text)["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            return "default"

    def burst(self, n: int) -> list[int]:
        """Send up to `n` GETs of a protected route at once-after-another, stopping at the first 429; the statuses.

        Done once: a second call returns the first call's statuses (the bucket would still be empty)."""
        import httpx

        if self._burst is None:
            statuses: list[int] = []
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            with httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout) as client:
                for _ in range(max(1, n)):
                    reply = client.get(CHEAP_PATH)
                    statuses.append(reply.status_code)
                    if reply.status_code == 429:
                        self._seen[("BURST", CHEAP_PATH, True)] = Answer(
                            429, {k.lower(): v for k, v in reply.headers.items()}, reply.text)
                        break
            self._burst = statuses
        return self._burst

    def throttled(self) -> Answer | None:
        """The 429 answer the burst got, if any."""
        return self._seen.get(("BURST", CHEAP_PATH, True))

    def metric_names(self) -> set[str]:
        """Every sample name on /metrics (histograms as name_bucket/_sum/_count)."""
        from slmlab.serve import scrape

        answer = self.get("/metrics", with_key=False)
        return set(scrape.parse(answer.text).names()) if answer.status == 200 else set()

    def log_text(self) -> str:
        """What the service has written to its log so far ('' without a log file)."""
        if self.log_path is None or not Path(self.log_path).is_file():
            return ""
        return Path(self.log_path).read_text(encoding="utf-8", errors="replace")


def logged_requests(text: str) -> list[dict[str, Any]]:
    """The requests a log records: access-log lines (uvicorn's) and JSON lines with a path and a status."""
    from slmlab.monitoring.logs import parse_line

    found = []
    for line in text.splitlines():
        row: dict[str, Any] = {}
        if line.lstrip().startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = {}
            if isinstance(data, dict):
                row = {"path": data.get("path") or data.get("route") or "", "status": data.get("status", "")}
        else:
            parsed = parse_line(line)
            row = {"path": parsed["path"], "status": parsed["status"]}
        if row.get("path") and row.get("status") not in ("", None):
            found.append({**row, "line": line.strip()})
    return found
