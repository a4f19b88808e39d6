"""CI/CD for the learner's SLM service: a repository folder with the app's tests, its deployment spec, one pipeline
script (``ci/pipeline.sh STAGE``) and a GitHub Actions workflow that calls that script, job by job.

    service = scaffold("my-service", spec)    # app/, tests/ (the suite of 2.6), deploy/spec.yaml, ci/, .github/
    record_golden(service, backend)                   # tests/golden.json from the known-good version
    validate_workflow(service.workflow)               # actionlint (where installed), zizmor, the workflow schema
    run = run_pipeline(service)                       # the same stages, here, stopping at the first failure

The workflow pins every action to a commit SHA, grants each job only ``contents: read`` (no token permission at the
top), keeps the checkout's credentials out of the workspace, passes secrets only to the steps that need them (as
environment variables, never on a command line), and deploys only from main, after every check, through the
``production`` environment (whose required reviewers are the gate).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.deploy.spec import DeploymentSpec
from slmlab.errors import SlmLabError

TEMPLATES = Path(__file__).with_name("templates")
WORKFLOW = ".github/workflows/ci.yml"
PIPELINE = "ci/pipeline.sh"
# The actions the workflow uses, pinned to the commit their release tag pointed at (looked up in each repository).
PINNED_ACTIONS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aquasecurity/trivy-action": ("ed142fd0673e97e23eac54620cfb913e5ce36c25", "v0.36.0"),
}
STAGES = ("lint", "unit", "golden", "bundle", "image", "smoke")  # what runs here; push and deploy need a registry
CONTAINER_STAGES = ("image", "smoke")  # and a cluster, and run only in the workflow's gated jobs
SLMLAB_REQUIREMENT = "slmlab[serve,deploy,test] @ git+https://github.com/YOUR-ORG/slm-deploy-lab@YOUR-COMMIT"
RUFF_TOML = ('# the lint stage\'s rules (ruff check app tests)\nline-length = 120\n\n'
             '[lint]\nselect = ["E", "F", "W", "B"]\n')


@dataclass(frozen=True)
class Service:
    """A service repository folder and where its parts are."""

    root: Path

    @property
    def workflow(self) -> Path:
        return self.root / WORKFLOW

    @property
    def pipeline(self) -> Path:
        return self.root / PIPELINE

    @property
    def bundle(self) -> Path:
        """Where the bundle stage renders the deploy bundle."""
        return self.root / "build" / "bundle"

    @property
    def app_config(self) -> Path:
        """app/service.json: which triage parser version the service ships."""
        return self.root / "app" / "service.json"

    def ship(self, version: str) -> None:
        """Change the parser version the service ships (a commit, in a real repository)."""
        from slmlab.apps.triage import VERSIONS

        if version not in VERSIONS:
            raise SlmLabError(f"Unknown triage app version {version!r}.", f"Use one of {', '.join(VERSIONS)}.")
        data = json.loads(self.app_config.read_text(encoding="utf-8"))
        self.app_config.write_text(json.dumps({**data, "version": version}, indent=2) + "\n", encoding="utf-8")


def pinned(action: str) -> str:
    """`owner/name@<sha> # <tag>` for a workflow's `uses:`."""
    sha, tag = PINNED_ACTIONS[action]
    return f"{action}@{sha} # {tag}"


def workflow_text(spec: DeploymentSpec, requirement: str = SLMLAB_REQUIREMENT) -> str:
    """The workflow YAML for a service deployed by `spec`."""
    plan = spec.plan()
    setup = "\n".join([
        f"      - uses: {pinned('actions/checkout')}",
        "        with:",
        "          persist-credentials: false",
        f"      - uses: {pinned('actions/setup-python')}",
        "        with:",
        '          python-version: "3.11"',
        "      - run: python -m pip install -r ci/requirements.txt"])
    sha, tag = PINNED_ACTIONS["aquasecurity/trivy-action"]
    text = (TEMPLATES / "ci.yml").read_text(encoding="utf-8")
    return (text.replace("@@SETUP@@", setup).replace("@@TRIVY@@", f"{sha} # {tag}")
            .replace("@@GATEWAY_IMAGE@@", plan.image_ref("gateway"))
            .replace("@@ENGINE_IMAGE@@", plan.image_ref("engine")))


