"""Assert helpers for check cells: each failure says what was expected, what was found, and what to try.

A check cell calls these right after an exercise::

    # CHECK: model size
    from slmlab import checks
    checks.about(size_mb, 98.2, unit="MB", hint="did you divide resolved.size_bytes by 1e6?")

On success a helper prints one ``✓`` line; on failure it raises :class:`CheckFailed` (an
``AssertionError``) whose message reads like
``✗ expected about 98.2 MB, got 0 — did you divide resolved.size_bytes by 1e6?``.
In Jupyter a failure shows only that message, not a traceback into this module.

A check that cannot judge at all, because the value it compares with is missing (NaN, None, an empty
measurement: the load test above failed, a server answered nothing), raises :class:`SetupProblem` instead: an
:class:`~slmlab.errors.SlmLabError` that says what is missing, never "expected nan, got nan". A cell that
measures traffic calls :func:`traffic_succeeded` right after its load test, so a failed run stops there, with
the first error, before anything is computed from it.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sized
from typing import Any

from slmlab.errors import SlmLabError

__all__ = [
    "CheckFailed",
    "SetupProblem",
    "about",
    "between",
    "contains",
    "defined",
    "equal",
    "fail",
    "is_instance",
    "nonempty_text",
    "traffic_succeeded",
    "true",
]


class CheckFailed(AssertionError):
    """A check did not pass; the message is meant for the learner."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: just the message, in red."""
        return [f"\x1b[31mCheckFailed\x1b[0m: {self}"]


class SetupProblem(SlmLabError):
    """A check could not judge the learner's work: the value it compares with is missing (the setup's fault)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the problem and what to do."""
        return [f"\x1b[31mSetupProblem\x1b[0m: {self}"]


SETUP_HINT = ("The cells above did not produce it: look there for failed requests, a server that did not answer, "
              "or an empty measurement; fix that and run them again. Your own answer may well be right.")


def _missing(value: Any) -> str:
    """Why `value` cannot serve as a reference ("NaN (not a number)", "None", "empty"), or "" when it can."""
    if value is None:
        return "None"
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(float(value)):
        return "NaN (not a number)"
    if isinstance(value, (str, bytes, list, tuple, dict, set)) and not value:
        return f"empty ({_show(value)})"
    return ""


def _require_reference(value: Any, what: str, role: str = "the value to compare with") -> None:
    """Raise SetupProblem when `value` is NaN, None or empty."""
    why = _missing(value)
    if why:
        raise SetupProblem(f"This check cannot judge {what}: {role} is {why}, so there is nothing to "
                           f"compare with.", SETUP_HINT)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _show(value: Any, unit: str = "") -> str:
    """A short, readable rendering of a value for messages."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = repr(value if len(value) <= 60 else value[:57] + "...")
    else:
        text = repr(value)
        if len(text) > 60:
            text = text[:57] + "..."
    return f"{text} {unit}".rstrip()


def _a(name: str) -> str:
    """A type name with its article: "a list", "an int"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def fail(message: str, hint: str = "") -> None:
    """Raise a check failure with a message and an optional hint."""
    raise CheckFailed(f"✗ {message}" + (f" — {hint}" if hint else ""))


def _passed(message: str) -> None:
    print(f"✓ {message}")


def true(condition: Any, message: str, hint: str = "") -> None:
    """Pass when ``condition`` is truthy; ``message`` says what should hold."""
    if not condition:
        fail(message, hint)
    _passed(message)


def defined(name: str, hint: str = "") -> Any:
    """Pass when the caller's notebook has a variable ``name``; returns its value."""
    namespace = sys._getframe(1).f_globals
    if name not in namespace:
        fail(f"expected a variable `{name}`, but it is not defined", hint or "did you run the exercise cell above?")
    _passed(f"`{name}` is defined")
    return namespace[name]


