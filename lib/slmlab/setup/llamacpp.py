"""llama.cpp's own programs (`llama-server`, `llama-quantize`, …), built once from the pinned source.

The source is the llama.cpp tree that the pinned llama-cpp-python vendors (``vendor/llama.cpp`` inside
``llama_cpp_python-<version>.tar.gz``, fetched with pip and kept in the cache), so the programs and the Python
binding are the same llama.cpp commit: ``llama-quantize`` and ``llama_cpp.llama_model_quantize`` write the same
bytes. CMake builds it in Release, statically (``BUILD_SHARED_LIBS=OFF``), with nothing fetched at build time (no
prebuilt web-UI assets, no TLS library), into ``cache_dir()/llamacpp/<binding version>-<hash of the flags>/``::

    slmlab setup llamacpp                     # once: 10-14 CPU-minutes of compiling, 87 MB; then returns at once
    llamacpp_program("llama-server")          # <that folder>/bin/llama-server, or a SlmLabError naming the command

The folder holds ``bin/`` (the programs), ``include/`` and ``lib/`` (``llama.h`` and the static libraries, to
link a C++ program), ``convert_hf_to_gguf.py`` with ``conversion/`` and ``gguf-py/`` from the same tree, and
``slmlab-build.json`` (versions, flags, build time). It appears only complete: the build runs in a temporary
folder that is renamed into place at the end; a failed build leaves its log and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from slmlab.errors import SlmLabError, did_you_mean

SETUP_COMMAND = "slmlab setup llamacpp"
BINDING = "llama_cpp_python"
PROGRAMS = ("llama-server", "llama-quantize", "llama-cli", "llama-bench", "llama-perplexity", "llama-imatrix")
LIBRARIES = ("llama", "ggml", "ggml-base", "ggml-cpu")  # what a C++ program links: -lllama -lggml ...
MARKER = "slmlab-build.json"
CONVERT_SCRIPT = "convert_hf_to_gguf.py"
PYTHON_TREES = ("conversion", "gguf-py")  # what convert_hf_to_gguf.py imports from beside itself
# llama.cpp's release tag (b<build number>, the count of master's commits) for the commit a pinned
# llama-cpp-python vendors; it is compiled in, so `llama-server --version` says what the container image says.
KNOWN_BUILDS = {"0c1e57098bba43ac29e6e3b677cdceebdd22334f": 11312}
# This machine (and other recent x86 CPUs) advertise AMX, but ggml's AMX matrix multiply crashes (SIGSEGV in
# ldtilecfg) where the OS does not grant AMX state; the Python binding is built without it for the same reason.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
_PERCENT = re.compile(rb"^\[\s*(\d+)%\]")  # make:  [ 42%] Building CXX object ...
_STEP = re.compile(rb"^\[(\d+)/(\d+)\]")  # ninja: [123/456] Building CXX object ...


def binding_version() -> str:
    """The installed llama-cpp-python's version: the source of the build is that version's sdist."""
    try:
        return importlib.metadata.version(BINDING)
    except importlib.metadata.PackageNotFoundError:
        raise SlmLabError("llama-cpp-python is not installed, and llama.cpp is built from the source it pins.",
                          "Run: pip install -e .  (the course's core packages)") from None


def cmake_options(machine: str | None = None) -> list[str]:
    """The CMake cache options of the build: Release, static, CPU, nothing downloaded; no AMX on x86-64."""
    options = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=ON",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
               "-DLLAMA_BUILD_SERVER=ON", "-DGGML_CCACHE=OFF",
               # network: no prebuilt web-UI assets from a model hub, no npm, no TLS (nothing to download from)
               "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF"]
    if (machine or platform.machine()).lower() in ("x86_64", "amd64"):
        options += [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
    return options


def build_name(version: str, options: Sequence[str]) -> str:
    """The install folder's name: the binding's version and a short hash of the build flags."""
    return f"{version}-{hashlib.sha256(chr(10).join(options).encode()).hexdigest()[:8]}"


def llamacpp_root() -> Path:
    """Where the builds, the source archive and the build logs live: ``cache_dir()/llamacpp``."""
    from slmlab.models.resolver import cache_dir

    return cache_dir() / "llamacpp"


def install_dir(version: str | None = None) -> Path:
    """The folder of the build for this llama-cpp-python version and these flags (it may not exist yet)."""
    return llamacpp_root() / build_name(version or binding_version(), cmake_options())


def read_marker(folder: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The build's record (versions, flags, seconds, created), or None when that folder holds no complete build."""
    path = Path(folder if folder is not None else install_dir()) / MARKER
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _missing_build(folder: Path) -> SlmLabError:
    return SlmLabError(f"llama.cpp's programs are not built for llama-cpp-python {binding_version()}: "
                       f"{folder} holds no complete build.",
                       f"Run: {SETUP_COMMAND}  (once: it compiles llama.cpp from the pinned source, 10-14 "
                       "CPU-minutes, so 6-7 minutes on 2 idle cores and more on busy ones; a later run returns at "
                       "once).")


