"""A process's memory: resident now (``current_rss``), at its peak (``peak_rss``), the peak reset (``reset_peak_rss``).

On Linux the numbers are VmRSS and VmHWM from /proc (VmHWM starts afresh at exec, unlike ru_maxrss, which keeps
the parent's peak); elsewhere psutil's RSS and ru_maxrss. Run as ``python -m slmlab.measure.rss_probe --worker
MODEL --n-ctx N`` it loads a GGUF model in a fresh process, generates, and reports that process's memory
(``slmlab.models.footprint.measure_peak_rss`` runs it), so the numbers are the model's alone.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _status_kb(field: str, pid: int | str = "self") -> int | None:
    try:
        match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def current_rss(pid: int | str = "self") -> int:
    """Resident memory of a process (this one by default) now, in bytes."""
    kb = _status_kb("VmRSS", pid)
    if kb is not None:
        return kb * 1024
    import psutil

    return psutil.Process(None if pid == "self" else int(pid)).memory_info().rss


def peak_rss(pid: int | str = "self") -> int:
    """Peak resident memory of a process (this one by default) so far, in bytes.

    Without /proc: ru_maxrss for this process, the current RSS for another one.
    """
    kb = _status_kb("VmHWM", pid)
    if kb is not None:
        return kb * 1024
    if pid != "self":
        return current_rss(pid)
    import resource  # POSIX only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kB


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Load the ``--worker`` model with ``--n-ctx``, generate 8 tokens greedily; its memory as a dict."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.measure.rss_probe", description=__doc__)
    parser.add_argument("--worker", required=True, metavar="MODEL")
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args(argv)
    import llama_cpp  # noqa: F401  (imported before the baseline: its libraries are part of the runtime)

    from slmlab import models

    resolved = models.resolve(args.worker)
    baseline = current_rss()
    llm = models.load_llama(resolved, n_ctx=args.n_ctx)
    llm.create_completion("Hello", max_tokens=8, temperature=0.0)
    return {"model": resolved.name, "n_ctx": args.n_ctx, "file_bytes": resolved.size_bytes,
            "baseline_bytes": baseline, "peak_bytes": peak_rss()}


if __name__ == "__main__":
    from slmlab.process import worker_main

    worker_main(main)
