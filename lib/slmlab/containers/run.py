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
        self.last_state: dict[str, Any] = {}  # the State read last (kept when it failed to start)
        self.id = ""  # the container's id, once started

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
        started = self.runtime.run(run_args(self.spec, self.host_ports), timeout=120,
                                   what=f"Starting container {self.name}")
        self.id = started.stdout.strip().splitlines()[-1] if started.stdout.strip() else self.name
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
                state = self.exit_state()
                raise SlmLabError(f"Container {self.name} {exit_reason(state, self.spec.memory_mb)} before it was "
                                  f"ready:\n{last_lines(self.logs(), 15)}", "Its last lines are above." + (
                                      " Raise its memory limit." if state.get("OOMKilled") else ""))
            if answers(url, self.headers):
                self.startup_s = time.perf_counter() - begin
                return
            if time.perf_counter() - begin > self.startup_timeout:
                raise SlmLabError(f"Container {self.name} did not answer {url} within {self.startup_timeout:g} s:\n"
                                  f"{last_lines(self.logs(), 15)}", "Its last lines are above.")
            time.sleep(0.5)

    def state(self) -> dict[str, Any]:
        """The runtime's State object: Status, ExitCode, OOMKilled, Pid, ..."""
        done = self.runtime.run(["inspect", "--format", "{{json .State}}", self.name], check=False, timeout=60)
        if done.returncode == 0 and done.stdout.strip():
            self.last_state = json.loads(done.stdout)
            return self.last_state
        return {}

    def exit_state(self) -> dict[str, Any]:
        """The State after it stopped, with OOMKilled also true when the kernel's log says it killed the container
        (podman does not always notice: with cgroups v1 its OOMKilled stays false); `KernelLog` holds that line."""
        state = dict(self.state() or self.last_state)
        if state.get("ExitCode") == 137 and not state.get("OOMKilled") and self.id:
            line = kernel_oom_line(self.id)
            if line:
                state.update(OOMKilled=True, KernelLog=line)
        self.last_state = state
        return state

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


def exit_reason(state: Mapping[str, Any], memory_mb: int | None = None) -> str:
    """"exited (code 3)", or with 137 and the kernel's word: "was OOM-killed (exit 137; memory limit 313 MiB)"."""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        limit = f"; memory limit {memory_mb} MiB" if memory_mb else ""
        return f"was killed by the kernel's OOM killer (exit {code}{limit})"
    return f"exited (code {code})"


def kernel_oom_line(container_id: str) -> str:
    """The kernel's "Memory cgroup out of memory: Killed process …" line for this container ("" when the kernel log
    cannot be read or has none): the OOM kill names the container's cgroup, which holds its id."""
    import subprocess

    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for i, line in enumerate(log):
        if "oom-kill:" in line and container_id in line:
            killed = next((later for later in log[i:i + 5] if "Killed process" in later), "")
            return killed.split("] ", 1)[-1].strip()
    return ""


def peak_memory_bytes(runtime: Runtime, name: str) -> int:
    """The most memory the container's cgroup has used so far (cgroup v2 memory.peak, or v1 max_usage_in_bytes)."""
    out = runtime.output(["exec", name, "sh", "-c", "cat /sys/fs/cgroup/memory.peak 2>/dev/null || "
                          "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes"], what=f"Reading {name}'s memory")
    return int(out.split()[0])


def evict_from_page_cache(runtime: Runtime, image: str, path: str) -> bool:
    """Drop a file of an image from the page cache (as on a node that never read it), so that the next container
    to read it is charged for its pages. podman as root only (`image mount`); False where it cannot."""
    import os

    if runtime.name != "podman" or not hasattr(os, "posix_fadvise"):
        return False
    mounted = runtime.run(["image", "mount", image], check=False, timeout=60)
    if mounted.returncode != 0 or not mounted.stdout.strip():
        return False
    try:
        fd = os.open(Path(mounted.stdout.strip()) / path.lstrip("/"), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        runtime.run(["image", "unmount", image], check=False, timeout=60)


def process_peak_bytes(runtime: Runtime, name: str) -> int:
    """The container's main process's peak resident memory (VmHWM: its anonymous memory and the file pages it
    maps, such as a mmap-ed model, wherever the kernel charged those)."""
    out = runtime.output(["exec", name, "sh", "-c", "grep VmHWM /proc/1/status"], what=f"Reading {name}'s memory")
    return int(out.split()[1]) * 1024


def answers(url: str, headers: Mapping[str, str] | None = None) -> bool:
    """True when GET url (with these headers) answers 200."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers or {})), timeout=3) as response:
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
