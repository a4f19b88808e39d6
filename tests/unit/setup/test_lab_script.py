"""./lab on bad ground: no root and no sudo, no package index, an interrupted run, a step slmlab lacks, a failed group.

Each test runs the real script in a temporary copy of the checkout (the script and pyproject.toml) with its own HOME and
a PATH whose first folder holds stand-ins for the machine's tools (id, sudo, dpkg-query, apt-get, slmlab, pytest) that
write down how they were called. The virtualenv and pip are real where the test is about them (the package index is a
dead port, a port that never answers, or a local index with a small wheel named torch); the course's own venv is never
touched.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parents[3]
SYSTEM = subprocess.run(["bash", "-c", f'source "{ROOT}/lab"; echo "${{SYSTEM_PACKAGES[*]}}"'],  # ./lab's own list
                        capture_output=True, text=True, check=True).stdout.strip()


def without(*names: str) -> str:
    """./lab's system packages, less these, in its order."""
    return " ".join(package for package in SYSTEM.split() if package not in names)


APT_LINE = f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {SYSTEM}"

TOOLS = {
    # `id -u` answers $FAKE_UID; anything else is the real id
    "id": '[ "$1" = -u ] && { echo "${FAKE_UID:-1000}"; exit 0; }; exec /usr/bin/id "$@"',
    # password-less sudo when FAKE_SUDO=ok, else sudo that wants a password
    "sudo": '[ "$FAKE_SUDO" = ok ] || { echo "sudo: a password is required" >&2; exit 1; }\n'
            '[ "$*" = "-n true" ] && exit 0\necho "sudo $*" >>"$FAKE_CALLS"\n[ "$1" = -n ] && shift; exec "$@"',
    # the packages in $FAKE_INSTALLED are installed
    "dpkg-query": 'for p; do :; done\n'
                  'case " $FAKE_INSTALLED " in *" $p "*) printf "install ok installed"; exit 0;; esac\n'
                  'echo "dpkg-query: no packages found matching $p" >&2; exit 1',
    # the package lists know every package but those in $FAKE_UNKNOWN (Ubuntu has no chromium, chromium-driver)
    "apt-cache": 'case " $FAKE_UNKNOWN " in *" $2 "*) echo "E: No packages found" >&2; exit 100;; esac; exit 0',
    "apt-get": 'echo "apt-get $* (uid $(id -u), DEBIAN_FRONTEND=$DEBIAN_FRONTEND)" >>"$FAKE_CALLS"\n'
               '[ "$1" = update ] && [ -n "$FAKE_APT_OFFLINE" ] && {\n'
               '  echo "Err:1 http://deb.debian.org/debian bookworm InRelease"\n'
               '  echo "  Temporary failure resolving \'deb.debian.org\'"; exit 100; }\nexit 0',
    # a slmlab whose `setup` has only vllm and onnx (no llamacpp, no containers yet)
    "slmlab": 'echo "slmlab $*" >>"$FAKE_CALLS"\ncase "$*" in\n'
              '  "setup --help") echo "usage: slmlab setup [-h] {vllm,onnx} ...";;\n'
              '  "doctor") echo "(doctor table)";;\nesac\nexit 0',
    "pytest": 'echo "pytest $*" >>"$FAKE_CALLS"\n[ "$*" = "-m fast" ] && exit 1; exit 0',
}


def checkout(tmp_path: Path) -> Path:
    """A temporary checkout with ./lab, pyproject.toml and the stand-in tools in bin/."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("lab", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in TOOLS.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    (tmp_path / "home").mkdir()
    (tmp_path / "calls").touch()
    return repo


def lab_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: stand-ins first on the PATH, then the system; its own HOME and caches."""
    return {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
            "FAKE_CALLS": str(tmp_path / "calls"), "SLMLAB_CACHE": str(tmp_path / "home" / "slmlab"), **extra}


def run_lab(tmp_path: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tmp_path / "repo" / "lab"), *args], env=lab_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=timeout)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def step_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if f"] {name} " in line)


