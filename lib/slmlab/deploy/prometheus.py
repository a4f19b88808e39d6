"""Prometheus scrape configuration for the gateway and (where it exports metrics) the engine.

Rendered here and checked with `promtool check config --syntax-only` where promtool is installed (Debian's
`prometheus` package); alert rules and a live Prometheus belong to the monitoring notebook.
"""

from __future__ import annotations

from pathlib import Path

from slmlab.deploy.compose import scrape_engine_with_key
from slmlab.deploy.engines import GATEWAY_PORT
from slmlab.deploy.render import names, render_template
from slmlab.deploy.spec import Plan
from slmlab.errors import SlmLabError


def render_prometheus(plan: Plan, kubernetes: bool = False) -> dict[str, str]:
    """prometheus/prometheus.yml: compose service names as targets (or Kubernetes Service DNS names)."""
    n = names(plan)
    suffix = f".{plan.spec.namespace}.svc" if kubernetes else ""
    gateway_host = (n["gateway"] if kubernetes else "gateway") + suffix
    engine_host = (n["engine"] if kubernetes else "engine") + suffix
    text = render_template("prometheus.yml.j2", plan, gateway_host=gateway_host, engine_host=engine_host,
                           gateway_port=GATEWAY_PORT, scrape_engine_with_key=scrape_engine_with_key(plan))
    return {f"prometheus/prometheus{'-kubernetes' if kubernetes else ''}.yml": text}


def promtool_path() -> str | None:
    """promtool (Debian's `prometheus` package), or None when it is not installed."""
    import shutil

    return shutil.which("promtool")


def promtool_check(path: str | Path, root: str | Path | None = None) -> list[str]:
    """`promtool check config --syntax-only` on one file: its error, as one line (empty list: valid).

    --syntax-only skips checking that referenced files (the API-key file) exist on this machine.
    """
    import subprocess

    tool = promtool_path()
    if tool is None:
        raise SlmLabError("promtool is not installed.", "apt-get install prometheus  (Debian/Ubuntu)")
    proc = subprocess.run([tool, "check", "config", "--syntax-only", str(path)], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode == 0:
        return []
    name = str(Path(path).relative_to(root)) if root else str(path)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and not line.startswith("Checking")]
    return [f"{name}: {' '.join(lines) or f'promtool exited with {proc.returncode}'}"]
