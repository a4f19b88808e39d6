"""slmlab.checks: each helper passes quietly-but-visibly, and fails with a message a learner can act on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from slmlab import checks
from slmlab.checks import CheckFailed, SetupProblem
from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import LoadTestResult, RequestRecord, records_frame

pytestmark = pytest.mark.fast


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_about_says_expected_got_and_hint():
    message = failure(checks.about, 0, 98, unit="MB", hint="did you call quantize()?")
    assert message == "✗ expected about 98 MB, got 0 MB — did you call quantize()?"


def test_about_passes_within_tolerance_and_prints_a_tick(capsys):
    checks.about(97.3, 98, unit="MB", what="the file size")
    assert capsys.readouterr().out == "✓ the file size 97.3 MB is about 98 MB\n"
    failure(checks.about, 80, 98, unit="MB")  # 18 % off: outside the default 10 %
    checks.about(80, 98, rel=0.2)


@pytest.mark.parametrize("bad", [None, "98", True, float("nan")])
def test_about_rejects_what_is_not_a_number(bad):
    assert "a number of about 98" in failure(checks.about, bad, 98)


def test_equal_and_true():
    checks.equal([0, 1, 4], [0, 1, 4], what="squares")
    assert failure(checks.equal, [0, 1, 2], [0, 1, 4], what="squares", hint="square each i") == (
        "✗ expected squares to be [0, 1, 4], got [0, 1, 2] — square each i"
    )
    checks.true(1 + 1 == 2, "arithmetic works")
    assert failure(checks.true, False, "the model is loaded", hint="run the load cell") == (
        "✗ the model is loaded — run the load cell"
    )


def test_is_instance_and_between():
    checks.is_instance([], list, what="messages")
    message = failure(checks.is_instance, "hi", list, what="messages")
    assert "expected messages to be a list, got a str ('hi')" in message
    assert "to be an int or a float, got a str" in failure(checks.is_instance, "x", (int, float))
    checks.between(7, 1, 16, what="tokens")
    assert failure(checks.between, 17, 1, 16, what="tokens") == "✗ expected tokens between 1 and 16, got 17"
    assert "got None" in failure(checks.between, None, 1, 16)


def test_nonempty_text_and_contains():
    checks.nonempty_text("Hello!", what="answer")
    assert "expected answer to be a string, got a dict" in failure(checks.nonempty_text, {"a": 1}, what="answer")
    assert "got an empty string" in failure(checks.nonempty_text, "  \n", what="answer")
    checks.contains("Hello, class", "class", what="answer")
    assert "to contain 'bye'" in failure(checks.contains, "Hello", "bye", what="answer")
    assert "to contain 3" in failure(checks.contains, 5, 3)  # not a container at all: a failure, not a TypeError


def test_defined_reads_the_callers_globals():
    global defined_here
    defined_here = 42
    assert checks.defined("defined_here") == 42
    assert failure(checks.defined, "nowhere_to_be_found") == (
        "✗ expected a variable `nowhere_to_be_found`, but it is not defined — did you run the exercise cell above?"
    )


def test_long_values_are_shortened():
    message = failure(checks.equal, "x" * 500, "y", what="text")
    assert len(message) < 200 and "..." in message


def test_a_failure_is_an_assertion_and_renders_without_traceback_in_ipython():
    try:
        checks.equal(1, 2, what="n")
    except AssertionError as err:
        lines = err._render_traceback_()
    assert lines == ["\x1b[31mCheckFailed\x1b[0m: ✗ expected n to be 2, got 1"]


# ---------------------------------------------------------------- a missing reference is a setup problem


def setup_problem(fn, *args, **kwargs) -> str:
    with pytest.raises(SetupProblem) as err:
        fn(*args, **kwargs)
    assert isinstance(err.value, SlmLabError) and not isinstance(err.value, AssertionError)
    return str(err.value)


@pytest.mark.parametrize("reference", [float("nan"), np.float64("nan"), None, "", []])
def test_about_with_a_missing_reference_blames_the_setup_not_the_learner(reference):
    message = setup_problem(checks.about, float("nan"), reference, unit="s", what="your p95 TTFT")
    assert message.startswith("This check cannot judge your p95 TTFT: the value to compare with is ")
    assert "expected" not in message and "What to do:" in message and "cells above" in message


def test_the_nan_nan_case_of_the_monitoring_notebook_names_what_is_missing():
    message = setup_problem(checks.about, float("nan"), float("nan"), rel=0.01, unit="s", what="your p95 TTFT")
    assert "the value to compare with is NaN (not a number)" in message and "nan s" not in message


def test_about_with_a_reference_that_is_no_number_is_a_setup_problem():
    assert "is '98', not a number" in setup_problem(checks.about, 98, "98")


def test_numpy_numbers_are_numbers():
    checks.about(np.float32(97.5), np.int64(98))
    assert "a number of about 98" in failure(checks.about, np.float64("nan"), 98)  # the learner's NaN: their error


@pytest.mark.parametrize("low, high", [(float("nan"), 10), (1, None)])
def test_between_with_a_missing_bound_is_a_setup_problem(low, high):
    message = setup_problem(checks.between, 5, low, high, what="the latency")
    assert "cannot judge the latency" in message and "bound is" in message


def test_equal_to_nan_is_a_setup_problem_but_none_and_empty_are_answers():
    assert "NaN" in setup_problem(checks.equal, 1.0, float("nan"), what="the rate")
    checks.equal(None, None, what="the pick")  # "no engine fits" is a legitimate answer
    checks.equal([], [], what="the failed ids")
    assert failure(checks.equal, 3, None) == "✗ expected the value to be None, got 3"


def test_a_setup_problem_renders_without_traceback_in_ipython():
    try:
        checks.about(1, float("nan"), what="x")
    except SetupProblem as err:
        lines = err._render_traceback_()
    assert len(lines) == 1 and lines[0].startswith("\x1b[31mSetupProblem\x1b[0m: This check cannot judge x")


# ---------------------------------------------------------------- traffic_succeeded


def load_result(outcomes: list[tuple[bool, str]]) -> LoadTestResult:
    """A real LoadTestResult from request records, as load_test builds it."""
    records = [RequestRecord(i, i, ok=ok, error=error, status=200 if ok else 400, ttft=0.1 if ok else math.nan,
                             end=1.0) for i, (ok, error) in enumerate(outcomes)]
    return LoadTestResult(records_frame(records), 1.0, {"api": "chat"})


def test_traffic_that_all_failed_names_the_count_and_the_first_error():
    result = load_result([(False, "HTTP 400: 'all-minilm' does not support chat")] * 12)
    assert math.isnan(result.summary()["p95_ttft_ms"])  # what the notebook would have compared
    message = setup_problem(checks.traffic_succeeded, result)
    assert message.startswith("0 of 12 requests succeeded: the first error was HTTP 400: 'all-minilm' does not "
                              "support chat\nWhat to do:")
    assert "GET /v1/models" in message


def test_traffic_that_succeeded_passes_and_counts(capsys):
    assert checks.traffic_succeeded(load_result([(True, "")] * 4)) == 4
    assert capsys.readouterr().out == "✓ 4 of 4 requests succeeded\n"


def test_some_failures_fail_unless_a_share_is_allowed(capsys):
    result = load_result([(True, ""), (True, ""), (False, "timed out after 30 s"), (True, "")])
    message = setup_problem(checks.traffic_succeeded, result)
    assert "3 of 4 requests succeeded: the first error was timed out after 30 s" in message
    assert "too busy" in message and "timeout=" in message  # a timeout gets its own advice
    assert checks.traffic_succeeded(result, at_least=0.75) == 3
    assert "0 of 1" in setup_problem(checks.traffic_succeeded, [False], at_least=0.1)  # never none at all
    with pytest.raises(SlmLabError, match="at_least=0"):
        checks.traffic_succeeded(result, at_least=0)


def test_a_mapping_of_runs_is_pooled_and_the_error_names_its_run():
    runs = {("onnx", 1): load_result([(True, "")] * 2), ("onnx", 4): load_result([(False, "HTTP 503: busy")])}
    assert "2 of 3 requests succeeded: the first error was HTTP 503: busy (in run ('onnx', 4))" in setup_problem(
        checks.traffic_succeeded, runs)


def test_tables_and_lists_of_outcomes():
    frame = pd.DataFrame({"ok": [False, True], "errors": [["RemoteProtocolError", "HTTP 502"], []]})
    assert "1 of 2 requests succeeded: the first error was HTTP 502" in setup_problem(checks.traffic_succeeded, frame)
    assert "the first error was ConnectionError: refused" in setup_problem(
        checks.traffic_succeeded, [True, ConnectionError("refused")], what="requests")
    assert checks.traffic_succeeded([True, {"ok": True}, RequestRecord(0, 0, ok=True)], what="answers") == 3
    assert "0 of 1 answers succeeded: the first error was HTTP 500" in setup_problem(
        checks.traffic_succeeded, {"ok": False, "error": "HTTP 500"}, what="answers")


def test_no_traffic_at_all_and_unreadable_results_are_clear():
    assert "No requests were sent" in setup_problem(checks.traffic_succeeded, load_result([]))
    with pytest.raises(SlmLabError, match="no 'ok' column"):
        checks.traffic_succeeded(pd.DataFrame({"status": [200]}))
    with pytest.raises(SlmLabError, match="Cannot read request outcomes from an int"):
        checks.traffic_succeeded(12)
    with pytest.raises(SlmLabError, match="Cannot tell whether 'fine' succeeded"):
        checks.traffic_succeeded(["fine"])
