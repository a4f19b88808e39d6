"""A container as a context manager, like `slmlab.process.ServerProcess` for a process: started hardened, its
ports published on 127.0.0.1 only, polled until its readiness URL answers, and always removed (on exit, on an
error, at interpreter exit).

    spec = ContainerSpec(image="...", name="chat-gateway", ports={8080: None}, read_only=True, user="10001:10001")
    with Container(runtime, spec, ready_path="/readyz") as box:
        httpx.get(box.url(8080) + "/v1/models")
"""

from __future__ import annotations

import atexit
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.containers.runtime import Runtime, last_lines
from slmlab.errors import SlmLabError
from slmlab.process import HOST, free_port, port_in_use

_STARTED: dict[str, Runtime] = {}  # name -> runtime, for containers not yet removed


@dataclass(frozen=True)
class ContainerSpec:
    """How to run one container: the hardening flags mirror a Kubernetes securityContext."""

    image: str
    name: str
    args: list[str] = field(default_factory=list)  # after the image: the entrypoint's arguments
    user: str | None = None  # "uid:gid" (runAsUser/runAsGroup)
    read_only: bool = True  # readOnlyRootFilesystem
    cap_drop_all: bool = True  # capabilities.drop: [ALL]
    no_new_privileges: bool = True  # allowPrivilegeEscalation: false
    tmpfs: Mapping[str, str] = field(default_factory=dict)  # path -> size ("64m"): emptyDir volumes
    binds: Mapping[str, str] = field(default_factory=dict)  # host path -> container path, read-only (secrets)
    env: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[int, int | None] = field(default_factory=dict)  # container port -> host port (None: a free one)
    network: str | None = None
    aliases: tuple[str, ...] = ()  # DNS names on `network`
    memory_mb: int | None = None  # resources.limits.memory (MiB); swap is not allowed beyond it
    cpus: float | None = None  # resources.limits.cpu
    restart: str | None = None  # "always", "on-failure", ...
    no_healthcheck: bool = True  # the image's HEALTHCHECK needs systemd timers under podman: run it on demand


