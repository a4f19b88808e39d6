"""The readiness checklist's items: for each, how the bundle is judged and how the running service is.

Each judge returns an `Evidence` (pass / fail / n/a and what it saw). Bundle-side rules that `slmlab.deploy.policy`
already checks (probes, resources, pinned images, a NetworkPolicy per workload, no secret values) come from its
findings; the rest read the objects and files themselves. Service-side judges ask a `LiveService`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slmlab.deploy import policy
from slmlab.deploy.findings import Finding
from slmlab.deploy.k8s import Manifest
from slmlab.errors import SlmLabError
from slmlab.production.bundle import Bundle, containers, pod_labels, pod_spec, selects
from slmlab.production.evidence import Evidence
from slmlab.production.live import CHAT_PATH, LiveService, logged_requests

NOT_STARTED = "no running service was given"
SCANNERS = re.compile(r"aquasecurity/trivy-action|anchore/scan-action|docker/scout-action|snyk/actions|"
                      r"\btrivy\s+(image|fs)\b|\bgrype\b", re.IGNORECASE)
BACKUP_ANNOTATIONS = ("backup.velero.io/backup-volumes",)
MAX_BURST_PROBE = 500  # requests the rate-limit probe sends at most (to 127.0.0.1 only)
BACKUP_KINDS = ("Schedule", "VolumeSnapshot", "CronJob")  # Velero's Schedule, CSI snapshots, a backup job


@dataclass
class Context:
    """What the judges look at: the bundle, the running service (or None), the CI workflows folder (or None)."""

    bundle: Bundle
    live: LiveService | None
    workflows: Path | None
    _policy: list[Finding] | None = field(default=None, repr=False)

    def findings(self, *rules: str) -> list[Finding]:
        """The policy checker's findings on the bundle, for these rules."""
        if self._policy is None:
            self._policy = policy.check_bundle(self.bundle.manifests)
        return [f for f in self._policy if f.rule in rules]


Judge = Callable[[Context], Evidence]


def needs_live(judge: Callable[[LiveService, Context], Evidence]) -> Judge:
    """A service-side judge that says "not applicable" when no service was given, and turns an unreachable
    service into a failure with its reason."""

    def wrapped(context: Context) -> Evidence:
        if context.live is None:
            return Evidence.not_applicable(NOT_STARTED)
        try:
            return judge(context.live, context)
        except SlmLabError as err:
            return Evidence.failed(err.problem)

    wrapped.__name__ = judge.__name__
    return wrapped


def not_seen_from_outside(why: str) -> Judge:
    """A service-side judge for an item a running process cannot show."""
    return lambda context: Evidence.not_applicable(why)


def _listed(findings: list[Finding], limit: int = 3) -> str:
    shown = "; ".join(f"{f.subject or f.file} {f.where} [{f.rule}]" for f in findings[:limit])
    return shown + (f" (+{len(findings) - limit} more)" if len(findings) > limit else "")


# ---------------------------------------------------------------------------------------------- probes


def probes_in_bundle(context: Context) -> Evidence:
    """Every serving container has a liveness and a readiness probe (the policy checker's `probes` rule)."""
    missing = context.findings("probes")
    if missing:
        return Evidence.failed(f"missing probes: {_listed(missing)}", missing)
    paths = [f"{context.bundle.component(m)} {_probe_path(c, 'readinessProbe')}"
             for m in context.bundle.deployments() for c in containers(m)]
    return Evidence.passed("liveness + readiness on every container; readiness: " + ", ".join(paths))


def _probe_path(container: dict, probe: str) -> str:
    return str(((container.get(probe) or {}).get("httpGet") or {}).get("path", "(exec/tcp)"))


