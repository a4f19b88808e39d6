"""Render every artifact of a deployment from one validated plan: each artifact module renders its own files
(with `slmlab.deploy.templating`), this module collects them and writes the bundle."""

from __future__ import annotations

from pathlib import Path

from slmlab.deploy import adapter, compose, docker, helm_chart, k8s, prometheus
from slmlab.deploy.spec import LOAD_METRIC, DeploymentSpec, Plan
from slmlab.deploy.templating import render_template
from slmlab.errors import SlmLabError


def render_all(spec: DeploymentSpec | Plan) -> dict[str, str]:
    """Every artifact as {relative path: text}: Dockerfiles, compose, Prometheus, Kubernetes manifests."""
    plan = spec if isinstance(spec, Plan) else spec.plan()
    files: dict[str, str] = {}
    files.update(docker.render_dockerfiles(plan))
    files.update(compose.render_compose(plan))
    files.update(prometheus.render_prometheus(plan))
    files.update(prometheus.render_prometheus(plan, kubernetes=True))
    files.update(k8s.render_manifests(plan))
    files.update(helm_chart.render_chart(plan))
    files.update(adapter.render_adapter_values(plan))
    files["NOTES.md"] = render_template("NOTES.md.j2", plan, load_metric=LOAD_METRIC)
    files[SPEC_FILE] = spec_text(plan)
    return files


SPEC_FILE = "spec.yaml"  # the spec the bundle was rendered from: `slmlab deploy build` and `run` read it


def spec_text(plan: Plan) -> str:
    """The spec as YAML, with a header saying what it is."""
    import yaml

    return ("# The deployment spec this folder was rendered from (`slmlab deploy render`); `slmlab deploy build`\n"
            "# and `slmlab deploy run` read it. Render again after editing it.\n"
            + yaml.safe_dump(plan.spec.to_dict(), sort_keys=False))


def bundle_plan(folder: str | Path) -> Plan:
    """The plan of a rendered folder, from the spec.yaml written beside its files."""
    from slmlab.deploy.spec import load_spec

    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise SlmLabError(f"{folder} has no {SPEC_FILE}, so it is not a folder written by `slmlab deploy render`.",
                          "Render it first: slmlab deploy render SPEC.yaml --out DIR")
    return load_spec(path).plan()


def write_bundle(files: dict[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered files under out_dir (created); returns the paths written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SlmLabError(f"{out} exists and is not a folder.", "Pass a folder for --out.")
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def render_to(spec: DeploymentSpec | Plan, out_dir: str | Path) -> list[Path]:
    """Validate, render and write every artifact; nothing is written when the spec is rejected."""
    return write_bundle(render_all(spec), out_dir)