def run_args(spec: ContainerSpec, host_ports: Mapping[int, int]) -> list[str]:
    """`run -d ...` arguments for a spec (ports already chosen)."""
    args = ["run", "-d", "--name", spec.name]
    if spec.user:
        args += ["--user", spec.user]
    if spec.read_only:
        args += ["--read-only"]
    if spec.cap_drop_all:
        args += ["--cap-drop", "ALL"]
    if spec.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    for path, size in spec.tmpfs.items():
        args += ["--tmpfs", f"{path}:rw,size={size},mode=1777"]
    for source, target in spec.binds.items():
        args += ["-v", f"{source}:{target}:ro"]
    for key, value in spec.env.items():
        args += ["-e", f"{key}={value}"]
    for inside, published in host_ports.items():
        args += ["-p", f"{HOST}:{published}:{inside}"]  # loopback only: nothing outside this machine reaches it
    if spec.network:
        args += ["--network", spec.network, *[a for alias in spec.aliases for a in ("--network-alias", alias)]]
    if spec.memory_mb:
        args += ["--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
    if spec.cpus:
        args += ["--cpus", f"{spec.cpus:g}"]
    if spec.restart:
        args += ["--restart", spec.restart]
    if spec.no_healthcheck:
        args += ["--no-healthcheck"]
    return [*args, spec.image, *spec.args]


class Container:
    """One running container; a context manager that always removes it."""

    def __init__(self, runtime: Runtime, spec: ContainerSpec, ready_path: str | None = None,
                 ready_port: int | None = None, startup_timeout: float = 120,
                 headers: Mapping[str, str] | None = None) -> None:
        self.runtime, self.spec = runtime, spec
        self.ready_path, self.startup_timeout = ready_path, startup_timeout
        self.ready_port = ready_port or next(iter(spec.ports), None)
        self.headers = dict(headers or {})
        self.host_ports: dict[int, int] = {}
        self.startup_s: float | None = None

    @property
    def name(self) -> str:
        """The container's name."""
        return self.spec.name

    def url(self, port: int | None = None) -> str:
        """http://127.0.0.1:<published port> for a container port (default: the readiness port)."""
        inside = port or self.ready_port
        if inside not in self.host_ports:
            raise SlmLabError(f"{self.name} publishes no port {inside}.", f"It publishes {sorted(self.host_ports)}.")
        return f"http://{HOST}:{self.host_ports[inside]}"

    def start(self) -> Container:
        """Start it (ports checked first) and wait until the readiness URL answers 200."""
        for inside, host in self.spec.ports.items():
            if host is not None and port_in_use(host):
                raise SlmLabError(f"Port {host} on {HOST} is already in use, so {self.name} cannot publish {inside} "
                                  "there.", "Stop what listens there, or let the course pick a free port (None).")
            self.host_ports[inside] = host if host is not None else free_port()
        self.runtime.run(["rm", "-f", self.name], check=False, timeout=60)  # a leftover of an interrupted run
        begin = time.perf_counter()
        self.runtime.run(run_args(self.spec, self.host_ports), timeout=120, what=f"Starting container {self.name}")
        _STARTED[self.name] = self.runtime
        if self.ready_path is not None:
            try:
                self.wait_ready(begin)
            except BaseException:
                self.remove()
                raise
        return self

    def wait_ready(self, begin: float) -> None:
        """Poll the readiness URL until 200; a container that exits or a timeout raises with its last log lines."""
        url = self.url() + (self.ready_path or "/")
        while True:
            state = self.state()
            if state.get("Status") in ("exited", "stopped", "dead") and not self.spec.restart:
                raise SlmLabError(f"Container {self.name} exited (code {state.get('ExitCode')}) before it was ready:"
                                  f"\n{last_lines(self.logs(), 15)}", "Its last lines are above.")
            if _answers(url, self.headers):
                self.startup_s = time.perf_counter() - begin
                return
            if time.perf_counter() - begin > self.startup_timeout:
                raise SlmLabError(f"Container {self.name} did not answer {url} within {self.startup_timeout:g} s:\n"
                                  f"{last_lines(self.logs(), 15)}", "Its last lines are above.")
            time.sleep(0.5)

    def state(self) -> dict[str, Any]:
        """The runtime's State object: Status, ExitCode, OOMKilled, Pid, ..."""
        done = self.runtime.run(["inspect", "--format", "{{json .State}}", self.name], check=False, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}

    def inspect(self) -> dict[str, Any]:
        """The whole `inspect` document."""
        data = json.loads(self.runtime.output(["inspect", self.name], what=f"Inspecting {self.name}"))
        return data[0] if isinstance(data, list) else data

    def logs(self, tail: int = 200) -> str:
        """The container's output (stdout and stderr)."""
        done = self.runtime.run(["logs", "--tail", str(tail), self.name], check=False, timeout=60)
        return (done.stdout or "") + (done.stderr or "")

    def remove(self) -> None:
        """Stop and remove it (SIGTERM, then SIGKILL after 5 s)."""
        self.runtime.run(["rm", "-f", "-t", "5", self.name], check=False, timeout=120)
        _STARTED.pop(self.name, None)

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _answers(url: str, headers: Mapping[str, str]) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers)), timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Network:
    """A user-defined network (DNS between its containers, by name and alias) as a context manager."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime, self.name = runtime, name

    def __enter__(self) -> Network:
        self.runtime.run(["network", "rm", "-f", self.name], check=False, timeout=60)
        self.runtime.run(["network", "create", self.name], what=f"Creating network {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.runtime.run(["network", "rm", "-f", self.name], check=False, timeout=60)


def secret_dir(folder: Path, files: Mapping[str, str]) -> Path:
    """A folder of secret files to mount read-only (like a Secret volume): readable inside the container by any
    user, the folder that holds it private to this user on the host."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.parent.chmod(0o700)
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    for name, value in files.items():
        (folder / name).write_text(value, encoding="utf-8")
        (folder / name).chmod(0o444)
    return folder


@atexit.register
def _remove_all() -> None:
    for name, runtime in list(_STARTED.items()):
        runtime.run(["rm", "-f", "-t", "2", name], check=False, timeout=60)
