"""`slmlab deploy compose DIR`: the rendered compose.yaml run as it is, by `docker compose` where a Docker daemon
answers, else by `podman-compose` (PyPI, the deploy extra), with the images `slmlab deploy build` made; `down`
(containers, networks, the pod podman-compose makes, the Prometheus volume) on exit, also when something failed.

What the run sets, through the compose file's own variables only: GATEWAY_PORT and PROMETHEUS_PORT (free ports
on 127.0.0.1 unless given), PROMETHEUS_IMAGE where prom/prometheus is not in the local store and no registry
answers (the course's stand-in from the Debian package, `local_images.ensure_local_prometheus_image`), and
SLM_API_KEY for engines that read their key from the environment. The API key file secrets/api-keys is mounted as
it is, so it must be readable by the containers' users: the file is made 0444 inside its private (0700) folder.

    with BundleCompose("out/", runtime) as up:
        ask(up.base_url, up.api_key, up.plan.served_name)
        up.prometheus_targets()            # the compose Prometheus' own view: every job up
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmlab.containers.run import answers
from slmlab.containers.runtime import Runtime, last_lines
from slmlab.deploy.render import bundle_plan
from slmlab.errors import SlmLabError
from slmlab.process import HOST, free_port, port_in_use

PODMAN_COMPOSE_PIN = "podman-compose==1.6.0"
SERVICES = ("engine", "gateway", "prometheus")
STOPPED = ("exited", "stopped", "dead")


def compose_command(runtime: Runtime) -> list[str]:
    """`docker compose` (Docker's plugin) or podman-compose: beside this Python (the venv's bin/) or on PATH."""
    if runtime.name == "docker":
        if subprocess.run([runtime.path, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return [runtime.path, "compose"]
        raise SlmLabError("Docker's compose plugin is not installed (`docker compose version` fails).",
                          "Install docker-compose-plugin, or use podman with podman-compose.")
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.is_file() else shutil.which("podman-compose")
    if not found:
        raise SlmLabError("podman-compose is not installed, so the compose file cannot be run with podman.",
                          f"pip install {PODMAN_COMPOSE_PIN}  (or pip install -e '.[deploy]').")
    return [found]


def readable_key_file(folder: Path) -> tuple[str, Path]:
    """The bundle's API key (secrets/api-keys, made when missing), readable by the containers' users."""
    from slmlab.deploy.run import bundle_api_key

    key, path = bundle_api_key(folder)
    path.chmod(0o444)  # bind-mounted as it is: the containers' users must read it; the folder stays 0700
    return key, path


class BundleCompose:
    """The rendered compose.yaml, up; `down` on exit."""

    def __init__(self, folder: str | Path, runtime: Runtime, services: Sequence[str] = SERVICES,
                 gateway_port: int | None = None, prometheus_port: int | None = None,
                 startup_timeout: float | None = None, show: bool = False) -> None:
        self.folder, self.runtime, self.services = Path(folder), runtime, tuple(services)
        self.plan = bundle_plan(self.folder)
        self.project = self.plan.spec.name
        self.ports = {"gateway": gateway_port, "prometheus": prometheus_port}
        self.startup_timeout = startup_timeout or float(self.plan.engine.startup_seconds)
        self.api_key = ""
        self.env: dict[str, str] = {}
        self.notes: list[str] = []  # what the run chose: ports, the Prometheus image
        self.show = show  # print compose's own output

    @property
    def base_url(self) -> str:
        """The gateway's OpenAI-compatible base URL on 127.0.0.1."""
        return f"http://{HOST}:{self.env['GATEWAY_PORT']}/v1"

    @property
    def prometheus_url(self) -> str:
        """The compose Prometheus on 127.0.0.1."""
        return f"http://{HOST}:{self.env['PROMETHEUS_PORT']}"

    def compose(self, args: Sequence[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run the compose CLI in the bundle's folder with the run's environment."""
        command = [*compose_command(self.runtime), "-f", "compose.yaml", *args]
        done = subprocess.run(command, cwd=self.folder, env={**self.runtime.env(), **self.env}, capture_output=True,
                              text=True, timeout=timeout)
        if self.show:
            print(done.stdout + done.stderr)
        if check and done.returncode != 0:
            raise SlmLabError(f"{' '.join(command[:2])} {' '.join(args)} failed (exit {done.returncode}):\n"
                              f"{last_lines(done.stderr or done.stdout)}", "The lines above are compose's own.")
        return done

    def _environment(self) -> dict[str, str]:
        """The compose file's variables for this run (ports checked, the Prometheus image chosen)."""
        env = {"SLM_API_KEY": self.api_key, "HF_TOKEN": os.environ.get("HF_TOKEN", "")}
        for service, variable in (("gateway", "GATEWAY_PORT"), ("prometheus", "PROMETHEUS_PORT")):
            port = self.ports[service]
            if port is not None and port_in_use(port):
                raise SlmLabError(f"Port {port} on {HOST} is already in use, so compose cannot publish {service} "
                                  "there.", "Stop what listens there, or leave the port to the course (None).")
            env[variable] = str(port if port is not None else free_port())
            self.notes.append(f"{service} published on {HOST}:{env[variable]}")
        if "prometheus" in self.services:
            env["PROMETHEUS_IMAGE"] = self._prometheus_image()
        return env

    def _prometheus_image(self) -> str:
        from slmlab.deploy.build import registry_host, unreachable
        from slmlab.deploy.images import PROMETHEUS_IMAGE
        from slmlab.deploy.local_images import ensure_local_prometheus_image

        if self.runtime.image_exists(PROMETHEUS_IMAGE) or not unreachable([registry_host(PROMETHEUS_IMAGE)]):
            return PROMETHEUS_IMAGE
        ref = ensure_local_prometheus_image(self.runtime, show_progress=False, echo=self.notes.append)
        self.notes.append(f"prometheus: {PROMETHEUS_IMAGE}'s registry does not answer: the local stand-in {ref}")
        return ref

    def __enter__(self) -> BundleCompose:
        from slmlab.deploy.run import require_images

        require_images(self.runtime, self.plan, [s for s in self.services if s in ("engine", "gateway")],
                       self.folder)
        self.api_key, _ = readable_key_file(self.folder)
        try:
            self.env = self._environment()
            self.compose(["down", "-v", "-t", "2"], check=False)  # what an interrupted run left
            self.compose(["up", "-d", "--no-build", *self.services], timeout=self.startup_timeout)
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.env:
            self.compose(["down", "-v", "-t", "5"], check=False)

    def containers(self) -> dict[str, dict[str, str]]:
        """The project's containers by service: name and state."""
        done = self.runtime.run(["ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                                 "--format", "json"], check=False, timeout=60)
        listed = json.loads(done.stdout or "[]") if done.stdout.strip().startswith("[") else [
            json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        out = {}
        for box in listed:
            labels = box.get("Labels") or {}
            if not isinstance(labels, dict):  # docker: "key=value,key=value"
                labels = dict(pair.split("=", 1) for pair in labels.split(",") if "=" in pair)
            names = box.get("Names")
            out[labels.get("com.docker.compose.service", "?")] = {
                "name": names[0] if isinstance(names, list) else str(names), "state": str(box.get("State", "")).lower()}
        return out

    def wait_ready(self) -> None:
        """Until the gateway's /readyz (the engine behind it) and Prometheus' /-/ready answer 200; a container that
        stops raises with its last lines."""
        urls = {"gateway": f"http://{HOST}:{self.env.get('GATEWAY_PORT')}/readyz",
                "prometheus": f"http://{HOST}:{self.env.get('PROMETHEUS_PORT')}/-/ready"}
        waiting = {s: u for s, u in urls.items() if s in self.services}
        begin = time.perf_counter()
        while waiting:
            waiting = {s: u for s, u in waiting.items() if not answers(u)}
            stopped = [(s, box) for s, box in self.containers().items() if box["state"] in STOPPED]
            if stopped:
                service, box = stopped[0]
                logs = self.runtime.run(["logs", "--tail", "15", box["name"]], check=False)
                raise SlmLabError(f"compose's {service} container {box['name']} {box['state']}:\n"
                                  f"{last_lines(logs.stdout + logs.stderr)}", "Its last lines are above.")
            if waiting and time.perf_counter() - begin > self.startup_timeout:
                raise SlmLabError(f"{', '.join(waiting)} did not answer within {self.startup_timeout:g} s.",
                                  f"Look at `{self.runtime.name} logs` of the project {self.project}'s containers.")
            time.sleep(0.5 if waiting else 0)

    def prometheus_targets(self, timeout: float = 60) -> list[dict[str, Any]]:
        """The compose Prometheus' own targets (job, health) once every job was scraped, or at `timeout`."""
        from slmlab.monitoring.promql import PromQL

        with PromQL(self.prometheus_url) as client:
            deadline = time.monotonic() + timeout
            while True:
                table = client.targets()
                rows = [{"job": r.job, "health": r.health, "scrape_url": r.scrape_url} for r in table.itertuples()]
                if (rows and all(r["health"] == "up" for r in rows)) or time.monotonic() > deadline:
                    return rows
                time.sleep(1)
