"""Our own policy checker: Pod Security "restricted" and the course's hardening rules, every violation named.

Each violation is a `slmlab.deploy.findings.Finding` naming the file, the object (kind/name) and the field, e.g.
``k8s/engine-deployment.yaml: Deployment/slm-engine: spec.template.spec.containers[0].securityContext.runAsNonRoot:
must be true [run-as-non-root]``. Rules follow the Kubernetes Pod Security Standards ("restricted": non-root,
no privilege escalation, drop ALL capabilities, seccomp RuntimeDefault, no host namespaces or hostPath) plus
what a model server in production needs: a read-only root filesystem, resources, probes, pinned images,
API keys from Secrets (never values), no service-account token, and a NetworkPolicy for every workload.
"""

from __future__ import annotations

import re
from typing import Any

from slmlab.deploy.findings import Finding
from slmlab.deploy.k8s import Manifest, load_manifests

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SECRET_NAME = re.compile(r"(KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL)", re.IGNORECASE)
ALLOWED_ADD = {"NET_BIND_SERVICE"}

RULES = {
    "run-as-non-root": "must be true (Pod Security restricted: containers must not run as root)",
    "run-as-root-uid": "must not be 0 (root)",
    "privilege-escalation": "must be false (Pod Security restricted)",
    "drop-all-capabilities": 'must include "ALL" (Pod Security restricted)',
    "added-capabilities": "may only add NET_BIND_SERVICE (Pod Security restricted)",
    "privileged": "must not be true (a privileged container is root on the node)",
    "seccomp": "must be RuntimeDefault or Localhost (Pod Security restricted)",
    "read-only-root-fs": "must be true (write only to mounted volumes)",
    "host-namespaces": "must not be true (Pod Security baseline: no host namespaces)",
    "host-path": "hostPath volumes are forbidden (they expose the node's filesystem)",
    "host-port": "hostPort is forbidden (it bypasses the Service and NetworkPolicy)",
    "resources": "must be set (the scheduler sizes pods by requests; limits stop one pod starving a node)",
    "probes": "must be set (without it Kubernetes cannot tell a hung or loading server from a ready one)",
    "image-pinned": "must be pinned to a version tag or digest, not latest or untagged",
    "secret-in-env": "looks like a secret given as a literal value; use valueFrom.secretKeyRef",
    "service-account-token": "must be false (the model server never calls the Kubernetes API)",
    "network-policy": "no NetworkPolicy selects these pods (all traffic is allowed to and from them)",
    "secret-value": "a Secret with values must not be part of the rendered bundle; create it out of band",
}


def violation(manifest: Manifest, field: str, rule: str, message: str | None = None) -> Finding:
    """A broken rule of one object, as a Finding (the rule's own text unless `message` says more)."""
    return Finding(manifest.path, field, rule, message or RULES[rule], subject=manifest.subject)


def _pod_spec(manifest: Manifest) -> tuple[dict[str, Any] | None, str]:
    data, kind = manifest.data, manifest.kind
    spec = data.get("spec") or {}
    if kind == "Pod":
        return spec, "spec"
    if kind in WORKLOADS:
        return ((spec.get("template") or {}).get("spec") or {}), "spec.template.spec"
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}, \
            "spec.jobTemplate.spec.template.spec"
    return None, ""


def _pod_labels(manifest: Manifest) -> dict[str, str]:
    spec = manifest.data.get("spec") or {}
    if manifest.kind == "Pod":
        return (manifest.data.get("metadata") or {}).get("labels") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def check_manifest(manifest: Manifest) -> list[Finding]:
    """Violations of one object's pod template (objects without pods have none)."""
    pod, prefix = _pod_spec(manifest)
    if pod is None:
        if manifest.kind == "Secret" and (manifest.data.get("data") or manifest.data.get("stringData")):
            return [violation(manifest, "data" if manifest.data.get("data") else "stringData", "secret-value")]
        return []
    out: list[Finding] = []

    def bad(field: str, rule: str) -> None:
        out.append(violation(manifest, field, rule))

    pod_sc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key) is True:
            bad(f"{prefix}.{key}", "host-namespaces")
    if pod.get("automountServiceAccountToken") is not False:
        bad(f"{prefix}.automountServiceAccountToken", "service-account-token")
    for i, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in (volume or {}):
            bad(f"{prefix}.volumes[{i}].hostPath", "host-path")
    if pod_sc.get("runAsUser") == 0:
        bad(f"{prefix}.securityContext.runAsUser", "run-as-root-uid")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        bad(f"{prefix}.securityContext.seccompProfile.type", "seccomp")

    groups = [("initContainers", pod.get("initContainers") or []), ("containers", pod.get("containers") or [])]
    for group, containers in groups:
        for i, container in enumerate(containers):
            out += _check_container(manifest, f"{prefix}.{group}[{i}]", container or {}, pod_sc,
                                    needs_probes=group == "containers")
    return out


