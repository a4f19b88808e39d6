"""A real Prometheus (Debian's ``/usr/bin/prometheus``) on 127.0.0.1, scraping the servers we started.

    with prometheus_server({"gateway": gateway, "ollama": ollama}, rules=default_rules()) as prom:
        prom.wait_for_targets()                 # every target scraped at least once, and up
        prom.client.query("up")

The configuration (scrape targets, rule files, a 1 s scrape and evaluation interval for a notebook) is written
to a temporary folder together with the TSDB, checked with ``promtool check config`` before Prometheus starts,
and removed when it stops. Targets are servers (anything with a ``url``, e.g. a ServerProcess) or URLs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slmlab.errors import SlmLabError
from slmlab.monitoring import promtool
from slmlab.monitoring.promql import PromQL
from slmlab.process import HOST, ServerProcess

PROMETHEUS_ENV = "SLMLAB_PROMETHEUS"  # another prometheus binary than the one on PATH
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class ScrapeTarget:
    """One job Prometheus scrapes: its name, the server's host:port addresses, the metrics path, extra labels."""

    job: str
    addresses: tuple[str, ...]
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)
    credentials_file: str = ""  # a bearer token in a file (llama-server's /metrics sits behind its API key)

    def config(self) -> dict[str, Any]:
        """This job's entry under scrape_configs."""
        static: dict[str, Any] = {"targets": list(self.addresses)}
        if self.labels:
            static["labels"] = dict(self.labels)
        job: dict[str, Any] = {"job_name": self.job, "metrics_path": self.metrics_path}
        if self.credentials_file:
            job["authorization"] = {"type": "Bearer", "credentials_file": self.credentials_file}
        return {**job, "static_configs": [static]}


def scrape_target(job: str, server: Any, metrics_path: str | None = None,
                  labels: Mapping[str, str] | None = None) -> ScrapeTarget:
    """A ScrapeTarget for `server`: a ServerProcess (or anything with a url), a URL, or a list of those."""
    if not isinstance(job, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_-]*", job):
        raise SlmLabError(f"{job!r} is not a usable job name.", "Use letters, digits, - and _, e.g. 'gateway'.")
    servers = server if isinstance(server, list | tuple) else [server]
    addresses, paths = [], set()
    for item in servers:
        text = str(getattr(item, "url", item) or "")
        parts = urlsplit(text if "://" in text else f"http://{text}")
        if not parts.hostname or not parts.port:
            raise SlmLabError(f"Cannot scrape {job!r}: {text!r} has no host:port.",
                              "Pass a started server (its .url) or a URL like http://127.0.0.1:8000.")
        addresses.append(f"{parts.hostname}:{parts.port}")
        if parts.path not in ("", "/"):
            paths.add(parts.path)
    path = metrics_path or (paths.pop() if len(paths) == 1 else "/metrics")
    return ScrapeTarget(job, tuple(addresses), path, dict(labels or {}))


def prometheus_config(targets: Sequence[ScrapeTarget], rule_files: Sequence[str] = (),
                      scrape_interval: str = "1s", evaluation_interval: str = "1s") -> dict[str, Any]:
    """prometheus.yml as a dict: the global intervals, the rule files and one scrape job per target."""
    for name, value in (("scrape_interval", scrape_interval), ("evaluation_interval", evaluation_interval)):
        if not isinstance(value, str) or not _DURATION.match(value):
            raise SlmLabError(f"{name}={value!r} is not a Prometheus duration.", "Write it like '1s', '15s' or '1m'.")
    jobs = [t.job for t in targets]
    if len(set(jobs)) != len(jobs):
        raise SlmLabError(f"Job names repeat: {jobs}.", "Give every scrape target its own job name.")
    return {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": evaluation_interval},
            "rule_files": list(rule_files),
            "scrape_configs": [t.config() for t in targets]}


def prometheus_path() -> str:
    """The prometheus binary: $SLMLAB_PROMETHEUS, else the one on PATH (Debian: /usr/bin/prometheus)."""
    found = os.environ.get(PROMETHEUS_ENV) or shutil.which("prometheus")
    if not found:
        raise SlmLabError("Prometheus is not installed.",
                          "apt-get install prometheus (Debian/Ubuntu), or set SLMLAB_PROMETHEUS to the binary.")
    return found


def promtool_check_config(path: str | os.PathLike) -> None:
    """`promtool check config` on a prometheus.yml (rule files included); raise with promtool's message."""
    problems = promtool.check_config(path)
    if problems:
        raise SlmLabError(f"promtool check config rejects {path}:\n" + "\n".join(problems),
                          "Fix the scrape targets or rules named above.")