def llamacpp_dir() -> Path:
    """The complete build's folder, or a SlmLabError naming `slmlab setup llamacpp`."""
    folder = install_dir()
    if read_marker(folder) is None:
        raise _missing_build(folder)
    return folder


def llamacpp_program(name: str) -> Path:
    """The path of one of llama.cpp's programs (e.g. "llama-server"), or a clear error when it is not built."""
    if name not in PROGRAMS:
        raise SlmLabError(f"{name!r} is not one of the llama.cpp programs the course builds.",
                          f"{did_you_mean(name, PROGRAMS)}They are: {', '.join(PROGRAMS)}.")
    program = llamacpp_dir() / "bin" / name
    if not os.access(program, os.X_OK):
        raise SlmLabError(f"{program} is missing from the llama.cpp build.", f"Run: {SETUP_COMMAND} --force")
    return program


def llamacpp_available() -> bool:
    """True when the build for the installed llama-cpp-python is complete."""
    try:
        llamacpp_dir()
    except SlmLabError:
        return False
    return True


def convert_script() -> Path:
    """``convert_hf_to_gguf.py`` from the same llama.cpp tree (run it with this Python; it needs torch)."""
    return llamacpp_dir() / CONVERT_SCRIPT


# ----------------------------------------------------------------------------- the source


def fetch_sdist(version: str, echo: Callable[[str], None] = print) -> Path:
    """llama-cpp-python's source archive for `version`, downloaded with pip once and kept in the cache."""
    folder = llamacpp_root() / "sdist"
    archive = folder / f"{BINDING}-{version}.tar.gz"
    if archive.is_file():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".download-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--disable-pip-version-check",
           f"{BINDING}=={version}", "-d", str(partial)]
    echo(f"downloading the source of llama-cpp-python {version} (77 MB, once): {' '.join(cmd[2:])}")
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        found = sorted(partial.glob(f"{BINDING}-{version}.tar.gz"))
        if done.returncode != 0 or not found:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise SlmLabError(f"pip could not download llama-cpp-python {version}'s source archive:\n{tail}",
                              "Check the connection to PyPI (or your pip index settings), then run "
                              f"{SETUP_COMMAND} again.")
        os.replace(found[0], archive)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return archive


