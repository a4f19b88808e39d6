"""Assert helpers for check cells: each failure says what was expected, what was found, and what to try.

A check cell calls these right after an exercise::

    # CHECK: model size
    from slmlab import checks
    checks.about(size_mb, 98.2, unit="MB", hint="did you divide resolved.size_bytes by 1e6?")

On success a helper prints one ``✓`` line; on failure it raises :class:`CheckFailed` (an
``AssertionError``) whose message reads like
``✗ expected about 98.2 MB, got 0 — did you divide resolved.size_bytes by 1e6?``.
In Jupyter a failure shows only that message, not a traceback into this module.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sized
from typing import Any

__all__ = [
    "CheckFailed",
    "about",
    "between",
    "contains",
    "defined",
    "equal",
    "fail",
    "is_instance",
    "nonempty_text",
    "true",
]


class CheckFailed(AssertionError):
    """A check did not pass; the message is meant for the learner."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: just the message, in red."""
        return [f"\x1b[31mCheckFailed\x1b[0m: {self}"]


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
    """Pass when ``actual == expected``."""
    if actual != expected:
        fail(f"expected {what} to be {_show(expected)}, got {_show(actual)}", hint)
    _passed(f"{what} is {_show(expected)}")


def about(
    actual: Any, expected: float, *, rel: float = 0.1, unit: str = "", what: str = "", hint: str = ""
) -> None:
    """Pass when ``actual`` is a number within ``rel`` (default 10 %) of ``expected``."""
    label = f"{what} " if what else ""
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or math.isnan(actual):
        fail(f"expected {label}a number of about {_show(expected, unit)}, got {_show(actual)}", hint)
    if not math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-12):
        fail(f"expected {label}about {_show(expected, unit)}, got {_show(actual, unit)}", hint)
    _passed(f"{label}{_show(actual, unit)} is about {_show(expected, unit)}")


def between(actual: Any, low: float, high: float, *, unit: str = "", what: str = "the value", hint: str = "") -> None:
    """Pass when ``low <= actual <= high``."""
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or not low <= actual <= high:
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
