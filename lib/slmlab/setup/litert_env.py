"""Google's LiteRT Torch converter in a virtualenv of its own, in the user's cache (`slmlab setup litert` makes it).

TensorFlow's on-device runtime is LiteRT (PyPI ``ai-edge-litert``); PyTorch models reach it through ``litert-torch``
(formerly ai-edge-torch), which brings JAX, its quantizer and its own converter: far more than the course needs to
*run* a ``.tflite`` file (``ai-edge-litert`` alone, in the course's environment). So the converter gets its own venv,
as Olive's does (`setup/olive_env.py`), with the course's CPU torch first: without it pip resolves the CUDA build and
6.6 GB of NVIDIA wheels. Measured here (2 cores, a warm pip cache): about 70 s, 2.1 GB on disk.

One gap is bridged by a shim: litert-torch 0.10.0 imports TensorFlow's flatbuffer schema
(``tensorflow.lite.python.schema_py_generated``, in ``generative/layers/lora.py``) without declaring TensorFlow.
ai-edge-litert ships the same generated module, so ``<venv>/slmlab-shims/`` maps the one onto the other; the
conversion runs with that folder on PYTHONPATH (:func:`converter_env`), and nothing else sees it.

    slmlab setup litert             # the venv, then the conversion of the default model (slmlab.convert.litert_cli)
    litert_python()                 # the venv's python, or a SlmLabError naming the command above
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.setup import tool_venv

LITERT_TORCH_PIN = "litert-torch==0.10.0"
LITERT_PIN = "ai-edge-litert==2.3.0"  # the runtime; the course's environment has the same pin
# The rest pinned to what was measured with them (litert-torch declares lower bounds only).
PINS = (LITERT_TORCH_PIN, LITERT_PIN, tool_venv.TORCH_PIN, "ai-edge-quantizer==0.10.0", "litert-converter==0.5.0",
        "transformers==5.24.0", "jax==0.10.2", "jaxlib==0.10.2")
VENV_ENV = "SLMLAB_LITERT_VENV"  # another LiteRT Torch virtualenv than the course's
SETUP_COMMAND = "slmlab setup litert"
SIZE_NOTE = "about 1.5 minutes and 2.1 GB, once per machine"
SHIMS = "slmlab-shims"
SHIM_MODULE = "tensorflow/lite/python/schema_py_generated.py"
SHIM_SOURCE = '''"""Written by `slmlab setup litert`: litert-torch imports TensorFlow's TFLite flatbuffer schema
without declaring TensorFlow; ai-edge-litert ships the same generated module, so this name points to it."""
import sys

from ai_edge_litert import schema_py_generated as _schema

sys.modules[__name__] = _schema
'''
LITERT = tool_venv.ToolVenv("LiteRT Torch", f"{LITERT_TORCH_PIN.replace('==', '-')}-{LITERT_PIN.replace('==', '-')}",
                            "python", PINS, SETUP_COMMAND, VENV_ENV, SIZE_NOTE, size_gb=2.1)


def litert_venv() -> Path:
    """$SLMLAB_LITERT_VENV, else <slmlab cache>/venvs/litert-torch-<v>-ai-edge-litert-<v>-py<X.Y>/."""
    return LITERT.folder()


def litert_python(venv: str | os.PathLike | None = None) -> Path:
    """The venv's python; a SlmLabError naming `slmlab setup litert` when the venv is missing or unfinished."""
    program = LITERT.program(venv)
    LITERT.version("litert_torch", program.parent.parent)  # a venv without the converter is not set up
    return program


def litert_available() -> bool:
    """True when the LiteRT Torch venv is set up."""
    try:
        litert_python()
    except SlmLabError:  # missing, unfinished, or without litert-torch
        return False
    return True


def litert_torch_version(venv: str | os.PathLike | None = None) -> str:
    """The litert-torch version installed in the venv (from its metadata, without starting Python)."""
    return LITERT.version("litert_torch", venv)


def write_shims(venv: str | os.PathLike) -> Path:
    """Write the TensorFlow-schema shim into <venv>/slmlab-shims/ (not site-packages: only the converter sees it)."""
    root = Path(venv) / SHIMS
    module = root / SHIM_MODULE
    module.parent.mkdir(parents=True, exist_ok=True)
    for package in (root / "tensorflow", root / "tensorflow" / "lite", module.parent):
        (package / "__init__.py").write_text("")
    module.write_text(SHIM_SOURCE)
    return root


def converter_env(venv: str | os.PathLike | None = None) -> dict[str, str]:
    """The converter's environment: offline, none of the course venv's paths, the shim folder on PYTHONPATH."""
    folder = Path(venv) if venv is not None else litert_venv()
    return tool_venv.tool_env(PYTHONPATH=os.fspath(folder / SHIMS), CUDA_VISIBLE_DEVICES="")


def setup_commands(venv: str | os.PathLike, base_python: str | os.PathLike | None = None) -> list[list[str]]:
    """The commands that make the venv, in order (printed by `slmlab setup litert --dry-run`)."""
    return LITERT.commands(venv, base_python)


def setup_litert_venv(force: bool = False, echo: Callable[[str], None] = print,
                      run: Callable[[Sequence[str]], int] | None = None) -> Path:
    """Make the venv and its shim (skipped when complete, unless `force`); its python. Never leaves half of it."""
    return LITERT.make(force, echo, run, finish=write_shims)
