"""This machine (cores, RAM and its container limit, GPU) and named hardware presets to plan for."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import MachineTooSmall, SlmLabError, did_you_mean

GB = 1024**3


@dataclass(frozen=True)
class Hardware:
    """A machine to run a model on: memory the model may use, and what kind."""

    key: str
    label: str
    ram_gb: float  # system RAM (or the container's memory limit)
    cores: int
    gpu: str | None = None
    vram_gb: float | None = None  # dedicated GPU memory; None for CPU-only or unified memory
    unified: bool = False  # Apple Silicon: the GPU shares system RAM
    notes: str = ""

    @property
    def model_memory_gb(self) -> float:
        """Memory a model's weights + KV cache live in: VRAM on a GPU, else (unified) RAM."""
        return self.vram_gb if self.vram_gb else self.ram_gb

    @property
    def device(self) -> str:
        """"cuda", "mps" or "cpu"."""
        return "cuda" if self.vram_gb else ("mps" if self.unified else "cpu")


PRESETS: dict[str, Hardware] = {
    h.key: h
    for h in [
        Hardware("raspberry-pi-5", "Raspberry Pi 5 (8 GB)", 8, 4, notes="ARM Cortex-A76, CPU only"),
        Hardware("binder-2gb", "mybinder.org session (2 GB)", 2, 1, notes="2 GB memory limit, shared CPU"),
        Hardware("laptop-8gb", "Laptop, 8 GB RAM", 8, 4, notes="CPU only"),
        Hardware("laptop-16gb", "Laptop, 16 GB RAM", 16, 8, notes="CPU only"),
        Hardware("mac-m2-16gb", "Mac M2, 16 GB unified", 16, 8, gpu="Apple M2", unified=True,
                 notes="Metal via llama.cpp, MLX"),
        Hardware("t4", "NVIDIA T4 (16 GB)", 16, 4, gpu="Tesla T4", vram_gb=16, notes="Colab / cloud entry GPU"),
        Hardware("l4", "NVIDIA L4 (24 GB)", 32, 8, gpu="L4", vram_gb=24),
        Hardware("a100-80gb", "NVIDIA A100 (80 GB)", 128, 16, gpu="A100 80GB", vram_gb=80),
        Hardware("h100-80gb", "NVIDIA H100 (80 GB)", 128, 16, gpu="H100 80GB", vram_gb=80),
    ]
}


def get_preset(key: str) -> Hardware:
    """A named preset, or `this-machine` for the detected one; unknown names get suggestions."""
    key = key.strip().lower()
    if key in ("this-machine", "this", "local"):
        return detect()
    if key in PRESETS:
        return PRESETS[key]
    raise SlmLabError(f"Unknown hardware preset '{key}'.",
                      f"{did_you_mean(key, PRESETS, cutoff=0.4)}Presets: {', '.join(PRESETS)}, or 'this-machine'.")


def physical_cores() -> int:
    """Physical CPU cores this process may use (llama.cpp is fastest with one thread per core)."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(psutil.cpu_count(logical=False) or allowed, allowed, cgroup_cpus() or allowed))


def cgroup_cpus() -> int | None:
    """CPU quota of this container (cgroup v2 cpu.max), rounded up; None when unlimited."""
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = cpu_max.read_text().split()
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def own_cgroup_dirs(controller: str = "memory") -> list[Path]:
    """This process's cgroup folders for `controller`, innermost first, up to the hierarchy's root.

    cgroup v1 lists each controller's path in /proc/self/cgroup (``4:memory:/a/b``); v2 has one (``0::/a/b``).
    Inside a container with its own cgroup namespace the path is ``/`` and the mount root is its own group.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1:2] == [controller]]
    v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    for root, paths in ((Path("/sys/fs/cgroup") / controller, v1), (Path("/sys/fs/cgroup"), v2)):
        if paths and root.is_dir():
            here = root / paths[0].lstrip("/")
            if not here.is_dir():  # the path belongs to another namespace: the mount root is ours
                here = root
            return [here, *[p for p in here.parents if p.is_relative_to(root)]]
    return []


def _limit_in(folder: Path) -> int | None:
    for name in ("memory.max", "memory.limit_in_bytes"):
        try:
            value = (folder / name).read_text().strip()
        except OSError:
            continue
        if value != "max" and int(value) < 1 << 60:
            return int(value)
    return None


def cgroup_memory_bytes() -> int | None:
    """The memory limit this process runs under (Binder, Docker, Kubernetes, a test's memory cgroup), or None.

    The tightest limit of this process's cgroup and the groups above it.
    """
    limits = [limit for folder in own_cgroup_dirs() if (limit := _limit_in(folder)) is not None]
    return min(limits) if limits else None


def memory_bytes() -> int:
    """The memory this process may use: RAM, or the cgroup's limit when that is lower."""
    import psutil

    ram = psutil.virtual_memory().total
    limit = cgroup_memory_bytes()
    return min(ram, limit) if limit else ram


def require_memory(needed_gb: float, what: str, where: str = "a machine with more memory") -> float:
    """Stop a notebook before anything heavy starts when this machine (or its container) has too little memory.

    Returns the GB available; raises MachineTooSmall (the course's runner counts it as a clean skip) otherwise.
    """
    have_gb = memory_bytes() / GB
    if have_gb < needed_gb:
        raise MachineTooSmall(
            f"{what} needs about {needed_gb:.1f} GB of memory; this machine allows {have_gb:.1f} GB"
            + (" (its container's limit)" if cgroup_memory_bytes() else "") + ". The cells below are skipped "
            "rather than killed half-way by the out-of-memory killer.",
            f"Run this notebook on {where}. Everything before this cell ran; the other notebooks fit here.")
    return have_gb


def detect_gpu() -> tuple[str, float] | None:
    """(name, GB of memory) of the first NVIDIA GPU via nvidia-smi, or None."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    first = out.strip().splitlines()[0] if out.strip() else ""
    if "," not in first:
        return None
    name, mib = first.rsplit(",", 1)
    return name.strip(), round(float(mib) / 1024, 1)


def detect() -> Hardware:
    """This machine: cores, RAM (capped by the container limit), NVIDIA GPU or Apple Silicon."""
    import psutil

    ram = psutil.virtual_memory().total
    limit = cgroup_memory_bytes()
    notes = []
    if limit and limit < ram:
        notes.append(f"container limit {limit / GB:.1f} GB of {ram / GB:.1f} GB host RAM")
        ram = limit
    gpu = detect_gpu()
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    return Hardware(
        key="this-machine",
        label=f"This machine ({platform.machine()}, {physical_cores()} cores)",
        ram_gb=round(ram / GB, 1),
        cores=physical_cores(),
        gpu=gpu[0] if gpu else ("Apple Silicon" if apple else None),
        vram_gb=gpu[1] if gpu else None,
        unified=apple,
        notes="; ".join(notes),
    )
