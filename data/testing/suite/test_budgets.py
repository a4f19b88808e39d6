"""Cost and speed budgets. Tokens are counted (deterministic); seconds are timed with a wide margin."""

from __future__ import annotations

import pytest
from conftest import CONFIG

from slmlab.apps import quality

TICKETS = ["My invoice shows the wrong amount.", "The app crashes when I upload a photo."]


@pytest.mark.model
def test_answer_fits_the_token_budget(app):
    generation = app.reply(TICKETS[0])
    assert generation.finish_reason == "stop", "the JSON answer was cut off at max_tokens"
    assert generation.completion_tokens < app.max_tokens


@pytest.mark.model
def test_p95_latency_is_within_budget(app):
    seconds = quality.time_calls(app.triage, TICKETS, repeats=max(1, CONFIG["latency_calls"] // len(TICKETS)))
    p95 = quality.percentile(seconds, 95)
    assert p95 <= CONFIG["latency_budget_s"], f"p95 {p95:.2f} s > budget {CONFIG['latency_budget_s']:.2f} s"
