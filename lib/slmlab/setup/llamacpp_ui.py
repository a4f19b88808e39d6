"""llama-server's web chat UI, built once from the vendored sources with npm (opt-in: ``slmlab setup llamacpp --ui``).

The course's llama.cpp build (``setup/llamacpp.py``) compiles no UI in: llama.cpp's CMake would download prebuilt UI
files from a model hub at build time, which the course never reaches (``LLAMA_USE_PREBUILT_UI=OFF``), and building
them (``LLAMA_BUILD_UI=ON``) needs Node.js and about 1,000 packages from the npm registry. So a plain build answers
``GET /`` with 404. This step builds the UI by itself, exactly as llama.cpp's ``scripts/ui-assets.cmake`` does when
``LLAMA_BUILD_UI=ON``: ``npm ci`` and ``npm run build`` in ``tools/ui`` of the same llama.cpp tree (the pinned
llama-cpp-python sdist's), with the release number passed in. It keeps only the result, ``dist/`` (10 MB), in
``cache_dir()/llamacpp/ui-<binding version>/``, atomically; ``llama-server --path <dist>`` serves it
(``llama_server(ui=True)``), so llama.cpp need not be compiled again::

    slmlab setup llamacpp --ui        # once: ~2 minutes, ~700 MB of node_modules while it builds, then deleted
    llamacpp_ui_dir()                 # <that folder>/dist, or a SlmLabError naming the command
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.setup.llamacpp import (
    KNOWN_BUILDS,
    _folder_bytes,
    _move_into_place,
    _run_logged,
    _setup_lock,
    _unpack_source,
    _work_folder,
    binding_version,
    llamacpp_root,
)

UI_SETUP_COMMAND = "slmlab setup llamacpp --ui"
UI_MARKER = "slmlab-ui.json"
UI_SOURCE = "tools/ui"  # in the llama.cpp tree
# npm's own network chatter off; the UI's .npmrc keeps ignore-scripts=true (no install scripts run)
_NPM_ENV = {"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}


def ui_install_dir(version: str | None = None) -> Path:
    """The UI's folder for this llama-cpp-python version (it may not exist yet)."""
    return llamacpp_root() / f"ui-{version or binding_version()}"


def read_ui_marker(folder: str | os.PathLike | None = None) -> dict | None:
    """The UI build's record, or None when that folder holds no complete UI."""
    path = Path(folder if folder is not None else ui_install_dir())
    try:
        record = json.loads((path / UI_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if (path / "dist" / "index.html").is_file() else None


def llamacpp_ui_dir() -> Path:
    """The built UI's ``dist`` folder (for ``llama-server --path``), or a SlmLabError naming the set-up command."""
    folder = ui_install_dir()
    if read_ui_marker(folder) is None:
        raise SlmLabError(f"llama-server's web UI is not built ({folder} holds no complete build).",
                          f"Run: {UI_SETUP_COMMAND}  (needs npm and the npm registry; about 2 minutes, once)")
    return folder / "dist"


def llamacpp_ui_available() -> bool:
    """True when the UI for the installed llama-cpp-python is built."""
    return read_ui_marker() is not None


def setup_llamacpp_ui(force: bool = False, echo: Callable[[str], None] = print,
                      source_tree: str | os.PathLike | None = None) -> Path:
    """Build the UI into the cache once (again with `force`) and return its folder (``dist/`` and the record).

    `source_tree` builds another ``tools/ui`` folder instead of the pinned sdist's (the tests use a stand-in).
    """
    version = binding_version()
    folder = ui_install_dir(version)
    if not force and read_ui_marker(folder) is not None:
        echo(f"llama-server's web UI is already built: {folder} (pass --force to build it again)")
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise SlmLabError("Building llama-server's web UI needs npm (Node.js 20 or newer), which is not installed.",
                          f"On Debian/Ubuntu: apt-get install -y nodejs npm; then run {UI_SETUP_COMMAND}.")
    with _setup_lock(llamacpp_root()):
        if not force and read_ui_marker(folder) is not None:
            echo(f"llama-server's web UI is already built: {folder}")
            return folder
        _build_ui(npm, version, folder, echo, source_tree)
    record = read_ui_marker(folder) or {}
    echo(f"llama-server's web UI is built: {folder / 'dist'} ({record.get('size_mb', '?')} MB, "
         f"{record.get('build_seconds', 0) / 60:.1f} min); serve it with llama_server(ui=True) "
         f"or llama-server --path {folder / 'dist'}")
    return folder


def _build_ui(npm: str, version: str, folder: Path, echo: Callable[[str], None],
              source_tree: str | os.PathLike | None) -> None:
    """Copy the UI's sources into a work folder, run npm there, keep ``dist`` (renamed into place at the end)."""
    with _work_folder("ui", version) as (work, log_path):
        commit = None
        if source_tree is None:
            tree, commit = _unpack_source(version, work, echo, part=UI_SOURCE)
            source = tree / UI_SOURCE
        else:
            source = work / "ui"
            shutil.copytree(source_tree, source, ignore=shutil.ignore_patterns("node_modules", "dist"))
        build = KNOWN_BUILDS.get(commit or "")
        env = {**_NPM_ENV, "LLAMA_UI_OUT_DIR": str(work / "install" / "dist"),
               "LLAMA_BUILD_NUMBER": f"b{build}" if build else "b0000"}
        begin = time.perf_counter()
        with open(log_path, "wb") as log:
            for step in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
                echo(f"npm {' '.join(step)} in {source.name} (the log: {log_path})")
                code = _run_logged([npm, *step], log, work, lambda line: None, cwd=source, env=env)
                if code != 0:
                    raise _npm_failure(" ".join(step), code, log_path)
        staging = work / "install"
        if not (staging / "dist" / "index.html").is_file():
            raise _npm_failure("run build", 0, log_path, "it wrote no dist/index.html")
        record = {"llama_cpp_python": version, "llama_cpp_commit": commit, "llama_cpp_build": build,
                  "node": _tool_version("node"), "npm": _tool_version(npm), "machine": platform.machine(),
                  "build_seconds": round(time.perf_counter() - begin, 1),
                  "size_mb": round(_folder_bytes(staging / "dist") / 1e6, 1), "log": str(log_path),
                  "created": datetime.now(UTC).isoformat(timespec="seconds")}
        (staging / UI_MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, folder)


def _npm_failure(step: str, code: int, log_path: Path, why: str = "") -> SlmLabError:
    """npm's own last lines and where the full log is."""
    lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    what = why or f"exit code {code}"
    return SlmLabError(f"Building llama-server's web UI failed in `npm {step}` ({what}); nothing was installed. "
                       "Its last lines:\n" + "\n".join(lines[-12:]) + f"\nThe full log: {log_path}",
                       "Read the log. The npm registry must be reachable (npm config get registry) and Node.js "
                       f"20 or newer installed (node --version); then run {UI_SETUP_COMMAND} again.")


def _tool_version(program: str) -> str:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip() or "?"
