"""slmlab.process.run_worker / worker_main: one job in a fresh Python process, its JSON result or its error."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

import slmlab
from slmlab.errors import SlmLabError, UpstreamError
from slmlab.process import WORKER_ERROR_KEY, run_worker

CHILD = '''
import os, signal, subprocess, sys, time
from slmlab.errors import SlmLabError, UpstreamError
from slmlab.process import worker_main

def main(argv):
    job = argv[1]
    print("step 1 of 2", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    if job == "ok":
        return {"argv": argv, "nan": float("nan")}
    if job == "problem":
        raise SlmLabError("The model is missing.", "Download it first.")
    if job == "upstream":
        raise UpstreamError("The server did not answer.", "Start it.")
    if job == "crash":
        raise RuntimeError("boom")
    if job == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if job == "silent":
        sys.exit(0)
    if job == "sleep":
        with open(argv[2], "w") as fh:  # a grandchild in the same process group
            fh.write(str(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid))
        time.sleep(60)

if __name__ == "__main__":
    worker_main(main)
'''


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A worker module, and the environment that lets `python -m` find it and slmlab."""
    folder = tmp_path_factory.mktemp("worker")
    (folder / "tiny_worker.py").write_text(textwrap.dedent(CHILD))
    paths = [str(folder), str(Path(slmlab.__file__).parents[1]), os.environ.get("PYTHONPATH")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.mark.fast
def test_the_result_is_the_last_json_line(child, tmp_path: Path):
    log = tmp_path / "job.log"
    result = run_worker("tiny_worker", ["ok", Path("/x")], env=child, log_path=log)
    assert result["argv"] == ["--worker", "ok", "/x"] and result["nan"] != result["nan"]
    text = log.read_text()
    assert "step 1 of 2" in text and "a warning on stderr" in text and '"argv"' in text


@pytest.mark.fast
def test_echo_shows_the_output_but_not_the_result_line(child, capsys):
    run_worker("tiny_worker", ["ok"], env=child, echo=True)
    out = capsys.readouterr().out
    assert "step 1 of 2" in out and "a warning on stderr" in out and '"argv"' not in out


@pytest.mark.fast
@pytest.mark.parametrize("job,kind", [("problem", SlmLabError), ("upstream", UpstreamError)])
def test_the_childs_error_is_raised_again_intact(child, job, kind, capsys):
    with pytest.raises(kind) as err:
        run_worker("tiny_worker", [job], env=child, echo=True)
    assert type(err.value) is kind and err.value.problem.endswith(".")
    assert err.value.hint.startswith(("Download", "Start"))
    assert WORKER_ERROR_KEY not in capsys.readouterr().out


@pytest.mark.fast
@pytest.mark.parametrize("job,status,tail", [
    ("crash", "exit code 1", "RuntimeError: boom"),
    ("killed", "killed by SIGKILL", "a warning on stderr"),
    ("silent", "exit code 0 without printing its JSON result", "a warning on stderr"),
])
def test_a_crash_says_how_it_ended_and_its_last_lines(child, job, status, tail):
    with pytest.raises(SlmLabError) as err:
        run_worker("tiny_worker", [job], env=child, what="The tiny job", hint="Check the input.")
    assert err.value.problem.startswith(f"The tiny job failed ({status}") and tail in err.value.problem
    assert err.value.hint.startswith("Check the input. Run it by hand") and "tiny_worker --worker" in err.value.hint


@pytest.mark.fast
def test_a_timeout_stops_the_child_and_what_it_started(child, tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    start = time.monotonic()
    with pytest.raises(SlmLabError, match="took longer than 3 s"):
        run_worker("tiny_worker", ["sleep", pid_file], env=child, timeout=3)
    assert time.monotonic() - start < 20
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # killed with its group; gone once its parent (init) reaps it
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        import psutil

        assert psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
