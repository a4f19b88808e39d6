"""Version 2 of the triage app's reply parser — with a PLANTED REGRESSION, kept on purpose for teaching.

The story: v2 "simplified" parsing into one tolerant regular expression, so single-quoted and truncated
replies parse on the same path as JSON. Its author's example tests pass (they all end a pair with a comma).
The bug: the pattern demands a comma after every ``key: value`` pair, so the LAST field of an object is
silently dropped — and the model writes ``category`` last. Every reply then lands in the fallback
category "other". It never crashes, so "never raises" tests miss it; a round-trip property test
(``parse(json.dumps(ticket)) == ticket``), a golden test or an accuracy gate catches it.

Do not fix it: ``tests/unit/apps/test_triage.py`` checks that the bug is there.
"""

from __future__ import annotations

import re

from slmlab.apps.ticket import FALLBACK, Ticket, ticket_from_fields

_PAIR = re.compile(r"""["'](\w+)["']\s*:\s*["']([^"'\n]*)["']\s*,""")


def parse_reply(text: str) -> Ticket:
    """The model's reply as a Ticket, in one regex pass (v2); never raises."""
    if not isinstance(text, str):
        return FALLBACK
    return ticket_from_fields(dict(_PAIR.findall(text)))
