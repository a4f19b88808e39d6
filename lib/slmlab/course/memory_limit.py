"""Run a notebook's kernel, and everything it starts, inside a memory limit: Binder's 2 GB, proven here.

    with MemoryCgroup(2 * GB) as group:                  # a new memory cgroup with that limit (root needed)
        with group.kernelspec() as kernel_name:          # a kernel that joins the group before it starts
            papermill.execute_notebook(..., kernel_name=kernel_name)
    group.peak_bytes, group.oom_kills                    # what the kernel's own accounting saw

The kernel is started as ``python -m slmlab.course.memory_limit GROUP -- python -m ipykernel_launcher …``:
this module's entry point writes its own pid into the group's ``cgroup.procs`` and then becomes the kernel
(``exec``), so the kernel and every server it starts are counted and limited together, as in a container.
Works with the cgroup-v1 memory controller (this machine) and cgroup v2.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.models.hardware import own_cgroup_dirs

GB = 1024**3
KERNEL_NAME = "slmlab-memory-limited"


def _cannot(why: str) -> SlmLabError:
    return SlmLabError(f"Cannot create a memory cgroup here: {why}.",
                       "Run as root on Linux with the memory controller (cgroup v1 or v2), or run the notebook in a "
                       "container with a memory limit instead (e.g. `podman run --memory 2g …`).")


class MemoryCgroup:
    """A memory cgroup with a limit, created on entering and removed on leaving (its processes are killed)."""

    def __init__(self, limit_bytes: int, name: str | None = None) -> None:
        self.limit_bytes = int(limit_bytes)
        self.name = name or f"slmlab-{uuid.uuid4().hex[:8]}"
        self.path: Path | None = None
        self.v2 = False

    def __enter__(self) -> MemoryCgroup:
        parents = own_cgroup_dirs("memory")
        if not parents:
            raise _cannot("no cgroup file system with a memory controller is mounted")
        parent = parents[0]
        self.v2 = not (parent / "memory.limit_in_bytes").exists() and (parent / "cgroup.controllers").exists()
        if self.v2:  # a v2 child may only have memory files when its parent enables the controller
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+memory")
        try:
            (parent / self.name).mkdir()
        except OSError as exc:
            raise _cannot(f"{parent / self.name}: {exc.strerror}") from None
        self.path = parent / self.name
        try:
            self._write("memory.max" if self.v2 else "memory.limit_in_bytes", str(self.limit_bytes))
            if not self.v2:  # no swap either, where the kernel accounts it: the limit is the limit
                with contextlib.suppress(OSError):
                    self._write("memory.memsw.limit_in_bytes", str(self.limit_bytes))
        except OSError as exc:
            self.__exit__()
            raise _cannot(f"setting the limit failed: {exc.strerror}") from None
        return self

    def _write(self, name: str, value: str) -> None:
        assert self.path is not None
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        assert self.path is not None
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    @property
    def peak_bytes(self) -> int:
        """The most memory the group used at once (page cache included), as the kernel counted it."""
        text = self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else 0

    @property
    def oom_kills(self) -> int:
        """How many processes the out-of-memory killer stopped in the group."""
        events = self._read("memory.events" if self.v2 else "memory.oom_control")
        counts = dict(line.split()[:2] for line in events.splitlines() if len(line.split()) >= 2)
        return int(counts.get("oom_kill", 0))

    def pids(self) -> list[int]:
        """The processes in the group now."""
        return [int(pid) for pid in self._read("cgroup.procs").split()]

    @contextlib.contextmanager
    def kernelspec(self) -> Iterator[str]:
        """A temporary Jupyter kernelspec whose kernel joins this group; yields its name for papermill/nbclient."""
        assert self.path is not None
        with tempfile.TemporaryDirectory(prefix="slmlab-kernels-") as tmp:
            spec = Path(tmp) / "kernels" / KERNEL_NAME
            spec.mkdir(parents=True)
            argv = [sys.executable, "-m", "slmlab.course.memory_limit", str(self.path), "--",
                    sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            spec.joinpath("kernel.json").write_text(json.dumps(
                {"argv": argv, "display_name": f"Python 3 ({self.limit_bytes / GB:.1f} GB limit)",
                 "language": "python"}))
            old = os.environ.get("JUPYTER_PATH")
            os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp, *([old] if old else [])])
            try:
                yield KERNEL_NAME
            finally:
                if old is None:
                    os.environ.pop("JUPYTER_PATH", None)
                else:
                    os.environ["JUPYTER_PATH"] = old

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        for _ in range(50):  # whatever outlived the run is stopped, so the group can be removed
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()
        self.path = None


def join_and_exec(argv: list[str]) -> None:
    """Entry point: ``GROUP -- COMMAND…``: move this process into GROUP, then replace it with COMMAND."""
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m slmlab.course.memory_limit CGROUP_DIR -- COMMAND [ARGS…]")
    Path(argv[0], "cgroup.procs").write_text(str(os.getpid()))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    join_and_exec(sys.argv[1:])
