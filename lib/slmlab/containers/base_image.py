"""The course's local base image, made without any registry: `debootstrap` writes a minimal Debian 12 from the
mirror apt already uses, and the container CLI imports that folder as an image.

It stands in for the upstream bases (``python:3.11-slim-bookworm``, llama.cpp's server image) when no registry
is reachable; the course's Dockerfiles run unchanged on either (see `slmlab.deploy.build`). Built once: the tag
is versioned by the recipe below, and an image already in the store is reused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slmlab.containers.mirror import debian_mirror
from slmlab.containers.packages import is_root
from slmlab.containers.runtime import Runtime, last_lines
from slmlab.errors import SlmLabError

SUITE = "bookworm"  # Debian 12: Python 3.11, the course's Python
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "curl", "libgomp1")  # curl: HEALTHCHECK and probes;
# libgomp1: llama.cpp's OpenMP threads (as in llama.cpp's own server image)
BASE_RECIPE = 2  # bump when SUITE, BASE_PACKAGES or the trimming change: a new tag, so a new image
BASE_REPOSITORY = "localhost/slmlab-base"
# As in Debian's own container images: apt keeps no package caches (75 MB after an `apt-get update`) or .debs.
_APT_RM = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
APT_CLEAN = (f'DPkg::Post-Invoke {{ "{_APT_RM}"; }};\nAPT::Update::Post-Invoke {{ "{_APT_RM}"; }};\n'
             'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
# debootstrap's progress lines, in order ("I: Retrieving foo 1.0"): one step of the progress bar each
PHASES = ("Retrieving", "Validating", "Extracting", "Installing", "Unpacking", "Configuring", "Base system")


def base_image_ref() -> str:
    """The versioned tag, e.g. localhost/slmlab-base:bookworm-r1."""
    return f"{BASE_REPOSITORY}:{SUITE}-r{BASE_RECIPE}"


@dataclass(frozen=True)
class BaseImage:
    """The base image in the store, and what making it took."""

    ref: str
    size_bytes: int
    seconds: float  # 0 when it was already there
    built: bool  # False: reused from the store
    mirror: str = ""

    @property
    def size_mb(self) -> float:
        """Size in MB (10^6 bytes)."""
        return round(self.size_bytes / 1e6, 1)


def debootstrap_command(target: Path, mirror: str, packages: Sequence[str] = BASE_PACKAGES) -> list[str]:
    """debootstrap's command line: the smallest variant (minbase) plus the packages the images need."""
    return ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(target), mirror]


def manual_commands(ref: str, mirror: str, cli: str = "podman") -> list[str]:
    """What to run by hand (with sudo) when this process may not run debootstrap itself."""
    return [f"sudo {' '.join(debootstrap_command(Path('/tmp/slmlab-base'), mirror))}",
            f"sudo tar -C /tmp/slmlab-base -c . | {cli} import - {ref}", "sudo rm -rf /tmp/slmlab-base"]


def run_debootstrap(target: Path, mirror: str, on_phase: Callable[[int, str], None] | None = None) -> None:
    """Run debootstrap into target, reporting (phase index, package) as its lines arrive; a failure raises with
    its last lines."""
    if shutil.which("debootstrap") is None:
        raise SlmLabError("debootstrap is not installed, so the base image cannot be built.",
                          "Run: sudo apt-get install -y debootstrap")
    cmd = debootstrap_command(target, mirror)
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            del lines[:-200]
            if on_phase and line.startswith("I: "):
                word = line[3:].split()
                for i, phase in enumerate(PHASES):
                    if line[3:].startswith(phase):
                        on_phase(i, word[1] if len(word) > 1 else "")
    if proc.returncode != 0:
        raise SlmLabError(f"debootstrap failed (exit {proc.returncode}) building Debian {SUITE} from {mirror}:\n"
                          f"{last_lines(chr(10).join(lines))}",
                          "Check that the mirror answers (apt-get update works?) or pass another with --mirror; "
                          f"the whole command was: {' '.join(cmd)}")


