"""prometheus-adapter values for an HPA on a per-pod custom metric: the requests in each engine pod
(`scale_on: requests`) or the GPU utilization NVIDIA's dcgm-exporter reports for it (`scale_on: gpu`).

The HPA reads per-pod custom metrics from the `custom.metrics.k8s.io` API; prometheus-adapter serves that API
from Prometheus. Its rule (see the adapter's docs/config.md): **discovery** (`seriesQuery`: the series to
offer), **association** (`resources.overrides`: the `namespace` and `pod` labels name Kubernetes objects, which
is why Prometheus scrapes each engine pod and labels it so), **naming** (`name.as`: the metric name the HPA asks
for) and **querying** (`metricsQuery`, a PromQL template: `<<.LabelMatchers>>` selects the pods the HPA asks
about, `<<.GroupBy>>` is `pod`). The rendered file is the values of the prometheus-community Helm chart:

    helm install prometheus-adapter prometheus-community/prometheus-adapter -n monitoring \\
        -f helm/prometheus-adapter-values.yaml

GPU utilization comes from dcgm-exporter, a DaemonSet on each GPU node, not from the engine: with
`DCGM_EXPORTER_KUBERNETES=true` it labels each GPU's samples with the `namespace` and `pod` using it, and since
Prometheus labels every scraped sample with the *exporter's* own pod, it keeps the workload's as
`exported_namespace` and `exported_pod` (honor_labels off, the default). The rule associates those.
`DCGM_FI_DEV_GPU_UTIL` (0-100) is NVML's "percent of time over the past sample period during which one or more
kernels was executing on the GPU" (NVML API reference, nvmlUtilization_t): one request keeps it near 100.
"""

from __future__ import annotations

import re
from typing import Any

from slmlab.deploy.findings import Finding
from slmlab.deploy.spec import GPU_METRIC, LOAD_METRIC, Plan
from slmlab.deploy.templating import HEADER
from slmlab.errors import SlmLabError
from slmlab.monitoring.promtool import check_rules

VALUES_PATH = "helm/prometheus-adapter-values.yaml"
PROMETHEUS_URL = "http://prometheus.monitoring.svc"  # where the cluster's Prometheus answers (edit to yours)
PROMETHEUS_PORT = 9090
GPU_UTIL_SERIES = "DCGM_FI_DEV_GPU_UTIL"  # dcgm-exporter's GPU utilization gauge, percent
# promtool's complaint about one query, checked as a recording rule named custom_<rule index>:<field>
_PROMTOOL_RULE = re.compile(r'^\d+:\d+: group "adapter", rule \d+, "custom_(\d+):(\w+)": (.*)$')


def load_query(gauges: tuple[str, ...], matchers: str = "<<.LabelMatchers>>", group_by: str = "<<.GroupBy>>") -> str:
    """PromQL summing the engine's load gauges per pod (running + waiting), as an adapter query template."""
    if not gauges:
        raise SlmLabError("This engine exports no load gauges.", "Scale on cpu, or pick an engine with metrics.")
    return " + ".join(f"sum by ({group_by}) ({gauge}{{{matchers}}})" for gauge in gauges)


def adapter_rule(plan: Plan) -> dict[str, Any]:
    """The one custom-metrics rule: the engine's load gauges (or, scaling on the GPU, dcgm-exporter's utilization)
    in `plan`'s namespace, offered as LOAD_METRIC (GPU_METRIC)."""
    if plan.spec.scale_on == "gpu":
        return gpu_rule(plan.spec.namespace)
    gauges = plan.engine.load_gauges
    first = gauges[0] if gauges else ""
    return {
        "seriesQuery": f'{{__name__="{first}",namespace="{plan.spec.namespace}",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{re.escape(first)}$", "as": LOAD_METRIC},
        "metricsQuery": load_query(gauges),
    }


