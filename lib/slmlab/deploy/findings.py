"""One record for every problem `slmlab deploy check` finds, whichever checker found it: hadolint and the
course's Dockerfile rules, the Compose and Kubernetes schemas, the policy checker, promtool, the adapter check.

    Finding("k8s/03-gateway-deployment.yaml", "spec.template.spec.containers[0].securityContext.privileged",
            "privileged", "must not be true", subject="Deployment/chat-gateway")
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One problem in a file: which file, where in it, which rule, what is wrong, how bad.

    `where` is a line ("line 12") in a Dockerfile, a field path ("spec.template.spec.containers[0].image") in
    YAML, or "" for the file as a whole; `subject` names the object inside a file that holds several
    ("Deployment/chat"), else "".
    """

    file: str
    where: str
    rule: str
    message: str
    severity: str = "error"  # hadolint's levels: error, warning, info, style; every other checker: error
    subject: str = ""

    def __str__(self) -> str:
        place = ": ".join(part for part in (self.file, self.subject, self.where) if part)
        tag = self.rule if self.severity == "error" else f"{self.rule}, {self.severity}"
        return f"{place}: {self.message} [{tag}]"

    def row(self) -> dict[str, str]:
        """A flat dict for a table (pandas.DataFrame(finding.row() for finding in findings))."""
        return {"file": self.file, "object": self.subject, "where": self.where, "rule": self.rule,
                "severity": self.severity, "message": self.message}


def json_path(parts: Iterable[Any]) -> str:
    """A field path as people write it: `spec.containers[0].image` from ("spec", "containers", 0, "image")."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_findings(validator: Any, data: Any, file: str, subject: str = "") -> list[Finding]:
    """Every place where `data` breaks a jsonschema validator's schema, in document order; the rule is the
    schema keyword that failed (additionalProperties, type, required, …)."""
    errors = sorted(validator.iter_errors(data), key=lambda e: [_order(part) for part in e.absolute_path])
    return [Finding(file, json_path(e.absolute_path), str(e.validator), e.message, subject=subject) for e in errors]


def _order(part: Any) -> tuple[int, int, str]:
    """Sort key of one path part: list indexes by number, before mapping keys by name."""
    return (0, part, "") if isinstance(part, int) else (1, 0, str(part))
