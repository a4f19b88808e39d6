"""The triage app's answer: a :class:`Ticket` (urgency and category), and how model words become its labels.

Shared by every version of the app's reply parser (:mod:`slmlab.apps.triage`, :mod:`slmlab.apps.triage_v2`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

URGENCIES: tuple[str, ...] = ("low", "high")
CATEGORIES: tuple[str, ...] = ("billing", "technical", "account", "shipping")
FALLBACK_CATEGORY: Final = "other"  # what the app answers when it cannot tell: a human triages the ticket

# Words a small model writes instead of ours.
URGENCY_ALIASES: dict[str, str] = {"urgent": "high", "critical": "high", "normal": "low", "medium": "low"}
CATEGORY_ALIASES: dict[str, str] = {
    "payment": "billing", "payments": "billing", "invoice": "billing", "refund": "billing",
    "tech": "technical", "bug": "technical", "technical support": "technical",
    "login": "account", "accounts": "account", "password": "account", "profile": "account",
    "delivery": "shipping", "tracking": "shipping", "order": "shipping", "shipment": "shipping",
}


class Ticket(BaseModel):
    """The app's answer: how urgent a ticket is and which team gets it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urgency: Literal["low", "high"]
    category: Literal["billing", "technical", "account", "shipping", "other"]

    @property
    def needs_review(self) -> bool:
        """True when the app could not tell the category and a human should look."""
        return self.category == FALLBACK_CATEGORY


FALLBACK = Ticket(urgency="low", category=FALLBACK_CATEGORY)


def normalise_label(value: Any, allowed: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> str | None:
    """`value` as one of `allowed` (Unicode NFKC, trimmed, case-folded, aliases applied), or None."""
    if not isinstance(value, str):
        return None
    key = unicodedata.normalize("NFKC", value).strip().strip(".!'\"`").strip().casefold()
    key = " ".join(key.split())
    if key in allowed:
        return key
    return (aliases or {}).get(key)


def ticket_from_fields(fields: Mapping[str, Any]) -> Ticket:
    """A Ticket from parsed fields: labels normalised; an unknown urgency is "low", an unknown category "other"."""
    urgency = normalise_label(fields.get("urgency"), URGENCIES, URGENCY_ALIASES) or "low"
    category = normalise_label(fields.get("category"), CATEGORIES + (FALLBACK_CATEGORY,), CATEGORY_ALIASES)
    return Ticket.model_validate({"urgency": urgency, "category": category or FALLBACK_CATEGORY})
