"""Prometheus scrape configuration for the gateway and (where it exports metrics) the engine.

Rendered here and checked with `promtool check config --syntax-only` where promtool is installed (Debian's
`prometheus` package); alert rules and a live Prometheus belong to the monitoring notebook.
"""

from __future__ import annotations

from pathlib import Path

from slmlab.deploy.compose import scrape_engine_with_key
from slmlab.deploy.findings import Finding
from slmlab.deploy.images import GATEWAY_PORT
from slmlab.deploy.spec import Plan
from slmlab.deploy.templating import names, render_template
from slmlab.monitoring import promtool


def render_prometheus(plan: Plan, kubernetes: bool = False) -> dict[str, str]:
    """prometheus/prometheus.yml: compose service names as targets; for Kubernetes the gateway's Service DNS name
    and every engine pod (pod discovery), labelled with namespace and pod."""
    n = names(plan)
    suffix = f".{plan.spec.namespace}.svc" if kubernetes else ""
    gateway_host = (n["gateway"] if kubernetes else "gateway") + suffix
    engine_host = (n["engine"] if kubernetes else "engine") + suffix
    text = render_template("prometheus.yml.j2", plan, gateway_host=gateway_host, engine_host=engine_host,
                           gateway_port=GATEWAY_PORT, scrape_engine_with_key=scrape_engine_with_key(plan),
                           kubernetes=kubernetes)
    return {f"prometheus/prometheus{'-kubernetes' if kubernetes else ''}.yml": text}


def check_prometheus_config(path: str | Path, root: str | Path | None = None,
                            notes: list[str] | None = None) -> list[Finding]:
    """`promtool check config --syntax-only` on one rendered file (empty list: valid).

    --syntax-only skips checking that referenced files (the API-key file) exist on this machine; where promtool
    lacks Kubernetes service discovery, `notes` gets a line saying what was not checked.
    """
    name = str(Path(path).relative_to(root)) if root else str(path)
    unchecked: list[str] = []
    problems = promtool.check_config(path, syntax_only=True, notes=unchecked)
    if notes is not None:
        notes += [f"{name}: {note}" for note in unchecked]
    return [Finding(name, "", "promtool", problem) for problem in problems]
