"""README, .ci/run, environment.yml (Binder) and devcontainer.json (Codespaces) install the same thing."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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
    assert readme_block("Run the tests") == ["pytest"]
    assert readme_block("Open the course") == ["jupyter lab labs/"]


def test_ci_runs_the_readme_commands_verbatim():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    blocks = ("Set up", "Prebuilt ONNX models", "Servers for parts 2 and 3 (Debian/Ubuntu)", "Run the tests")
    for line in [line for name in blocks for line in readme_block(name)]:
        assert line in ci, f".ci/run lacks the README line: {line}"


def test_devcontainer_runs_the_readme_setup_and_a_real_ollama():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert "python:1-3.11" in config["image"]
    commands = [c.strip() for c in config["postCreateCommand"].split("&&")]
    venv_free_setup = [line for line in readme_block("Set up") if "venv" not in line]
    assert commands[: len(venv_free_setup)] == venv_free_setup
    assert any("ollama" in feature for feature in config["features"])
    assert int(config["hostRequirements"]["memory"].removesuffix("gb")) >= 8
