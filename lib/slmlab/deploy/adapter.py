"""prometheus-adapter values for an HPA that scales on the requests in each engine pod (`scale_on: requests`).

The HPA reads per-pod custom metrics from the `custom.metrics.k8s.io` API; prometheus-adapter serves that API
from Prometheus. Its rule (see the adapter's docs/config.md): **discovery** (`seriesQuery`: the series to
offer), **association** (`resources.overrides`: the `namespace` and `pod` labels name Kubernetes objects, which
is why Prometheus scrapes each engine pod and labels it so), **naming** (`name.as`: the metric name the HPA asks
for) and **querying** (`metricsQuery`, a PromQL template: `<<.LabelMatchers>>` selects the pods the HPA asks
about, `<<.GroupBy>>` is `pod`). The rendered file is the values of the prometheus-community Helm chart:

    helm install prometheus-adapter prometheus-community/prometheus-adapter -n monitoring \\
        -f helm/prometheus-adapter-values.yaml
"""

from __future__ import annotations

import re
from typing import Any

from slmlab.deploy.findings import Finding
from slmlab.deploy.spec import LOAD_METRIC, Plan
from slmlab.deploy.templating import HEADER
from slmlab.errors import SlmLabError
from slmlab.monitoring.promtool import check_rules

VALUES_PATH = "helm/prometheus-adapter-values.yaml"
PROMETHEUS_URL = "http://prometheus.monitoring.svc"  # where the cluster's Prometheus answers (edit to yours)
PROMETHEUS_PORT = 9090
# promtool's complaint about one query, checked as a recording rule named custom_<rule index>:<field>
_PROMTOOL_RULE = re.compile(r'^\d+:\d+: group "adapter", rule \d+, "custom_(\d+):(\w+)": (.*)$')


def load_query(gauges: tuple[str, ...], matchers: str = "<<.LabelMatchers>>", group_by: str = "<<.GroupBy>>") -> str:
    """PromQL summing the engine's load gauges per pod (running + waiting), as an adapter query template."""
    if not gauges:
        raise SlmLabError("This engine exports no load gauges.", "Scale on cpu, or pick an engine with metrics.")
    return " + ".join(f"sum by ({group_by}) ({gauge}{{{matchers}}})" for gauge in gauges)


def adapter_rule(plan: Plan) -> dict[str, Any]:
    """The one custom-metrics rule: the engine's load gauges in `plan`'s namespace, offered as LOAD_METRIC."""
    gauges = plan.engine.load_gauges
    first = gauges[0] if gauges else ""
    return {
        "seriesQuery": f'{{__name__="{first}",namespace="{plan.spec.namespace}",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{re.escape(first)}$", "as": LOAD_METRIC},
        "metricsQuery": load_query(gauges),
    }


def render_adapter_values(plan: Plan) -> dict[str, str]:
    """helm/prometheus-adapter-values.yaml when the spec scales on requests; nothing otherwise."""
    import yaml

    if plan.spec.scale_on != "requests":
        return {}
    values = {"prometheus": {"url": PROMETHEUS_URL, "port": PROMETHEUS_PORT},
              "rules": {"default": False, "custom": [adapter_rule(plan)]}}
    head = (f"# {HEADER}\n# prometheus-adapter's Helm values: offers {LOAD_METRIC} (requests in each engine pod, "
            f"{' + '.join(plan.engine.load_gauges)})\n# to the HPA in k8s/. Point prometheus.url at your Prometheus.\n")
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
        queries[f"custom_{i}:metricsQuery"] = (
            rule["metricsQuery"].replace("<<.LabelMatchers>>", 'namespace="slm",pod=~"slm-engine-.*"')
            .replace("<<.GroupBy>>", "pod").replace("<<.Series>>", "up"))
    return problems + (_check_queries(queries, path) if queries else [])


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
