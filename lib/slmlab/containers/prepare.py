"""`slmlab setup containers`, the work: the Kubernetes tools the notebook runs on every bundle (helm, checkov;
neither needs a container runtime), the apt packages, the course-only containers.conf, a first container started
with it (proof that the settings work here), and the local base image. Each step is timed; a second run finds
everything in place and takes seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slmlab.containers import config, packages
from slmlab.containers.base_image import BaseImage, ensure_base_image
from slmlab.containers.runtime import Runtime, detect, find_runtime
from slmlab.errors import SlmLabError


@dataclass
class SetupReport:
    """What `slmlab setup containers` did, step by step: (step, seconds, detail)."""

    runtime: Runtime | None = None
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    base: BaseImage | None = None

    def add(self, step: str, seconds: float, detail: str) -> None:
        """Record one step."""
        self.steps.append((step, seconds, detail))

    def lines(self) -> list[str]:
        """One line per step: name, time, what happened."""
        return [f"{step:<10} {seconds:6.1f} s  {detail}" for step, seconds, detail in self.steps]


def _timed(report: SetupReport, step: str, work: Callable[[], str]) -> None:
    begin = time.perf_counter()
    detail = work()
    report.add(step, time.perf_counter() - begin, detail)


def needed_packages() -> list[str]:
    """The apt packages still missing: podman's four, or only debootstrap when a Docker daemon answers."""
    found = detect()
    wanted = ("debootstrap",) if found and found[0] == "docker" else packages.APT_PACKAGES
    return packages.missing(wanted)


def install_packages(install: bool = True) -> str:
    """Install what is missing (root), or raise with the apt line to run."""
    missing = needed_packages()
    if not missing:
        return "installed already"
    if not install or not packages.is_root():
        raise SlmLabError(f"These Debian packages are missing: {', '.join(missing)}.",
                          f"Run: {packages.apt_line(missing)}  then `slmlab setup containers` again.")
    packages.install(missing)
    return f"installed {' '.join(missing)}"


def check_runtime(runtime: Runtime, image: str) -> str:
    """Start one throw-away container the way the course starts them (read-only, non-root, no capabilities)."""
    done = runtime.run(["run", "--rm", "--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
                        "--security-opt", "no-new-privileges", image, "python3", "-c",
                        "import os, resource; print(os.getuid(), resource.getrlimit(resource.RLIMIT_NOFILE)[1])"],
                       timeout=120, check=False)
    if done.returncode != 0:
        hint = ("The course's settings are in " + str(runtime.config) + " (runc, ulimits): is runc installed?"
                if runtime.config else "Does `docker run --rm hello-world` work?")
        raise SlmLabError(f"{runtime.name} could not start a container (exit {done.returncode}):\n"
                          f"{(done.stderr or done.stdout).strip()[-1500:]}", hint)
    uid, nofile = done.stdout.split()
    return f"a container ran as uid {uid}, read-only, no capabilities (open-files limit {nofile})"


def setup_helm_quietly() -> str:
    """`slmlab setup helm` (the chart's `helm lint` and `helm template`), its one line as the step's detail."""
    from slmlab.setup.helm import setup_helm

    said: list[str] = []
    setup_helm(echo=said.append)
    return said[-1]


def setup_checkov_quietly() -> str:
    """`slmlab setup checkov` (the IaC scanner, in its own venv), its last line as the step's detail."""
    from slmlab.setup.checkov_env import setup_checkov

    said: list[str] = []
    setup_checkov(echo=said.append)
    return said[-1]


def setup_containers(install: bool = True, mirror: str | None = None, force: bool = False,
                     show_progress: bool = True) -> SetupReport:
    """Every step, in order; the first failure raises a SlmLabError that says what to do."""
    report = SetupReport()
    _timed(report, "helm", setup_helm_quietly)
    _timed(report, "checkov", setup_checkov_quietly)
    _timed(report, "packages", lambda: install_packages(install))
    found = detect()
    if found is None:
        raise SlmLabError("No container runtime after installing the packages: podman is not on PATH.",
                          "Check `which podman` (apt installs it as /usr/bin/podman) and your PATH.")
    if found[0] == "podman":
        _timed(report, "settings", lambda: f"wrote {config.write_config()}")
    report.runtime = runtime = find_runtime()
    _timed(report, "runtime", lambda: runtime.output(["--version"]))

    def base() -> str:
        report.base = image = ensure_base_image(runtime, mirror=mirror, force=force, show_progress=show_progress)
        where = f"built from {image.mirror}" if image.built else "in the store"
        return f"{image.ref}: {image.size_mb:.0f} MB, {where}"

    _timed(report, "base image", base)
    _timed(report, "first run", lambda: check_runtime(runtime, report.base.ref if report.base else ""))
    return report
