"""The course's own containers.conf: podman reads it because every podman command the course runs sets
``CONTAINERS_CONF`` to it. The learner's ``~/.config/containers`` and ``/etc/containers`` are neither read by
those commands nor changed.

Two settings are needed on a machine like the course's CI (Debian 12 in a container, cgroups v1+v2 "hybrid"):

- ``[engine] runtime = "runc"``: podman's default OCI runtime, crun, refuses to start any container there
  ("cgroups in hybrid mode not supported"); runc works.
- ``[containers] default_ulimits``: podman asks for ulimits above this machine's hard limits (nofile 1048576),
  and runc's setrlimit then fails with EPERM. The course asks for this machine's own hard limits instead,
  read when the file is written.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError

CONFIG_ENV = "CONTAINERS_CONF"  # podman reads only this file when it is set
CONFIG_VERSION = 1  # bump when the file's settings change: `slmlab setup containers` rewrites older files
MAX_NOFILE = 65536  # open files per container: enough for a server, below podman's 1048576
MAX_NPROC = 4096  # processes (threads count) per user id in a container
OCI_RUNTIME = "runc"  # the OCI runtime the file sets (`podman info` reports it when the file is in force)
_MARKER = "# slmlab-containers-conf-version: "


@dataclass(frozen=True)
class Ulimits:
    """The soft = hard limits every container gets."""

    nofile: int
    nproc: int


def host_ulimits() -> Ulimits:
    """This process's hard limits (what an OCI runtime started from here may grant), capped at the course's."""

    def hard(which: int, cap: int) -> int:
        limit = resource.getrlimit(which)[1]
        return cap if limit == resource.RLIM_INFINITY else min(int(limit), cap)

    return Ulimits(hard(resource.RLIMIT_NOFILE, MAX_NOFILE), hard(resource.RLIMIT_NPROC, MAX_NPROC))


def config_dir() -> Path:
    """Where the course keeps its container settings: <slmlab cache>/containers."""
    from slmlab.models.resolver import cache_dir

    folder = cache_dir() / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def config_path() -> Path:
    """The course-only containers.conf."""
    return config_dir() / "containers.conf"


def config_text(limits: Ulimits) -> str:
    """The file's text, every setting explained."""
    return f"""{_MARKER}{CONFIG_VERSION}
# containers.conf for SLM Deploy Lab only, written by `slmlab setup containers` (run it again to rewrite it).
# podman reads this file because the course sets CONTAINERS_CONF to its path for every podman command it
# runs; your own ~/.config/containers and /etc/containers are not read by those commands, and not changed.
# To run podman by hand with the course's settings:  CONTAINERS_CONF={config_path()} podman ...

[containers]
# podman's default ulimits (open files 1048576, ...) are above this machine's hard limits, so the OCI
# runtime's setrlimit fails with EPERM and no container starts. Ask for the hard limits found when this
# file was written (soft = hard), capped at {MAX_NOFILE} open files and {MAX_NPROC} processes.
default_ulimits = ["nofile={limits.nofile}:{limits.nofile}", "nproc={limits.nproc}:{limits.nproc}"]

[engine]
# runc instead of crun, podman's default: crun refuses to start containers on a host whose cgroups are in
# "hybrid" mode (v1 and v2 together, as inside many CI containers): "cgroups in hybrid mode not supported".
runtime = "{OCI_RUNTIME}"
"""


def write_config(limits: Ulimits | None = None) -> Path:
    """Write (or rewrite) the course-only containers.conf; returns its path."""
    path = config_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(config_text(limits or host_ulimits()), encoding="utf-8")
    os.replace(tmp, path)
    return path


def config_version(path: Path | None = None) -> int | None:
    """The version written in the file, None when there is no file (or not one of ours)."""
    path = path or config_path()
    if not path.is_file():
        return None
    first = path.read_text(encoding="utf-8").splitlines()[:1]
    if not first or not first[0].startswith(_MARKER):
        return None
    try:
        return int(first[0][len(_MARKER):])
    except ValueError:
        return None


def require_config() -> Path:
    """The config file's path; a clear error when `slmlab setup containers` has not written it (or an older one)."""
    path = config_path()
    version = config_version(path)
    if version != CONFIG_VERSION:
        state = "are missing" if version is None and not path.exists() else f"are out of date (version {version})"
        raise SlmLabError(f"The course's podman settings ({path}) {state}.",
                          "Run `slmlab setup containers` once: it writes them (runc, ulimits) and builds the base "
                          "image.")
    return path
