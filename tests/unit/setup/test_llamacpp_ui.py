"""slmlab.setup.llamacpp_ui: the web UI's build run with a stand-in `npm` (a shell script on the PATH that does what
`npm ci` and `npm run build` do to the folders, in milliseconds): installed atomically with its record, found again
at once, rebuilt with force; npm missing, or npm failing, is a clear error with npm's own lines and nothing left
behind. The real npm build and the UI in Chromium: tests/integration/test_llama_server.py."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.setup.llamacpp import extract_vendored, llamacpp_root
from slmlab.setup.llamacpp_ui import (
    UI_MARKER,
    UI_SETUP_COMMAND,
    llamacpp_ui_available,
    llamacpp_ui_dir,
    setup_llamacpp_ui,
    ui_install_dir,
)

pytestmark = pytest.mark.fast

FAKE_NPM = """#!/bin/sh
echo "npm $*" >> "$NPM_CALLS"
case "$1" in
  ci) mkdir -p node_modules && echo "added 1 package";;
  run) [ -n "$NPM_FAIL" ] && { echo "vite: error during build: $NPM_FAIL" >&2; exit 2; }
       mkdir -p "$LLAMA_UI_OUT_DIR" && echo '<html>llama-ui</html>' > "$LLAMA_UI_OUT_DIR/index.html"
       echo "{\\"version\\":\\"$LLAMA_BUILD_NUMBER\\"}" > "$LLAMA_UI_OUT_DIR/build.json";;
esac
"""


@pytest.fixture
def npm(tmp_path, monkeypatch):
    """An empty slmlab cache and a stand-in npm first on the PATH; returns the file it logs its calls to."""
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "npm"
    script.write_text(FAKE_NPM)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    calls = tmp_path / "npm-calls.txt"
    monkeypatch.setenv("NPM_CALLS", str(calls))
    return calls


def ui_sources(root: Path) -> Path:
    tree = root / "ui-src"
    (tree / "src").mkdir(parents=True)
    (tree / "package.json").write_text('{"name": "llama-ui", "scripts": {"build": "vite build"}}\n')
    (tree / "src" / "app.html").write_text("<div>%sveltekit.body%</div>\n")
    return tree


def test_the_ui_is_built_with_npm_and_installed_with_its_record(npm, tmp_path):
    assert not llamacpp_ui_available()
    with pytest.raises(SlmLabError, match="slmlab setup llamacpp --ui"):
        llamacpp_ui_dir()
    said: list[str] = []
    folder = setup_llamacpp_ui(echo=said.append, source_tree=ui_sources(tmp_path))
    assert folder == ui_install_dir() and llamacpp_ui_available()
    assert llamacpp_ui_dir() == folder / "dist" and (folder / "dist" / "index.html").is_file()
    record = json.loads((folder / UI_MARKER).read_text())
    assert record["size_mb"] >= 0 and Path(record["log"]).is_file() and record["llama_cpp_python"]
    assert npm.read_text().splitlines() == ["npm ci --no-audit --no-fund", "npm run build", "npm --version"]
    assert json.loads((folder / "dist" / "build.json").read_text()) == {"version": "b0000"}  # a stand-in: no release
    assert not list(llamacpp_root().glob(".ui-*"))  # the work folder (node_modules) is gone
    assert any("llama_server(ui=True)" in line for line in said)
    said.clear()
    assert setup_llamacpp_ui(echo=said.append, source_tree=ui_sources(tmp_path / "again")) == folder
    assert "already built" in said[0] and len(npm.read_text().splitlines()) == 3  # npm did not run again
    setup_llamacpp_ui(force=True, echo=said.append, source_tree=ui_sources(tmp_path / "forced"))
    assert npm.read_text().splitlines()[3:5] == ["npm ci --no-audit --no-fund", "npm run build"]


def test_a_failing_npm_is_reported_with_its_lines_and_installs_nothing(npm, tmp_path, monkeypatch):
    monkeypatch.setenv("NPM_FAIL", "Cannot find module '@sveltejs/kit'")
    with pytest.raises(SlmLabError) as err:
        setup_llamacpp_ui(echo=lambda line: None, source_tree=ui_sources(tmp_path))
    message = str(err.value)
    assert "`npm run build` (exit code 2)" in message and "Cannot find module '@sveltejs/kit'" in message
    assert "The full log: " in message and UI_SETUP_COMMAND in message and "npm registry" in message
    assert not ui_install_dir().exists() and not list(llamacpp_root().glob(".ui-*"))


def test_without_npm_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere
    with pytest.raises(SlmLabError, match="needs npm") as err:
        setup_llamacpp_ui(echo=lambda line: None, source_tree=ui_sources(tmp_path))
    assert "apt-get install -y nodejs npm" in str(err.value)


def test_only_the_ui_part_of_the_vendored_tree_is_unpacked(tmp_path):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("vendor/llama.cpp/tools/ui/package.json", "vendor/llama.cpp/tools/server/server.cpp",
                     "vendor/llama.cpp/CMakeLists.txt"):
            data = name.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tree = extract_vendored(archive, tmp_path / "src", part="tools/ui")
    assert [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()] == ["tools/ui/package.json"]