@needs_live
def probes_on_service(live: LiveService, context: Context) -> Evidence:
    """The gateway's own probe paths, as the bundle writes them, answer 200 on the running service."""
    gateway = context.bundle.workload("gateway")
    first = containers(gateway)[0] if gateway is not None and containers(gateway) else {}
    paths = [_probe_path(first, p) for p in ("livenessProbe", "readinessProbe")] if first else ["/healthz", "/readyz"]
    answers = {path: live.get(path, with_key=False).status for path in paths if path.startswith("/")}
    seen = ", ".join(f"{path} {status}" for path, status in answers.items())
    if answers and all(status == 200 for status in answers.values()):
        return Evidence.passed(f"the gateway's probe paths answer: {seen}")
    return Evidence.failed(f"probe paths do not all answer 200: {seen or 'no HTTP probe path'}")


# ---------------------------------------------------------------------------------------------- resources


def resources_in_bundle(context: Context) -> Evidence:
    """Memory requests = limits on every container (the pod is never OOM-killed for what it asked for), and the
    engine's equal to what the footprint sizes (spec.yaml planned again)."""
    problems = [f"{f.subject} {f.where}" for f in context.findings("resources")]
    sizes = []
    for manifest in context.bundle.deployments():
        for c in containers(manifest):
            res = c.get("resources") or {}
            want, cap = (res.get("requests") or {}).get("memory"), (res.get("limits") or {}).get("memory")
            if want and cap and want != cap:
                problems.append(f"{manifest.subject} memory request {want} ≠ limit {cap}")
            sizes.append(f"{context.bundle.component(manifest)} {want}")
    plan = context.bundle.plan
    engine = context.bundle.workload("engine")
    if plan is None:
        problems.append(f"cannot size from the footprint: {context.bundle.plan_problem}")
    elif engine is not None and containers(engine):
        asked = ((containers(engine)[0].get("resources") or {}).get("requests") or {}).get("memory")
        if asked != plan.memory:
            problems.append(f"the engine asks {asked} but the footprint sizes it at {plan.memory} "
                            f"({plan.memory_gb:.2f} GB × 1.2)")
    if problems:
        return Evidence.failed("; ".join(problems))
    return Evidence.passed(f"memory request = limit ({', '.join(sizes)}); the engine's {plan.memory if plan else ''} "
                           "is the footprint estimate × 1.2 headroom")


# ---------------------------------------------------------------------------------------------- auth


def auth_in_bundle(context: Context) -> Evidence:
    """API keys on, read from a mounted Secret, never written into the bundle."""
    leaked = context.findings("secret-in-env", "secret-value")
    if leaked:
        return Evidence.failed(f"secret values in the bundle: {_listed(leaked)}", leaked)
    gateway = context.bundle.workload("gateway")
    if gateway is None:
        return Evidence.failed("no gateway Deployment: nothing checks API keys in front of the engine")
    env = {e.get("name"): e for c in containers(gateway) for e in c.get("env") or [] if isinstance(e, dict)}
    key_file = str((env.get("SLMLAB_API_KEYS_FILE") or {}).get("value", ""))
    secret_mounts = _secret_mounts(gateway)
    source = next((secret for path, secret in secret_mounts.items() if key_file.startswith(path)), None)
    if not key_file or source is None:
        return Evidence.failed("the gateway gets no API-key file from a Secret (SLMLAB_API_KEYS_FILE is unset or "
                               "not on a Secret volume): anyone who reaches it can use the model")
    return Evidence.passed(f"the gateway reads its keys from {key_file}, mounted from Secret/{source}")


def _secret_mounts(workload: Manifest) -> dict[str, str]:
    """mountPath -> Secret name, for a workload's Secret volumes."""
    spec = pod_spec(workload)
    secrets = {v.get("name"): str((v.get("secret") or {}).get("secretName")) for v in spec.get("volumes") or []
               if isinstance(v, dict) and v.get("secret")}
    return {m.get("mountPath", ""): secrets[m.get("name")] for c in spec.get("containers") or []
            for m in c.get("volumeMounts") or [] if m.get("name") in secrets}


@needs_live
def auth_on_service(live: LiveService, context: Context) -> Evidence:
    """Without a key: 401; with the key: 200."""
    if not live.api_key:
        return Evidence.failed("the service was given no API key to test with: is auth on?")
    anonymous, keyed = live.get("/v1/models", with_key=False).status, live.get("/v1/models").status
    seen = f"/v1/models without a key {anonymous}, with the key {keyed}"
    return Evidence.passed(seen) if (anonymous, keyed) == (401, 200) else Evidence.failed(seen)


