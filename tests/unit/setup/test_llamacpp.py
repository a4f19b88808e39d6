"""slmlab.setup.llamacpp: the build's flags, its folder and marker, the sdist's vendored tree, and the whole set-up run
by the real CMake and compiler on a small stand-in llama.cpp tree (seconds, not the real 10+ minutes): installed
atomically, found again at once, rebuilt with --force, and a failed compile reported with the compiler's own lines
and nothing left half-installed."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from slmlab.cli import main as cli_main
from slmlab.errors import SlmLabError
from slmlab.setup import llamacpp
from slmlab.setup.doctor import check_llamacpp
from slmlab.setup.llamacpp import (
    MARKER,
    PROGRAMS,
    SETUP_COMMAND,
    build_name,
    build_percent,
    cmake_options,
    extract_vendored,
    install_dir,
    llamacpp_available,
    llamacpp_program,
    read_marker,
    setup_llamacpp,
    vendored_commit,
)

pytestmark = pytest.mark.fast
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None,
                                 reason="needs cmake and a C compiler")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty slmlab cache: no build there yet."""
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def stand_in_tree(root: Path, broken: str | None = None) -> Path:
    """A small CMake project shaped like llama.cpp: the six programs, the static libraries, headers and the
    conversion script; `broken` names a program whose source does not compile."""
    tree = root / "llama.cpp"
    for sub in ("include", "ggml/include", "conversion", "gguf-py/gguf", "src"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "include" / "llama.h").write_text("int llama_answer(void);\n")
    (tree / "ggml" / "include" / "ggml.h").write_text("int ggml_answer(void);\n")
    (tree / "src" / "llama.c").write_text('#include "llama.h"\nint llama_answer(void) { return 42; }\n')
    (tree / "convert_hf_to_gguf.py").write_text("print('convert')\n")
    (tree / "conversion" / "__init__.py").write_text("")
    (tree / "gguf-py" / "gguf" / "__init__.py").write_text("")
    lines = ["cmake_minimum_required(VERSION 3.14)", "project(stand_in C CXX)",
             "set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)",
             "include_directories(include)"]
    for lib in llamacpp.LIBRARIES:
        lines.append(f"add_library({lib} STATIC src/llama.c)")
    for program in PROGRAMS:
        body = "int main(void) { return llama_answer() == 42 ? 0 : 1 }" if program == broken else \
            f'#include <stdio.h>\nint main(void) {{ puts("{program} stand-in"); return llama_answer() - 42; }}'
        (tree / "src" / f"{program}.c").write_text(f'#include "llama.h"\n{body}\n')
        lines += [f"add_executable({program} src/{program}.c)", f"target_link_libraries({program} llama)"]
    (tree / "CMakeLists.txt").write_text("\n".join(lines) + "\n")
    return tree


# ---------------------------------------------------------------- flags, names, progress


def test_flags_are_release_static_offline_and_without_amx_on_x86():
    x86, arm = cmake_options("x86_64"), cmake_options("aarch64")
    for flag in ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                 "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF"):
        assert flag in x86 and flag in arm
    assert "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in x86
    assert "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in x86
    assert not any("amx" in flag for flag in arm)
    assert not any("CURL" in flag and flag.endswith("=ON") for flag in x86)
    assert build_name("0.3.36", x86) != build_name("0.3.36", arm) != build_name("0.3.37", arm)
    assert build_name("0.3.36", x86).startswith("0.3.36-")


def test_progress_is_read_from_make_and_ninja_lines():
    assert build_percent(b"[ 42%] Building CXX object tools/server/CMakeFiles/server.cpp.o\n") == 42
    assert build_percent(b"[100%] Built target llama-server\n") == 100
    assert build_percent(b"[123/246] Building C object ggml/src/ggml.c.o\n") == 50
    assert build_percent(b"-- Configuring done\n") is None
    assert build_percent(b"[0/0] nothing\n") is None


# ---------------------------------------------------------------- the source archive


