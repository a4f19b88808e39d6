"""Render every artifact of a deployment from one validated plan: each artifact module renders its own files
(with `slmlab.deploy.templating`), this module collects them and writes the bundle."""

from __future__ import annotations

from pathlib import Path

from slmlab.deploy import adapter, compose, docker, k8s, prometheus
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
    files.update(adapter.render_adapter_values(plan))
    files["NOTES.md"] = render_template("NOTES.md.j2", plan, load_metric=LOAD_METRIC)
    return files


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
