"""Every solution runs once, headlessly, with CI parameters: it passes its checks and its checked outputs
(`# NBVAL_CHECK_OUTPUT` cells) match the saved ones; in the same run, each check also runs once with its
exercises undone, as in the untouched lab (slmlab.course.undone), and fails. The labs are the solutions with the
solution blocks stripped (test_build_labs keeps labs/ in sync).

Together these prove no check is vacuous, and each notebook runs once. Also: `slmlab run` itself (parameters,
timeouts, summary), and the
comparison of checked outputs (slmlab.course.outputs) on a fixture notebook.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import (
    CHECKED_OUTPUTS,
    CI_PARAMETERS,
    LABS,
    NOTEBOOK_RUNS,
    SANITIZE_FILE,
    SOLUTIONS,
    TINY_SOLUTION,
    labs,
    solutions,
)
from slmlab.cli.course import register
from slmlab.course import check_cells
from slmlab.course.build import build_lab
from slmlab.course.execute import (
    PeakRSS,
    RunResult,
    declared_parameters,
    execute_tolerantly,
    parse_parameters,
    run_notebook,
    run_notebooks,
    stop_processes,
    summary_table,
)
from slmlab.course.outputs import (
    INJECTED_TAG,
    checked_cell_ids,
    is_checked,
    output_differences,
    read_sanitizers,
)
from slmlab.errors import SlmLabError
from used_home import SERVER_NOTEBOOKS

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# Checked cells whose saved output (a run with the notebook's defaults) cannot match a run with CI parameters,
# by notebook and cell id, with the parameter and why. They still run in CI, and their checks still count;
# `pytest --nbval-lax` on the notebook (its defaults) still compares them.
PARAMETER_DEPENDENT_OUTPUTS: dict[str, dict[str, str]] = {
    "02-local/01-ollama": {
        "ollama-08": "max_tokens=16 is the answer's num_predict: the saved 48-token answer stops a sentence early",
        "ollama-17": "max_tokens=16 is num_predict of the same options: a shorter answer",
    },
    "02-local/03-foundry-local": {
        "ebb9660d": "max_tokens=16 is the answer budget: '40 in, 16 out' where the saved run printed 48",
    },
    "02-local/06-testing-slm-apps": {
        "ef30ceb1": "fast=True labels 8 tickets, not 20: another accuracy on fewer tickets",
    },
}


# The notebooks whose defaults run other code than CI's parameters (fast=True, max_tokens=16): their one CI run
# uses their defaults, as a learner gets them (a superset of what fast=True runs). What the defaults add:
DEFAULTS_DIFFER: dict[str, str] = {
    "01-foundations/01-slm-landscape": "loads the model at n_ctx 512 and 8192 (CI: 2048 only)",
    "01-foundations/02-model-acquisition": "assembles the second bundled model, gemma-3-270m (CI skips it)",
    "01-foundations/04-onnx-and-olive": "the int8 ONNX variant too (CI: fp32 and int4)",
    "02-local/02-ollama-modelfiles": "the tutor and plain-chat Modelfiles, and the cells CI skips",
    "03-cloud/05-security-hardening": "every red-team case (CI: a subset)",
    "03-cloud/06-scaling-and-load-balancing": "the vertical-scaling comparison: one more server, two load tests",
    "03-cloud/07-cicd-and-readiness": "the pipeline's image and smoke stages (build, scan, run the containers)",
}
# ... and those whose defaults differ only in counts (repeats, requests, examples, concurrency levels) and
# max_tokens, or whose extra code an integration test runs and asserts: they run once with CI parameters.
CI_PARAMETERS_SUFFICE: dict[str, str] = {
    "00-setup-check": "the Ollama probe's timeout",
    "01-foundations/03-quantization-llamacpp": "7 quantization types instead of 3 through the same calls, every "
                                               "evaluation task, a 1024-token window, llama-imatrix on 4 chunks "
                                               "and llama-perplexity on 3 (CI: 2 and 1) (~5 min more)",
    "01-foundations/05-developer-apis": "how many tokens the agreement check compares",
    "01-foundations/06-optimization-frameworks": "scored tokens (64 vs 256) and llama-perplexity chunks (2 vs 4): "
                                                 "the same calls (~1 min more, most of it MLX's CPU backend)",
    "02-local/01-ollama": "rounds of the timing loop",
    "02-local/03-foundry-local": "repeats of the timing loop",
    "02-local/04-compare-and-benchmark": "prompts (CI: one; transformers runs in both)",
    "02-local/05-api-integration": "the story's prompt and max_tokens",
    "02-local/06-testing-slm-apps": "examples, golden tickets, timing calls and evaluated cases",
    "02-local/07-other-languages": "the question and max_tokens (the same programs run, each language once)",
    "03-cloud/01-vllm-openai-server": "the concurrency levels (1, 4) vs (1, 4, 8) and request counts",
    "03-cloud/02-containers-and-kubernetes": "every serving image rendered and checked (CI: llama.cpp and vLLM); the "
                                             "load test through the containers with Prometheus and the memory trial "
                                             "30 % below the footprint are test_containers.py's, asserted there",
    "03-cloud/03-onnx-runtime-service": "requests and the load test's time limit",
    "03-cloud/04-monitoring": "requests in the load test",
    "04-capstone/01-ship-an-slm-service": "7 quantization types instead of 4 through the same calls, 5 concurrency "
                                          "levels instead of 3, more requests and tokens per level",
}
BINDER_MEMORY_BYTES = 2 * 1024**3  # mybinder.org's limit: every solution must fit it or stop cleanly


def can_limit_memory() -> bool:
    """True where a memory cgroup can be made (root, a memory controller): CI and this machine."""
    from slmlab.course.memory_limit import MemoryCgroup

    try:
        with MemoryCgroup(BINDER_MEMORY_BYTES):
            return True
    except SlmLabError:
        return False


def ci_parameters(path: Path) -> dict:
    """The CI parameters this notebook declares."""
    declared = declared_parameters(path)
    return {k: v for k, v in CI_PARAMETERS.items() if k in declared}


def run_parameters(solution: Path) -> dict:
    """The parameters of a solution's one CI run: none (its defaults) where they run other code, else CI's."""
    return {} if notebook_key(solution) in DEFAULTS_DIFFER else ci_parameters(solution)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- the course notebooks


def notebook_key(path: Path) -> str:
    """solutions/02-local/01-ollama.ipynb -> 02-local/01-ollama (labs alike)."""
    folder = SOLUTIONS if path.is_relative_to(SOLUTIONS) else LABS
    return path.relative_to(folder).with_suffix("").as_posix()


def check_solution_run(solution: Path, result: RunResult, skip_outputs: list[str]) -> None:
    """A solution's run passed its checks (each printed ✓), saved no widget JSON, and its checked outputs match
    the saved ones except the cells in `skip_outputs`."""
    assert result.ok, f"{solution.name}: {result.error}"
    assert result.seconds > 0 and result.peak_rss_bytes > 50e6  # a kernel with a model loaded
    executed = nbformat.read(result.output, as_version=4)
    names = check_cells(executed)
    assert names, f"{solution.name} has no check cell"
    for name, index in names.items():
        text = "".join(o.get("text", "") for o in executed.cells[index].outputs)
        assert "✓" in text and "✗" not in text, f"check {name!r} printed no pass line"
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            assert WIDGET_MIME not in output.get("data", {}), "a headless run saved widget JSON"
    differences = output_differences(solution, result.output, sanitize_file=SANITIZE_FILE, skip=skip_outputs)
    assert not differences, "\n\n".join(map(str, differences))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("solution", solutions(), ids=lambda p: p.stem)
def test_solution_runs_with_papermill_and_passes_every_check(solution: Path, tmp_path: Path, request):
    """The one run of a solution in CI (its defaults where they run other code than CI's parameters), inside
    Binder's 2 GB (a memory cgroup, where this machine has one): its checks pass, each also fails with its
    exercises undone, and its checked outputs are the saved ones. The server notebooks run in a used HOME
    (tests/used_home.py), where test_used_machine runs them again. A notebook that needs more must stop cleanly at
    its first cells (MachineTooSmall, nothing heavy started); it then runs again without the limit."""
    limit = BINDER_MEMORY_BYTES if can_limit_memory() else None
    parameters = run_parameters(solution)
    key = notebook_key(solution)
    home = request.getfixturevalue("used_home") if key in SERVER_NOTEBOOKS else None
    with home.active() if home else contextlib.nullcontext():  # test_used_machine runs it there again
        [result] = run_notebooks([solution], parameters, output_dir=tmp_path, cell_timeout=300,
                                 progress_bar=False, memory_limit_bytes=limit, undo_exercises=True)
        if result.status == "skipped":
            assert "MachineTooSmall" in result.error and result.cgroup_peak_bytes < 1e9, result
            print(f"{solution.name}: stops cleanly at 2 GB ({result.seconds:.1f} s): {result.error}")
            [result] = run_notebooks([solution], parameters, output_dir=tmp_path / "unlimited",
                                     cell_timeout=300, progress_bar=False, undo_exercises=True)
    if home:
        home.record(key, result)
    request.config.stash[NOTEBOOK_RUNS].append(result)
    skip = [] if not parameters else list(PARAMETER_DEPENDENT_OUTPUTS.get(notebook_key(solution), {}))
    check_solution_run(solution, result, skip)
    check_undone(solution, result)


@pytest.mark.fast
def test_every_solution_says_whether_its_defaults_need_a_run_of_their_own():
    keys = {notebook_key(p) for p in solutions()}
    classified = set(DEFAULTS_DIFFER) | set(CI_PARAMETERS_SUFFICE)
    assert set(DEFAULTS_DIFFER).isdisjoint(CI_PARAMETERS_SUFFICE) and classified == keys, (
        "classify each notebook in DEFAULTS_DIFFER or CI_PARAMETERS_SUFFICE (tests/notebooks/test_notebooks.py): "
        f"missing {sorted(keys - classified)}, unknown {sorted(classified - keys)}")
    for key in DEFAULTS_DIFFER:
        assert "fast" in declared_parameters(SOLUTIONS / f"{key}.ipynb"), key


def check_undone(solution: Path, result: RunResult) -> None:
    """Every check of the run also ran once with its exercises undone (as in the untouched lab), and failed."""
    names = list(check_cells(nbformat.read(solution, as_version=4)))
    assert list(result.undone_checks) == names, f"{solution.name}: checks run undone {list(result.undone_checks)}"
    vacuous = [name for name, error in result.undone_checks.items() if error is None]
    assert not vacuous, f"{solution.name}: with their exercises undone these checks pass, so check nothing: {vacuous}"
    worse = {name: error for name, error in result.undone_checks.items() if error and error.startswith(
        ("CellTimeoutError", "DeadKernelError"))}
    assert not worse, worse


@pytest.mark.slow
@pytest.mark.notebooks
def test_a_vacuous_check_is_caught_and_undoing_leaves_the_solution_run_as_it_was(tmp_path: Path, capsys):
    nb = nbformat.read(TINY_SOLUTION, as_version=4)
    nb.cells.append(new_code_cell("# CHECK: vacuous\nprint('fine')", metadata={"tags": ["check"]}))
    path = tmp_path / "tiny-vacuous.ipynb"
    nbformat.write(nb, path)
    [result] = run_notebooks([path], {}, output_dir=tmp_path / "runs", cell_timeout=60, progress_bar=False,
                             undo_exercises=True)
    assert result.ok, result.error
    assert result.undone_checks.pop("vacuous") is None
    assert result.undone_checks and all(error for error in result.undone_checks.values()), result.undone_checks
    executed = nbformat.read(result.output, as_version=4)
    assert [c.source for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])] == [
        c.source for c in nb.cells]  # the undone runs left no cell of theirs in the notebook
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    capsys.readouterr()
    assert cli("run", str(path), "--undo-exercises", "--output-dir", str(tmp_path / "cli")) == 1
    out = capsys.readouterr().out
    assert "check 'vacuous' with its exercises undone PASSES" in out and "fails, as it must" in out


def running(pid: int) -> bool:
    """True while a process runs (a zombie waiting for init to reap it does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_a_tolerant_run_stops_the_servers_the_notebook_left_running(tmp_path: Path):
    # a server in a session of its own, as slmlab.process starts them, whose stop cell never runs
    start = ("import subprocess, sys\n"
             "sleeper = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
             "server = subprocess.Popen(sleeper, start_new_session=True)\n"
             "print(server.pid)")
    nb = new_notebook(cells=[new_code_cell(start), new_code_cell("# CHECK: last\nprint('ok')"),
                             new_code_cell("server.terminate()")], metadata={"kernelspec": KERNELSPEC})
    outcome = execute_tolerantly(nb, cwd=tmp_path, cell_timeout=60, stop_after=1)
    assert outcome.status == "ok" and outcome.executed == {0, 1}
    assert not running(int(nb.cells[0].outputs[0]["text"]))


@pytest.mark.fast
def test_stop_processes_kills_what_ignores_sigterm():
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    started, target = time.monotonic(), psutil.Process(proc.pid)
    stop_processes([target], grace=0.5)
    assert target.returncode == -signal.SIGKILL and time.monotonic() - started < 5  # SIGTERM, 0.5 s, SIGKILL


# ----------------------------------------------------------------------------- checked outputs


def executed_copy(nb: nbformat.NotebookNode, outputs: dict[str, list], injected: str = "n = 3") -> Any:
    """What papermill writes for ``nb``: an injected-parameters cell after the parameters cell, new outputs."""
    executed = copy.deepcopy(nb)
    executed.cells.insert(2, new_code_cell(injected, metadata={"tags": [INJECTED_TAG]}))
    for cell in executed.cells:
        if cell.get("id") in outputs:
            cell.outputs = [nbformat.from_dict(o) for o in outputs[cell.id]]
    return executed


def stdout(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


FRESH_OUTPUTS = {  # another machine, another folder, another speed: equal to the saved ones after sanitizing
    "square": [stdout("3 squared is 9\n"), stdout("took 1.5 ms in /tmp/pytest-of-ci/run0/outputs\n"),
               stdout("<object object at 0x55d0c0ffee00>\n")],
    "result": [{"output_type": "execute_result", "execution_count": 7, "metadata": {},
                "data": {"text/plain": "['a', 'b']"}}],
    "unchecked": [stdout("0.123456\n")],
}


@pytest.mark.fast
def test_checked_outputs_equal_after_sanitizing_pass(tmp_path: Path):
    saved = nbformat.read(CHECKED_OUTPUTS, as_version=4)
    nbformat.write(executed_copy(saved, FRESH_OUTPUTS), tmp_path / "executed.ipynb")
    assert checked_cell_ids(CHECKED_OUTPUTS) == ["square", "result"]
    assert output_differences(CHECKED_OUTPUTS, tmp_path / "executed.ipynb", sanitize_file=SANITIZE_FILE) == []
    # without the sanitize regexes, the timing, the folder and the address differ
    [raw] = output_differences(CHECKED_OUTPUTS, tmp_path / "executed.ipynb")
    assert raw.cell == 3 and "-took 0.012 ms in /home/learner/slm-course/solutions" in raw.diff


@pytest.mark.fast
def test_a_checked_output_that_differs_names_the_notebook_the_cell_and_the_difference(tmp_path: Path):
    saved = nbformat.read(CHECKED_OUTPUTS, as_version=4)
    fresh = {**FRESH_OUTPUTS, "square": [stdout("3 squared is 10\ntook 2 ms in /srv/ci/run\n<object object at 0x1>\n")],
             "result": [{"output_type": "execute_result", "execution_count": 3, "metadata": {},
                         "data": {"text/plain": "['a', 'b']", "text/html": "<ul><li>a</li><li>b</li></ul>"}}]}
    nbformat.write(executed_copy(saved, fresh), tmp_path / "executed.ipynb")
    square, result = output_differences(CHECKED_OUTPUTS, tmp_path / "executed.ipynb", sanitize_file=SANITIZE_FILE)
    message = str(square)
    assert "checked-outputs.ipynb, cell 3 (import time)" in message
    assert "-3 squared is 9\n+3 squared is 10" in message and "took TIME in PATH" in message
    assert result.cell == 4 and "+[text/html]" in result.diff  # a new kind of output is a difference too
    assert output_differences(CHECKED_OUTPUTS, tmp_path / "executed.ipynb", sanitize_file=SANITIZE_FILE,
                              skip=["square", "result"]) == []


@pytest.mark.fast
def test_which_cells_nbval_lax_compares():
    def cell(source: str, count: int | None = 1, tags: tuple = ()) -> nbformat.NotebookNode:
        return new_code_cell(source, execution_count=count, metadata={"tags": list(tags)})

    assert is_checked(cell("# NBVAL_CHECK_OUTPUT\nprint(1)"))
    assert is_checked(cell("print(1)", tags=("nbval-check-output",)))
    assert not is_checked(cell("print(1)"))  # lax: unmarked cells only have to run
    assert not is_checked(cell("# NBVAL_CHECK_OUTPUT\nprint(1)", count=None))  # the saved cell never ran
    assert not is_checked(cell("# NBVAL_CHECK_OUTPUT\n# NBVAL_SKIP\nprint(1)"))
    assert not is_checked(cell("# NBVAL_IGNORE_OUTPUT\nprint(1)", tags=("nbval-check-output",)))  # comments win


@pytest.mark.fast
def test_comparing_with_the_wrong_copy_or_a_missing_sanitize_file_says_what_to_do(tmp_path: Path):
    nbformat.write(nbformat.read(TINY_SOLUTION, as_version=4), tmp_path / "tiny.ipynb")
    with pytest.raises(SlmLabError, match="is not an executed copy of this notebook"):
        output_differences(CHECKED_OUTPUTS, tmp_path / "tiny.ipynb")
    with pytest.raises(SlmLabError, match="Cannot read the sanitize file"):
        read_sanitizers(tmp_path / "nope.cfg")
    (tmp_path / "bad.cfg").write_text("[broken]\nregex: (unclosed\nreplace: X\n")
    with pytest.raises(SlmLabError, match="does not compile"):
        read_sanitizers(tmp_path / "bad.cfg")


@pytest.mark.fast
def test_parameter_dependent_outputs_name_checked_cells_of_real_solutions():
    for key, cells in PARAMETER_DEPENDENT_OUTPUTS.items():
        checked = checked_cell_ids(SOLUTIONS / f"{key}.ipynb")
        for cell_id, why in cells.items():
            assert cell_id in checked, f"{key}: cell {cell_id} is not a checked cell (any more?)"
            assert any(f"{name}=" in why for name in CI_PARAMETERS), f"{key}, {cell_id}: name the CI parameter"


@pytest.mark.slow
def test_a_real_run_matches_the_saved_outputs_unless_a_parameter_changes_them(tmp_path: Path):
    same = run_notebook(CHECKED_OUTPUTS, tmp_path / "same.ipynb", progress_bar=False)
    assert same.ok and output_differences(CHECKED_OUTPUTS, same.output, sanitize_file=SANITIZE_FILE) == []
    other = run_notebook(CHECKED_OUTPUTS, tmp_path / "other.ipynb", {"n": 4}, progress_bar=False)
    [difference] = output_differences(CHECKED_OUTPUTS, other.output, sanitize_file=SANITIZE_FILE)
    assert "-3 squared is 9\n+4 squared is 16" in difference.diff


# ----------------------------------------------------------------------------- slmlab run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The model-free tiny notebook as solution and lab, plus one that sleeps."""
    folder = tmp_path_factory.mktemp("tiny")
    paths = {"solution": folder / "tiny.ipynb", "lab": folder / "tiny-lab.ipynb", "sleepy": folder / "sleepy.ipynb"}
    solution = nbformat.read(TINY_SOLUTION, as_version=4)
    nbformat.write(solution, paths["solution"])
    nbformat.write(build_lab(solution), paths["lab"])
    sleepy = new_notebook(cells=[new_code_cell("seconds = 30", metadata={"tags": ["parameters"]}),
                                 new_code_cell("import time\ntime.sleep(seconds)")],
                          metadata={"kernelspec": KERNELSPEC})
    nbformat.write(sleepy, paths["sleepy"])
    return paths


@pytest.mark.slow
def test_run_cli_injects_parameters_and_prints_a_summary(tiny, tmp_path: Path, capsys):
    out = tmp_path / "runs"
    assert cli("run", str(tiny["solution"]), "-p", "n=4", "--output-dir", str(out)) == 0
    printed = capsys.readouterr()
    assert "notebook" in printed.out and "peak_rss_mb" in printed.out and " ok " in printed.out
    assert "tiny.ipynb" in printed.err  # the per-notebook progress bar
    executed = nbformat.read(out / "tiny.ipynb", as_version=4)
    assert "n = 4" in executed.cells[2].source and "injected-parameters" in executed.cells[2].metadata.tags
    assert "✓ square(n) is 16" in executed.cells[4].outputs[0]["text"]


@pytest.mark.slow
def test_run_reports_a_failing_notebook_and_exits_1(tiny, tmp_path: Path, capsys):
    assert cli("run", str(tiny["solution"]), str(tiny["lab"]), "--output-dir", str(tmp_path)) == 1
    table = capsys.readouterr().out
    assert "failed" in table and "NotImplementedError: multiply x by itself" in table
    assert (tmp_path / "tiny-lab.ipynb").exists()  # the executed copy is kept for reading


@pytest.mark.slow
def test_run_stops_a_cell_at_its_timeout(tiny, tmp_path: Path):
    result = run_notebook(tiny["sleepy"], tmp_path / "sleepy.ipynb", cell_timeout=2, progress_bar=False)
    assert result.status == "timeout" and "longer than 2 s" in result.error
    assert result.seconds < 20
    table = summary_table([result])
    assert list(table.columns) == ["notebook", "status", "seconds", "peak_rss_mb", "output", "error"]


@pytest.mark.fast
def test_unknown_parameter_names_the_declared_ones(tiny):
    with pytest.raises(SlmLabError) as err:
        run_notebooks([tiny["solution"]], {"max_token": 16})
    assert "has no parameter 'max_token'" in str(err.value) and "n, fast" in str(err.value)


@pytest.mark.fast
def test_missing_notebook_and_missing_parameters_cell(tmp_path: Path):
    with pytest.raises(SlmLabError, match="Notebook not found"):
        declared_parameters(tmp_path / "nope.ipynb")
    nb = new_notebook(cells=[new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "plain.ipynb")
    with pytest.raises(SlmLabError, match="no cell tagged 'parameters'"):
        run_notebooks([tmp_path / "plain.ipynb"])


@pytest.mark.fast
def test_parameter_values_are_literals_where_possible():
    assert parse_parameters(["max_tokens=16", "fast=True", "ok=true", "model=smollm2-135m-instruct",
                             "ratio=0.5", "sizes=[1, 2]", "name='quoted'", "empty=", "expr=1+1"]) == {
        "max_tokens": 16, "fast": True, "ok": True, "model": "smollm2-135m-instruct", "ratio": 0.5,
        "sizes": [1, 2], "name": "quoted", "empty": "", "expr": "1+1",
    }
    with pytest.raises(SlmLabError, match="-p name=value"):
        parse_parameters(["no-equals-sign"])


@pytest.mark.fast
def test_peak_rss_sees_a_child_process():
    code = "import time; block = bytearray(150_000_000); block[::4096] = b'x' * len(block[::4096]); time.sleep(1)"
    with PeakRSS(interval=0.05) as rss:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert rss.peak_bytes > 150e6


@pytest.mark.fast
def test_output_names_do_not_collide(tmp_path: Path):
    from slmlab.course.execute import output_paths

    paths = [Path("solutions/a.ipynb"), Path("labs/a.ipynb"), Path("labs/b.ipynb")]
    assert output_paths(paths, tmp_path) == [tmp_path / "solutions-a.ipynb", tmp_path / "labs-a.ipynb",
                                             tmp_path / "b.ipynb"]


@pytest.mark.fast
def test_labs_folder_has_only_generated_notebooks():
    for lab in labs():
        nb = json.loads(lab.read_text())
        assert all(not c.get("outputs") for c in nb["cells"]), f"{lab} has outputs"
    assert LABS.is_dir()