def _sdist(path: Path, commit: str | None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("llama_cpp_python-9.9.9/pyproject.toml", "[project]\n")
        add("llama_cpp_python-9.9.9/vendor/llama.cpp/CMakeLists.txt", "project(x)\n")
        add("llama_cpp_python-9.9.9/vendor/llama.cpp/.git", "gitdir: ../../.git/modules/vendor/llama.cpp\n")
        if commit:
            add("llama_cpp_python-9.9.9/.git/modules/vendor/llama.cpp/HEAD", commit + "\n")
    return path


def test_the_vendored_tree_and_its_commit_come_from_the_sdist(tmp_path):
    commit = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    archive = _sdist(tmp_path / "sdist.tar.gz", commit)
    assert vendored_commit(archive) == commit
    assert vendored_commit(_sdist(tmp_path / "bare.tar.gz", None)) is None
    tree = extract_vendored(archive, tmp_path / "src")
    assert (tree / "CMakeLists.txt").is_file() and tree.name == "llama.cpp"
    assert not (tree / ".git").exists()  # git must not report the sdist's own commit as llama.cpp's
    assert not (tmp_path / "src" / "llama_cpp_python-9.9.9" / "pyproject.toml").exists()  # only vendor/llama.cpp


def test_the_pinned_commit_has_its_release_number_compiled_in():
    commit = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    assert llamacpp._build_info(commit) == ["-DLLAMA_BUILD_COMMIT=0c1e57098", "-DLLAMA_BUILD_NUMBER=11312"]
    assert llamacpp._build_info("f" * 40) == ["-DLLAMA_BUILD_COMMIT=fffffffff"]
    assert llamacpp._build_info(None) == []


# ---------------------------------------------------------------- a missing build


def test_a_missing_build_names_the_setup_command(cache):
    assert not llamacpp_available()
    row = check_llamacpp()
    assert not row.ok and not row.required and SETUP_COMMAND in row.fix  # doctor: optional, with its fix
    with pytest.raises(SlmLabError, match=SETUP_COMMAND):
        llamacpp_program("llama-server")
    with pytest.raises(SlmLabError, match="Did you mean 'llama-server'"):
        llamacpp_program("llama-servr")


def test_missing_build_tools_are_named_before_anything_is_downloaded(cache, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(SlmLabError, match="needs cmake, a C\\+\\+ compiler") as err:
        setup_llamacpp(show_progress=False, echo=lambda line: None)
    assert "apt-get install" in str(err.value) and not (cache / "llamacpp" / "sdist").exists()


def test_setup_where_says_not_built(cache, capsys):
    assert cli_main(["setup", "llamacpp", "--where"]) == 1
    assert "not built yet" in capsys.readouterr().out


# ---------------------------------------------------------------- the whole set-up on a stand-in tree


@needs_cmake
def test_setup_builds_installs_atomically_and_a_second_run_returns_at_once(cache, tmp_path, capsys, monkeypatch):
    real, tree = llamacpp.setup_llamacpp, stand_in_tree(tmp_path)
    monkeypatch.setattr(llamacpp, "setup_llamacpp", lambda **kw: real(source_tree=tree, show_progress=False, **kw))
    assert cli_main(["setup", "llamacpp", "--jobs", "2"]) == 0  # the command, on the stand-in tree
    folder = install_dir()
    assert str(folder) in capsys.readouterr().out and llamacpp_available()
    assert cli_main(["setup", "llamacpp", "--where"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "bin")
    marker = read_marker(folder)
    assert marker is not None and marker["build_seconds"] > 0 and marker["programs"] == list(PROGRAMS)
    assert marker["jobs"] == 2 and json.loads((folder / MARKER).read_text()) == marker
    assert check_llamacpp().ok and str(folder / "bin") in check_llamacpp().detail
    assert marker["cmake_options"][: len(cmake_options())] == cmake_options() and marker["size_mb"] > 0
    assert Path(marker["log"]).is_file()
    for program in PROGRAMS:
        run = subprocess.run([llamacpp_program(program)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == f"{program} stand-in"
    assert (folder / "include" / "llama.h").is_file() and (folder / "include" / "ggml.h").is_file()
    assert (folder / "lib" / "libllama.a").is_file() and (folder / "lib" / "libggml-cpu.a").is_file()
    assert (folder / "convert_hf_to_gguf.py").is_file() and (folder / "conversion" / "__init__.py").is_file()
    assert (folder / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".build-")]  # the work folder went

    said: list[str] = []
    begin = time.perf_counter()
    assert real(source_tree=tmp_path / "nowhere", show_progress=False, echo=said.append) == folder
    assert time.perf_counter() - begin < 1 and "already built" in said[0]

    rebuilt = real(force=True, source_tree=tree, show_progress=False, echo=said.append)
    assert rebuilt == folder and read_marker(folder)["created"] >= marker["created"]
    left = sorted(p.name for p in folder.parent.iterdir() if not p.name.startswith("."))
    assert left == sorted(["logs", folder.name])  # the older build was replaced, not kept beside


@needs_cmake
def test_a_failed_compile_shows_the_compiler_and_installs_nothing(cache, tmp_path):
    tree = stand_in_tree(tmp_path, broken="llama-bench")
    with pytest.raises(SlmLabError) as failed:
        setup_llamacpp(source_tree=tree, jobs=1, show_progress=False, echo=lambda line: None)
    message = str(failed.value)
    assert "compilation" in message and "nothing was installed" in message and SETUP_COMMAND in message
    assert "llama-bench.c" in message and "error" in message  # the compiler's own line, naming the file
    log = Path(message.split("The full log: ", 1)[1].split("\n", 1)[0])
    assert log.is_file() and "llama-bench.c" in log.read_text()
    assert not install_dir().exists() and not llamacpp_available()
    assert not [p.name for p in install_dir().parent.iterdir() if p.name.startswith(".build-")]