def is_instance(value: Any, kind: type | tuple[type, ...], what: str = "the value", hint: str = "") -> None:
    """Pass when ``value`` is an instance of ``kind``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = " or ".join(_a(k.__name__) for k in kinds)
    if not isinstance(value, kinds):
        fail(f"expected {what} to be {names}, got {_a(type(value).__name__)} ({_show(value)})", hint)
    _passed(f"{what} is {names}")


def equal(actual: Any, expected: Any, what: str = "the value", hint: str = "") -> None:
    """Pass when ``actual == expected``.

    An ``expected`` NaN is a SetupProblem (nothing equals NaN); None and empty values are legitimate answers here.
    """
    if _missing(expected).startswith("NaN"):
        _require_reference(expected, what)
    if actual != expected:
        fail(f"expected {what} to be {_show(expected)}, got {_show(actual)}", hint)
    _passed(f"{what} is {_show(expected)}")


def about(
    actual: Any, expected: float, *, rel: float = 0.1, unit: str = "", what: str = "", hint: str = ""
) -> None:
    """Pass when ``actual`` is a number within ``rel`` (default 10 %) of ``expected``.

    An ``expected`` that is NaN, None, empty or no number at all is a SetupProblem, not the learner's error.
    """
    label = f"{what} " if what else ""
    _require_reference(expected, what or "the value")
    if not _is_number(expected):
        raise SetupProblem(f"This check cannot judge {what or 'the value'}: the value to compare with is "
                           f"{_show(expected)}, not a number.", SETUP_HINT)
    if not _is_number(actual) or math.isnan(actual):
        fail(f"expected {label}a number of about {_show(expected, unit)}, got {_show(actual)}", hint)
    if not math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-12):
        fail(f"expected {label}about {_show(expected, unit)}, got {_show(actual, unit)}", hint)
    _passed(f"{label}{_show(actual, unit)} is about {_show(expected, unit)}")


def between(actual: Any, low: float, high: float, *, unit: str = "", what: str = "the value", hint: str = "") -> None:
    """Pass when ``low <= actual <= high``; a ``low`` or ``high`` that is NaN or None is a SetupProblem."""
    for role, bound in (("the lower bound", low), ("the upper bound", high)):
        _require_reference(bound, what, role)
    if not _is_number(actual) or not low <= actual <= high:
        fail(f"expected {what} between {_show(low, unit)} and {_show(high, unit)}, got {_show(actual, unit)}", hint)
    _passed(f"{what} is {_show(actual, unit)}, between {_show(low, unit)} and {_show(high, unit)}")


def nonempty_text(value: Any, what: str = "the text", hint: str = "") -> None:
    """Pass when ``value`` is a string with at least one non-space character."""
    if not isinstance(value, str):
        fail(f"expected {what} to be a string, got {_a(type(value).__name__)} ({_show(value)})", hint)
    if not value.strip():
        fail(f"expected {what} to contain some text, got an empty string", hint)
    _passed(f"{what} is a non-empty string")


def contains(container: Any, item: Any, what: str = "the value", hint: str = "") -> None:
    """Pass when ``item in container`` (a substring, a key, an element)."""
    try:
        found = item in container
    except TypeError:
        found = False
    if not found:
        size = f" (length {len(container)})" if isinstance(container, Sized) else ""
        fail(f"expected {what} to contain {_show(item)}, got {_show(container)}{size}", hint)
    _passed(f"{what} contains {_show(item)}")


# ---------------------------------------------------------------------------------------------- traffic

TRAFFIC_HINT = ("Whatever is measured from these requests would be NaN or wrong. Read the error: a 4xx usually means "
                "the wrong model or request (ask the server which models it serves: GET /v1/models), a 5xx or a "
                "refused connection a server that failed (read its log, e.g. server.log_tail()). Fix that and run "
                "the load test again.")
TIMEOUT_HINT = ("The server did not answer in time: it may have hung (read its log, e.g. server.log_tail()), or the "
                "machine is too busy (other programs using the CPU: see `uptime`). Run the load test again when it is "
                "quieter, or give it a larger timeout=.")


def _frame_outcomes(frame: Any) -> list[tuple[bool, str]]:
    """(ok, error) per row of a request table with an `ok` column and an `error` (text) or `errors` (list) one."""
    columns = list(frame.columns)
    if "ok" not in columns:
        raise SlmLabError(f"This table has no 'ok' column (its columns: {columns}).",
                          "Pass a load test's result, its .requests table, or a list of outcomes.")
    errors = (list(frame["error"]) if "error" in columns
              else [errs[-1] if len(errs) else "" for errs in frame["errors"]] if "errors" in columns
              else [""] * len(frame))
    return [(bool(ok), str(error or "no error recorded")) for ok, error in zip(frame["ok"], errors, strict=True)]


def _one_outcome(outcome: Any) -> tuple[bool, str]:
    """(ok, error) of one request: a bool, an exception (a failure), a mapping or an object with `ok`/`error`."""
    if isinstance(outcome, BaseException):
        return False, f"{type(outcome).__name__}: {outcome}"
    if isinstance(outcome, bool):
        return outcome, "" if outcome else "failed (no error recorded)"
    ok = outcome.get("ok") if isinstance(outcome, dict) else getattr(outcome, "ok", None)
    if ok is None:
        raise SlmLabError(f"Cannot tell whether {_show(outcome)} succeeded.",
                          "Pass a load test's result, a mapping of results, or a list of True/False or exceptions.")
    error = outcome.get("error") if isinstance(outcome, dict) else getattr(outcome, "error", "")
    return bool(ok), str(error or ("" if ok else "failed (no error recorded)"))


def _outcomes(result: Any) -> list[tuple[bool, str]]:
    """(ok, error) for every request in a load-test result, a request table, a mapping of those, or a list."""
    requests = getattr(result, "requests", None)
    if requests is not None and hasattr(requests, "columns"):  # LoadTestResult, RetryRun …
        return _frame_outcomes(requests)
    if hasattr(result, "columns"):
        return _frame_outcomes(result)
    if isinstance(result, dict) and "ok" in result:  # one outcome
        return [_one_outcome(result)]
    if isinstance(result, dict):
        return [(ok, f"{error} (in run {label!r})") for label, run in result.items() for ok, error in _outcomes(run)]
    if isinstance(result, (list, tuple)):
        return [_one_outcome(outcome) for outcome in result]
    raise SlmLabError(f"Cannot read request outcomes from {_a(type(result).__name__)}.",
                      "Pass a load test's result, a mapping of results, or a list of True/False or exceptions.")


def traffic_succeeded(result: Any, *, at_least: float = 1.0, what: str = "requests") -> int:
    """Pass when the load test's requests succeeded (all of them, or the share `at_least`); returns how many did.

    `result` is a load test's result (anything with a ``.requests`` table holding ``ok`` and ``error``), such a
    table, a mapping of results (``{label: result}``, e.g. one run per concurrency), or a list of outcomes (True /
    False, exceptions, or mappings with ``ok`` and ``error``). Otherwise a :class:`SetupProblem` says
    "0 of 12 requests succeeded: the first error was …", before anything is measured from them.
    """
    if not 0 < at_least <= 1:
        raise SlmLabError(f"at_least={at_least!r} must be a share above 0 and at most 1.", "E.g. at_least=0.9.")
    outcomes = _outcomes(result)
    if not outcomes:
        raise SetupProblem(f"No {what} were sent, so there is nothing to measure.",
                           "Give the load test more time (time_limit=) or more requests (num_requests=), and check "
                           "that the server is up.")
    succeeded = sum(ok for ok, _ in outcomes)
    if succeeded == 0 or succeeded < at_least * len(outcomes):
        first = next(error for ok, error in outcomes if not ok)
        timed_out = "timed out" in first.lower() or "timeout" in first.lower()
        raise SetupProblem(f"{succeeded} of {len(outcomes)} {what} succeeded: the first error was {first}",
                           TIMEOUT_HINT if timed_out else TRAFFIC_HINT)
    _passed(f"{succeeded} of {len(outcomes)} {what} succeeded")
    return succeeded
