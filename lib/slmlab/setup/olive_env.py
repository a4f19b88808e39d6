"""Microsoft Olive in a virtualenv of its own, in the user's cache (`slmlab setup olive` makes it).

Olive 0.13.0 (olive-ai, the current release) declares no upper pins, but its ModelBuilder pass calls the ONNX Runtime
GenAI model builder the way onnxruntime-genai 0.14 had it: with 0.18 (the course's) it fails on a module that is gone
(``onnxruntime_genai.models.quantized_model``), with 0.15 on a changed ``create_model``. So Olive gets its own venv
with onnxruntime-genai 0.14.1, as vLLM (`setup/vllm_env.py`) and checkov (`setup/checkov_env.py`) do, and runs as a
program: ``<cache>/venvs/olive-ai-0.13.0-genai-0.14.1-py3.11/bin/olive``. The venv is named by what is in it, so a
new pin builds a new one and a second checkout on the machine reuses it.
Measured here (2 cores, packages from a warm local mirror): 96 s, 1.8 GB on disk.

    slmlab setup olive            # the venv, then Olive's conversions of the default model (slmlab.convert.olive_cli)
    olive_program()               # the program, or a SlmLabError naming the command above
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from slmlab.errors import SlmLabError

OLIVE_PIN = "olive-ai==0.13.0"
GENAI_PIN = "onnxruntime-genai==0.14.1"  # the last builder Olive 0.13.0's ModelBuilder pass can drive
TORCH_PIN = "torch==2.13.0"  # the course's: one CPU wheel in pip's cache serves both venvs
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The rest pinned to what was measured. optimum: olive's auto-opt extra. requests: olive 0.13.0 imports it for its
# telemetry without declaring it. datasets: what Olive loads calibration data with (GPTQ); without it `olive optimize`
# stops on a missing module instead of on what really stops it offline (the data set is on the hub).
PINS = (OLIVE_PIN, GENAI_PIN, "onnxruntime==1.31.0", "transformers==5.24.0", "optimum==2.3.0", "requests==2.34.2",
        "datasets==5.2.0")
VENV_ENV = "SLMLAB_OLIVE_VENV"  # another Olive virtualenv than the course's
SETUP_COMMAND = "slmlab setup olive"
SIZE_NOTE = "about 1.5 minutes and 1.8 GB, once per machine"


def olive_venv() -> Path:
    """$SLMLAB_OLIVE_VENV, else <slmlab cache>/venvs/olive-ai-<v>-genai-<v>-py<X.Y>/."""
    chosen = os.environ.get(VENV_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser().absolute()
    from slmlab.models.resolver import cache_dir

    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    genai = GENAI_PIN.split("==")[1]
    return cache_dir() / "venvs" / f"{OLIVE_PIN.replace('==', '-')}-genai-{genai}-{python}"


def olive_program(venv: str | os.PathLike | None = None) -> Path:
    """The `olive` program of Olive's venv; a SlmLabError naming `slmlab setup olive` when it is missing."""
    folder = Path(venv) if venv is not None else olive_venv()
    program = folder / "bin" / "olive"
    if not program.is_file():
        raise SlmLabError(f"Olive's virtualenv is not set up: {program} does not exist.",
                          f"Run: {SETUP_COMMAND}  ({SIZE_NOTE}; set {VENV_ENV} to use another venv).")
    if not (folder / ".slmlab-complete").is_file() and venv is None and not os.environ.get(VENV_ENV):
        raise SlmLabError(f"{folder} exists but its set-up did not finish (an interrupted install?).",
                          f"Run: {SETUP_COMMAND} --force")
    return program


def olive_available() -> bool:
    """True when Olive's venv is set up."""
    try:
        olive_program()
    except SlmLabError:
        return False
    return True


def olive_version(venv: str | os.PathLike | None = None) -> str:
    """The olive-ai version installed in the venv (read from its metadata, without starting Python)."""
    folder = Path(venv) if venv is not None else olive_venv()
    found = sorted(folder.glob("lib/python3*/site-packages/olive_ai-*.dist-info"))
    if not found:
        raise SlmLabError(f"No olive-ai is installed in {folder}.", f"Run: {SETUP_COMMAND} --force")
    return found[-1].name.removeprefix("olive_ai-").removesuffix(".dist-info")


def tool_env() -> dict[str, str]:
    """The environment for Olive's own Python: none of the course venv's paths, no telemetry, no network."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def setup_commands(venv: str | os.PathLike, base_python: str | os.PathLike | None = None) -> list[list[str]]:
    """The commands that make the venv, in order (printed by `slmlab setup olive --dry-run`)."""
    python = os.fspath(Path(venv) / "bin" / "python")
    return [[os.fspath(base_python or sys.executable), "-m", "venv", os.fspath(venv)],
            [python, "-m", "pip", "install", "--no-deps", "--index-url", TORCH_INDEX, TORCH_PIN],
            [python, "-m", "pip", "install", *PINS]]


def setup_olive_venv(force: bool = False, echo: Callable[[str], None] = print,
                     run: Callable[[Sequence[str]], int] | None = None) -> Path:
    """Make Olive's venv (skipped when it is complete, unless `force`) and return its `olive`; never leave half of it.

    `run` runs one command and returns its exit status (default: subprocess.call with tool_env()).
    """
    folder = olive_venv()
    if not force and olive_available():
        echo(f"Olive's virtualenv is already set up: {folder}")
        return olive_program()
    if folder.exists() and not (folder / "pyvenv.cfg").is_file() and any(folder.iterdir()):
        raise SlmLabError(f"{folder} exists and is not a virtualenv; slmlab will not overwrite it.",
                          f"Delete it, or set {VENV_ENV} to another folder.")
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    call = run or (lambda cmd: subprocess.call(list(cmd), env=tool_env(), stdin=subprocess.DEVNULL))
    begin = time.perf_counter()
    try:
        for number, cmd in enumerate(setup_commands(folder), 1):
            echo(f"[{number}/3] {' '.join(cmd)}")
            code = call(cmd)
            if code != 0:
                raise SlmLabError(f"Setting up Olive's virtualenv failed (exit code {code}) at: {' '.join(cmd)}",
                                  "Read pip's output above; check the connection to PyPI and the free disk space "
                                  "(about 1.8 GB), then run it again.")
            if number == 1:  # keep its thousands of files out of git when SLMLAB_OLIVE_VENV points into a checkout
                (folder / ".gitignore").write_text(f"# created by {SETUP_COMMAND}\n*\n")
        (folder / ".slmlab-complete").write_text(" ".join(PINS) + "\n")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e9
    echo(f"Olive's virtualenv is ready: {folder} ({size:.1f} GB, {time.perf_counter() - begin:.0f} s)")
    return olive_program()