def test_without_root_or_sudo_the_system_step_prints_the_apt_line_and_the_rest_carries_on(tmp_path):
    checkout(tmp_path)
    run = run_lab(tmp_path, "setup", "--only", "system", "--only", "onnx", "--only", "llamacpp")
    assert run.returncode == 0, run.stdout + run.stderr
    line = step_line(run.stdout, "system packages")
    assert "skipped" in line and f"missing: {SYSTEM} (no root, no password-less sudo)" in line
    left = run.stdout.split("== left for you\n", 1)[1]
    assert APT_LINE in left  # the one line to run, printed after doctor's table
    assert not [call for call in calls(tmp_path) if call.startswith("apt-get")]
    assert "done" in step_line(run.stdout, "ONNX models") and "slmlab setup onnx" in calls(tmp_path)
    # a `slmlab setup` step this slmlab does not have yet is skipped, not failed
    assert "this slmlab has no `slmlab setup llamacpp` yet" in step_line(run.stdout, "llama.cpp tools")
    assert "(doctor table)" in run.stdout and "slmlab doctor" in calls(tmp_path)


def test_with_password_less_sudo_or_as_root_apt_installs_only_what_is_missing(tmp_path):
    checkout(tmp_path)
    run = run_lab(tmp_path, "setup", "--only", "system", FAKE_SUDO="ok", FAKE_INSTALLED="nginx chromium")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"installed: {without('nginx', 'chromium')}" in step_line(run.stdout, "system packages")
    made = calls(tmp_path)
    assert made[:2] == ["sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update",
                        "apt-get update (uid 1000, DEBIAN_FRONTEND=noninteractive)"]
    assert f"apt-get install -y --no-install-recommends {without('nginx', 'chromium')} (uid 1000, " \
           "DEBIAN_FRONTEND=noninteractive)" in made
    (tmp_path / "calls").write_text("")
    run = run_lab(tmp_path, "setup", "--only", "system", FAKE_UID="0", FAKE_INSTALLED="nginx")
    assert run.returncode == 0 and not [call for call in calls(tmp_path) if call.startswith("sudo")]
    assert f"apt-get install -y --no-install-recommends {SYSTEM.replace('nginx ', '')} (uid 0, " \
           "DEBIAN_FRONTEND=noninteractive)" in calls(tmp_path)
    (tmp_path / "calls").write_text("")
    run = run_lab(tmp_path, "setup", "--only", "system", FAKE_UID="0", FAKE_INSTALLED=SYSTEM)
    assert "skipped" in step_line(run.stdout, "system packages") and calls(tmp_path) == ["slmlab doctor"]


def test_a_setup_step_without_a_working_slmlab_runs_and_its_failure_says_why(tmp_path):
    checkout(tmp_path)
    (tmp_path / "bin" / "slmlab").unlink()  # the package step never finished
    run = run_lab(tmp_path, "setup", "--only", "onnx")
    assert run.returncode == 1
    assert "failed" in step_line(run.stdout, "ONNX models") and "slmlab: " in run.stdout  # the log's last lines
    assert "== slmlab is not installed yet" in run.stdout


def test_packages_the_distribution_lacks_are_named_and_the_others_installed(tmp_path):
    checkout(tmp_path)
    ubuntu = {"FAKE_UNKNOWN": "chromium chromium-driver"}
    run = run_lab(tmp_path, "setup", "--only", "system", FAKE_UID="0", **ubuntu)
    assert run.returncode == 0, run.stdout + run.stderr
    apt_has = without("chromium", "chromium-driver")
    assert f"installed: {apt_has}; not in this distribution: chromium chromium-driver" in run.stdout
    assert (f"apt-get install -y --no-install-recommends {apt_has} (uid 0, "
            "DEBIAN_FRONTEND=noninteractive)") in calls(tmp_path)
    assert "sudo snap install chromium" in run.stdout.split("== left for you", 1)[1]
    run = run_lab(tmp_path, "setup", "--only", "system", **ubuntu)  # no root: the line to run has what apt has
    assert f"sudo apt-get install -y --no-install-recommends {apt_has}\n" in run.stdout


