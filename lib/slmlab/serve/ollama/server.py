"""Start slmlab's Ollama-compatible server as a child process, or use whatever answers at OLLAMA_HOST."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.process import HOST, ServerProcess

DEFAULT_PORT = 11434
DEFAULT_MODELS = ("smollm2:135m",)


# What a client connects to when OLLAMA_HOST names "every interface" (as the server's listen address).
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _split_host(value: str | None) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) from an OLLAMA_HOST-style value, by Ollama's rules: no scheme means http and
    port 11434; ``http://`` without a port means 80 and ``https://`` 443; no host means 127.0.0.1."""
    text = (value or "").strip()
    scheme, sep, rest = text.partition("://")
    default_port = DEFAULT_PORT
    if not sep:
        scheme, rest = "http", text
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport, slash, path = rest.partition("/")
    with contextlib.suppress(ValueError):  # a bare IPv6 address ("::1") gets the brackets a URL needs
        hostport = f"[{ipaddress.IPv6Address(hostport)}]"
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}{slash}{path}")
    try:
        port = split.port
    except ValueError:
        raise SlmLabError(f"OLLAMA_HOST={value!r} has an invalid port.",
                          "Use host:port, e.g. 127.0.0.1:11434.") from None
    return scheme, split.hostname or HOST, port or default_port, split.path.strip("/")


def parse_host(value: str | None) -> tuple[str, int]:
    """(host, port) to listen on, from an OLLAMA_HOST-style value: "host", "host:port", ":port",
    "http://host:port" (``0.0.0.0`` stays: it means every interface)."""
    _, host, port, _ = _split_host(value)
    return host, port


def host_url(value: str | None) -> str:
    """The base URL a client uses for an OLLAMA_HOST-style value (what ``ollama.Client(host=...)`` connects to);
    a listen-on-every-interface address (``0.0.0.0``) is reached through the loopback."""
    scheme, host, port, path = _split_host(value)
    host = LOOPBACK.get(host, host)
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
    return f"{url}/{path}" if path else url


def ollama_server(models: Sequence[str] = DEFAULT_MODELS, port: int | None = None,
                  models_dir: str | os.PathLike | None = None, n_ctx: int = 2048, keep_alive: str | None = None,
                  max_loaded: int = 3, startup_timeout: float = 120, log_format: str | None = None,
                  log_syslog: str | None = None, **kwargs: Any) -> ServerProcess:
    """slmlab's Ollama-compatible server on 127.0.0.1 (not started: use it in a `with` block).

    `models` are bundled models installed at start (as if pulled); `models_dir` is its model store
    (default $OLLAMA_MODELS, else slmlab's cache folder); a free port is picked unless `port` is given.
    `log_format` "json" writes one JSON object per log line; `log_syslog` (tcp://HOST:PORT) also ships them to
    a log aggregator.
    """
    cmd = [sys.executable, "-m", "slmlab.serve.ollama", "--host", HOST, "--port", "{port}",
           "--models", ",".join(models), "--context", str(n_ctx), "--max-loaded", str(max_loaded)]
    if keep_alive is not None:
        cmd += ["--keep-alive", str(keep_alive)]
    for flag, value in (("--log-format", log_format), ("--log-syslog", log_syslog)):
        if value is not None:
            cmd += [flag, value]
    env: dict[str, str | None] = {"OLLAMA_HOST": None}
    if models_dir is not None:
        env["OLLAMA_MODELS"] = os.fspath(models_dir)
    return ServerProcess(cmd, port=port, ready_url="/api/version", name="slmlab-ollama", env=env,
                         startup_timeout=startup_timeout, **kwargs)


def answers(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET {url}/api/version: the answer, or None when nothing Ollama-like answers there."""
    import httpx

    try:
        reply = httpx.get(f"{url}/api/version", timeout=timeout, trust_env=False)
        if reply.status_code == 200 and "version" in reply.json():
            root = httpx.get(f"{url}/", timeout=timeout, trust_env=False)
            return {**reply.json(), "served_by": root.headers.get("x-served-by", "ollama")}
    except (httpx.HTTPError, ValueError):
        return None
    return None


@dataclass
class OllamaEndpoint:
    """Where Ollama answers: a real one at OLLAMA_HOST, or slmlab's server started for this session."""

    url: str
    version: str
    served_by: str  # "ollama" (a real Ollama) or "slmlab"
    server: ServerProcess | None = None  # set when we started it (stopped by close())
    store: Any = None  # a TemporaryDirectory holding the model store of a fresh server (removed by close())

    @property
    def started(self) -> bool:
        return self.server is not None

    def close(self) -> None:
        """Stop the server if this endpoint started it (a real Ollama is left alone)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.store is not None:
            self.store.cleanup()
            self.store = None

    def __enter__(self) -> OllamaEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "started by slmlab" if self.started else f"found at OLLAMA_HOST ({self.served_by})"
        return f"<OllamaEndpoint {self.url} version {self.version}, {how}>"


def ensure_ollama(models: Sequence[str] = DEFAULT_MODELS, fresh: bool = False, **server_kwargs: Any
                  ) -> OllamaEndpoint:
    """Use the Ollama at $OLLAMA_HOST if it answers, else start slmlab's server (stop it with close() or `with`).

    `fresh` gives a started server an empty model store of its own (removed by close()), so a notebook sees
    the same models on every run; `models` are installed in it at start. Other keyword arguments go to
    ollama_server().
    """
    env = os.environ.get("OLLAMA_HOST")
    if env:
        url = host_url(env)
        found = answers(url)
        if found:
            return OllamaEndpoint(url, found["version"], found["served_by"])
        print(f"Nothing answers at OLLAMA_HOST={env}: starting slmlab's Ollama-compatible server instead.")
    store = None
    if fresh and "models_dir" not in server_kwargs:
        import tempfile

        store = tempfile.TemporaryDirectory(prefix="slmlab-ollama-")
        server_kwargs["models_dir"] = store.name
    try:
        server = ollama_server(models, **server_kwargs).start()
    except BaseException:
        if store is not None:
            store.cleanup()
        raise
    found = answers(server.url) or {"version": "?", "served_by": "slmlab"}
    return OllamaEndpoint(server.url, found["version"], found["served_by"], server, store)
