"""Kubernetes manifests for a deployment, and their validation against the Kubernetes API schemas.

Rendered: Namespace (Pod Security "restricted" enforced), ServiceAccount (no token), engine and gateway
Deployments (probes, resources from `slmlab.models.footprint`, restricted securityContext, API keys from a Secret:
mounted as a file, or a secretKeyRef where the engine reads keys only from its environment), Services,
HorizontalPodAutoscaler (autoscaling/v2), PodDisruptionBudgets, NetworkPolicies, and a Role + RoleBinding that let
Prometheus discover the engine pods (read pods in the namespace, nothing else); on request a VerticalPodAutoscaler.
Validated offline with `kubernetes-validate` (strict schemas: an unknown or misspelt field is an error), the
VerticalPodAutoscaler against its CRD's schema (`slmlab.deploy.crd_schemas`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from slmlab.deploy.compose import writable_paths
from slmlab.deploy.crd_schemas import crd_validator
from slmlab.deploy.findings import Finding, schema_findings
from slmlab.deploy.images import GATEWAY_PORT
from slmlab.deploy.spec import LOAD_METRIC, Plan
from slmlab.deploy.templating import render_template
from slmlab.errors import SlmLabError
from slmlab.scaling.autoscale import quantity
from slmlab.textfiles import read_text

KUBERNETES_VERSION = "1.35.0"  # the schemas validated against (bundled by kubernetes-validate)
MONITORING_NAMESPACE = "monitoring"  # where Prometheus runs; its pods may scrape the engine
PROMETHEUS_SERVICE_ACCOUNT = "prometheus"  # the service account Prometheus runs as (edit the binding to yours)
MANIFESTS = ("namespace", "serviceaccount", "engine-deployment", "gateway-deployment", "services", "hpa", "pdb",
             "networkpolicy", "prometheus-rbac")


API_KEY_DIR = "/run/secrets/slmlab"  # where the Secret's keys are mounted (a file per key: api-key)
API_KEY_FILE = f"{API_KEY_DIR}/api-key"


def engine_env(plan: Plan) -> list[dict[str, Any]]:
    """The engine container's environment: the API key as a Secret reference, never a value (none when the engine
    reads the mounted key file through a flag, see `engine_args`)."""
    if plan.spec.auth != "api-key" or not plan.engine.api_key_env or plan.engine.api_key_file_arg:
        return []
    if plan.engine.api_key_from_file:
        return [{"name": plan.engine.api_key_env, "value": API_KEY_FILE, "secret": False}]
    return [{"name": plan.engine.api_key_env, "secret": True}]


def engine_volumes(plan: Plan) -> list[dict[str, Any]]:
    """Writable emptyDirs (the root filesystem is read-only), shared memory for vLLM, the key file."""
    volumes = [{"name": path.strip("/").replace("/", "-"), "path": path, "size": "1Gi" if path == "/cache" else "256Mi",
                "memory": False, "secret": False} for path in writable_paths(plan)]
    if plan.engine.key == "vllm":
        # memory-backed: counts against the memory limit, so keep it small unless tensor parallel needs more
        volumes.append({"name": "dshm", "path": "/dev/shm", "size": "1Gi", "memory": True, "secret": False})
    if plan.spec.auth == "api-key" and plan.engine.key_from_file:
        volumes.append({"name": "api-keys", "path": API_KEY_DIR, "secret": True, "memory": False})
    return volumes


def engine_args(plan: Plan) -> list[str]:
    """Arguments after the image's entrypoint: llama-server's `--api-key-file` naming the mounted Secret."""
    if plan.spec.auth == "api-key" and plan.engine.api_key_file_arg:
        return [plan.engine.api_key_file_arg, API_KEY_FILE]
    return []


def render_manifests(plan: Plan) -> dict[str, str]:
    """k8s/NN-<name>.yaml for every manifest."""
    extra = {"env": engine_env(plan), "volumes": engine_volumes(plan), "args": engine_args(plan),
             "gateway_port": GATEWAY_PORT,
             "monitoring_namespace": MONITORING_NAMESPACE, "load_metric": LOAD_METRIC,
             "prometheus_service_account": PROMETHEUS_SERVICE_ACCOUNT,
             "target_requests": quantity(plan.target_requests),
             "k8s_minor": "v" + ".".join(KUBERNETES_VERSION.split(".")[:2])}
    # numbered, so that `kubectl apply -f k8s/` creates the namespace and service account first; the VPA only on
    # request, since applying it fails on a cluster without the VPA's custom resource
    names = MANIFESTS + (("vpa",) if plan.spec.vpa_mode else ())
    return {f"k8s/{i:02d}-{name}.yaml": render_template(f"k8s/{name}.yaml.j2", plan, **extra)
            for i, name in enumerate(names)}


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from."""

    path: str
    index: int  # position in a multi-document file
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """The object's kind ("?" when the document is no mapping or has none)."""
        return str(self.data.get("kind", "?")) if isinstance(self.data, dict) else "?"

    @property
    def name(self) -> str:
        """metadata.name ("?" when missing)."""
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return str((meta or {}).get("name", "?"))

    @property
    def subject(self) -> str:
        """The object as kubectl names it: Kind/name."""
        return f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return f"{self.path}: {self.subject}"


