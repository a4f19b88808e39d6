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

K8S_SD_MISSING = "field kubernetes_sd_configs not found"  # what a promtool built without Kubernetes SD says


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


def promtool_path() -> str | None:
    """promtool (Debian's `prometheus` package), or None when it is not installed."""
    import shutil

    return shutil.which("promtool")


def promtool_check(path: str | Path, root: str | Path | None = None, notes: list[str] | None = None) -> list[str]:
    """`promtool check config --syntax-only` on one file: its error, as one line (empty list: valid).

    --syntax-only skips checking that referenced files (the API-key file) exist on this machine. Debian's
    promtool is built without Kubernetes service discovery: for a file that uses it, the rest of the file is
    checked with each `kubernetes_sd_configs` swapped for a static target, and `notes` gets a line saying so.
    """
    name = str(Path(path).relative_to(root)) if root else str(path)
    problems = _promtool_config(Path(path))
    if problems and any(K8S_SD_MISSING in p for p in problems):
        import tempfile

        import yaml

        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        for job in config.get("scrape_configs") or []:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job.setdefault("static_configs", [{"targets": ["engine-pod.example:8080"]}])
        with tempfile.TemporaryDirectory(prefix="slmlab-promtool-") as tmp:
            stand_in = Path(tmp) / Path(path).name
            stand_in.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            problems = _promtool_config(stand_in)
        if notes is not None:
            notes.append(f"{name}: this promtool has no Kubernetes service discovery (Debian builds it without), "
                         "so kubernetes_sd_configs was not checked; the rest of the file was")
    return [f"{name}: {problem}" for problem in problems]


def _promtool_config(path: Path) -> list[str]:
    import subprocess

    tool = promtool_path()
    if tool is None:
        raise SlmLabError("promtool is not installed.", "apt-get install prometheus  (Debian/Ubuntu)")
    proc = subprocess.run([tool, "check", "config", "--syntax-only", str(path)], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode == 0:
        return []
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and not line.startswith("Checking")]
    return [" ".join(lines) or f"promtool exited with {proc.returncode}"]
