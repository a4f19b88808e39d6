"""slmlab.checks: each helper passes quietly-but-visibly, and fails with a message a learner can act on."""

from __future__ import annotations

import pytest

from slmlab import checks
from slmlab.checks import CheckFailed

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
    assert "expected messages to be a list, got a str ('hi')" in failure(checks.is_instance, "hi", list, what="messages")
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