def scaffold(folder: str | Path, spec: DeploymentSpec, host: str = "chat.example.com", version: str = "v1",
             suite_config: Mapping[str, Any] | None = None, requirement: str = SLMLAB_REQUIREMENT) -> Service:
    """Write the service repository: app/service.json, tests/ (the course's triage suite and its config),
    deploy/spec.yaml, ci/pipeline.sh, ci/requirements.txt, ruff.toml and the workflow. Existing files are replaced,
    except a recorded tests/golden.json."""
    import yaml

    from slmlab.apps.pytest_run import SUITE_DIR

    spec.plan()  # a spec that does not plan is refused before anything is written
    service = Service(Path(folder))
    root = service.root
    golden = root / "tests" / "golden.json"
    kept = golden.read_bytes() if golden.is_file() else None  # a recorded golden file survives a new scaffold
    if (root / "tests").exists():
        shutil.rmtree(root / "tests")
    shutil.copytree(SUITE_DIR, root / "tests", ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    if kept is not None:
        golden.write_bytes(kept)
    config = {"golden": "tests/golden.json", "eval_limit": 8, "accuracy_threshold": 0.4, "latency_calls": 2,
              "max_examples": 50, **dict(suite_config or {})}
    files = {
        "app/service.json": json.dumps({"version": version, "model": spec.model}, indent=2) + "\n",
        "app/__init__.py": '"""The triage service: slmlab.apps.triage behind the course gateway."""\n',
        "tests/config.json": json.dumps(config, indent=2) + "\n",
        "deploy/spec.yaml": "# The service's deployment: `slmlab deploy render` reads it (ci/pipeline.sh bundle).\n"
                            + yaml.safe_dump(spec.to_dict(), sort_keys=False),
        PIPELINE: (TEMPLATES / "pipeline.sh").read_text(encoding="utf-8").replace("@@HOST@@", host),
        "ci/requirements.txt": f"# what every CI job installs (pin the course to a commit)\n{requirement}\n",
        "ruff.toml": RUFF_TOML,
        ".gitignore": "build/\n__pycache__/\n",
        WORKFLOW: workflow_text(spec, requirement),
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    service.pipeline.chmod(0o755)
    service.ship(version)
    return service


def record_golden(service: Service, backend: Any, tickets: Sequence[str] | None = None) -> dict[str, Any]:
    """tests/golden.json from the known-good app (v1) on `backend`, and the suite's latency budget from the same
    calls timed here (p95 × 5, at least 5 s: "much slower", not noise); returns the golden file's content."""
    from slmlab.apps import quality, triage

    tickets = list(tickets or ["My package has not arrived yet.", "The app shows a blank screen after login."])
    app = triage.TriageApp(backend, version="v1")
    golden = quality.record_golden(app, tickets, service.root / "tests/golden.json")
    seconds = quality.time_calls(app.triage, tickets[:2], repeats=1, warmup=0)
    config_path = service.root / "tests/config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["latency_budget_s"] = round(quality.latency_budget(quality.percentile(seconds, 95), factor=5.0,
                                                              floor_s=5.0), 2)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return golden


def image_stages_ready() -> tuple[bool, str]:
    """Whether the image and smoke stages can run here: a container runtime and the course's local base image."""
    from slmlab.containers.base_image import base_image_ref
    from slmlab.containers.runtime import availability, find_runtime

    usable, line = availability()
    if not usable:
        return False, f"no container runtime ({line})"
    if not find_runtime().image_exists(base_image_ref()):
        return False, f"the course's base image {base_image_ref()} is not built: run `slmlab setup containers`"
    return True, line


# ---------------------------------------------------------------------------------------------- running it