# ---------------------------------------------------------------------------------------------- rate limits


def rate_limit_in_bundle(context: Context) -> Evidence:
    """The gateway's ConfigMap sets SLMLAB_RATE_LIMIT, in a form the gateway reads."""
    from slmlab.serve.gateway.security import RateLimiter

    rate = context.bundle.config("SLMLAB_RATE_LIMIT")
    if not rate:
        return Evidence.failed("no SLMLAB_RATE_LIMIT in the gateway's ConfigMap: one client can take every slot "
                               "(set rate_limit in the spec)")
    try:
        limiter = RateLimiter.parse(rate)
    except SlmLabError as err:
        return Evidence.failed(f"SLMLAB_RATE_LIMIT={rate!r}: {err.problem}")
    if limiter is None:
        return Evidence.failed(f"SLMLAB_RATE_LIMIT={rate!r} turns the limit off")
    return Evidence.passed(f"{limiter.description} per key, bursts of {limiter.burst}")


@needs_live
def rate_limit_on_service(live: LiveService, context: Context) -> Evidence:
    """A burst one larger than the bundle's allows meets a 429 with Retry-After."""
    from slmlab.serve.gateway.security import RateLimiter

    limiter = RateLimiter.parse(context.bundle.config("SLMLAB_RATE_LIMIT") or "60/minute")
    burst = (limiter.burst if limiter else 60) + 1
    if burst > MAX_BURST_PROBE:
        return Evidence.not_applicable(f"a burst of {burst} requests is more than this probe sends "
                                       f"({MAX_BURST_PROBE}); test the limit with a load test")
    statuses = live.burst(burst)
    refused = live.throttled()
    if refused is None:
        return Evidence.failed(f"{len(statuses)} requests in a row, none refused with 429")
    return Evidence.passed(f"request {len(statuses)} of a burst got 429, Retry-After: "
                           f"{refused.headers.get('retry-after', '(none)')} s")


# ---------------------------------------------------------------------------------------------- TLS


def tls_in_bundle(context: Context) -> Evidence:
    """An Ingress routes to the gateway, and TLS covers every host it serves."""
    ingresses = context.bundle.of_kind("Ingress")
    if not ingresses:
        return Evidence.failed("no Ingress: the Services are ClusterIP, nothing reaches the gateway from outside "
                               "and nothing terminates TLS")
    problems, hosts = [], []
    for ing in ingresses:
        spec = ing.data.get("spec") or {}
        served = {r.get("host") for r in spec.get("rules") or [] if isinstance(r, dict)}
        covered = {h for t in spec.get("tls") or [] if isinstance(t, dict) and t.get("secretName")
                   for h in t.get("hosts") or []}
        uncovered = sorted(str(h) for h in served - covered)
        if not spec.get("tls"):
            problems.append(f"{ing.subject} has no spec.tls: clients would send their API keys in clear text")
        elif uncovered or None in served:
            problems.append(f"{ing.subject}: no TLS certificate for {', '.join(uncovered) or 'the default host'}")
        hosts += sorted(covered)
    if problems:
        return Evidence.failed("; ".join(problems))
    return Evidence.passed(f"TLS for {', '.join(hosts)} (certificate Secret named in spec.tls)")


# ---------------------------------------------------------------------------------------------- alerts, dashboards


def alerts_in_bundle(context: Context) -> Evidence:
    """Alerting rules exist and promtool accepts them."""
    from slmlab.monitoring.promtool import check_rules, promtool_path

    rules = list(context.bundle.alert_rules())
    if not rules:
        return Evidence.failed("no alerting rules (prometheus/rules/*.yml): nobody is told when the service fails")
    complaints = [c for path in context.bundle.rule_files for c in check_rules(path)] if promtool_path() else []
    if complaints:
        return Evidence.failed("promtool rejects the rules: " + "; ".join(complaints[:3]))
    checked = "promtool check rules: valid" if promtool_path() else "promtool not installed: syntax not checked"
    return Evidence.passed(f"{len(rules)} alerts ({', '.join(r['alert'] for _, r in rules)}); {checked}")