def _check_container(manifest: Manifest, at: str, c: dict[str, Any], pod_sc: dict[str, Any],
                     needs_probes: bool) -> list[Finding]:
    out: list[Finding] = []

    def bad(field: str, rule: str, message: str | None = None) -> None:
        out.append(violation(manifest, f"{at}.{field}", rule, message))

    sc = c.get("securityContext") or {}
    image = str(c.get("image", ""))
    if not _image_pinned(image):
        bad("image", "image-pinned", f"{image!r} {RULES['image-pinned']}")
    if sc.get("privileged") is True:
        bad("securityContext.privileged", "privileged")
    non_root = sc["runAsNonRoot"] if "runAsNonRoot" in sc else pod_sc.get("runAsNonRoot")
    if non_root is not True:
        bad("securityContext.runAsNonRoot", "run-as-non-root")
    if sc.get("runAsUser") == 0:
        bad("securityContext.runAsUser", "run-as-root-uid")
    if sc.get("allowPrivilegeEscalation") is not False:
        bad("securityContext.allowPrivilegeEscalation", "privilege-escalation")
    caps = sc.get("capabilities") or {}
    if "ALL" not in [str(x).upper() for x in caps.get("drop") or []]:
        bad("securityContext.capabilities.drop", "drop-all-capabilities")
    added = [str(x).upper() for x in caps.get("add") or []]
    if set(added) - ALLOWED_ADD:
        bad("securityContext.capabilities.add", "added-capabilities",
            f"adds {', '.join(sorted(set(added) - ALLOWED_ADD))}; {RULES['added-capabilities']}")
    seccomp = (sc.get("seccompProfile") or {}).get("type") or (pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        bad("securityContext.seccompProfile.type", "seccomp")
    if sc.get("readOnlyRootFilesystem") is not True:
        bad("securityContext.readOnlyRootFilesystem", "read-only-root-fs")
    resources = c.get("resources") or {}
    for section, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        if not (resources.get(section) or {}).get(key):
            bad(f"resources.{section}.{key}", "resources")
    if needs_probes:
        for probe in ("livenessProbe", "readinessProbe"):
            if not c.get(probe):
                bad(probe, "probes")
    for j, env in enumerate(c.get("env") or []):
        if isinstance(env, dict) and "value" in env and SECRET_NAME.search(str(env.get("name", ""))) \
                and not str(env.get("name", "")).upper().endswith(("_FILE", "_PATH")):
            bad(f"env[{j}].value", "secret-in-env", f"{env.get('name')} {RULES['secret-in-env']}")
    for j, port in enumerate(c.get("ports") or []):
        if isinstance(port, dict) and port.get("hostPort"):
            bad(f"ports[{j}].hostPort", "host-port")
    return out


def _selects(policy: Manifest, namespace: str, labels: dict[str, str]) -> bool:
    meta = policy.data.get("metadata") or {}
    if meta.get("namespace", "default") != namespace:
        return False
    selector = (policy.data.get("spec") or {}).get("podSelector") or {}
    wanted = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        return False  # not evaluated here: only matchLabels selectors count
    return all(labels.get(k) == v for k, v in wanted.items())


def check_bundle(manifests: list[Manifest]) -> list[Finding]:
    """Every object's violations, plus rules across objects (every workload selected by a NetworkPolicy)."""
    out = [v for m in manifests for v in check_manifest(m)]
    policies = [m for m in manifests if m.kind == "NetworkPolicy"]
    for m in manifests:
        if m.kind in WORKLOADS or m.kind == "Pod":
            namespace = (m.data.get("metadata") or {}).get("namespace", "default")
            if not any(_selects(p, namespace, _pod_labels(m)) for p in policies):
                field = "metadata.labels" if m.kind == "Pod" else "spec.template.metadata.labels"
                out.append(violation(m, field, "network-policy"))
    return out


def check_text(text: str, path: str = "manifest.yaml", with_bundle_rules: bool = False) -> list[Finding]:
    """Violations of the objects in one YAML text (bundle rules only when asked: one file rarely holds them)."""
    manifests = load_manifests(text, path)
    return check_bundle(manifests) if with_bundle_rules else [v for m in manifests for v in check_manifest(m)]


def report(violations: list[Finding]) -> str:
    """A readable report: one line per violation, or a line saying there are none."""
    if not violations:
        return "policy: no violations"
    return "\n".join([f"policy: {len(violations)} violation(s)"] + [f"  ✗ {v}" for v in violations])
