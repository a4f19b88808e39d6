"""A Helm chart for the same bundle, generated from the rendered manifests (so the two cannot drift apart):
``helm/<name>/`` with Chart.yaml, values.yaml (images, replicas, resources, autoscaling bounds) and one template per
manifest in which exactly those fields read `.Values`, and every namespace is the release's. With the default
values, `helm template <name> helm/<name> --namespace <ns>` gives back the rendered objects, Helm's own labels
added (`managed-by: Helm`, `helm.sh/chart`).

    helm lint helm/chat
    helm template chat helm/chat --namespace slm --set engine.image.digest=sha256:…   # pin by digest once pushed

(`helm_check.py` runs both with the official helm and checks what `helm template` renders.)

The chart creates the namespace with its Pod Security labels (values `namespace.create`), as the bundle does;
with `helm install`, create and label the namespace first and pass `--set namespace.create=false`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from slmlab.deploy.images import GATEWAY_PORT
from slmlab.deploy.k8s import Manifest, load_manifests, render_manifests
from slmlab.deploy.spec import Plan
from slmlab.deploy.templating import HEADER, names

CHART_VERSION = "0.1.0"
_PLACEHOLDER = re.compile(r"""(['"]?)__HELM_(\d+)__\1""")


def chart_dir(plan: Plan) -> str:
    """helm/<name> in the rendered folder."""
    return f"helm/{plan.spec.name}"


def _image_values(ref: str) -> dict[str, str]:
    repository, _, tag = ref.rpartition(":")
    return {"repository": repository, "tag": tag, "digest": "", "pullPolicy": "IfNotPresent"}


def chart_values(plan: Plan, manifests: list[Manifest]) -> dict[str, Any]:
    """values.yaml: what an operator changes per cluster, with the rendered bundle's values as defaults."""
    n = names(plan)
    deploys = {m.name: m.data for m in manifests if m.kind == "Deployment"}
    hpa: dict[str, Any] = next((m.data["spec"] for m in manifests if m.kind == "HorizontalPodAutoscaler"), {})
    values: dict[str, Any] = {"namespace": {"create": True}}
    for component in ("engine", "gateway"):
        spec = deploys[n[component]]["spec"]
        values[component] = {"image": _image_values(plan.image_ref(component)), "replicas": spec["replicas"],
                             "resources": spec["template"]["spec"]["containers"][0]["resources"]}
    values["autoscaling"] = {"minReplicas": hpa.get("minReplicas", plan.spec.replicas),
                             "maxReplicas": hpa.get("maxReplicas", plan.spec.max_replicas)}
    return values


class _Holes:
    """Placeholders put into a manifest's dict, replaced by Helm template expressions after it is dumped as YAML."""

    def __init__(self) -> None:
        self.expressions: list[str] = []

    def __call__(self, expression: str) -> str:
        self.expressions.append(expression)
        return f"__HELM_{len(self.expressions) - 1}__"

    def fill(self, text: str) -> str:
        """The YAML text with each placeholder replaced (a `{{- toYaml … | nindent }}` aligned under its key)."""
        out = []
        for line in text.splitlines():
            nested = str(len(line) - len(line.lstrip()) + 2)  # a mapping's keys, under its key

            def expression(match: re.Match[str], at: str = nested) -> str:
                return self.expressions[int(match[2])].replace("INDENT", at)

            out.append(_PLACEHOLDER.sub(expression, line))
        return "\n".join(out) + "\n"


def _image(component: str) -> str:
    v = f".Values.{component}.image"
    return (f'"{{{{ {v}.repository }}}}{{{{ if {v}.digest }}}}@{{{{ {v}.digest }}}}{{{{ else }}}}:{{{{ {v}.tag }}}}'
            f'{{{{ end }}}}"')


def _templated(manifest: Manifest, plan: Plan, holes: _Holes) -> dict[str, Any]:
    """One object with the chart's values in it (the rest exactly as rendered)."""
    data = copy.deepcopy(manifest.data)
    meta = data.setdefault("metadata", {})
    if manifest.kind == "Namespace":
        meta["name"] = holes("{{ .Release.Namespace }}")
    elif "namespace" in meta:
        meta["namespace"] = holes("{{ .Release.Namespace }}")
    labels = meta.get("labels")
    if isinstance(labels, dict) and "app.kubernetes.io/managed-by" in labels:
        labels["app.kubernetes.io/managed-by"] = holes("{{ .Release.Service }}")
        labels["helm.sh/chart"] = holes('{{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}')
    n = names(plan)
    component = {n["engine"]: "engine", n["gateway"]: "gateway"}.get(manifest.name)
    if manifest.kind == "Deployment" and component:
        data["spec"]["replicas"] = holes(f"{{{{ .Values.{component}.replicas }}}}")
        box = data["spec"]["template"]["spec"]["containers"][0]
        box["image"] = holes(_image(component))
        box["imagePullPolicy"] = holes(f"{{{{ .Values.{component}.image.pullPolicy }}}}")
        box["resources"] = holes(f"{{{{- toYaml .Values.{component}.resources | nindent INDENT }}}}")
    if manifest.kind == "HorizontalPodAutoscaler":
        data["spec"]["minReplicas"] = holes("{{ .Values.autoscaling.minReplicas }}")
        data["spec"]["maxReplicas"] = holes("{{ .Values.autoscaling.maxReplicas }}")
    if manifest.kind == "ConfigMap" and "SLMLAB_UPSTREAM_URL" in (data.get("data") or {}):
        data["data"]["SLMLAB_UPSTREAM_URL"] = holes(
            f'"http://{n["engine"]}.{{{{ .Release.Namespace }}}}.svc:{plan.port}/v1"')
    return data


def render_chart(plan: Plan) -> dict[str, str]:
    """helm/<name>/Chart.yaml, values.yaml and templates/, from the manifests `render_manifests` writes."""
    import yaml

    root = chart_dir(plan)
    files: dict[str, str] = {}
    every: list[Manifest] = []
    for path, text in render_manifests(plan).items():
        manifests = load_manifests(text, path)
        every += manifests
        docs = []
        for manifest in manifests:
            holes = _Holes()
            dumped = yaml.safe_dump(_templated(manifest, plan, holes), sort_keys=False, width=1000)
            docs.append(holes.fill(dumped))
            if manifest.kind == "Namespace":
                docs[-1] = "{{- if .Values.namespace.create }}\n" + docs[-1] + "{{- end }}\n"
        name = path.rsplit("/", 1)[-1]
        files[f"{root}/templates/{name}"] = (f"# {HEADER}\n# The chart's form of {path} (its comments explain each "
                                             "field).\n" + "---\n".join(docs))
    files[f"{root}/values.yaml"] = (f"# {HEADER}\n# Defaults: the rendered bundle's own values.\n"
                                    + yaml.safe_dump(chart_values(plan, every), sort_keys=False))
    files[f"{root}/Chart.yaml"] = yaml.safe_dump({
        "apiVersion": "v2", "name": plan.spec.name, "version": CHART_VERSION, "appVersion": plan.spec.image_tag,
        "type": "application", "kubeVersion": ">=1.29.0-0",
        "description": f"{plan.engine.label} serving {plan.served_name} ({plan.spec.quantization}) behind the "
                       f"course's gateway (port {GATEWAY_PORT}); generated by `slmlab deploy render`."},
        sort_keys=False)
    return files