def _metrics_in(exprs: list[str]) -> set[str]:
    """The course servers' metric names a PromQL text uses (slmlab_*), without histogram suffixes."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bslmlab_\w+", e)}


def _missing_on(live: LiveService, wanted: set[str]) -> list[str]:
    live.chat()  # one request, so that labelled series exist
    have = {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in live.metric_names()}
    return sorted(m for m in wanted if re.sub(r"_total$", "", m) not in have)


def _exported(live: LiveService, exprs: list[str], what: str) -> Evidence:
    """Whether the running service exports every course metric the PromQL `exprs` (of the `what`) use."""
    wanted = _metrics_in(exprs)
    if not wanted:
        return Evidence.not_applicable(f"the {what} use no metric of the course's servers")
    missing = _missing_on(live, wanted)
    if missing:
        return Evidence.failed(f"the {what} query metrics the service does not export: {', '.join(missing)}")
    return Evidence.passed(f"/metrics exports what the {what} query: {', '.join(sorted(wanted))}")


@needs_live
def alerts_on_service(live: LiveService, context: Context) -> Evidence:
    """Every course metric the alert expressions use is exported by the running service."""
    return _exported(live, [str(rule.get("expr", "")) for _, rule in context.bundle.alert_rules()], "alerts")


def dashboards_in_bundle(context: Context) -> Evidence:
    """At least one Grafana dashboard whose panels all have queries."""
    from slmlab.monitoring.grafana import dashboard_queries, load_dashboard

    if not context.bundle.dashboards:
        return Evidence.failed("no Grafana dashboard (grafana/*.json): on-call has nothing to look at")
    described = []
    for path in context.bundle.dashboards:
        try:
            board = load_dashboard(context.bundle.dashboard(path))
        except (SlmLabError, ValueError) as err:
            return Evidence.failed(f"{context.bundle.rel(path)}: {err}")
        described.append(f"{context.bundle.rel(path)} ({len(dashboard_queries(board))} queries)")
    return Evidence.passed(", ".join(described))


@needs_live
def dashboards_on_service(live: LiveService, context: Context) -> Evidence:
    """Every course metric the dashboards query is exported by the running service."""
    from slmlab.monitoring.grafana import dashboard_queries

    exprs = [e for p in context.bundle.dashboards for _, _, e in dashboard_queries(context.bundle.dashboard(p))]
    return _exported(live, exprs, "dashboard panels")


# ---------------------------------------------------------------------------------------------- logs, runbooks


def logs_in_bundle(context: Context) -> Evidence:
    """Containers log to stdout/stderr (what the node's log collector ships), not to a file inside the pod."""
    to_files = [f"{m.subject}: {arg}" for m in context.bundle.deployments() for c in containers(m)
                for arg in [*(c.get("args") or []), *(c.get("command") or [])] if str(arg).startswith("--log-file")]
    if to_files:
        return Evidence.failed("logs written to a file inside the pod are lost with it: " + "; ".join(to_files))
    return Evidence.passed("every container logs to stdout/stderr, which Kubernetes keeps and a collector ships")


@needs_live
def logs_on_service(live: LiveService, context: Context) -> Evidence:
    """A chat request shows up in the log with its path and status, and the API key appears nowhere in it."""
    if live.log_path is None:
        return Evidence.failed("the service's log file was not given, so nothing shows what it records")
    answer = live.chat()
    text = live.log_text()
    logged = [r for r in logged_requests(text) if r["path"].startswith(CHAT_PATH)]
    if not logged:
        return Evidence.failed(f"a chat request (answered {answer.status}) left no line with its path and status")
    if live.api_key and live.api_key in text:
        return Evidence.failed("the API key appears in the log: anyone who reads logs can use it")
    return Evidence.passed(f"logged: {logged[-1]['line'][:90]}; the key is not in the log")


def runbooks_in_bundle(context: Context) -> Evidence:
    """Every alert has annotations.runbook_url, and a link into the bundle's RUNBOOK.md lands on a heading."""
    from slmlab.production.layer import anchor

    rules = list(context.bundle.alert_rules())
    if not rules:
        return Evidence.failed("no alerts, so no runbook links (the alerts item says why)")
    problems, targets = [], []
    for _, rule in rules:
        url = str((rule.get("annotations") or {}).get("runbook_url", ""))
        if not url:
            problems.append(f"{rule['alert']} has no runbook_url")
            continue
        page, _, fragment = url.partition("#")
        local = context.bundle.root / Path(page).name
        if local.is_file() and fragment:
            headings = {anchor(line.lstrip("#")) for line in local.read_text(encoding="utf-8").splitlines()
                        if line.startswith("#")}
            if fragment not in headings:
                problems.append(f"{rule['alert']}: {Path(page).name} has no section #{fragment}")
                continue
        targets.append(f"{rule['alert']} → {Path(page).name}#{fragment}")
    if problems:
        return Evidence.failed("; ".join(problems))
    return Evidence.passed("; ".join(targets))


# ---------------------------------------------------------------------------------------------- disruption, network


def pdb_in_bundle(context: Context) -> Evidence:
    """Every Deployment runs ≥ 2 replicas and a PodDisruptionBudget lets a drain take one at a time, not zero."""
    budgets = context.bundle.of_kind("PodDisruptionBudget")
    problems, seen = [], []
    for m in context.bundle.deployments():
        replicas = int((m.data.get("spec") or {}).get("replicas", 1))
        pdb = next((b for b in budgets if selects((b.data.get("spec") or {}).get("selector"), pod_labels(m))), None)
        if replicas < 2:
            problems.append(f"{m.subject} runs {replicas} replica: any node drain takes it down")
        elif pdb is None:
            problems.append(f"{m.subject} has no PodDisruptionBudget: a drain may evict every replica at once")
        else:
            allowed = _disruptions_allowed(pdb.data.get("spec") or {}, replicas)
            if allowed < 1:
                problems.append(f"{pdb.subject} allows no eviction of {m.subject} ({replicas} replicas): node "
                                "drains and upgrades hang")
            else:
                seen.append(f"{m.subject}: {allowed} of {replicas} at a time")
    if problems:
        return Evidence.failed("; ".join(problems))
    return Evidence.passed("; ".join(seen))


def _disruptions_allowed(spec: dict, replicas: int) -> int:
    """How many pods a PodDisruptionBudget lets a drain evict at once (percentages rounded as Kubernetes does)."""
    import math

    def count(value: object, round_up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            share = float(value[:-1]) / 100 * replicas
            return math.ceil(share) if round_up else math.floor(share)
        return int(value)  # type: ignore[call-overload]

    if "maxUnavailable" in spec:
        return count(spec["maxUnavailable"], round_up=True)
    if "minAvailable" in spec:
        return replicas - count(spec["minAvailable"], round_up=True)
    return 0


def network_in_bundle(context: Context) -> Evidence:
    """A default-deny NetworkPolicy, and every workload selected by one (the policy checker's rule)."""
    unselected = context.findings("network-policy")
    deny = [p for p in context.bundle.of_kind("NetworkPolicy")
            if not ((p.data.get("spec") or {}).get("podSelector") or {})
            and not (p.data.get("spec") or {}).get("ingress")]
    if unselected:
        return Evidence.failed(f"pods no NetworkPolicy selects: {_listed(unselected)}", unselected)
    if not deny:
        return Evidence.failed("no default-deny NetworkPolicy: pods not named by a policy accept any traffic")
    return Evidence.passed(f"default deny ({deny[0].subject}) + {len(context.bundle.of_kind('NetworkPolicy')) - 1} "
                           "allow-lists")


# ---------------------------------------------------------------------------------------------- images, backups


def images_in_bundle(context: Context) -> Evidence:
    """Every image pinned (the policy checker's rule) and scanned by the CI that builds it."""
    unpinned = context.findings("image-pinned")
    if unpinned:
        return Evidence.failed(f"unpinned images: {_listed(unpinned)}", unpinned)
    images = sorted({str(c.get("image")) for m in context.bundle.deployments() for c in containers(m)})
    if context.workflows is None:
        return Evidence.failed(f"pinned ({', '.join(images)}), but no CI workflow (.github/workflows) scans them")
    scans = [p.name for p in sorted(context.workflows.glob("*.y*ml"))
             if SCANNERS.search(p.read_text(encoding="utf-8", errors="replace"))]
    if not scans:
        return Evidence.failed(f"pinned, but no workflow in {context.workflows} runs an image scanner (trivy, grype)")
    return Evidence.passed(f"pinned ({', '.join(images)}); scanned by {', '.join(scans)}")


def backups_in_bundle(context: Context) -> Evidence:
    """Whatever keeps state (PersistentVolumeClaims, StatefulSets' volume claims) is backed up; nothing: n/a."""
    claims = [m.subject for m in context.bundle.of_kind("PersistentVolumeClaim")]
    claims += [f"{m.subject} volumeClaimTemplates" for m in context.bundle.of_kind("StatefulSet")
               if (m.data.get("spec") or {}).get("volumeClaimTemplates")]
    claims += [f"{m.subject} volume {v.get('name')}" for m in context.bundle.deployments()
               for v in pod_spec(m).get("volumes") or [] if isinstance(v, dict) and v.get("persistentVolumeClaim")]
    if not claims:
        return Evidence.not_applicable("nothing keeps state: the weights are in the image, the KV cache in memory, "
                                       "emptyDirs are scratch")
    backups = [m.subject for m in context.bundle.of_kind(*BACKUP_KINDS)]
    annotated = [m.subject for m in context.bundle.deployments()
                 if any(a in (((m.data.get("spec") or {}).get("template") or {}).get("metadata") or {})
                        .get("annotations", {}) for a in BACKUP_ANNOTATIONS)]
    if not (backups or annotated):
        return Evidence.failed(f"state without a backup: {', '.join(claims)}")
    return Evidence.passed(f"{', '.join(claims)}; backed up by {', '.join(backups + annotated)}")


CLUSTER_ONLY = "enforced by the cluster, which this machine does not run"
ITEMS: dict[str, tuple[str, Judge, Judge]] = {
    "probes": ("Liveness and readiness probes", probes_in_bundle, probes_on_service),
    "resources": ("Requests = limits, sized from the footprint", resources_in_bundle,
                  not_seen_from_outside("sizes are a property of the manifests (3.2's memory drill measures them)")),
    "auth": ("Authentication (API keys from a Secret)", auth_in_bundle, auth_on_service),
    "rate-limits": ("Rate limits per key", rate_limit_in_bundle, rate_limit_on_service),
    "tls": ("TLS at the ingress", tls_in_bundle,
            not_seen_from_outside("the service here is plain HTTP on 127.0.0.1; TLS terminates at the ingress "
                                  "controller")),
    "alerts": ("Alerts", alerts_in_bundle, alerts_on_service),
    "dashboards": ("Dashboards", dashboards_in_bundle, dashboards_on_service),
    "logs": ("Logs (requests recorded, no secrets)", logs_in_bundle, logs_on_service),
    "runbooks": ("Runbook links", runbooks_in_bundle, not_seen_from_outside("runbooks are documents, not endpoints")),
    "pdb": ("PodDisruptionBudget", pdb_in_bundle, not_seen_from_outside(CLUSTER_ONLY)),
    "network-policies": ("NetworkPolicies", network_in_bundle, not_seen_from_outside(CLUSTER_ONLY)),
    "images": ("Images pinned and scanned", images_in_bundle,
               not_seen_from_outside("the service runs from this checkout, not from the image")),
    "backups": ("Backups of what has state", backups_in_bundle,
                not_seen_from_outside("the service keeps no state between requests")),
}
