"""A production readiness checklist that checks itself: each item evaluated against a rendered bundle and, where
the item can be seen from outside, a running service: pass, fail or not applicable, with the evidence.

    report = evaluate("out/", live=LiveService(server.url, api_key=key, log_path=server.log_path))
    print(report.summary())          # one line per item, then the evidence of the failures
    report.failed                    # ["tls", "alerts"]: the items that failed
    report.table()                   # a DataFrame: item, status, bundle, service

The bundle checks reuse `slmlab.deploy`'s policy checker (its findings are `slmlab.deploy.Finding`s); the items
and their evaluation are in `slmlab.production.items`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmlab.production.evidence import FAIL, MARKS, NA, PASS, Evidence, ItemResult
from slmlab.production.items import ITEMS, Context

__all__ = ["FAIL", "NA", "PASS", "Evidence", "ItemResult", "Readiness", "as_markdown", "evaluate", "find_workflows",
           "item_titles"]

if TYPE_CHECKING:
    import pandas as pd

    from slmlab.production.live import LiveService

@dataclass
class Readiness:
    """Every item's result, in checklist order."""

    folder: Path
    results: list[ItemResult] = field(default_factory=list)

    def __getitem__(self, key: str) -> ItemResult:
        return next(r for r in self.results if r.key == key)

    @property
    def failed(self) -> list[str]:
        """The keys of the items that failed."""
        return [r.key for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """How many items passed, failed, did not apply."""
        return {status: sum(r.status == status for r in self.results) for status in (PASS, FAIL, NA)}

    def summary(self, evidence: bool = True) -> str:
        """One line per item; with `evidence`, each failing side's evidence under it."""
        width = max(len(r.title) for r in self.results)
        lines = []
        for r in self.results:
            lines.append(f"{MARKS[r.status]} {r.title:<{width}}  {r.status}")
            if evidence and r.status == FAIL:
                lines += [f"    {side}: {ev.text}" for side, ev in (("bundle", r.bundle), ("service", r.service))
                          if ev.status == FAIL]
        counts = self.counts()
        lines.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[NA]} not applicable")
        return "\n".join(lines)

    def table(self) -> pd.DataFrame:
        """item, status and both sides' evidence, one row per item."""
        import pandas as pd

        return pd.DataFrame([r.row() for r in self.results], columns=["item", "status", "bundle", "service"])


def evaluate(folder: str | Path, live: LiveService | None = None, workflows: str | Path | None = None) -> Readiness:
    """Evaluate every checklist item on the bundle in `folder` and, when given, the running service `live`.

    `workflows` is the CI workflows folder that builds the images (default: ``.github/workflows`` in the bundle's
    folder or the nearest folder above it): the "images scanned" item reads it.
    """
    from slmlab.production.bundle import Bundle

    bundle = Bundle.load(folder)
    context = Context(bundle, live, Path(workflows) if workflows else find_workflows(bundle.root))
    report = Readiness(bundle.root)
    if live is not None:
        live.chat()  # first, before the rate-limit probe empties the key's bucket: the metrics and the log need it
    for key, (title, on_bundle, on_service) in ITEMS.items():
        report.results.append(ItemResult(key, title, on_bundle(context), on_service(context)))
    return report


def find_workflows(start: Path, levels: int = 3) -> Path | None:
    """`.github/workflows` in `start` or one of the `levels` folders above it, as git finds its repository."""
    for folder in [start.resolve(), *list(start.resolve().parents)[:levels]]:
        if (folder / ".github" / "workflows").is_dir():
            return folder / ".github" / "workflows"
    return None


def item_titles() -> dict[str, str]:
    """The checklist: item key -> title, in order."""
    return {key: title for key, (title, *_rest) in ITEMS.items()}


def as_markdown(report: Readiness) -> str:
    """The report as a Markdown table (for a notebook's display(Markdown(...)) or a CI job summary)."""
    rows = ["| item | status | bundle | service |", "| --- | --- | --- | --- |"]
    for r in report.results:
        cells: list[Any] = [r.title, f"{MARKS[r.status]} {r.status}", r.bundle.text, r.service.text]
        rows.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(rows)
