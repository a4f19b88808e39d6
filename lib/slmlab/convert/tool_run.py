"""Run a converter's own program (Olive, LiteRT Torch) from its venv: its whole output in a log file, the lines that
show progress echoed, its time and its own peak memory measured, and the log read back cleanly afterwards.

    code, seconds, peak_mb = run_logged(command, cwd, log_path, env, echo, timeout=900,
                                        progress=lambda line: "Running pass" in line, tag="olive")
    lines = clean_log(log_path.read_bytes().decode("utf-8", "replace"))
    last_exception(lines)   # "KeyError: 'model'", or ""
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from slmlab.errors import SlmLabError

_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b.*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_logged(command: Sequence[str], cwd: str | os.PathLike, log_path: str | os.PathLike, env: Mapping[str, str],
               echo: Callable[[str], None], timeout: float, progress: Callable[[str], bool] = lambda _: False,
               tag: str = "") -> tuple[int, float, float]:
    """Run `command` with its output in `log_path`, echoing the lines `progress` picks; (exit status, seconds, peak
    RSS MB).

    The peak RSS is the child's own (wait4's ru_maxrss), not this process's. Past `timeout`, or on Ctrl-C, the
    child's whole process group is killed.
    """
    name = tag or Path(command[0]).name
    begin = time.perf_counter()
    with open(log_path, "w", encoding="utf-8", newline="") as log:
        proc = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            assert proc.stdout is not None
            # newline="": progress bars keep their \r in the log (text=True would turn each redraw into a line)
            for line in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline=""):
                log.write(line)
                if progress(line):
                    echo(f"[{name}]   {line.split('] ', 2)[-1].strip()}")
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            if proc.returncode is None:  # interrupted: stop it and whatever it started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    seconds = time.perf_counter() - begin
    if seconds >= timeout:
        raise SlmLabError(f"{name} ran longer than {timeout:.0f} s and was stopped: {shlex.join(command)}",
                          f"Read its log ({log_path}); on a slower machine pass a larger timeout.")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return proc.returncode, seconds, usage.ru_maxrss * scale / 1e6


def outcome(returncode: int, seconds: float, peak_rss_mb: float, wrote: str | None, error: str, tool: str) -> str:
    """One line of what a run did: its exit, time and memory, then what it wrote or the tool's own error."""
    what = wrote if wrote else f"no model. {tool}'s error: {error or '(none printed; see the log)'}"
    return f"exit {returncode} after {seconds:.1f} s, peak RSS {peak_rss_mb:.0f} MB: {what}"


def clean_log(text: str) -> list[str]:
    """A tool's log as lines: colour codes dropped, each progress bar (redrawn with \\r) kept at its last state.

    Read the log with its \\r intact (bytes, decoded): read_text() would turn each one into a line break."""
    lines = []
    for raw in _ANSI.sub("", text).split("\n"):  # not splitlines(): it would split at every \r too
        parts = [p for p in raw.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1].rstrip())
    return lines


def last_exception(lines: Sequence[str]) -> str:
    """The last line that names a Python exception (`KeyError: …`), or ''."""
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    return ""


def source_id(hf_dir: str | os.PathLike) -> str:
    """What identifies a Hugging Face folder's content: its slmlab marker's hash, else the hash of its files."""
    from slmlab.convert import gguf_to_onnx as convert

    marker = convert.read_marker(hf_dir)
    return (hashlib.sha256(json.dumps(marker, sort_keys=True).encode()).hexdigest() if marker
            else convert._folder_sha256(Path(hf_dir)))