def load_manifests(text: str, path: str = "manifest.yaml") -> list[Manifest]:
    """Every non-empty YAML document of a manifest file."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise SlmLabError(f"{path} is not valid YAML: {err}", "Fix the YAML syntax (indentation, colons).") from None
    return [Manifest(path, i, doc) for i, doc in enumerate(docs) if doc]


def load_dir(folder: str | Path) -> list[Manifest]:
    """Every manifest under folder/k8s (or folder itself when it holds the YAML files); files written on
    Windows (a UTF-8 byte-order mark, CRLF line ends) read like any other."""
    root = Path(folder)
    base = root / "k8s" if (root / "k8s").is_dir() else root
    manifests: list[Manifest] = []
    for path in sorted(base.glob("*.y*ml")):
        manifests += load_manifests(read_text(path, "manifest"), str(path.relative_to(root)))
    return manifests


def validate_manifest(manifest: Manifest, version: str = KUBERNETES_VERSION) -> list[Finding]:
    """The object against the Kubernetes API schema of its kind (strict): empty list when it matches.

    The schemas are kubernetes-validate's bundled ones, loaded with its own helpers, as its `validate` does;
    the compiled validator is cached per kind, which makes checking a bundle about ten times faster. Custom
    resources the course renders (a VerticalPodAutoscaler) are checked against their vendored CRD schema.
    """
    import kubernetes_validate

    data = manifest.data
    if not isinstance(data, dict) or "apiVersion" not in data or "kind" not in data:
        return [Finding(manifest.path, "", "required", "not a Kubernetes object (apiVersion and kind are required)",
                        subject=manifest.subject)]
    custom = crd_validator(str(data["apiVersion"]), str(data["kind"]))
    if custom is not None:
        return schema_findings(custom, data, manifest.path, subject=manifest.subject)
    try:
        validator = _validator(str(data["kind"]), str(data["apiVersion"]), version)
    except kubernetes_validate.SchemaNotFoundError as err:
        return [Finding(manifest.path, "apiVersion", "unknown-kind", err.message, subject=manifest.subject)]
    return schema_findings(validator, data, manifest.path, subject=manifest.subject)


@lru_cache(maxsize=64)
def _validator(kind: str, api_version: str, version: str) -> Any:
    """A jsonschema validator for one kind, from kubernetes-validate's strict schemas for `version`."""
    import re

    import jsonschema
    from kubernetes_validate import SchemaNotFoundError, utils
    from referencing import Registry, Resource

    minor = utils.major_minor(version)
    known = [v for v in utils.all_versions() if utils.major_minor(v) <= minor][-1]
    folder = f"kubernetes-json-schema/v{known}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        raise SchemaNotFoundError(version=minor, kind=kind, api_version=api_version) from None
    registry = _definitions(folder, version) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@lru_cache(maxsize=4)
def _definitions(folder: str, version: str) -> Any:
    """The shared definitions every kind's schema refers to (1.5 MB of JSON: read once)."""
    from kubernetes_validate import utils
    from referencing import Resource

    return Resource.from_contents(utils.schema_contents(f"{folder}/_definitions.json", version))


def validate_all(manifests: list[Manifest], version: str = KUBERNETES_VERSION) -> list[Finding]:
    """Schema violations of every manifest."""
    return [v for m in manifests for v in validate_manifest(m, version)]
