"""README, .ci/run, environment.yml (Binder) and devcontainer.json (Codespaces) install the same thing."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from _pytest.mark.expression import Expression
from packaging.requirements import Requirement

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NO_AMX = '-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'
CI_PHASES = ["venv+torch", "pip install", "system packages", "ONNX models", "vLLM venv", "fast tests",
             "unit/integration tests", "notebooks"]


def pyproject_requirements() -> set[str]:
    """Core dependencies plus every extra except the `all` umbrella, normalized."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "all":
            reqs += extra
    return {str(Requirement(r)) for r in reqs}


def readme_block(heading: str) -> list[str]:
    """Command lines of the first bash block under a README heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_all_extra_covers_every_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"]) - {"all"}
    umbrella = Requirement(project["optional-dependencies"]["all"][0])
    assert umbrella.name == "slmlab" and umbrella.extras == extras


def test_every_dependency_is_pinned():
    loose = [r for r in pyproject_requirements() if not re.search(r"==[\w.+]+$", r)]
    assert not loose, f"pin these in pyproject.toml: {loose}"


def test_environment_yml_installs_exactly_pyprojects_dependencies_with_cpu_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    options = [p for p in pip if p.startswith("-")]
    assert options == [f"--extra-index-url {CPU_INDEX}"]
    assert {str(Requirement(p)) for p in pip if not p.startswith("-")} == pyproject_requirements()


def test_binder_scripts_install_the_package_and_cap_threads():
    post_build = (ROOT / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build
    assert readme_block("Prebuilt ONNX models") == ["slmlab setup onnx"]
    assert "slmlab setup onnx" in post_build.splitlines()
    assert "OMP_NUM_THREADS=1" in (ROOT / "start").read_text() and 'exec "$@"' in (ROOT / "start").read_text()
    for script in ("postBuild", "start"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} must be executable"


def test_readme_setup_installs_cpu_torch_then_everything():
    setup = readme_block("Set up")
    assert any(f"--index-url {CPU_INDEX} torch==" in line for line in setup)
    assert setup[-1] == 'pip install -e ".[all]"'
    torch_pin = next(r for r in pyproject_requirements() if r.startswith("torch=="))
    assert any(line.endswith(torch_pin) for line in setup), "README's torch must match pyproject's pin"
    # llama.cpp is compiled by the last line, without AMX on x86 (ldtilecfg faults on some VMs)
    assert f'export CFLAGS="{NO_AMX}" CXXFLAGS="{NO_AMX}"' in setup[-2] and "x86_64" in setup[-2]
    assert readme_block("Open the course") == ["jupyter lab labs/"]


def test_ci_runs_the_readme_commands_verbatim_and_in_order():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    blocks = ("Set up", "Prebuilt ONNX models", "Servers for parts 2 and 3 (Debian/Ubuntu)", "Run the tests")
    for name in blocks:
        at = -1
        for line in readme_block(name):
            assert line in ci[at + 1 :], f".ci/run lacks the README line (or has it out of order): {line}"
            at = ci.index(line, at + 1)


def test_the_readme_test_groups_are_the_whole_suite_each_test_in_one_group():
    groups = readme_block("Run the tests")
    expressions = []
    for line in groups:
        words = shlex.split(line)
        assert words[:2] == ["pytest", "-m"] and len(words) == 3, f"a group is `pytest -m EXPR`, no paths: {line}"
        expressions.append(Expression.compile(words[2]))
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert pytest_ini["testpaths"] == ["tests"]  # solutions/ run once, inside the notebooks group, not again by nbval
    markers = [m.split(":")[0] for m in pytest_ini["markers"]]
    assert {"fast", "notebooks"} <= set(markers)
    for marked in itertools.product([False, True], repeat=len(markers)):
        names = {m for m, on in zip(markers, marked, strict=True) if on}
        has_marker = names.__contains__
        chosen = [line for line, e in zip(groups, expressions, strict=True) if e.evaluate(has_marker)]
        assert len(chosen) == 1, f"a test marked {sorted(names) or 'nothing'} runs in {len(chosen)} groups: {chosen}"


def ci_functions(script: str) -> str:
    """Run bash lines after sourcing .ci/run (which then only defines its phases and functions)."""
    run = subprocess.run(["bash", "-c", f'source "{ROOT}/.ci/run"\n{script}'], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_ci_phases_have_budgets_that_fit_ci():
    phases = ci_functions('printf "%s\\n" "${PHASES[@]}"; echo "${BUDGETS[*]}"; echo "$CI_MINUTES"').splitlines()
    budgets, total = [int(b) for b in phases[-2].split()], int(phases[-1])
    assert phases[:-2] == CI_PHASES and len(budgets) == len(CI_PHASES) and all(b > 0 for b in budgets)
    assert total == 90 and sum(budgets) <= total
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(f'begin_phase "{phase}"' in ci for phase in CI_PHASES)


def test_ci_timing_table_names_the_phases_that_went_over():
    table = ci_functions("""
        SECONDS=0; begin_phase "venv+torch"; SECONDS=600; begin_phase "pip install"; SECONDS=700
        begin_phase "fast tests"; SECONDS=760; record_tests 1; begin_phase "notebooks"; SECONDS=900; record_tests 5
        finish_phase ok; timing_table""")
    rows = {line[:24].strip(): line[24:].split() for line in table.splitlines()[2:-1]}
    assert rows["venv+torch"][:3] == ["10.0", "3", "ok"] and rows["pip install"][:3] == ["1.7", "20", "ok"]
    assert rows["system packages"] == ["-", "4", "not", "run"]
    assert rows["fast tests"][2:] == ["failed", "(pytest", "exit", "1)"]
    assert rows["notebooks"][2:4] == ["no", "tests"] and rows["total"] == ["15.0", "90"]
    assert table.splitlines()[-1] == "over budget: venv+torch (10.0 of 3 min)"
    assert ci_functions('begin_phase "ONNX models"; finish_phase ok; timing_table').splitlines()[-1] == (
        "every phase within its budget")


def test_devcontainer_runs_the_readme_setup_and_a_real_ollama():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert "python:1-3.11" in config["image"]
    commands = [c.strip() for c in config["postCreateCommand"].split("&&")]
    # Codespaces builds llama.cpp as it is (no AMX workaround there): the other set-up lines, in order
    venv_free_setup = [line for line in readme_block("Set up") if "venv" not in line and "CFLAGS" not in line]
    assert commands[: len(venv_free_setup)] == venv_free_setup
    assert any("ollama" in feature for feature in config["features"])
    assert int(config["hostRequirements"]["memory"].removesuffix("gb")) >= 8
