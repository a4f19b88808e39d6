"""Which container CLI the course uses, and running it.

Docker when its daemon answers (Codespaces, a laptop with Docker Desktop), else podman (daemonless: the
course's CI and Debian machines). Both take the same `build`, `run`, `rm`, `image` commands; `kube play` is
podman's. ``SLMLAB_CONTAINER_CLI=podman`` (or ``docker``) picks one. Every podman command gets
``CONTAINERS_CONF`` pointing at the course's own containers.conf (`slmlab.containers.config`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from slmlab.containers import config
from slmlab.errors import SlmLabError

RUNTIME_ENV = "SLMLAB_CONTAINER_CLI"
RUNTIMES = ("docker", "podman")
INSTALL_HINT = ("On Debian/Ubuntu: sudo apt-get install -y podman runc catatonit debootstrap, then "
                "`slmlab setup containers`. (Binder has no container runtime: those steps are skipped there.)")


@dataclass(frozen=True)
class Runtime:
    """A container CLI: its name, its executable, and (podman) the course's containers.conf."""

    name: str  # "docker" | "podman"
    path: str
    config: Path | None = None  # podman: CONTAINERS_CONF for every command

    @property
    def has_kube_play(self) -> bool:
        """`kube play` runs Kubernetes YAML (podman only)."""
        return self.name == "podman"

    def env(self) -> dict[str, str]:
        """The environment for a command: this process's, plus CONTAINERS_CONF for podman."""
        env = dict(os.environ)
        if self.config is not None:
            env[config.CONFIG_ENV] = str(self.config)
        return env

    def command(self, args: Sequence[str]) -> list[str]:
        """The full command line."""
        return [self.path, *[str(a) for a in args]]

    def run(self, args: Sequence[str], *, timeout: float = 120, what: str = "", check: bool = True,
            input: str | bytes | None = None) -> subprocess.CompletedProcess:
        """Run one command and wait; with `check`, a failure is a SlmLabError naming `what` and the last lines."""
        text = not isinstance(input, bytes)
        try:
            done = subprocess.run(self.command(args), env=self.env(), capture_output=True, text=text, input=input,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SlmLabError(f"{what or self.name + ' ' + str(args[0])} did not finish within {timeout:g} s.",
                              f"Is {self.name} stuck? Try `{self.name} ps` and `{self.name} info` by hand.") from None
        if check and done.returncode != 0:
            raise SlmLabError(f"{what or ' '.join(self.command(args))} failed (exit {done.returncode}):\n"
                              f"{last_lines(_text(done.stderr) or _text(done.stdout))}",
                              f"The lines above are {self.name}'s own message.")
        return done

    def output(self, args: Sequence[str], *, timeout: float = 120, what: str = "") -> str:
        """A command's stdout, stripped (a failure raises)."""
        return _text(self.run(args, timeout=timeout, what=what).stdout).strip()

    def image_exists(self, ref: str) -> bool:
        """True when the image is in the local store."""
        return self.run(["image", "inspect", "--format", "{{.Id}}", ref], check=False, timeout=60).returncode == 0

    def image_size(self, ref: str) -> int:
        """The image's size in bytes (all its layers, as `images` reports it)."""
        return int(self.output(["image", "inspect", "--format", "{{.Size}}", ref], what=f"Reading the size of {ref}"))


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def last_lines(text: str, n: int = 15) -> str:
    """The last n non-empty lines of a tool's output, indented."""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join("  " + line for line in lines[-n:]) or "  (no output)"


def docker_answers(path: str) -> bool:
    """True when the docker CLI reaches a daemon (a CLI without a running daemon cannot build or run)."""
    try:
        return subprocess.run([path, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect() -> tuple[str, str] | None:
    """(name, path) of the runtime to use, None when there is none; SLMLAB_CONTAINER_CLI wins."""
    wanted = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if wanted and wanted not in RUNTIMES:
        raise SlmLabError(f"{RUNTIME_ENV}={wanted!r} is not a container CLI the course knows.",
                          f"Use one of {', '.join(RUNTIMES)}, or unset it.")
    for name in [wanted] if wanted else list(RUNTIMES):
        path = shutil.which(name)
        if path and (name != "docker" or docker_answers(path)):
            return name, path
    return None


def find_runtime(need_config: bool = True) -> Runtime:
    """The runtime to use; podman also needs the course's containers.conf (`slmlab setup containers`)."""
    found = detect()
    if found is None:
        docker = shutil.which("docker")
        why = (f"docker is installed ({docker}) but its daemon does not answer `docker info`, and podman is not "
               "installed" if docker else "neither docker nor podman is installed")
        raise SlmLabError(f"No container runtime: {why}.", INSTALL_HINT)
    name, path = found
    if name == "podman":
        return Runtime(name, path, config.require_config() if need_config else config.config_path())
    return Runtime(name, path)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The runtime, found once per process (tests and set-up call `find_runtime` for a fresh look)."""
    return find_runtime()


def availability() -> tuple[bool, str]:
    """(usable, a line saying which runtime or why none): for `slmlab doctor` and the notebooks' skip cells."""
    try:
        found = find_runtime()
    except SlmLabError as err:
        return False, f"{err.problem} {err.hint}"
    version = found.run(["--version"], check=False, timeout=30)
    line = _text(version.stdout).strip() or found.name
    return True, line + (f" (settings: {found.config})" if found.config else "")