def test_apt_without_its_mirror_fails_its_step_only(tmp_path):
    checkout(tmp_path)
    run = run_lab(tmp_path, "setup", "--only", "system", "--only", "onnx", FAKE_UID="0", FAKE_APT_OFFLINE="1")
    assert run.returncode == 1  # a failed step fails the set-up …
    assert "failed" in step_line(run.stdout, "system packages")
    assert "Temporary failure resolving 'deb.debian.org'" in run.stdout  # … shows its log's last lines …
    assert "Nothing else needs these packages: the set-up carries on" in run.stdout
    assert "done" in step_line(run.stdout, "ONNX models")  # … and the rest carries on
    assert "== failed steps: system packages" in run.stdout


def test_lab_test_runs_every_group_after_a_failure_and_prints_the_timing_table(tmp_path):
    checkout(tmp_path)
    run = run_lab(tmp_path, "test", "--only", "system", FAKE_INSTALLED=SYSTEM)
    assert run.returncode == 1, run.stdout + run.stderr  # the fast group failed
    assert [call for call in calls(tmp_path) if call.startswith("pytest")] == [
        "pytest -m fast", "pytest -m not fast and not notebooks", "pytest -m notebooks and not fast"]
    table = run.stdout.split("== timing", 1)[1].splitlines()
    rows = {line[:24].strip(): line[24:].split() for line in table[2:-1]}
    assert rows["fast tests"][2:] == ["failed", "(pytest", "exit", "1)"] and rows["notebooks"][2] == "ok"
    assert rows["system packages"][2] == "skipped" and rows["venv+torch"][2] == "skipped"
    assert table[-1] == "every phase within its budget"
    (tmp_path / "calls").write_text("")
    run = run_lab(tmp_path, "test", "notebooks", "--only", "system", "--", "-x", FAKE_INSTALLED=SYSTEM)
    assert run.returncode == 0 and [c for c in calls(tmp_path) if c.startswith("pytest")] == [
        "pytest -m notebooks and not fast -x"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_env(tmp_path: Path, index: str) -> dict[str, str]:
    """The environment of a real venv step: a real Python 3.11, pip pointed at `index`, and nothing else to fall on."""
    return {"LAB_PYTHON": sys.executable, "LAB_TORCH_INDEX": index, "PIP_INDEX_URL": index, "PIP_RETRIES": "0",
            "PIP_TIMEOUT": "60", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
            "PIP_CONFIG_FILE": os.devnull}  # this machine's pip.conf (mirrors, constraints) stays out of it


def test_without_the_package_index_the_failure_names_the_package_and_what_is_cached(tmp_path):
    checkout(tmp_path)
    built = tmp_path / "pip-cache" / "wheels" / "a7" / "aa" / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"a wheel pip built before")
    (tmp_path / "home" / "slmlab" / "converted").mkdir(parents=True)
    dead = f"http://127.0.0.1:{free_port()}/simple"
    run = run_lab(tmp_path, "setup", **venv_env(tmp_path, dead))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed" in step_line(run.stdout, "venv+torch")
    assert f"No network to the package index ({dead}): pip could not download torch==2.13.0." in run.stdout
    cached = next(line for line in run.stdout.splitlines() if "Cached on this machine" in line)
    assert "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl" in cached and "converted" in cached
    assert "The set-up stopped here" in run.stdout and "] pip install" not in run.stdout  # nothing needs a broken venv
    assert not (tmp_path / "repo" / ".venv" / ".lab-stamps" / "venv").exists()  # never counted as done


