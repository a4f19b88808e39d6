"""What a rendered bundle lacks for production, added beside it: an Ingress that terminates TLS, alerting rules
whose every alert links to its runbook section, a Grafana dashboard, and the runbook itself.

    written = add_production_layer("out/", host="chat.example.com")   # after `slmlab deploy render ... --out out/`

The alerts are `slmlab.monitoring.alerts.default_rules` (target down, p95 time to first token, 5xx share), the
dashboard is `slmlab.monitoring.grafana.llm_dashboard`: the same ones notebook 3.4 fires and plots. The rules go to
``prometheus/rules/`` (Prometheus loads them with ``rule_files:``; `promtool check rules` validates them), the
dashboard to ``grafana/``, the Ingress to ``k8s/`` (so `slmlab deploy check` validates it with the others).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.production.bundle import DASHBOARDS_DIR, RULES_DIR, RUNBOOK_FILE, Bundle

INGRESS_FILE = "k8s/09-ingress.yaml"
RULES_FILE = f"{RULES_DIR}/slm-alerts.yml"
DASHBOARD_FILE = f"{DASHBOARDS_DIR}/slm-service.json"
HEADER = "# Written by slmlab.production.layer.add_production_layer beside the rendered bundle.\n"
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class RunbookEntry:
    """One alert's section of the runbook: what it means, what to look at, what to do."""

    alert: str
    means: str
    look: Sequence[str]
    act: Sequence[str]


RUNBOOK: dict[str, RunbookEntry] = {e.alert: e for e in [
    RunbookEntry("TargetDown", "Prometheus cannot scrape a server: the pod is gone, crash-looping, or not ready.",
                 ["kubectl -n {ns} get pods -l app.kubernetes.io/name={name}",
                  "kubectl -n {ns} describe pod POD   # OOMKilled? probe failures? image pull errors?",
                  "kubectl -n {ns} logs POD --previous"],
                 ["OOMKilled: raise the memory request = limit (render again from the spec) or lower `parallel`.",
                  "Probe failures while loading: raise the startup probe's failureThreshold.",
                  "Roll back: kubectl -n {ns} rollout undo deployment/{name}-engine"]),
    RunbookEntry("HighTimeToFirstTokenP95", "Requests wait too long for their first token: queueing or overload.",
                 ["the dashboard's queue depth and tokens/s panels",
                  "kubectl -n {ns} get hpa   # at max_replicas already?"],
                 ["Scale out (raise max_replicas) or lower the load (rate limits per key).",
                  "Long prompts: cap max_tokens and the context; check for one client sending huge requests."]),
    RunbookEntry("HighErrorRate", "More than the threshold of API requests fail with 5xx.",
                 ["kubectl -n {ns} logs deployment/{name}-gateway | grep ' 5[0-9][0-9] '",
                  "the engine's logs: out of memory, context overflow, upstream timeouts"],
                 ["A bad rollout: kubectl -n {ns} rollout undo deployment/{name}-gateway",
                  "503 with Retry-After is overload: see HighTimeToFirstTokenP95."]),
]}


def anchor(title: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def runbook_text(namespace: str, name: str, entries: Sequence[RunbookEntry] = tuple(RUNBOOK.values())) -> str:
    """RUNBOOK.md: one section per alert, each the target of that alert's runbook_url."""
    lines = [f"# Runbook: {name}", "", "Every alert in `prometheus/rules/` links to its section here "
             "(`annotations.runbook_url`).", ""]
    for entry in entries:
        lines += [f"## {entry.alert}", "", entry.means, "", "Look:", ""]
        lines += [f"- `{step.format(ns=namespace, name=name)}`" for step in entry.look]
        lines += ["", "Act:", ""] + [f"- {step.format(ns=namespace, name=name)}" for step in entry.act] + [""]
    return "\n".join(lines)


def ingress(bundle: Bundle, host: str, tls_secret: str, issuer: str = "letsencrypt") -> dict[str, Any]:
    """An Ingress for the gateway's Service on `host`, TLS terminated with the certificate in `tls_secret`
    (cert-manager's `issuer` fills it), plain HTTP redirected to HTTPS."""
    service = next((s for s in bundle.of_kind("Service")
                    if ((s.data.get("spec") or {}).get("selector") or {}).get("app.kubernetes.io/component")
                    == "gateway"), None)
    if service is None:
        raise SlmLabError(f"{bundle.root} has no Service for the gateway, so there is nothing to expose.",
                          "Render the bundle with `slmlab deploy render` (it writes k8s/04-services.yaml).")
    meta = service.data["metadata"]
    port = ((service.data.get("spec") or {}).get("ports") or [{}])[0].get("port", 8080)
    backend = {"service": {"name": meta["name"], "port": {"number": port}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                         "labels": meta.get("labels", {}),
                         "annotations": {"cert-manager.io/cluster-issuer": issuer,
                                         "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                                         "nginx.ingress.kubernetes.io/proxy-read-timeout": "300"}},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": [host], "secretName": tls_secret}],
                     "rules": [{"host": host, "http": {"paths": [
                         {"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}


def alert_rules(runbook_url: str) -> str:
    """The default alerting rules as a rule file, each with `runbook_url` pointing at its runbook section."""
    from dataclasses import replace

    from slmlab.monitoring.alerts import default_rules, rules_yaml

    return rules_yaml([replace(rule, runbook_url=f"{runbook_url}#{anchor(rule.name)}") for rule in default_rules()],
                      group="slm-service")


def add_production_layer(folder: str | Path, host: str = "chat.example.com", tls_secret: str | None = None,
                         runbook_url: str = RUNBOOK_FILE) -> list[Path]:
    """Write the Ingress (TLS), alert rules, dashboard and runbook into a rendered bundle; the paths written.

    `runbook_url` is where the runbook will be read (a URL to RUNBOOK.md in your repository); the default, the
    file's own name, links within the bundle.
    """
    import yaml

    from slmlab.monitoring.grafana import llm_dashboard, save_dashboard

    if not isinstance(host, str) or not _HOST.match(host):
        raise SlmLabError(f"{host!r} is not a DNS host name.", "Pass the name clients use, e.g. 'chat.example.com'.")
    bundle = Bundle.load(folder)
    plan = bundle.plan
    name = plan.spec.name if plan else "slm"
    namespace = plan.spec.namespace if plan else "default"
    servers = ("gateway", "vllm") if plan and plan.engine.key == "vllm" else ("gateway",)
    root = bundle.root
    files = {
        INGRESS_FILE: HEADER + yaml.safe_dump(ingress(bundle, host, tls_secret or f"{name}-tls"), sort_keys=False),
        RULES_FILE: HEADER + alert_rules(runbook_url),
        RUNBOOK_FILE: runbook_text(namespace, name),
    }
    written = []
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
        written.append(root / rel)
    written.append(save_dashboard(llm_dashboard(servers, title=f"SLM service: {name}"), root / DASHBOARD_FILE))
    return written
