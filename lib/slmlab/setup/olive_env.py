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
from collections.abc import Callable, Sequence
from pathlib import Path

from slmlab.setup import tool_venv
from slmlab.setup.tool_venv import TORCH_INDEX, TORCH_PIN

OLIVE_PIN = "olive-ai==0.13.0"
GENAI_PIN = "onnxruntime-genai==0.14.1"  # the last builder Olive 0.13.0's ModelBuilder pass can drive
# The rest pinned to what was measured. optimum: olive's auto-opt extra. requests: olive 0.13.0 imports it for its
# telemetry without declaring it. datasets: what Olive loads calibration data with (GPTQ); without it `olive optimize`
# stops on a missing module instead of on what really stops it offline (the data set is on the hub).
PINS = (OLIVE_PIN, GENAI_PIN, "onnxruntime==1.31.0", "transformers==5.24.0", "optimum==2.3.0", "requests==2.34.2",
        "datasets==5.2.0")
VENV_ENV = "SLMLAB_OLIVE_VENV"  # another Olive virtualenv than the course's
SETUP_COMMAND = "slmlab setup olive"
SIZE_NOTE = "about 1.5 minutes and 1.8 GB, once per machine"
OLIVE = tool_venv.ToolVenv("Olive", f"{OLIVE_PIN.replace('==', '-')}-genai-{GENAI_PIN.split('==')[1]}", "olive", PINS,
                           SETUP_COMMAND, VENV_ENV, SIZE_NOTE, size_gb=1.8)
__all__ = ["OLIVE", "PINS", "TORCH_INDEX", "TORCH_PIN", "olive_available", "olive_program", "olive_venv",
           "olive_version", "setup_commands", "setup_olive_venv", "tool_env"]


def olive_venv() -> Path:
    """$SLMLAB_OLIVE_VENV, else <slmlab cache>/venvs/olive-ai-<v>-genai-<v>-py<X.Y>/."""
    return OLIVE.folder()


def olive_program(venv: str | os.PathLike | None = None) -> Path:
    """The `olive` program of Olive's venv; a SlmLabError naming `slmlab setup olive` when it is missing."""
    return OLIVE.program(venv)


def olive_available() -> bool:
    """True when Olive's venv is set up."""
    return OLIVE.available()


def olive_version(venv: str | os.PathLike | None = None) -> str:
    """The olive-ai version installed in the venv (read from its metadata, without starting Python)."""
    return OLIVE.version("olive_ai", venv)


def tool_env() -> dict[str, str]:
    """The environment for Olive's own Python: none of the course venv's paths, no telemetry, no network."""
    return tool_venv.tool_env(OLIVE_DISABLE_TELEMETRY="1")


def setup_commands(venv: str | os.PathLike, base_python: str | os.PathLike | None = None) -> list[list[str]]:
    """The commands that make the venv, in order (printed by `slmlab setup olive --dry-run`)."""
    return OLIVE.commands(venv, base_python)


def setup_olive_venv(force: bool = False, echo: Callable[[str], None] = print,
                     run: Callable[[Sequence[str]], int] | None = None) -> Path:
    """Make Olive's venv (skipped when it is complete, unless `force`) and return its `olive`; never leave half of it.

    `run` runs one command and returns its exit status (default: subprocess.call with tool_env()).
    """
    if run is None:
        import subprocess

        def run(cmd: Sequence[str]) -> int:
            return subprocess.call(list(cmd), env=tool_env(), stdin=subprocess.DEVNULL)
    return OLIVE.make(force, echo, run)
