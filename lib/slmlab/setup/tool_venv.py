"""A tool's own virtualenv in the user's cache, for tools whose pins clash with the course's (Olive, LiteRT Torch).

Each is named by what is in it (a new pin builds a new one; a second checkout on the machine reuses it), made by one
`slmlab setup …` command with the course's CPU torch first, marked complete only once every command finished, and
removed again when one fails or is interrupted: there is never a half-installed venv that looks set up.

    OLIVE = ToolVenv("Olive", "olive-ai-0.13.0-genai-0.14.1", "olive", PINS, "slmlab setup olive", "SLMLAB_OLIVE_VENV",
                     "about 1.5 minutes and 1.8 GB, once per machine")
    OLIVE.make()          # the venv (skipped when complete), then its program
    OLIVE.program()       # the program, or a SlmLabError naming the set-up command
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError

TORCH_PIN = "torch==2.13.0"  # the course's: one CPU wheel in pip's cache serves every venv
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
COMPLETE = ".slmlab-complete"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a tool venv's own Python: none of the course venv's paths, the hub offline, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


@dataclass(frozen=True)
class ToolVenv:
    """One tool's virtualenv: what it is called, what it holds, which command makes it."""

    title: str  # "Olive": how messages name it
    name: str  # the cache folder's name before "-py3.X"
    program_name: str  # the program in bin/ that proves it is there ("olive", "python")
    pins: tuple[str, ...]  # what `pip install` gets after the CPU torch
    setup_command: str  # "slmlab setup olive"
    venv_env: str  # the variable that points to another venv
    size_note: str  # "about 1.5 minutes and 1.8 GB, once per machine"
    size_gb: float = 2.0  # disk it needs (said when pip fails)

    def folder(self) -> Path:
        """$<venv_env>, else <slmlab cache>/venvs/<name>-py<X.Y>/."""
        chosen = os.environ.get(self.venv_env, "").strip()
        if chosen:
            return Path(chosen).expanduser().absolute()
        from slmlab.models.resolver import cache_dir

        return cache_dir() / "venvs" / f"{self.name}-py{sys.version_info[0]}.{sys.version_info[1]}"

    def program(self, venv: str | os.PathLike | None = None) -> Path:
        """The venv's program; a SlmLabError naming the set-up command when it is missing or unfinished."""
        folder = Path(venv) if venv is not None else self.folder()
        program = folder / "bin" / self.program_name
        if not program.is_file():
            raise SlmLabError(f"{self.title}'s virtualenv is not set up: {program} does not exist.",
                              f"Run: {self.setup_command}  ({self.size_note}; set {self.venv_env} to use another "
                              "venv).")
        if not (folder / COMPLETE).is_file() and venv is None and not os.environ.get(self.venv_env):
            raise SlmLabError(f"{folder} exists but its set-up did not finish (an interrupted install?).",
                              f"Run: {self.setup_command} --force")
        return program

    def available(self) -> bool:
        """True when the venv is set up."""
        try:
            self.program()
        except SlmLabError:
            return False
        return True

    def version(self, distribution: str, venv: str | os.PathLike | None = None) -> str:
        """The installed version of `distribution` (e.g. "olive_ai"), read from its metadata without starting Python."""
        folder = Path(venv) if venv is not None else self.folder()
        found = sorted(folder.glob(f"lib/python3*/site-packages/{distribution}-*.dist-info"))
        if not found:
            raise SlmLabError(f"No {distribution} is installed in {folder}.", f"Run: {self.setup_command} --force")
        return found[-1].name.removeprefix(f"{distribution}-").removesuffix(".dist-info")

    def commands(self, venv: str | os.PathLike, base_python: str | os.PathLike | None = None) -> list[list[str]]:
        """The commands that make the venv, in order (printed by `<setup_command> --dry-run`)."""
        python = os.fspath(Path(venv) / "bin" / "python")
        return [[os.fspath(base_python or sys.executable), "-m", "venv", os.fspath(venv)],
                [python, "-m", "pip", "install", "--no-deps", "--index-url", TORCH_INDEX, TORCH_PIN],
                [python, "-m", "pip", "install", *self.pins]]

    def make(self, force: bool = False, echo: Callable[[str], None] = print,
             run: Callable[[Sequence[str]], int] | None = None,
             finish: Callable[[Path], object] | None = None) -> Path:
        """Make the venv (skipped when complete, unless `force`) and return its program; never leave half of it.

        `run` runs one command and returns its exit status (default: subprocess.call with tool_env()); `finish`
        adds what pip cannot (a shim module) before the venv is marked complete.
        """
        folder = self.folder()
        if not force and self.available():
            echo(f"{self.title}'s virtualenv is already set up: {folder}")
            return self.program()
        if folder.exists() and not (folder / "pyvenv.cfg").is_file() and any(folder.iterdir()):
            raise SlmLabError(f"{folder} exists and is not a virtualenv; slmlab will not overwrite it.",
                              f"Delete it, or set {self.venv_env} to another folder.")
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        call = run or (lambda cmd: subprocess.call(list(cmd), env=tool_env(), stdin=subprocess.DEVNULL))
        begin = time.perf_counter()
        commands = self.commands(folder)
        try:
            for number, cmd in enumerate(commands, 1):
                echo(f"[{number}/{len(commands)}] {' '.join(cmd)}")
                code = call(cmd)
                if code != 0:
                    raise SlmLabError(f"Setting up {self.title}'s virtualenv failed (exit code {code}) at: "
                                      f"{' '.join(cmd)}",
                                      "Read pip's output above; check the connection to PyPI and the free disk space "
                                      f"(about {self.size_gb:.1f} GB), then run it again.")
                if number == 1:  # keep its thousands of files out of git when the variable points into a checkout
                    (folder / ".gitignore").write_text(f"# created by {self.setup_command}\n*\n")
            if finish is not None:
                finish(folder)
            (folder / COMPLETE).write_text(" ".join(self.pins) + "\n")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e9
        echo(f"{self.title}'s virtualenv is ready: {folder} ({size:.1f} GB, {time.perf_counter() - begin:.0f} s)")
        return self.program()
