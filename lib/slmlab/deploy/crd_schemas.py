"""Schemas of the custom resources the course renders (the VerticalPodAutoscaler), for strict offline validation.

kubernetes-validate knows the built-in kinds only. A custom resource's schema is the `openAPIV3Schema` of its
CustomResourceDefinition, vendored under schemas/ (see schemas/README.md). kubectl validates strictly by default
(`--validate=strict`: the API server rejects a field the schema does not know, custom resources included), so the
schema is made strict the same way: an object schema that lists properties, and neither allows other ones
(`additionalProperties`) nor keeps them (`x-kubernetes-preserve-unknown-fields`), admits no other field.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).with_name("schemas")
CRD_SCHEMAS = {  # (apiVersion, kind) -> the vendored openAPIV3Schema of that version
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): "verticalpodautoscaler-autoscaling.k8s.io-v1.json",
}


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which every object with listed properties admits no unlisted field."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: strict(value) for key, value in schema.items()}
    if ("properties" in copy and "additionalProperties" not in copy
            and not copy.get("x-kubernetes-preserve-unknown-fields")):
        copy["additionalProperties"] = False
    return copy


@lru_cache(maxsize=8)
def crd_validator(api_version: str, kind: str) -> Any | None:
    """A strict jsonschema validator for a custom resource the course knows; None for any other kind."""
    import jsonschema

    name = CRD_SCHEMAS.get((api_version, kind))
    if name is None:
        return None
    schema = strict(json.loads((SCHEMAS / name).read_text(encoding="utf-8")))
    return jsonschema.validators.Draft202012Validator(schema)
