"""checkov (the field's infrastructure-as-code scanner) in a small virtualenv of its own, in the user's cache.

checkov's pins clash with the course's environment (installed beside it, pip would downgrade packaging to 23.2,
networkx to 2.6 and importlib-metadata to 7.2, which torch and the notebooks' packages use), so it gets a venv of
its own, as vLLM does (`setup/vllm_env.py`), and runs as a program: ``<cache>/venvs/checkov-3.3.30-py3.11/bin/checkov``.
Measured here: 47 s from PyPI, 291 MB on disk, 100 packages.

    slmlab setup checkov          # once per machine (`slmlab setup containers` runs it too)
    checkov_program()             # the program, or a SlmLabError naming the command above
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slmlab.errors import SlmLabError

CHECKOV_PIN = "checkov==3.3.30"
CHECKOV_ENV = "SLMLAB_CHECKOV"  # another checkov program than the course's
SETUP_COMMAND = "slmlab setup checkov"


def checkov_venv() -> Path:
    """Where the course's checkov lives: <slmlab cache>/venvs/checkov-<version>-py<X.Y>/."""
    from slmlab.models.resolver import cache_dir

    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_dir() / "venvs" / f"{CHECKOV_PIN.replace('==', '-')}-{python}"


def checkov_program() -> Path:
    """$SLMLAB_CHECKOV, else the course's venv's checkov; a SlmLabError saying how to set it up."""
    chosen = os.environ.get(CHECKOV_ENV, "").strip()
    program = Path(chosen) if chosen else checkov_venv() / "bin" / "checkov"
    if not program.is_file():
        raise SlmLabError(f"checkov is not set up: {program} does not exist.",
                          f"Run: {SETUP_COMMAND}  (about a minute and 300 MB, once per machine).")
    return program


def checkov_available() -> bool:
    """True when checkov is set up."""
    try:
        checkov_program()
    except SlmLabError:
        return False
    return True


def checkov_version() -> str:
    """What `checkov --version` says."""
    done = subprocess.run([str(checkov_program()), "--version"], capture_output=True, text=True, timeout=120,
                          env=tool_env())
    return done.stdout.strip() or done.stderr.strip()


def tool_env() -> dict[str, str]:
    """The environment for checkov's own Python: none of the course venv's paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "LOG_LEVEL": "ERROR"}


def setup_checkov(force: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Make the venv and install checkov (skipped when it is there, unless `force`); never leave it half-made."""
    folder = checkov_venv()
    if not force and (folder / "bin" / "checkov").is_file():
        echo(f"checkov is already set up: {folder / 'bin' / 'checkov'}")
        return folder / "bin" / "checkov"
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    steps = [[sys.executable, "-m", "venv", str(folder)],
             [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", CHECKOV_PIN]]
    try:
        for cmd in steps:
            echo(" ".join(cmd))
            code = subprocess.call(cmd, env=tool_env(), stdin=subprocess.DEVNULL)
            if code != 0:
                raise SlmLabError(f"Installing checkov failed (exit {code}) at: {' '.join(cmd)}",
                                  "Read pip's output above; check the connection to PyPI and the free disk space "
                                  "(about 300 MB), then run it again.")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    echo(f"checkov is ready: {folder} ({size:.0f} MB, {time.perf_counter() - begin:.0f} s)")
    return checkov_program()