class PrometheusServer(ServerProcess):
    """Prometheus as a ServerProcess: config and TSDB in a temporary folder, ready when /-/ready answers 200."""

    def __init__(self, targets: Sequence[ScrapeTarget], rules: Mapping[str, str] | None = None,
                 scrape_interval: str = "1s", evaluation_interval: str = "1s", port: int | None = None,
                 startup_timeout: float = 60, log_level: str = "info") -> None:
        import yaml

        self.workdir = Path(tempfile.mkdtemp(prefix="slmlab-prometheus-"))
        self.targets = list(targets)
        self.rule_files: dict[str, Path] = {}
        for name, text in (rules or {}).items():
            self.rule_files[name] = self._write_rules(name, text)
        self.config = prometheus_config(self.targets, [str(p) for p in self.rule_files.values()],
                                        scrape_interval, evaluation_interval)
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        cmd = [prometheus_path(), f"--config.file={self.config_path}",
               f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address={HOST}:{{port}}",
               "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d", f"--log.level={log_level}"]
        super().__init__(cmd, port=port, ready_url="/-/ready", name="prometheus", startup_timeout=startup_timeout,
                         stop_timeout=10)
        self._client: PromQL | None = None

    def _write_rules(self, name: str, text: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SlmLabError(f"{name!r} is not a usable rule file name.", "Use e.g. 'alerts.yml'.")
        path = self.workdir / (name if name.endswith((".yml", ".yaml")) else f"{name}.yml")
        path.write_text(text)
        return path

    @property
    def client(self) -> PromQL:
        """A PromQL client for this Prometheus."""
        if self._client is None:
            self._client = PromQL(self.url)
        return self._client

    def start(self) -> PrometheusServer:
        """Check the configuration with promtool, then start Prometheus and wait for /-/ready."""
        if not self.running:
            promtool_check_config(self.config_path)
        super().start()
        return self

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def stop(self) -> int | None:
        """Stop Prometheus and remove its configuration and data."""
        if self._client is not None:
            self._client.close()
            self._client = None
        code = super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def wait_for_targets(self, timeout: float = 30) -> Any:
        """Wait until every target has been scraped and is up; return the targets table. Raise with the errors."""
        deadline = time.monotonic() + timeout
        while True:
            table = self.client.targets()
            if len(table) >= len(self.targets) and (table["health"] == "up").all():
                return table
            if time.monotonic() > deadline:
                bad = table[table["health"] != "up"]
                raise SlmLabError(f"Not every scrape target is up after {timeout:g} s:\n"
                                  f"{bad[['job', 'scrape_url', 'health', 'last_error']].to_string(index=False)}",
                                  "Check that those servers run and answer their metrics path (open it with httpx).")
            time.sleep(0.25)

    def set_rules(self, name: str, text: str) -> Path:
        """Add or replace a rule file and make Prometheus load it (POST /-/reload); returns its path.

        The file is checked with promtool first, so a broken rule never reaches the running Prometheus.
        """
        import yaml

        problems = promtool.check_rules(text)
        if problems:
            raise SlmLabError(f"promtool rejects the rules {name!r}:\n" + "\n".join(problems),
                              "Fix the rule (its expr, for: duration, labels) and try again.")
        path = self._write_rules(name, text)
        self.rule_files[name] = path
        self.config["rule_files"] = [str(p) for p in self.rule_files.values()]
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        if self.running:
            import httpx

            answer = httpx.post(f"{self.url}/-/reload", timeout=30, trust_env=False)
            if answer.status_code != 200:
                raise SlmLabError(f"Prometheus did not reload its rules: HTTP {answer.status_code} {answer.text}",
                                  f"Read its log: {self.log_path}")
        return path


def prometheus_server(targets: Mapping[str, Any] | Sequence[ScrapeTarget], rules: Mapping[str, str] | str | None = None,
                      scrape_interval: str = "1s", evaluation_interval: str = "1s", port: int | None = None,
                      startup_timeout: float = 60, log_level: str = "info") -> PrometheusServer:
    """A Prometheus scraping `targets` (not started: use it in a `with` block).

    `targets` maps a job name to a server (a ServerProcess, a URL, or a list of them), or is a list of
    ScrapeTargets; `rules` maps rule file names to their YAML text (a single text is saved as alerts.yml).
    """
    if isinstance(targets, Mapping):
        scrape = [scrape_target(job, server) for job, server in targets.items()]
    else:
        scrape = list(targets)
    if not scrape:
        raise SlmLabError("No scrape targets given.", "Pass e.g. {'gateway': server}.")
    if isinstance(rules, str):
        rules = {"alerts.yml": rules}
    return PrometheusServer(scrape, rules, scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
                            port=port, startup_timeout=startup_timeout, log_level=log_level)
