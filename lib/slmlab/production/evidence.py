"""What one checklist item found: each side's evidence (the bundle, the running service) and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slmlab.deploy.findings import Finding

PASS, FAIL, NA = "pass", "fail", "n/a"
MARKS = {PASS: "✓", FAIL: "✗", NA: "–"}


@dataclass(frozen=True)
class Evidence:
    """What one side (the bundle, or the running service) showed for an item."""

    status: str  # pass | fail | n/a
    text: str
    findings: tuple[Finding, ...] = ()

    @classmethod
    def passed(cls, text: str) -> Evidence:
        return cls(PASS, text)

    @classmethod
    def failed(cls, text: str, findings: Sequence[Finding] = ()) -> Evidence:
        return cls(FAIL, text, tuple(findings))

    @classmethod
    def not_applicable(cls, text: str) -> Evidence:
        return cls(NA, text)


@dataclass(frozen=True)
class ItemResult:
    """One checklist item: the bundle's evidence, the service's, and the verdict from both."""

    key: str
    title: str
    bundle: Evidence
    service: Evidence

    @property
    def status(self) -> str:
        """fail if either side failed; pass if one passed; n/a when neither applies."""
        sides = (self.bundle.status, self.service.status)
        return FAIL if FAIL in sides else PASS if PASS in sides else NA

    def row(self) -> dict[str, str]:
        """A flat dict for a table."""
        return {"item": self.key, "status": self.status, "bundle": f"{self.bundle.status}: {self.bundle.text}",
                "service": f"{self.service.status}: {self.service.text}"}