def small_wheel(folder: Path, name: str = "torch", version: str = "2.13.0") -> None:
    """A pure-Python wheel that pip installs like the real one (the test needs pip to finish, not PyTorch)."""
    folder.mkdir(parents=True)
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "# stands in for the real package in tests/unit/setup\n")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"{name}/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")


@contextmanager
def local_index(folder: Path) -> Iterator[str]:
    """`folder` served on 127.0.0.1 (its folder listings are a package index pip reads)."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_an_interrupted_run_resumes_and_never_counts_a_half_done_step(tmp_path):
    repo = checkout(tmp_path)
    stamp, log = repo / ".venv" / ".lab-stamps" / "venv", repo / ".lab" / "logs" / "venv.log"
    with socket.socket() as silent:  # accepts connections, never answers: pip waits until it is interrupted
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = lab_env(tmp_path, **venv_env(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/simple"))
        lab = subprocess.Popen([str(repo / "lab"), "setup", "--only", "venv"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 90
        while "Looking in indexes" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        out, _ = lab.communicate(timeout=180)  # generous: a loaded CI machine is slow to unwind pip
    assert lab.returncode == 130, out
    assert "interrupted during 'venv+torch': run ./lab again to resume" in out
    assert (repo / ".venv" / "bin" / "python").exists() and not stamp.exists()
    (repo / ".venv" / "mine").write_text("kept: a working venv is reused, not made again")

    small_wheel(tmp_path / "index" / "torch")
    with local_index(tmp_path / "index") as index:
        run = run_lab(tmp_path, "setup", "--only", "venv", **venv_env(tmp_path, index))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "done" in step_line(run.stdout, "venv+torch") and "torch 2.13.0" in run.stdout
        assert stamp.exists() and (repo / ".venv" / "mine").exists()
        run = run_lab(tmp_path, "setup", "--only", "venv", **venv_env(tmp_path, index))
        assert "skipped" in step_line(run.stdout, "venv+torch") and "done before" in run.stdout  # the second run

        # a venv left without pip (`python -m venv` interrupted) is made again, not trusted
        shutil.rmtree(next((repo / ".venv" / "lib").glob("python3*/site-packages/pip")))
        run = run_lab(tmp_path, "setup", "--only", "venv", **venv_env(tmp_path, index))
        assert run.returncode == 0 and "done" in step_line(run.stdout, "venv+torch"), run.stdout
        assert not (repo / ".venv" / "mine").exists() and stamp.exists()


def test_the_package_step_runs_again_only_when_pyproject_changes(tmp_path):
    repo = checkout(tmp_path)
    python = tmp_path / "bin" / "python"  # pip as a stand-in: this test is about when the step runs
    python.write_text('#!/bin/sh\necho "python $*" >>"$FAKE_CALLS"\n[ "$1" = -VV ] && echo "Python 3.11.7"\nexit 0\n')
    python.chmod(0o755)
    script = f'source "{repo}/lab"; STAMPS="{tmp_path}/stamps"; RECHECK=""; step_package; echo "skipped=$STEP_SKIPPED"'
    first = subprocess.run(["bash", "-c", script], env=lab_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert first.stdout.strip().endswith("skipped=") and 'python -m pip install -e .[all]' in calls(tmp_path)
    again = subprocess.run(["bash", "-c", script], env=lab_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert again.stdout.strip().endswith("skipped=1")
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# a new pin\n")
    changed = subprocess.run(["bash", "-c", script], env=lab_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert changed.stdout.strip().endswith("skipped=")
    assert calls(tmp_path).count("python -m pip install -e .[all]") == 2


def test_bad_arguments_name_the_valid_ones(tmp_path):
    checkout(tmp_path)
    run = run_lab(tmp_path, "--skip", "vlm")
    steps = "venv pip system onnx llamacpp containers vllm olive litert"
    assert run.returncode == 2 and f"no step 'vlm'; the steps are: {steps}" in run.stderr
    run = run_lab(tmp_path, "test", "unit")
    assert run.returncode == 2 and "the test groups are: fast integration notebooks" in run.stderr
