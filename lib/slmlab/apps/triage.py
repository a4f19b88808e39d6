"""A small, real SLM app to test: support-ticket triage.

Given a ticket's text, :class:`TriageApp` asks a chat model (greedy decoding) for a JSON object with the
ticket's ``urgency`` and ``category``, and turns the reply into a validated :class:`Ticket`. The pure parts
are separate functions so they can be tested without a model:

- :func:`build_messages` — the prompt: a system message, a few worked examples, the ticket;
- :func:`parse_reply` — model text → :class:`Ticket`; never raises: malformed or off-list output becomes
  ``category="other"`` (a human looks at it);
- :func:`normalise_label` — ``" Billing\\n"``, ``"ＢＩＬＬＩＮＧ"`` or ``"payment"`` → ``"billing"``.

``TriageApp(..., version="v2")`` swaps in :func:`slmlab.apps.triage_v2.parse_reply`, a "tidier" parser
with a planted regression for the course's testing notebook to catch. The Ticket and the label helpers live in
:mod:`slmlab.apps.ticket`, shared by both versions (and importable from here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from slmlab.apps import triage_v2
from slmlab.apps.ticket import (
    CATEGORIES,
    CATEGORY_ALIASES,
    FALLBACK,
    FALLBACK_CATEGORY,
    URGENCIES,
    URGENCY_ALIASES,
    Ticket,
    normalise_label,
    ticket_from_fields,
)
from slmlab.backends.base import Backend, Generation
from slmlab.errors import SlmLabError

__all__ = [  # the labels and the Ticket live in slmlab.apps.ticket; notebooks import them from here too
    "CATEGORIES", "CATEGORY_ALIASES", "EXAMPLES", "FALLBACK", "FALLBACK_CATEGORY", "SYSTEM_PROMPT", "URGENCIES",
    "URGENCY_ALIASES", "VERSIONS", "Ticket", "TriageApp", "build_messages", "first_json_object", "loose_pairs",
    "normalise_label", "parse_reply", "parser_for", "ticket_from_fields",
]

VERSIONS = ("v1", "v2")
MAX_TICKET_CHARS = 1000  # longer tickets are cut: the category shows in the first lines
DEFAULT_MAX_TOKENS = 24  # the JSON answer takes about 16 tokens

SYSTEM_PROMPT = ("You sort customer support tickets. Reply with one JSON object with the keys "
                 '"urgency" (low or high) and "category" (billing, technical, account or shipping).')
# Worked examples, as earlier turns of the chat. Order matters to a 135M model: it leans towards the
# last example, so the one "high" example comes first.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("URGENT: nobody on our team can log in to the server, production is down!",
     '{"urgency": "high", "category": "technical"}'),
    ("My package has not arrived, it was due last week.", '{"urgency": "low", "category": "shipping"}'),
    ("I forgot my password and cannot log in.", '{"urgency": "low", "category": "account"}'),
    ("The app crashes every time I open the settings page.", '{"urgency": "low", "category": "technical"}'),
    ("I was charged twice this month, please refund me.", '{"urgency": "low", "category": "billing"}'),
)


def build_messages(text: str, examples: tuple[tuple[str, str], ...] = EXAMPLES) -> list[dict[str, str]]:
    """The chat for one ticket: system message, worked examples, then the ticket (trimmed, at most 1000 chars)."""
    if not isinstance(text, str) or not text.strip():
        raise SlmLabError(f"A ticket must be non-empty text, not {text!r}.", "Pass the ticket's text as a string.")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": text.strip()[:MAX_TICKET_CHARS]})
    return messages


_DECODER = json.JSONDecoder()
# key: value pairs in almost-JSON (single quotes, cut off before the closing brace).
_LOOSE_PAIR = re.compile(r"""["'](\w+)["']\s*:\s*["']([^"'\n]*)["']""")


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (prose or code fences around it are ignored), or None."""
    for match in re.finditer(r"\{", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def loose_pairs(text: str) -> dict[str, str]:
    """Every ``"key": "value"`` pair in `text`, also with single quotes or a missing closing brace."""
    return {key: value for key, value in _LOOSE_PAIR.findall(text)}


def parse_reply(text: str) -> Ticket:
    """The model's reply as a Ticket: strict JSON first, then loose key/value pairs; never raises."""
    if not isinstance(text, str):
        return FALLBACK
    fields = first_json_object(text)
    if fields is None:
        fields = loose_pairs(text)
    return ticket_from_fields(fields)


def parser_for(version: str) -> Callable[[str], Ticket]:
    """The reply parser of an app version: "v1" (this module) or "v2" (the planted regression)."""
    if version == "v1":
        return parse_reply
    if version == "v2":
        return triage_v2.parse_reply
    raise SlmLabError(f"Unknown triage app version {version!r}.", f"Use one of {', '.join(VERSIONS)}.")


class TriageApp:
    """Ticket triage on top of any chat backend; greedy decoding, so the same ticket gets the same answer."""

    def __init__(self, backend: Backend, version: str = "v1", max_tokens: int = DEFAULT_MAX_TOKENS,
                 cache: dict[str, Generation] | None = None) -> None:
        self.backend = backend
        self.version = version
        self.parse = parser_for(version)
        self.max_tokens = max_tokens
        # Greedy decoding makes a reply a function of the request, so identical requests may share one answer:
        # pass the same dict to several apps (an eval of two versions with the same prompt calls the model once).
        self.cache = cache
        self.last: Generation | None = None  # the latest model call, for token counts and timings

    def reply(self, text: str) -> Generation:
        """The model's raw answer to one ticket (from the cache when one is given and holds this request)."""
        messages = build_messages(text)
        key = json.dumps([getattr(self.backend, "model_name", ""), self.max_tokens, messages])
        if self.cache is not None and key in self.cache:
            self.last = self.cache[key]
            return self.last
        self.last = self.backend.chat(messages, max_tokens=self.max_tokens, temperature=0.0, seed=0)
        if self.cache is not None:
            self.cache[key] = self.last
        return self.last

    def triage(self, text: str) -> Ticket:
        """Urgency and category of one ticket."""
        return self.parse(self.reply(text).text)

    def __repr__(self) -> str:
        return f"<TriageApp {self.version} on {getattr(self.backend, 'model_name', '?')!r}>"