def vendored_commit(archive: str | os.PathLike) -> str | None:
    """The llama.cpp commit the sdist vendors, read from the git metadata it carries (None if it has none)."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".git/modules/vendor/llama.cpp/HEAD") and member.isfile():
                handle = tar.extractfile(member)
                text = handle.read().decode("ascii", "replace").strip() if handle else ""
                return text if re.fullmatch(r"[0-9a-f]{40}", text) else None
    return None


def extract_vendored(archive: str | os.PathLike, into: Path, part: str = "") -> Path:
    """Unpack only ``vendor/llama.cpp`` of the sdist (only its `part`, e.g. "tools/ui", if given) into `into`;
    returns the llama.cpp tree."""
    inside = f"/vendor/llama.cpp/{part.strip('/') + '/' if part.strip('/') else ''}"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if inside in m.name and "/vendor/llama.cpp/.git" not in m.name]
        if not members:
            raise SlmLabError(f"{archive} has no vendor/llama.cpp tree.",
                              f"Delete it and run {SETUP_COMMAND} again (it is downloaded anew).")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths that leave `into`
            tar.extractall(into, members=members, filter="data")
        else:  # pragma: no cover - older 3.11 patch releases
            tar.extractall(into, members=members)
    return next(into.glob("*/vendor/llama.cpp"))


# ----------------------------------------------------------------------------- building


def setup_llamacpp(force: bool = False, jobs: int | None = None, echo: Callable[[str], None] = print,
                   show_progress: bool = True, source_tree: str | os.PathLike | None = None) -> Path:
    """Build llama.cpp's programs into the cache once (again with `force`) and return the build's folder.

    `jobs` compilers run at once (default: every core). `source_tree` builds another llama.cpp tree instead of
    the pinned sdist's (the tests use a small stand-in). Two set-ups at once: the second waits, then finds it done.
    """
    version = binding_version()
    folder = install_dir(version)
    if not force and read_marker(folder) is not None:
        echo(f"llama.cpp is already built: {folder} (pass --force to build it again)")
        return folder
    _require_build_tools()
    with _setup_lock(llamacpp_root()):
        if not force and read_marker(folder) is not None:  # built by another set-up while this one waited
            echo(f"llama.cpp is already built: {folder}")
            return folder
        _build_and_install(version, folder, jobs or os.cpu_count() or 1, echo, show_progress, source_tree)
    marker = read_marker(folder) or {}
    echo(f"llama.cpp is built: {folder} ({marker.get('size_mb', '?')} MB, "
         f"{marker.get('build_seconds', 0) / 60:.1f} min)")
    return folder


def _cxx_compiler() -> str | None:
    """The C++ compiler CMake will pick: $CXX (conda's compilers set it), else c++, g++ or clang++ on the PATH."""
    for candidate in (os.environ.get("CXX", "").split(" ")[0], "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def _require_build_tools() -> None:
    missing = [tool for tool, found in (("cmake", shutil.which("cmake")), ("a C++ compiler", _cxx_compiler()))
               if not found]
    if missing:
        raise SlmLabError(f"Building llama.cpp needs {', '.join(missing)}, which this machine does not have.",
                          "On Debian/Ubuntu: apt-get install -y --no-install-recommends cmake build-essential "
                          "(or: pip install cmake ninja, plus a C++ compiler).")


@contextlib.contextmanager
def _setup_lock(root: Path) -> Iterator[None]:
    """One build at a time per cache (a file lock; none where fcntl does not exist)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / ".setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _work_folder(kind: str, name: str) -> Iterator[tuple[Path, Path]]:
    """A fresh work folder in the cache, removed at the end whatever happens, and a new log file's path."""
    root = llamacpp_root()
    work = root / f".{kind}-{name}-{os.getpid()}"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{kind}-{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.log"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work, log_path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack_source(version: str, work: Path, echo: Callable[[str], None], part: str = "") -> tuple[Path, str | None]:
    """The pinned sdist's llama.cpp tree (only its `part`, if given) unpacked into `work`, and its commit."""
    archive = fetch_sdist(version, echo)
    commit = vendored_commit(archive)
    echo(f"unpacking vendor/llama.cpp{'/' + part if part else ''} (commit {commit or 'unknown'}) from {archive.name}")
    return extract_vendored(archive, work / "src", part=part), commit


def _build_and_install(version: str, folder: Path, jobs: int, echo: Callable[[str], None], show_progress: bool,
                       source_tree: str | os.PathLike | None) -> None:
    """Configure, compile and collect in a temporary folder, then rename the result into place."""
    with _work_folder("build", folder.name) as (work, log_path):
        commit = None
        if source_tree is None:
            tree, commit = _unpack_source(version, work, echo)
        else:
            tree = Path(source_tree).absolute()
        options = [*cmake_options(), *_build_info(commit)]
        load_before, begin = os.getloadavg(), time.perf_counter()
        with open(log_path, "wb") as log:
            echo(f"building llama.cpp with {jobs} job(s); the log: {log_path}")
            _configure(tree, work / "build", options, log, log_path)
            _compile(work / "build", jobs, log, log_path, show_progress)
        seconds = time.perf_counter() - begin
        staging = work / "install"
        _collect(tree, work / "build", staging)
        record = {"llama_cpp_python": version, "llama_cpp_commit": commit,
                  "llama_cpp_build": KNOWN_BUILDS.get(commit or ""), "cmake_options": options,
                  "compiler": _compiler_version(), "machine": platform.machine(), "jobs": jobs,
                  "build_seconds": round(seconds, 1), "load_average_before": [round(x, 2) for x in load_before],
                  "load_average_after": [round(x, 2) for x in os.getloadavg()],
                  "size_mb": round(_folder_bytes(staging) / 1e6, 1), "programs": list(PROGRAMS),
                  "link": "-Iinclude -Llib -lllama -lggml -lggml-cpu -lggml-base -fopenmp -lpthread -lm",
                  "log": str(log_path), "created": datetime.now(UTC).isoformat(timespec="seconds")}
        (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, folder)


def _build_info(commit: str | None) -> list[str]:
    """The commit and release number compiled in (`llama-server --version`), when they are known."""
    if commit is None:
        return []
    # nine hex digits, as llama.cpp's own release builds print it (git's short hash in that repository)
    options = [f"-DLLAMA_BUILD_COMMIT={commit[:9]}"]
    if commit in KNOWN_BUILDS:
        options.append(f"-DLLAMA_BUILD_NUMBER={KNOWN_BUILDS[commit]}")
    return options


def _build_env(work: Path) -> dict[str, str]:
    # git must not find a repository above the unpacked tree (its commit would be reported as llama.cpp's).
    return {**os.environ, "GIT_CEILING_DIRECTORIES": str(work.parent), "LC_ALL": "C"}


def _configure(tree: Path, build: Path, options: Sequence[str], log: IO[bytes], log_path: Path) -> None:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    cmd = ["cmake", "-S", str(tree), "-B", str(build), *generator, *options]
    code = _run_logged(cmd, log, build.parent, lambda line: None)
    if code != 0:
        raise _failure("configuration (cmake)", code, log_path)


def _compile(build: Path, jobs: int, log: IO[bytes], log_path: Path, show_progress: bool) -> None:
    """`cmake --build` for the programs and libraries; its [ NN%] (make) or [n/N] (ninja) lines drive a progress bar."""
    from slmlab.progress import progress

    bar = progress(total=100, desc="building llama.cpp", unit="%", disable=not show_progress)

    def advance(line: bytes) -> None:
        percent = build_percent(line)
        if percent is not None and percent > bar.n:
            bar.update(percent - bar.n)

    cmd = ["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs), "--target", *PROGRAMS,
           *LIBRARIES]
    try:
        code = _run_logged(cmd, log, build.parent, advance)
    finally:
        bar.close()
    if code != 0:
        raise _failure("compilation", code, log_path)


def build_percent(line: bytes) -> int | None:
    """How far a build is from one line of its output: make's ``[ 42%]`` or ninja's ``[123/456]``; else None."""
    if match := _PERCENT.match(line):
        return int(match[1])
    if (match := _STEP.match(line)) and int(match[2]):
        return int(int(match[1]) * 100 / int(match[2]))
    return None


def _run_logged(cmd: Sequence[str], log: IO[bytes], work: Path, on_line: Callable[[bytes], None],
                cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    log.write(f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**_build_env(work), **(env or {})}, cwd=cwd)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            log.write(line)
            on_line(line)
    except BaseException:  # Ctrl-C: stop the compilers too
        proc.kill()
        raise
    finally:
        code = proc.wait()
        log.flush()
    return code


def _failure(step: str, code: int, log_path: Path) -> SlmLabError:
    """The compiler's own last lines, from the first error on (or the log's end), and where the full log is."""
    lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if re.search(r"\berror\b|FAILED:|CMake Error", line)), None)
    shown = lines[first:first + 15] if first is not None else lines[-15:]
    return SlmLabError(f"Building llama.cpp failed in its {step} (exit code {code}); nothing was installed. "
                       "Its last lines:\n" + "\n".join(shown) + f"\nThe full log: {log_path}",
                       "Read the log. A missing compiler or header: apt-get install -y build-essential cmake; "
                       f"then run {SETUP_COMMAND} again.")


def _collect(tree: Path, build: Path, staging: Path) -> None:
    """Copy the programs, headers, static libraries and the conversion script into the new build's folder."""
    for sub in ("bin", "include", "lib"):
        (staging / sub).mkdir(parents=True)
    for name in PROGRAMS:
        shutil.copy2(build / "bin" / name, staging / "bin" / name)
    for header in [*(tree / "include").glob("*.h"), *(tree / "ggml" / "include").glob("*.h")]:
        shutil.copy2(header, staging / "include" / header.name)
    for name in LIBRARIES:
        found = sorted(build.rglob(f"lib{name}.a"))
        if not found:
            raise SlmLabError(f"The build made no lib{name}.a (static libraries were asked for).",
                              f"Run {SETUP_COMMAND} --force; if it happens again, read the build log.")
        shutil.copy2(found[0], staging / "lib" / found[0].name)
    shutil.copy2(tree / CONVERT_SCRIPT, staging / CONVERT_SCRIPT)
    for sub in PYTHON_TREES:
        shutil.copytree(tree / sub, staging / sub, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    if (tree / "LICENSE").is_file():
        shutil.copy2(tree / "LICENSE", staging / "LICENSE")


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename the complete build onto its final name (an older build there is replaced, then removed)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def _compiler_version() -> str:
    try:
        out = subprocess.run([_cxx_compiler() or "c++", "--version"], capture_output=True, text=True,
                             check=False).stdout
    except OSError:
        return "?"
    return out.splitlines()[0] if out else "?"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
