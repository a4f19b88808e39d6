"""The Debian packages the course's containers need: installed with apt when running as root, else the
exact `apt-get` line to run (with sudo)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from slmlab.errors import SlmLabError

# podman (daemonless), runc (the OCI runtime that works where crun does not, see config.py), catatonit (the
# small init that `podman run --init` and pods use), debootstrap (builds the base image from a Debian mirror).
APT_PACKAGES = ("podman", "runc", "catatonit", "debootstrap")


def apt_line(packages: Sequence[str] = APT_PACKAGES, sudo: bool = True) -> str:
    """The install command, as a learner would type it."""
    return ("sudo " if sudo else "") + "apt-get install -y " + " ".join(packages)


def installed(package: str) -> bool:
    """True when dpkg says the package is installed (no dpkg: whether its command is on PATH)."""
    if shutil.which("dpkg-query") is None:
        return shutil.which(package) is not None
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip().endswith(" installed")


def missing(packages: Sequence[str] = APT_PACKAGES) -> list[str]:
    """The packages not installed yet."""
    return [p for p in packages if not installed(p)]


def is_root() -> bool:
    """True when this process may run apt-get and debootstrap itself."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install(packages: Sequence[str], timeout: float = 900) -> None:
    """apt-get install (root only); a clear error with apt's last lines when it fails."""
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise SlmLabError(f"apt-get is not available, so {', '.join(packages)} cannot be installed here.",
                          "Install podman with your system's package manager (https://podman.io/docs/installation), "
                          "or use Docker.")
    if not is_root():
        raise SlmLabError(f"Installing {', '.join(packages)} needs root.", f"Run: {apt_line(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", *packages], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if done.returncode != 0 and "Unable to locate package" in done.stderr:
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=timeout)
        done = subprocess.run(["apt-get", "install", "-y", *packages],
                              capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join("  " + line for line in (done.stderr or done.stdout).strip().splitlines()[-10:])
        raise SlmLabError(f"apt-get could not install {', '.join(packages)} (exit {done.returncode}):\n{tail}",
                          f"Run it by hand to see the whole output: {apt_line(packages, sudo=False)}")