@dataclass(frozen=True)
class StageResult:
    """One stage: passed, failed or skipped (with why), its seconds and its last lines."""

    stage: str
    status: str  # passed | failed | skipped | not run
    seconds: float = 0.0
    output: str = ""
    reason: str = ""

    def tail(self, lines: int = 12) -> str:
        """The stage's last lines of output."""
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


@dataclass
class PipelineRun:
    """The stages of one local run, in order."""

    results: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no stage failed and every stage ran or was skipped for a stated reason."""
        return all(r.status in ("passed", "skipped") for r in self.results)

    @property
    def stopped_at(self) -> str | None:
        """The stage that failed (the pipeline stops there), or None."""
        return next((r.stage for r in self.results if r.status == "failed"), None)

    def __getitem__(self, stage: str) -> StageResult:
        return next(r for r in self.results if r.stage == stage)

    def table(self) -> Any:
        """stage, status, seconds, reason: one row per stage."""
        import pandas as pd

        return pd.DataFrame([{"stage": r.stage, "status": r.status, "seconds": round(r.seconds, 1),
                              "reason": r.reason} for r in self.results])


def run_pipeline(service: Service, stages: Sequence[str] = STAGES, skip: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 900, run: PipelineRun | None = None
                 ) -> PipelineRun:
    """Run `bash ci/pipeline.sh STAGE` for each stage in order, as the workflow's jobs do; stop at the first
    failure (the stages after it are "not run"). `skip` maps a stage to the reason it cannot run here; `run`
    continues an earlier run (its stages are kept, and a failure there stops these too)."""
    import os

    unknown = [s for s in stages if s not in (*STAGES, "push", "deploy")]
    if unknown:
        raise SlmLabError(f"Unknown stage(s) {unknown}.", f"Stages: {', '.join(STAGES)}.")
    run = run if run is not None else PipelineRun()
    failed = run.stopped_at is not None
    environment = {**os.environ, **dict(env or {})}
    environment.pop("SLMLAB_TESTING_CONFIG", None)  # the script sets its own
    for stage in stages:
        if failed:
            run.results.append(StageResult(stage, "not run", reason="an earlier stage failed"))
            continue
        if skip and stage in skip:
            run.results.append(StageResult(stage, "skipped", reason=skip[stage]))
            continue
        start = time.perf_counter()
        try:
            done = subprocess.run(["bash", PIPELINE, stage], cwd=service.root, env=environment, capture_output=True,
                                  text=True, timeout=timeout)
            output, code = plain_text(done.stdout + done.stderr), done.returncode
        except subprocess.TimeoutExpired as err:
            partial = [p.decode(errors="replace") if isinstance(p, bytes) else (p or "")
                       for p in (err.stdout, err.stderr)]
            output, code = f"{''.join(partial)}\nstage {stage} ran past {timeout:.0f} s", 124
        failed = code != 0
        run.results.append(StageResult(stage, "failed" if failed else "passed", time.perf_counter() - start, output,
                                       f"exit code {code}" if failed else ""))
    return run


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colour and cursor codes (a Jupyter kernel sets FORCE_COLOR=1)


def plain_text(output: str) -> str:
    """`output` without terminal escape codes: pytest colours its lines in a kernel, and colour codes hide a
    line's start (``"FAILED"``) from whoever reads the output."""
    return ANSI_ESCAPE.sub("", output)


def shell(command: str | Sequence[str], cwd: str | Path | None = None, check: bool = True, tail: int = 25,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command as a terminal would (no shell: the words are split as a shell splits them), print `$ command`
    and its last `tail` lines; with `check`, a failure raises naming the command."""
    import shlex

    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if not args or shutil.which(args[0]) is None and not Path(args[0]).exists():
        raise SlmLabError(f"{args[0] if args else 'the command'} is not installed here.",
                          'Install the course: pip install -e ".[all]"')
    print("$ " + " ".join(shlex.quote(a) for a in args))
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    lines = (done.stdout + done.stderr).rstrip().splitlines()
    print("\n".join(lines[-tail:]) if tail else "")
    if check and done.returncode != 0:
        raise SlmLabError(f"`{' '.join(args)}` failed (exit {done.returncode}).", "Its output is above.")
    return done
