"""Every solution runs headlessly with CI parameters and passes its checks; every lab fails all of its checks.

Together these prove no check is vacuous. Also: `slmlab run` itself (parameters, timeouts, summary).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import CI_PARAMETERS, LABS, NOTEBOOK_RUNS, TINY_SOLUTION, labs, solutions
from slmlab.cli.course import register
from slmlab.course import check_cells
from slmlab.course.build import build_lab
from slmlab.course.execute import (
    PeakRSS,
    declared_parameters,
    execute_tolerantly,
    parse_parameters,
    run_notebook,
    run_notebooks,
    summary_table,
)
from slmlab.course.grade import prepare_submission
from slmlab.errors import SlmLabError

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def ci_parameters(path: Path) -> dict:
    """The CI parameters this notebook declares."""
    declared = declared_parameters(path)
    return {k: v for k, v in CI_PARAMETERS.items() if k in declared}


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- the course notebooks


@pytest.mark.slow
@pytest.mark.parametrize("solution", solutions(), ids=lambda p: p.stem)
def test_solution_runs_with_papermill_and_passes_every_check(solution: Path, tmp_path: Path, request):
    [result] = run_notebooks([solution], ci_parameters(solution), output_dir=tmp_path, cell_timeout=300,
                             progress_bar=False)
    request.config.stash[NOTEBOOK_RUNS].append(result)
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


def passing_checks(lab: nbformat.NotebookNode, parameters: dict) -> tuple[list[str], str]:
    """Run a lab as a learner would hand it in untouched; the checks that pass, and the run status."""
    nb = prepare_submission(lab, lab, parameters)
    names = check_cells(nb)
    assert names, "the lab has no check cell"
    with tempfile.TemporaryDirectory() as tmp:
        outcome = execute_tolerantly(nb, cwd=tmp, cell_timeout=300, timeout=600)
    return [name for name, index in names.items() if index not in outcome.errors], outcome.status


@pytest.mark.slow
@pytest.mark.parametrize("lab", labs(), ids=lambda p: p.stem)
def test_untouched_lab_fails_every_check(lab: Path):
    passed, status = passing_checks(nbformat.read(lab, as_version=4), ci_parameters(lab))
    assert not passed, f"{lab.name}: these checks pass without any work, so they check nothing: {passed}"
    assert status == "error"  # the exercises raise NotImplementedError, nothing worse


@pytest.mark.slow
def test_a_vacuous_check_is_caught():
    lab = build_lab(nbformat.read(TINY_SOLUTION, as_version=4))
    lab.cells.append(new_code_cell("# CHECK: vacuous\nprint('fine')", metadata={"tags": ["check"]}))
    assert passing_checks(lab, {})[0] == ["vacuous"]


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
                          metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
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
