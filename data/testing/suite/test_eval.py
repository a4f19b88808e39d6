"""The regression eval as a gate: accuracy on labelled tickets must stay above a threshold."""

from __future__ import annotations

import pytest
from conftest import CONFIG

from slmlab.apps import quality


@pytest.mark.model
def test_accuracy_on_labelled_tickets_meets_the_threshold(app, cases):
    report = quality.run_eval(app, cases)
    assert report.accuracy >= CONFIG["accuracy_threshold"], report.table()[["id", "expected", "predicted"]]