def slim(root: Path) -> None:
    """Drop what an image does not need, as Debian's slim images do: downloaded .debs, apt's package lists
    (`apt-get update` fetches them again), manuals, translations, documentation (each package's licence,
    usr/share/doc/*/copyright, is kept); and apt is told to keep no caches from now on (APT_CLEAN)."""
    doomed = [*(root / "var/cache/apt/archives").glob("*.deb"), *(root / "var/lib/apt/lists").glob("*_*"),
              *(root / "usr/share/man").glob("*"), *(root / "usr/share/info").glob("*"),
              *(p for p in (root / "usr/share/locale").glob("*") if p.name != "locale.alias"),
              *(p for d in (root / "usr/share/doc").glob("*") if not d.is_symlink() for p in d.glob("*")
                if p.name != "copyright")]
    for item in doomed:
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink(missing_ok=True)
    (root / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN, encoding="utf-8")


def import_rootfs(runtime: Runtime, root: Path, ref: str, mirror: str) -> None:
    """`tar -C root -c . | <cli> import - ref`, with the image's PATH, CMD and where it came from."""
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["/bin/bash"]',
               f"LABEL org.opencontainers.image.description=\"Debian {SUITE} minbase + {' '.join(BASE_PACKAGES)}, "
               f"debootstrap from {mirror} (slmlab recipe {BASE_RECIPE})\""]
    args = ["import", *[a for c in changes for a in ("--change", c)], "-", ref]
    with subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE) as tar:
        done = subprocess.run(runtime.command(args), stdin=tar.stdout, env=runtime.env(), capture_output=True,
                              text=True, timeout=900)
        if tar.stdout:
            tar.stdout.close()
    if tar.returncode != 0 or done.returncode != 0:
        raise SlmLabError(f"Importing the Debian folder as {ref} failed (tar exit {tar.returncode}, {runtime.name} "
                          f"exit {done.returncode}):\n{last_lines(done.stderr or done.stdout)}",
                          f"Is there room in {runtime.name}'s storage (`df -h /var/lib/containers`)?")


def ensure_base_image(runtime: Runtime, mirror: str | None = None, force: bool = False,
                      show_progress: bool = True) -> BaseImage:
    """The base image: reused when the store has it, else debootstrap + import (about 1–2 minutes)."""
    ref = base_image_ref()
    if not force and runtime.image_exists(ref):
        return BaseImage(ref, runtime.image_size(ref), 0.0, built=False)
    mirror = mirror or debian_mirror(SUITE)
    if not is_root():
        raise SlmLabError("Building the base image runs debootstrap, which needs root.",
                          "Run these once, then `slmlab setup containers` again:\n  " +
                          "\n  ".join(manual_commands(ref, mirror, runtime.name)))
    begin = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="slmlab-base-", dir=os.environ.get("TMPDIR")))
    try:
        _build_rootfs(work / "root", mirror, show_progress)
        import_rootfs(runtime, work / "root", ref, mirror)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    remove_older(runtime, ref)
    return BaseImage(ref, runtime.image_size(ref), time.perf_counter() - begin, built=True, mirror=mirror)


def remove_older(runtime: Runtime, ref: str) -> list[str]:
    """Remove the base images of older recipes (an image still in use stays); returns those removed."""
    listed = runtime.run(["images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPOSITORY], check=False)
    older = [line for line in listed.stdout.split() if line.startswith(BASE_REPOSITORY + ":") and line != ref]
    return [old for old in older if runtime.run(["rmi", old], check=False).returncode == 0]


def _build_rootfs(target: Path, mirror: str, show_progress: bool) -> None:
    """debootstrap (with a progress bar, one step per phase) and slim."""
    from slmlab.progress import progress

    bar = progress(total=len(PHASES) + 1, desc=f"debootstrap {SUITE}", disable=not show_progress)
    try:
        def on_phase(index: int, package: str) -> None:
            if index + 1 > bar.n:
                bar.update(index + 1 - bar.n)
            bar.set_postfix_str(f"{PHASES[index].lower()} {package}".strip(), refresh=False)

        run_debootstrap(target, mirror, on_phase)
        bar.set_postfix_str("importing", refresh=False)
        slim(target)
        bar.update(bar.total - bar.n)
    finally:
        bar.close()