def gpu_rule(namespace: str) -> dict[str, Any]:
    """dcgm-exporter's GPU utilization of the pods in `namespace` (its exported_* labels), offered as GPU_METRIC."""
    return {
        "seriesQuery": f'{{__name__="{GPU_UTIL_SERIES}",exported_namespace="{namespace}",exported_pod!=""}}',
        "resources": {"overrides": {"exported_namespace": {"resource": "namespace"},
                                    "exported_pod": {"resource": "pod"}}},
        "name": {"matches": f"^{GPU_UTIL_SERIES}$", "as": GPU_METRIC},
        "metricsQuery": "avg by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",  # a pod may hold several GPUs
    }


def render_adapter_values(plan: Plan) -> dict[str, str]:
    """helm/prometheus-adapter-values.yaml when the spec scales on requests or the GPU; nothing otherwise."""
    import yaml

    if plan.spec.scale_on not in ("requests", "gpu"):
        return {}
    values = {"prometheus": {"url": PROMETHEUS_URL, "port": PROMETHEUS_PORT},
              "rules": {"default": False, "custom": [adapter_rule(plan)]}}
    offered = (f"{GPU_METRIC} (dcgm-exporter's {GPU_UTIL_SERIES} of each engine pod, percent)"
               if plan.spec.scale_on == "gpu" else
               f"{LOAD_METRIC} (requests in each engine pod, {' + '.join(plan.engine.load_gauges)})")
    head = (f"# {HEADER}\n# prometheus-adapter's Helm values: offers {offered}\n# to the HPA in k8s/. "
            "Point prometheus.url at your Prometheus.\n")
    return {VALUES_PATH: head + yaml.safe_dump(values, sort_keys=False, width=200)}


def check_adapter_values(text: str, path: str = VALUES_PATH) -> list[Finding]:
    """Problems in adapter values: missing fields, and each query that promtool cannot parse once its template
    variables are filled in as the adapter fills them (empty list: fine)."""
    import yaml

    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        return [Finding(path, "", "yaml", f"not valid YAML: {err}")]
    rules = ((values.get("rules") or {}).get("custom") or []) if isinstance(values, dict) else []
    if not rules:
        return [Finding(path, "rules.custom", "adapter-rule", "lists no rule, so the HPA's metric would not exist")]
    problems, queries = [], {}
    for i, rule in enumerate(rules):
        missing = [key for key in ("seriesQuery", "resources", "name", "metricsQuery") if key not in rule]
        if missing:
            problems.append(Finding(path, f"rules.custom[{i}]", "adapter-rule", f"lacks {', '.join(missing)}"))
            continue
        queries[f"custom_{i}:seriesQuery"] = rule["seriesQuery"]
        namespace_label, pod_label = _resource_labels(rule)
        queries[f"custom_{i}:metricsQuery"] = (
            rule["metricsQuery"].replace("<<.LabelMatchers>>", f'{namespace_label}="slm",{pod_label}=~"slm-engine-.*"')
            .replace("<<.GroupBy>>", pod_label).replace("<<.Series>>", "up"))
    return problems + (_check_queries(queries, path) if queries else [])


def _resource_labels(rule: dict[str, Any]) -> tuple[str, str]:
    """The labels a rule associates with namespaces and pods, as the adapter fills them into its templates."""
    resources = rule.get("resources")
    overrides = resources.get("overrides") if isinstance(resources, dict) else None
    by_resource = {str(v.get("resource")): k for k, v in (overrides or {}).items() if isinstance(v, dict)}
    return by_resource.get("namespace", "namespace"), by_resource.get("pod", "pod")


def _check_queries(queries: dict[str, str], path: str) -> list[Finding]:
    """promtool parses each query as a recording rule named custom_<i>:<key>; its complaints name the field."""
    import yaml

    record = yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": name, "expr": expr}
                                                                       for name, expr in queries.items()]}]})
    findings = []
    for line in check_rules(record):
        match = _PROMTOOL_RULE.match(line)
        where, message = (f"rules.custom[{match[1]}].{match[2]}", match[3]) if match else ("rules.custom", line)
        findings.append(Finding(path, where, "promql", message))
    return findings
