"""slmlab.languages.programs: a program's own message on failure, its process group gone afterwards."""

from __future__ import annotations

import os
import sys
import time

import pytest

from slmlab.errors import SlmLabError
from slmlab.languages import new_workdir, source_dir, write_source
from slmlab.languages.programs import CompileError, ProgramFailed, last_json, run_program

pytestmark = pytest.mark.fast


def test_success_output_and_echo(capsys):
    run = run_program([sys.executable, "-c", "print('hello'); import json; print(json.dumps({'n': 3}))"], echo=True)
    assert run.returncode == 0 and last_json(run.stdout) == {"n": 3}
    shown = capsys.readouterr().out
    assert shown.startswith("$ ") and "hello" in shown


def test_a_compiler_failure_shows_the_compilers_message():
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('Bad.cs(1,29): error CS1525: Unexpected symbol\\n'); "
           "sys.exit(1)"]
    with pytest.raises(CompileError) as err:
        run_program(cmd, what="mcs", compiler=True)
    assert "Bad.cs(1,29): error CS1525" in err.value.problem and "exit code 1" in err.value.problem


def test_a_program_failure_and_a_missing_program():
    with pytest.raises(ProgramFailed, match="cannot reach the server"):
        run_program([sys.executable, "-c", "import sys; sys.exit('error: cannot reach the server')"])
    with pytest.raises(ProgramFailed, match="was not found"):
        run_program(["no-such-program-xyz"])


def test_a_timeout_kills_the_whole_group(tmp_path):
    marker = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    with pytest.raises(ProgramFailed, match="did not finish within 2 s"):
        run_program([sys.executable, "-c", script], timeout=2)
    child = int(marker.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the program's child outlived it")


def test_last_json_and_its_absence():
    assert last_json("x\n{\"a\": 1}\n{\"b\": 2}\ntrailing") == {"b": 2}
    with pytest.raises(SlmLabError, match="no JSON result line"):
        last_json("nothing here")


def test_workdir_is_a_copy_of_the_package_data(tmp_path):
    work = new_workdir("node", parent=tmp_path)
    assert (work / "package-lock.json").read_bytes() == (source_dir("node") / "package-lock.json").read_bytes()
    assert not (work / "node_modules").exists()
    assert sorted(p.name for p in new_workdir("csharp", parent=tmp_path).glob("*.cs")) == [
        "Client.cs", "Ollama.cs", "RetryDemo.cs", "Service.cs"]
    assert (new_workdir("cpp", parent=tmp_path) / "CMakeLists.txt").exists()
    path = write_source(work, "budget.mjs", "export const x = 1;")
    assert path.read_text() == "export const x = 1;\n"
    with pytest.raises(SlmLabError, match="empty"):
        write_source(work, "budget.mjs", "  ")
    with pytest.raises(SlmLabError, match="No sources for 'rust'"):
        source_dir("rust")


def test_the_lock_file_pins_the_packages_package_json_names():
    import json

    package = json.loads((source_dir("node") / "package.json").read_text())
    lock = json.loads((source_dir("node") / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
