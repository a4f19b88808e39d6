"""llama.cpp's own command-line programs run from Python: one runner, and `llama-quantize` / `llama-imatrix`.

The programs are the ones `slmlab setup llamacpp` builds from the llama.cpp commit the Python binding vendors, so
``llama-quantize`` writes the same bytes as ``llama_cpp.llama_model_quantize``. A notebook shows each command as a
shell cell first; these functions run the same commands where Python needs the result::

    run = run_program("llama-quantize", [f16, out, "Q4_K_M"], what="Quantizing to Q4_K_M")   # ToolRun
    q = quantize_file(f16, out, "Q2_K", imatrix=matrix)          # a QuantizedModel: the file and llama.cpp's log
    calibration, evaluation = split_text(text, folder)          # two halves: one to calibrate, one to measure on

A missing build names ``slmlab setup llamacpp``; a missing input file is named before anything runs; a program that
fails raises a SlmLabError with its last lines (never a Python traceback from deep inside).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    from slmlab.convert.quantize import QuantizedModel

TAIL_LINES = 12  # how many of a failed program's last lines an error shows


@dataclass(frozen=True)
class ToolRun:
    """One finished run of a llama.cpp program: the command, its exit code, what it printed, how long it took."""

    command: list[str]
    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    seconds: float

    @property
    def output(self) -> str:
        """stdout then stderr (llama.cpp's programs print results on stdout and their log on stderr)."""
        return self.stdout + self.stderr


def tail(text: str, n: int = TAIL_LINES) -> str:
    """The last `n` non-empty lines of a program's output, indented ("(no output)" when there are none)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join("  " + line for line in lines[-n:]) or "  (no output)"


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path when it is a file, else a SlmLabError naming it (and what it was for)."""
    found = Path(path).expanduser()
    if not found.is_file():
        where = found.parent if found.parent.is_dir() else None
        nearby = sorted(p.name for p in where.iterdir() if p.suffix == found.suffix)[:6] if where else []
        raise SlmLabError(f"The {what} {found} does not exist.",
                          (f"Files like it in {where}: {', '.join(nearby)}. " if nearby else "") +
                          "Check the path (or make the file first: the cell above that writes it).")
    return found


def run_command(command: Sequence[str], *, timeout: float, cwd: str | os.PathLike | None = None,
                ) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `command`, in a process group of its own that is killed on a timeout or
    Ctrl-C; a timeout raises subprocess.TimeoutExpired with what it printed on stderr so far."""
    proc = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise subprocess.TimeoutExpired(command, timeout, out, err) from None
        raise
    return proc.returncode, out, err


def run_program(name: str, args: Sequence[str | os.PathLike | int | float], *, what: str,
                timeout: float = 600, cwd: str | os.PathLike | None = None) -> ToolRun:
    """Run one of llama.cpp's programs (e.g. "llama-quantize") and return its output; a failure raises a SlmLabError.

    `what` says what the run was for ("Quantizing to Q4_K_M"): the error starts with it, then quotes the program's
    last lines. Ctrl-C or the timeout stop the program too.
    """
    from slmlab.setup.llamacpp import llamacpp_program

    command = [str(llamacpp_program(name)), *(os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args)]
    start = perf_counter()
    try:
        code, out, err = run_command(command, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise SlmLabError(f"{what}: {name} did not finish within {timeout:g} s and was stopped. Its last lines:\n"
                          f"{tail(str(exc.stderr or ''))}",
                          "Give it less to do (fewer chunks, a smaller -c), or a larger timeout=.") from None
    run = ToolRun(command, code, out, err, perf_counter() - start)
    if code != 0:
        status = f"exit code {code}" if code > 0 else f"signal {-code}"
        raise SlmLabError(f"{what} failed: {name} ended with {status}. Its last lines:\n{tail(run.output)}",
                          f"Read the lines above; the command was: {' '.join([name, *command[1:]])}")
    return run


def quantize_file(source: str | os.PathLike, target: str | os.PathLike, qtype: str, *, allow_requantize: bool = False,
                  pure: bool = False, imatrix: str | os.PathLike | None = None,
                  threads: int | None = None) -> QuantizedModel:
    """``llama-quantize [--allow-requantize] [--pure] [--imatrix FILE] SOURCE TARGET TYPE [THREADS]``.

    Returns the file with llama.cpp's log, as a QuantizedModel (``.tensors()`` reads the log into a table).
    """
    from slmlab.convert.quantize import QuantizedModel, check_type

    qtype = check_type(qtype)
    src = existing_file(source, "GGUF file to quantize")
    flags = ["--allow-requantize"] if allow_requantize else []
    flags += ["--pure"] if pure else []
    flags += ["--imatrix", str(existing_file(imatrix, "importance matrix"))] if imatrix is not None else []
    out = Path(target).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = run_program("llama-quantize", [*flags, src, out, qtype, *([threads] if threads else [])],
                          what=f"Quantizing {src.name} to {qtype}")
    except SlmLabError as exc:
        if "requantizing from type" not in exc.problem:
            raise
        raise SlmLabError(exc.problem, f"{src.name} is already quantized. Quantize from its F16/F32 original, or pass "
                          "allow_requantize=True (llama-quantize --allow-requantize) knowing that it rounds the "
                          "rounded weights again: the result is never better than the source.") from None
    return QuantizedModel(qtype, out, src, run.seconds, False, run.stderr)


def make_imatrix(model: str | os.PathLike, text_file: str | os.PathLike, out: str | os.PathLike, *,
                 n_ctx: int = 128, chunks: int | None = None, threads: int | None = None) -> Path:
    """``llama-imatrix -m MODEL -f TEXT -c N -b N --no-ppl -o OUT``: an importance matrix from a calibration text.

    Each chunk of `n_ctx` tokens is one pass (``-b`` = ``-c``: one chunk at a time); `chunks` limits how many.
    """
    src = existing_file(model, "model")
    text = existing_file(text_file, "calibration text")
    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    args: list[str | os.PathLike | int] = ["-m", src, "-f", text, "-c", n_ctx, "-b", n_ctx, "--no-ppl", "-o", target]
    args += ["--chunks", chunks] if chunks else []
    args += ["-t", threads] if threads else []
    run_program("llama-imatrix", args, what=f"Computing an importance matrix from {text.name}")
    if not target.is_file():
        raise SlmLabError(f"llama-imatrix ended without writing {target}.",
                          f"Use a longer calibration text: it needs at least {n_ctx} tokens (one chunk).")
    return target


def split_text(text: str, folder: str | os.PathLike, names: tuple[str, str] = ("calibration.txt", "evaluation.txt"),
               ) -> tuple[Path, Path]:
    """Write the first half of `text`'s paragraphs to one file and the rest to another (paths returned).

    An importance matrix is calibrated on one half and judged on the other, never on the text it has seen.
    """
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        raise SlmLabError("The text has fewer than two paragraphs (blank-line separated) to split.",
                          "Pass a longer text, e.g. slmlab.measure.evaluate.heldout_text().")
    half = len(paragraphs) // 2
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / names[0], out / names[1])
    for path, part in zip(paths, (paragraphs[:half], paragraphs[half:]), strict=True):
        path.write_text("\n\n".join(part) + "\n", encoding="utf-8")
    return paths
