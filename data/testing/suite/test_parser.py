"""Tests of the pure parts: no model. Example tests first, then properties checked by hypothesis."""

from __future__ import annotations

from conftest import CONFIG
from hypothesis import given, settings
from hypothesis import strategies as st

from slmlab.apps import triage
from slmlab.apps.triage import CATEGORIES, FALLBACK, Ticket

# ------------------------------------------------------------------ examples (what v2's author wrote)


def test_parses_json_with_an_extra_field(parse):
    reply = '{"urgency": "high", "category": "account", "confidence": "0.9"}'
    assert parse(reply) == Ticket(urgency="high", category="account")


def test_parses_single_quotes(parse):
    assert parse("{'urgency': 'low', 'category': 'billing', 'note': 'refund'}") == Ticket(urgency="low",
                                                                                         category="billing")


def test_prose_without_json_falls_back(parse):
    assert parse("Sorry, I cannot help with refunds.") == FALLBACK


# ------------------------------------------------------------------ properties

json_ish = st.text(alphabet=st.sampled_from('{}[]":,\' urgencycategorybillinghigh\n'), max_size=80)


@settings(max_examples=CONFIG["max_examples"], deadline=None)
@given(st.one_of(st.text(max_size=200), json_ish))
def test_parser_never_raises_and_returns_a_ticket(parse, reply):
    assert isinstance(parse(reply), Ticket)


@settings(max_examples=CONFIG["max_examples"], deadline=None)
@given(st.sampled_from(CATEGORIES), st.text(alphabet=" \t\n", max_size=3), st.text(alphabet=" \t\n", max_size=3),
       st.booleans())
def test_label_normalisation_ignores_case_and_whitespace(label, before, after, upper):
    messy = before + (label.upper() if upper else label.capitalize()) + after
    assert triage.normalise_label(messy, CATEGORIES) == label


@settings(max_examples=CONFIG["max_examples"], deadline=None)
@given(st.text(min_size=1, max_size=3000).filter(str.strip))
def test_prompt_starts_with_the_system_message_and_ends_with_the_ticket(text):
    messages = triage.build_messages(text)
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
    assert messages[-1]["content"] == text.strip()[: triage.MAX_TICKET_CHARS]
