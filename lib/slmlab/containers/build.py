"""Build one image from a Dockerfile with the container CLI: streamed with a progress bar (the builder's own
"STEP n/m" lines), the whole log kept in a file, a failure reported with its failing step and last lines, the
time and the image's size measured.

With podman the build's RUN steps use the host's network (`--network host`) and see the host's CA bundle and a
pip.conf naming it, mounted read-only for the build only (never in a layer): where outgoing HTTPS passes through
a proxy with its own CA, pip and curl inside the build then trust what the host trusts.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slmlab.containers.runtime import Runtime, last_lines
from slmlab.errors import SlmLabError

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian/Ubuntu's bundle (update-ca-certificates)
_PODMAN_STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)")  # "[stage/stages] STEP n/m: ..."
_BUILDKIT_STEP = re.compile(r"^#\d+ \[(?:([\w.-]+) )?(\d+)/(\d+)\] (.*)")


@dataclass(frozen=True)
class BuildRequest:
    """What to build: a Dockerfile, its context folder, the build arguments, the tag."""

    tag: str
    dockerfile: Path
    context: Path
    build_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltImage:
    """A finished build: the tag, how long it took, how big the image is, the command and its log."""

    tag: str
    seconds: float
    size_bytes: int
    command: list[str]
    log: Path

    @property
    def size_mb(self) -> float:
        """Size in MB (10^6 bytes)."""
        return round(self.size_bytes / 1e6, 1)


def build_mounts(folder: Path) -> list[str]:
    """podman's `-v` mounts for RUN steps: the host's CA bundle and a pip.conf that points pip at it."""
    if not HOST_CA_BUNDLE.is_file():
        return []
    pip_conf = folder / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n", encoding="utf-8")
    return ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]


def build_args(runtime: Runtime, request: BuildRequest, mounts: list[str]) -> list[str]:
    """The CLI arguments after the executable."""
    args = ["build", "-f", str(request.dockerfile), "-t", request.tag]
    if runtime.name == "podman":
        args += ["--network", "host", *mounts]
    else:
        args += ["--progress", "plain"]
    for name, value in request.build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    return [*args, str(request.context)]


def log_path(tag: str) -> Path:
    """Where a build's whole output goes (beside the servers' logs)."""
    folder = Path(os.environ.get("SLMLAB_LOG_DIR") or Path(tempfile.gettempdir()) / "slmlab-logs")
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "-", tag)
    return folder / f"build-{safe}.log"


def build_image(runtime: Runtime, request: BuildRequest, show_progress: bool = True,
                timeout: float = 3600) -> BuiltImage:
    """Build, streaming the builder's steps into a progress bar; raises with the failing step when it fails."""
    from slmlab.progress import progress

    for path, what in ((request.dockerfile, "Dockerfile"), (request.context, "build context")):
        if not path.exists():
            raise SlmLabError(f"The {what} {path} does not exist.", "Render the bundle first: slmlab deploy render "
                              "SPEC.yaml --out DIR, then build DIR.")
    log = log_path(request.tag)
    before = _image_id(runtime, request.tag)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmlab-build-") as scratch:
        mounts = build_mounts(Path(scratch)) if runtime.name == "podman" else []
        cmd = runtime.command(build_args(runtime, request, mounts))
        bar = progress(total=None, desc=f"build {request.tag}", disable=not show_progress)
        try:
            returncode, step, tail = _stream(cmd, runtime.env(), log, bar, begin + timeout)
        finally:
            bar.close()
    if returncode != 0:
        at = f" at {step}" if step else ""
        raise SlmLabError(f"Building {request.tag} failed{at} (exit {returncode}):\n{last_lines(tail, 20)}",
                          f"The whole log is {log}; the command was: {' '.join(cmd)}")
    seconds = time.perf_counter() - begin
    if before and before != _image_id(runtime, request.tag):  # the tag moved: drop the image it left untagged
        runtime.run(["rmi", before], check=False, timeout=120)  # (kept when a container still uses it)
    return BuiltImage(request.tag, seconds, runtime.image_size(request.tag), cmd, log)


def _image_id(runtime: Runtime, ref: str) -> str:
    done = runtime.run(["image", "inspect", "--format", "{{.Id}}", ref], check=False, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else ""


def _stream(cmd: list[str], env: dict[str, str], log: Path, bar: object,
            deadline: float) -> tuple[int, str, str]:
    """Run the build; (exit code, the last step started, the last lines). Steps move the bar."""
    step, tail = "", []
    with open(log, "w", encoding="utf-8") as out, subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail.append(line.rstrip())
            del tail[:-60]
            found = _step(line.rstrip())
            if found:
                step = found[2]
                _advance(bar, found)
            if time.perf_counter() > deadline:
                proc.kill()
                tail.append("(stopped: the build ran past its time limit)")
                break
    return proc.wait(), step, "\n".join(tail)


def _step(line: str) -> tuple[int, int | None, str] | None:
    """(n, of m or None, "STEP n/m: RUN ...") from a podman or BuildKit progress line; with podman the bar counts
    stages (steps when there is one stage), so n is the stage being built."""
    podman = _PODMAN_STEP.match(line)
    if podman:
        n, m = (podman[1], podman[2]) if podman[1] else (podman[3], podman[4])
        return int(n) - (1 if podman[1] else 0), int(m), line[:100]
    buildkit = _BUILDKIT_STEP.match(line)
    if buildkit:
        return int(buildkit[2]), None, line.split(" ", 1)[1][:100]
    return None


def _advance(bar: object, found: tuple[int, int | None, str]) -> None:
    n, total, text = found
    if total is not None and getattr(bar, "total", None) != total:
        bar.total = total  # type: ignore[attr-defined]
    if total is not None and n > getattr(bar, "n", 0):
        bar.update(n - bar.n)  # type: ignore[attr-defined]
    bar.set_postfix_str(text.split(": ", 1)[-1][:60], refresh=False)  # type: ignore[attr-defined]
