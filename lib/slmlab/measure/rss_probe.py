"""Run as `python -m slmlab.measure.rss_probe --worker MODEL --n-ctx N`: load a GGUF model, generate, print its memory.

A fresh process, so the numbers are this model's alone; `slmlab.models.footprint.measure_peak_rss` runs it.
On Linux the peak is VmHWM from /proc (it starts afresh at exec, unlike ru_maxrss, which keeps the parent's
peak); elsewhere it is ru_maxrss.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def current_rss() -> int:
    """Resident memory of this process now, in bytes."""
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kB


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
