"""Run a compiler or a program to its end: its own message on failure, nothing left running afterwards.

    run = run_program(["mcs", "-out:client.exe", "Client.cs"], cwd=work, what="Compiling the C# client",
                      compiler=True, echo=True)
    run.stdout, run.seconds

Each command runs in its own process group (a new session), which is killed whole on a timeout or Ctrl-C, so a
program that started others (npm, cmake's make, a Node server) leaves nothing behind. A compiler that fails
raises CompileError with the compiler's own messages; a program that fails raises ProgramFailed with its
last output lines; `echo` prints the command (``$ mcs …``) and its output, as a terminal would show them.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.process import child_env

TAIL_LINES = 30  # output lines a failure shows


class CompileError(SlmLabError):
    """A compiler refused the source: the problem holds the compiler's own messages."""


class ProgramFailed(SlmLabError):
    """A program ended with an error (non-zero exit, a signal, or a timeout): the problem holds its last lines."""


@dataclass(frozen=True)
class ProgramRun:
    """A finished command: what ran, its exit status, its output, and how long it took."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """stdout then stderr, as a terminal would show them (without their interleaving)."""
        return "\n".join(part.rstrip("\n") for part in (self.stdout, self.stderr) if part.strip())


def shown(command: Sequence[str], cwd: str | os.PathLike | None = None) -> str:
    """The command as a shell line, with long absolute paths under `cwd` made relative."""
    parts = []
    for part in command:
        text = os.fspath(part)
        if cwd is not None and text.startswith(os.fspath(cwd) + os.sep):
            text = os.path.relpath(text, cwd)
        parts.append(text)
    return shlex.join(parts)


def run_program(command: Sequence[str | os.PathLike], *, cwd: str | os.PathLike | None = None,
                env: Mapping[str, str | None] | None = None, timeout: float = 300, what: str = "",
                compiler: bool = False, echo: bool = False, check: bool = True,
                input: str | None = None) -> ProgramRun:
    """Run `command` in `cwd` to its end; with `check`, a failure raises CompileError (compiler) or ProgramFailed.

    `env` adds variables to this process's environment (None removes one). `echo` prints ``$ command`` and then
    its output. The process group is killed if it runs past `timeout` seconds, or on Ctrl-C.
    """
    cmd = [os.fspath(part) for part in command]
    what = what or f"`{shown(cmd, cwd)}`"
    if echo:
        print(f"$ {shown(cmd, cwd)}", flush=True)
    begin = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(env), stdin=subprocess.PIPE if input else
                                subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise ProgramFailed(f"{what}: {cmd[0]} was not found.",
                            "Install it (slmlab doctor lists the course's toolchains), or check the PATH.") from None
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise ProgramFailed(f"{what} did not finish within {timeout:g} s; it was stopped. Its last lines:\n"
                            f"{_tail(out + err)}", "Look at what it printed above; pass a larger timeout= if it "
                            "is only slow.") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        _kill_group(proc, only_children=True)
    run = ProgramRun(cmd, proc.returncode, out, err, time.perf_counter() - begin)
    if echo and run.output:
        print(run.output, flush=True)
    if check and run.returncode != 0:
        raise _failure(run, what, compiler)
    return run


def _failure(run: ProgramRun, what: str, compiler: bool) -> SlmLabError:
    status = (f"exit code {run.returncode}" if run.returncode >= 0
              else f"killed by {signal.Signals(-run.returncode).name}")
    if compiler:
        return CompileError(f"{what} failed ({status}). The compiler says:\n{_tail(run.output, 60)}",
                            "Fix the lines it names (file(line,column) or file:line:column), then run the cell "
                            "again.")
    return ProgramFailed(f"{what} failed ({status}). Its last lines:\n{_tail(run.output)}",
                         f"Read its message above; run it by hand to see everything: {shown(run.command)}")


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(no output)"


def _kill_group(proc: subprocess.Popen, only_children: bool = False) -> None:
    """SIGKILL the command's process group (after it ended: whatever it left running in its group)."""
    if os.name != "posix":  # pragma: no cover - Windows: no process groups here
        if not only_children and proc.poll() is None:
            proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def last_json(text: str) -> dict:
    """The last line of `text` that is a JSON object, parsed: how the course's programs report their results."""
    from slmlab.process import _last_json_object

    found = _last_json_object([line.strip() for line in text.splitlines()])
    if found is None:
        raise SlmLabError("The program printed no JSON result line.",
                          "It should end by printing one JSON object on a line of its own; look at its output above.")
    return found


def copy_tree(source: Path, target: Path) -> Path:
    """Copy a folder of package data (the course's sources for a language) into `target`; returns `target`."""
    import shutil

    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "node_modules",
                                                                                       "build"))
    return target
