"""The one exception type learners see: what went wrong, and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SlmLabError(Exception):
    """An error with an actionable hint for the learner.

    ``str(err)`` gives the problem followed by ``What to do: <hint>``, so a notebook
    traceback ends with the fix rather than with a frame deep inside a dependency.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(problem if not hint else f"{problem}\nWhat to do: {hint}")


class UpstreamError(SlmLabError):
    """A server this code calls failed, not the request: unreachable, timed out, a 5xx, or a broken connection.

    A gateway answers these with 502 (the request may be retried), never with a 400.
    """


class MachineTooSmall(SlmLabError):
    """This machine (or its container) lacks the memory a notebook's next step needs: a clean, explained stop.

    The course's runner reports a notebook stopped by it as skipped, not failed.
    """


def did_you_mean(wanted: object, choices: Iterable[str], n: int = 3, cutoff: float = 0.5) -> str:
    """``"Did you mean 'a', 'b'? "`` for the closest of ``choices`` to ``wanted`` (case does not matter; the choices
    come back as spelled), or ``""`` when none is close."""
    spelled = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(str(wanted).strip().lower(), list(spelled), n=n, cutoff=cutoff)
    return f"Did you mean {', '.join(repr(spelled[c]) for c in close)}? " if close else ""
