"""Golden tests: greedy decoding gives the same reply to the same ticket, so compare with a recorded run."""

from __future__ import annotations

import pytest
from conftest import CONFIG

from slmlab.apps import quality

GOLDEN = quality.load_golden(CONFIG["golden"])["entries"] if CONFIG["golden"] else []
needs_golden = pytest.mark.skipif(not GOLDEN, reason="no golden file in the config")


@needs_golden
@pytest.mark.model
@pytest.mark.parametrize("entry", GOLDEN, ids=[f"golden{i}" for i in range(len(GOLDEN))])
def test_model_reply_matches_golden(app, entry):
    assert app.reply(entry["text"]).text == entry["reply"]


@needs_golden
@pytest.mark.model
@pytest.mark.parametrize("entry", GOLDEN, ids=[f"golden{i}" for i in range(len(GOLDEN))])
def test_app_result_matches_golden(app, entry):
    assert app.triage(entry["text"]).model_dump() == entry["ticket"]
