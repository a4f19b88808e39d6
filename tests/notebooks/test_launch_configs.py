"""README, ./lab, .ci/run, Binder (environment.yml, apt.txt, postBuild) and Codespaces (devcontainer.json) agree."""

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
# ./lab's system packages that Binder's apt.txt leaves out, each with its reason (apt.txt says it too)
NOT_FOR_BINDER = {"chromium": "Ubuntu has it only as a snap", "chromium-driver": "Ubuntu has it only as a snap",
                  "cmake": "conda's cmake and cxx-compiler come with environment.yml"}
# pyproject's dependencies that environment.yml leaves to ./lab's pip step (postBuild), each with its reason
LEFT_TO_LAB = {"llama-cpp-python": "compiled by ./lab's pip step with the no-AMX flags, which conda's pip cannot pass"}
CI_PHASES = ["venv+torch", "pip install", "system packages", "ONNX models", "llama.cpp tools", "containers",
             "vLLM venv", "Olive venv", "LiteRT venv", "fast tests", "unit/integration tests", "notebooks"]


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
    listed = {str(Requirement(p)) for p in pip if not p.startswith("-")}
    left = {r for r in pyproject_requirements() if Requirement(r).name in LEFT_TO_LAB}
    assert len(left) == len(LEFT_TO_LAB) and listed == pyproject_requirements() - left
    postbuild = (ROOT / "postBuild").read_text()
    assert "./lab setup --no-venv" in postbuild  # its pip step installs what environment.yml leaves out, with NO_AMX


