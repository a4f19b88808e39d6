"""slmlab.languages.toolchains and the %%requires magic: versions where a toolchain is here, the skip path where
it is not (proved with a PATH that lacks it, whatever this machine has)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.languages import magic
from slmlab.languages.toolchains import INSTALL, ToolchainMissing, require, toolchain, toolchains

pytestmark = pytest.mark.fast


def fake_program(folder: Path, name: str, version: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_a_path_without_mono_misses_csharp_with_the_install_line(tmp_path):
    found = toolchain("csharp", path=str(tmp_path))
    assert not found.ok and found.missing == ["mcs", "mono"]
    assert "mono-mcs" in found.skip_message() and "mcs, mono" in found.skip_message()
    with pytest.raises(ToolchainMissing) as err:
        require("C#", path=str(tmp_path))
    assert err.value.hint == INSTALL["csharp"]


def test_versions_come_from_the_programs_themselves(tmp_path):
    fake_program(tmp_path, "node", "v20.1.0")
    fake_program(tmp_path, "npm", "10.0.0")
    found = toolchain("javascript", path=str(tmp_path))
    assert found.ok and found.found == {"node": "v20.1.0", "npm": "10.0.0"}
    assert found.describe() == "node v20.1.0; npm 10.0.0"
    half = tmp_path / "half"
    half.mkdir()
    fake_program(half, "node", "v20.1.0")
    assert toolchain("node", path=str(half)).missing == ["npm"]


def test_unknown_language_is_a_clear_error():
    with pytest.raises(SlmLabError, match="Unknown language 'rust'"):
        toolchain("rust")


def test_every_language_is_reported():
    assert set(toolchains()) == {"node", "csharp", "cpp"}


def test_requires_magic_skips_a_missing_language_and_runs_a_present_one(tmp_path, monkeypatch, capsys):
    class Shell:
        ran: list[str] = []

        def ex(self, cell: str) -> None:
            self.ran.append(cell)

    shell = Shell()
    monkeypatch.setenv("PATH", str(tmp_path))  # no mcs, no mono, no node here
    magic.requires("csharp", "compile()", shell)
    assert shell.ran == [] and "Skipped the C# (Mono) cells" in capsys.readouterr().out
    fake_program(tmp_path, "node", "v20.1.0")
    fake_program(tmp_path, "npm", "10.0.0")
    magic.requires("node", "run()", shell)
    assert shell.ran == ["run()"]


def test_cpp_needs_llama_cpp_build_too(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    usable, message = magic.ready("cpp")
    assert not usable and "g++" in message
    fake_program(tmp_path, "g++", "g++ 12")
    fake_program(tmp_path, "cmake", "cmake 3.25")
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "empty-cache"))
    usable, message = magic.ready("cpp", path=os.environ["PATH"])
    assert not usable and "slmlab setup llamacpp" in message
