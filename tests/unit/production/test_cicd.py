"""slmlab.production.cicd and workflow_check: the scaffolded service, its workflow (pinned, least privilege,
gated), the validators catching an insecure workflow, and the pipeline runner's bookkeeping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from slmlab.deploy import DeploymentSpec
from slmlab.errors import SlmLabError
from slmlab.production import cicd, workflow_check

pytestmark = pytest.mark.fast

SPEC = DeploymentSpec(name="triage", quantization="Q4_1", rate_limit="60/minute")
INSECURE = """name: bad
on:
  pull_request_target:
permissions: write-all
jobs:
  test:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> cicd.Service:
    return cicd.scaffold(tmp_path_factory.mktemp("svc"), SPEC, host="chat.example.org")


def workflow(service: cicd.Service) -> dict:
    data = yaml.safe_load(service.workflow.read_text())
    data["on"] = data.pop(True)
    return data


def test_the_scaffold_writes_a_service_repository(service: cicd.Service) -> None:
    for rel in ("app/service.json", "tests/conftest.py", "tests/config.json", "deploy/spec.yaml", cicd.PIPELINE,
                "ci/requirements.txt", "ruff.toml", cicd.WORKFLOW):
        assert (service.root / rel).is_file(), rel
    assert 'SERVICE_HOST="${SERVICE_HOST:-chat.example.org}"' in service.pipeline.read_text()
    assert yaml.safe_load((service.root / "deploy/spec.yaml").read_text())["rate_limit"] == "60/minute"
    service.ship("v2")
    assert '"version": "v2"' in service.app_config.read_text()
    service.ship("v1")
    with pytest.raises(SlmLabError, match="Unknown triage app version"):
        service.ship("v3")


def test_every_action_is_pinned_to_a_commit_and_every_job_reads_only(service: cicd.Service) -> None:
    flow = workflow(service)
    assert flow["permissions"] == {}
    uses = re.findall(r"uses: (\S+)", service.workflow.read_text())
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses)
    for name, job in flow["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, name
        runs = " ".join(str(step.get("run", "")) for step in job["steps"])
        assert "${{" not in runs, f"{name} pastes an expression into a script"
        checkout = next(s for s in job["steps"] if "actions/checkout" in s.get("uses", ""))
        assert checkout["with"]["persist-credentials"] is False


def test_the_deploy_job_is_gated_behind_every_check(service: cicd.Service) -> None:
    jobs = workflow(service)["jobs"]
    deploy = jobs["deploy"]
    assert deploy["environment"] == "production" and "refs/heads/main" in deploy["if"]
    chain, job = [], "deploy"
    while "needs" in jobs[job]:
        needs = jobs[job]["needs"]
        chain += needs if isinstance(needs, list) else [needs]
        job = chain[-1] if not isinstance(needs, list) else needs[0]
    assert {"image", "golden", "lint"} <= set(chain)
    assert "bash ci/pipeline.sh deploy" in str(deploy["steps"])
    assert "trivy-action" in str(jobs["image"]["steps"])


def test_the_generated_workflow_passes_zizmor_and_the_schema(service: cicd.Service) -> None:
    report = workflow_check.validate_workflow(service.workflow)
    assert report.ok, report.summary()
    assert "workflow schema" in report.findings
    if workflow_check.zizmor_path() is None:
        pytest.skip("zizmor is not installed (pip install -e '.[deploy]')")
    assert report.findings["zizmor"] == []


def test_zizmor_and_the_schema_catch_an_insecure_workflow(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(INSECURE)
    report = workflow_check.validate_workflow(path)
    if workflow_check.zizmor_path() is None:
        pytest.skip("zizmor is not installed")
    rules = {f.rule for f in report.findings["zizmor"]}
    assert {"unpinned-uses", "template-injection", "artipacked", "dangerous-triggers"} <= rules
    path.write_text(INSECURE.replace("runs-on:", "runs_on:"))
    assert any(f.rule in ("additionalProperties", "required", "oneOf")
               for f in workflow_check.validate_workflow(path).findings["workflow schema"])


def test_the_pipeline_stops_at_the_first_failure_and_says_why_it_skipped(tmp_path: Path) -> None:
    service = cicd.Service(tmp_path)
    (tmp_path / "ci").mkdir()
    service.pipeline.write_text('case "$1" in lint) echo linted ;; unit) echo broken >&2; exit 3 ;; esac\n')
    run = cicd.run_pipeline(service, skip={"image": "no runtime"})
    assert [r.status for r in run.results] == ["passed", "failed", "not run", "not run", "not run", "not run"]
    assert run.stopped_at == "unit" and not run.ok and run["unit"].reason == "exit code 3"
    assert "broken" in run["unit"].tail()
    skipped = cicd.run_pipeline(service, stages=("lint", "image"), skip={"image": "no runtime"})
    assert skipped.ok and skipped["image"].status == "skipped" and skipped["image"].reason == "no runtime"
    with pytest.raises(SlmLabError, match="Unknown stage"):
        cicd.run_pipeline(service, stages=("lint", "publish"))


def test_the_pipeline_script_is_valid_bash(service: cicd.Service) -> None:
    import subprocess

    assert subprocess.run(["bash", "-n", str(service.pipeline)]).returncode == 0
    usage = subprocess.run(["bash", str(service.pipeline), "nope"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_shell_prints_the_command_and_refuses_a_missing_program(capsys: pytest.CaptureFixture) -> None:
    done = cicd.shell(["python3", "-c", "print('hello')"])
    assert done.returncode == 0 and "$ python3 -c" in capsys.readouterr().out
    with pytest.raises(SlmLabError, match="not installed"):
        cicd.shell("no-such-program-here --flag")


def test_a_run_continues_and_an_earlier_failure_stops_the_rest(tmp_path: Path) -> None:
    service = cicd.Service(tmp_path)
    (tmp_path / "ci").mkdir()
    service.pipeline.write_text('case "$1" in unit) exit 1 ;; *) echo ok ;; esac\n')
    run = cicd.run_pipeline(service, stages=("lint",))
    cicd.run_pipeline(service, stages=("bundle",), run=run)
    assert [(r.stage, r.status) for r in run.results] == [("lint", "passed"), ("bundle", "passed")]
    cicd.run_pipeline(service, stages=("unit",), run=run)
    cicd.run_pipeline(service, stages=("image",), run=run)
    assert run.stopped_at == "unit" and run["image"].status == "not run"


def test_a_stage_run_with_colours_forced_reads_as_plain_lines(tmp_path: Path) -> None:
    """A Jupyter kernel sets FORCE_COLOR=1, so pytest colours its summary: the stage's output drops the codes, and
    its FAILED lines start with FAILED."""
    service = cicd.Service(tmp_path)
    (tmp_path / "ci").mkdir()
    colored = "\\033[31mFAILED\\033[0m tests/test_golden.py::test_x\\n\\033[1m1 failed\\033[0m\\n"
    service.pipeline.write_text(f"printf '{colored}'; exit 1\n")
    run = cicd.run_pipeline(service, stages=("golden",), env={"FORCE_COLOR": "1"})
    assert run["golden"].output.splitlines() == ["FAILED tests/test_golden.py::test_x", "1 failed"]