def lab(*args: str) -> list[str]:
    """What `./lab ARGS` prints (only `commands` and `--help`: nothing is set up)."""
    run = subprocess.run([str(ROOT / "lab"), *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def lab_functions(script: str) -> str:
    """Run bash lines after sourcing ./lab (which then only defines its tables and functions)."""
    run = subprocess.run(["bash", "-c", f'source "{ROOT}/lab"\n{script}'], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


def lab_table(name: str) -> list[list[str]]:
    """A table of ./lab (SETUP_STEPS or TEST_GROUPS): its rows' fields."""
    lines = lab_functions(f'for row in "${{{name}[@]}}"; do for n in 0 1 2 3; do printf "%s|" "$(field "$row" $n)"; '
                          f'done; echo; done').splitlines()
    return [line.split("|")[:4] for line in lines]


def test_readme_opens_with_the_two_commands_and_ci_runs_exactly_the_test_one():
    assert readme_block("Set up") == ["./lab", "./lab test"]
    assert readme_block("Open the course") == ["./lab"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in ci if line and not line.startswith("#")]
    assert commands == ['cd "$(dirname "$0")/.." || exit 1', "./lab test"], "CI runs exactly the README's command"
    for script in ("lab", ".ci/run", "postBuild", "start"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} must be executable"


def test_readme_by_hand_is_what_lab_runs():
    by_hand = readme_block("Set up by hand")
    assert by_hand == [line for line in lab("commands") if not line.startswith("#")]
    torch_pin = next(r for r in pyproject_requirements() if r.startswith("torch=="))
    assert by_hand[1] == f"pip install --no-deps --index-url {CPU_INDEX} {torch_pin}"
    # llama.cpp is compiled by the pip line after it, without AMX on x86 (ldtilecfg faults on some VMs)
    assert f'export CFLAGS="{NO_AMX}" CXXFLAGS="{NO_AMX}"' in by_hand[2] and "x86_64" in by_hand[2]
    assert by_hand[3] == 'pip install -e ".[all]"'
    assert f"NO_AMX=\"{NO_AMX}\"" in (ROOT / "lab").read_text()  # the flags the set-up exports are these
    code = [line for line in (ROOT / "lab").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "no-cache-dir" in line]  # pip keeps the compiled llama-cpp-python wheel


def test_lab_runs_the_readme_test_groups_in_order():
    expressions = [shlex.split(line)[2] for line in readme_block("Run the tests")]
    assert [group[3] for group in lab_table("TEST_GROUPS")] == expressions


def test_binder_installs_what_it_can_of_labs_system_packages_and_runs_its_setup():
    apt = [line.partition("#")[0].strip() for line in (ROOT / "apt.txt").read_text().splitlines()]
    apt = [package for package in apt if package]
    system = lab_functions('echo "${SYSTEM_PACKAGES[*]}"').split()
    assert set(apt) == set(system) - set(NOT_FOR_BINDER) and "snap" in (ROOT / "apt.txt").read_text()
    post_build = [line.strip() for line in (ROOT / "postBuild").read_text().splitlines()]
    setup = next(line for line in post_build if line.startswith("./lab"))
    words = setup.split()
    assert words[:3] == ["./lab", "setup", "--no-venv"]
    skipped = {words[i + 1] for i, word in enumerate(words) if word == "--skip"}
    # vLLM needs ~3.8 GB; a Binder session has 2 GB and no container engine; Olive's venv adds 1.8 GB to the image,
    # LiteRT Torch's 2.1 GB (and its conversion peaks at 3.7 GB)
    assert skipped == {"vllm", "containers", "olive", "litert"}
    assert skipped <= {step[0] for step in lab_table("SETUP_STEPS")}
    assert "OMP_NUM_THREADS=1" in (ROOT / "start").read_text() and 'exec "$@"' in (ROOT / "start").read_text()


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


def test_phases_have_budgets_that_fit_ci():
    phases = lab_functions('printf "%s\\n" "${PHASES[@]}"; echo "${BUDGETS[*]}"; echo "$CI_MINUTES"').splitlines()
    budgets, total = [int(b) for b in phases[-2].split()], int(phases[-1])
    steps, groups = lab_table("SETUP_STEPS"), lab_table("TEST_GROUPS")
    assert phases[:-2] == [row[2] for row in steps + groups] == CI_PHASES
    assert budgets == [int(row[1]) for row in steps + groups] and all(b > 0 for b in budgets)
    assert total == 90 and sum(budgets) <= total


def test_timing_table_names_the_phases_that_went_over():
    clock = "now() { echo \"$T\"; }; T=0"  # the table's clock, set by hand
    table = lab_functions(clock + """
        begin_phase "venv+torch"; T=600; begin_phase "pip install"; T=700
        begin_phase "fast tests"; T=760; record_tests 1; begin_phase "notebooks"; T=900; record_tests 5
        finish_phase ok; timing_table""")
    rows = {line[:24].strip(): line[24:].split() for line in table.splitlines()[2:-1]}
    assert rows["venv+torch"][:3] == ["10.0", "2", "ok"] and rows["pip install"][:3] == ["1.7", "8", "ok"]
    assert rows["system packages"] == ["-", "3", "not", "run"]
    assert rows["fast tests"][2:] == ["failed", "(pytest", "exit", "1)"]
    assert rows["notebooks"][2:4] == ["no", "tests"] and rows["total"] == ["15.0", "90"]
    assert table.splitlines()[-1] == "over budget: venv+torch (10.0 of 2 min)"
    assert lab_functions(clock + '; begin_phase "ONNX models"; finish_phase ok; timing_table').splitlines()[-1] == (
        "every phase within its budget")


def test_devcontainer_runs_lab_with_docker_a_real_ollama_and_the_size_the_readme_states():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert "python:1-3.11-bookworm" in config["image"]  # Debian 12, as tested here
    assert config["postCreateCommand"] == "./lab --no-open"
    assert config["remoteEnv"]["PATH"].startswith("${containerWorkspaceFolder}/.venv/bin:")  # lab's venv in terminals
    assert any("ollama" in feature for feature in config["features"])
    assert any("docker" in feature for feature in config["features"])
    size = config["hostRequirements"]
    cpus, memory, storage = size["cpus"], *(int(size[key].removesuffix("gb")) for key in ("memory", "storage"))
    assert memory >= 8
    platforms = (ROOT / "README.md").read_text().split("## Platforms\n", 1)[1].split("\n## ", 1)[0]
    assert f"{cpus} cores, {memory} GB of memory and {storage} GB" in " ".join(platforms.split())
