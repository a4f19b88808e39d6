"""Olive's own virtualenv (`slmlab setup olive`): where it lives, how it is made, and what is said when it is not.

The commands that would make the real venv (about 1.5 minutes, 1.8 GB) are replaced by a stand-in that makes the
files Olive's checks look for; notebook 1.4's test uses the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.setup import doctor, olive_env

pytestmark = pytest.mark.fast


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv(olive_env.VENV_ENV, raising=False)
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_install(ran: list[list[str]], fail_at: int = 0, interrupt_at: int = 0):
    """A stand-in for the three commands: the venv, torch, then olive-ai (its program and its metadata)."""
    def run(cmd: Sequence[str]) -> int:
        ran.append(list(cmd))
        step = len(ran)
        if step == interrupt_at:
            raise KeyboardInterrupt
        if step == fail_at:
            return 1
        if cmd[1:3] == ["-m", "venv"]:
            folder = Path(cmd[3])
            (folder / "bin").mkdir(parents=True)
            (folder / "pyvenv.cfg").write_text("home = /usr/bin\n")
        elif olive_env.OLIVE_PIN in cmd:
            venv = Path(cmd[0]).parents[1]
            (venv / "bin" / "olive").write_text("#!/bin/sh\n")
            (venv / "lib" / "python3.11" / "site-packages" / "olive_ai-0.13.0.dist-info").mkdir(parents=True)
        return 0
    return run


def test_named_by_its_pins_in_the_cache_or_where_the_variable_points(cache, tmp_path, monkeypatch):
    assert olive_env.olive_venv() == cache / "venvs" / "olive-ai-0.13.0-genai-0.14.1-py3.11"
    monkeypatch.setenv(olive_env.VENV_ENV, str(tmp_path / "mine"))
    assert olive_env.olive_venv() == tmp_path / "mine"


def test_built_once_with_pinned_torch_then_olive_and_its_builder(cache):
    ran: list[list[str]] = []
    said: list[str] = []
    program = olive_env.setup_olive_venv(echo=said.append, run=fake_install(ran))
    assert program == olive_env.olive_venv() / "bin" / "olive" and olive_env.olive_available()
    assert [cmd[1:3] for cmd in ran] == [["-m", "venv"], ["-m", "pip"], ["-m", "pip"]]
    assert ran[1][-3:] == ["--index-url", olive_env.TORCH_INDEX, olive_env.TORCH_PIN] and "--no-deps" in ran[1]
    assert {olive_env.OLIVE_PIN, olive_env.GENAI_PIN} <= set(ran[2])
    assert "ready" in said[-1] and olive_env.olive_version() == "0.13.0"
    olive_env.setup_olive_venv(echo=said.append, run=fake_install(ran))
    assert len(ran) == 3 and "already set up" in said[-1]  # the second call builds nothing
    olive_env.setup_olive_venv(force=True, echo=said.append, run=fake_install(ran))
    assert len(ran) == 6


@pytest.mark.parametrize("how", ["fail", "interrupt"])
def test_a_failed_or_interrupted_install_leaves_nothing_that_looks_set_up(cache, how):
    ran: list[list[str]] = []
    run = fake_install(ran, fail_at=3) if how == "fail" else fake_install(ran, interrupt_at=3)
    with pytest.raises(SlmLabError if how == "fail" else KeyboardInterrupt) as raised:
        olive_env.setup_olive_venv(echo=lambda _: None, run=run)
    assert not olive_env.olive_venv().exists() and not olive_env.olive_available()
    if how == "fail":
        assert "exit code 1" in raised.value.problem and "PyPI" in raised.value.hint


def test_missing_or_unfinished_venv_says_which_command_to_run(cache):
    with pytest.raises(SlmLabError) as missing:
        olive_env.olive_program()
    assert "not set up" in missing.value.problem and "slmlab setup olive" in missing.value.hint
    (olive_env.olive_venv() / "bin").mkdir(parents=True)
    (olive_env.olive_venv() / "bin" / "olive").write_text("")  # the program, but no completion mark
    with pytest.raises(SlmLabError) as unfinished:
        olive_env.olive_program()
    assert "did not finish" in unfinished.value.problem and unfinished.value.hint.endswith("--force")
    row = doctor.check_olive()
    assert not row.ok and not row.required and "1.4" in row.detail and "slmlab setup olive" in row.fix


def test_doctor_names_the_version_when_it_is_there(cache):
    olive_env.setup_olive_venv(echo=lambda _: None, run=fake_install([]))
    row = doctor.check_olive()
    assert row.ok and "olive-ai 0.13.0" in row.detail


def test_refuses_to_replace_a_folder_that_is_not_a_venv(cache):
    folder = olive_env.olive_venv()
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(SlmLabError, match="not a virtualenv"):
        olive_env.setup_olive_venv(echo=lambda _: None, run=fake_install([]))
    assert (folder / "notes.txt").read_text() == "mine"


def test_olive_runs_offline_without_the_course_venvs_paths(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/course/lib")
    monkeypatch.setenv("VIRTUAL_ENV", "/course/.venv")
    env = olive_env.tool_env()
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["HF_HUB_OFFLINE"] == env["OLIVE_DISABLE_TELEMETRY"] == env["HF_DATASETS_OFFLINE"] == "1"
