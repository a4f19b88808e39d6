"""Exercises make learners think: every code exercise has a hint, and the hint does not spell out the solution."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import SOLUTIONS, solutions
from slmlab.course.exercises import GIVEAWAY_TOKENS, exercises, hint_giveaway

pytestmark = pytest.mark.fast
TO_REWRITE = Path(__file__).with_name("hints_to_rewrite.txt")


def listed() -> set[tuple[str, int]]:
    """The hints still waiting for a rewrite: (notebook, exercise number)."""
    rows = [line.split("|") for line in TO_REWRITE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    return {(name.strip(), int(number)) for name, number in rows}


def giveaways() -> dict[tuple[str, int], str]:
    """Every exercise whose hint repeats the solution's code, with the repeated run."""
    found = {}
    for path in solutions():
        name = path.relative_to(SOLUTIONS).with_suffix("").as_posix()
        for number, exercise in enumerate(exercises(nbformat.read(path, as_version=4)), start=1):
            run = hint_giveaway(exercise.hint, exercise.solution)
            if run:
                found[(name, number)] = run
    return found


def test_no_new_hint_gives_the_code_away():
    new = {key: run for key, run in giveaways().items() if key not in listed()}
    assert not new, "\n".join(
        f"{name}, exercise {number}: the hint repeats {GIVEAWAY_TOKENS}+ tokens of the solution ({run!r}); name the "
        f"concept or the API to read instead" for (name, number), run in new.items())


def test_the_rewrite_list_only_shrinks():
    stale = listed() - set(giveaways())
    assert not stale, f"these hints no longer give the code away: delete their lines from {TO_REWRITE.name}: {stale}"


@pytest.mark.parametrize("path", solutions(), ids=lambda p: p.stem)
def test_every_code_exercise_has_a_hint(path: Path):
    missing = [e.cell for e in exercises(nbformat.read(path, as_version=4)) if not e.hint]
    assert not missing, f"{path.name}: cells {missing} have a solution block without a '# HINT:' line above it"


def test_the_detector_sees_a_copied_call_and_allows_an_api_name():
    solution = 'reply = llm.create_chat_completion(messages=messages, temperature=0.0)\nanswer = reply["choices"][0]'
    assert hint_giveaway("reply = llm.create_chat_completion(messages=messages, temperature=0.0)", solution)
    api_and_concept = "read llm.create_chat_completion's docstring: greedy decoding is temperature 0"
    assert hint_giveaway(api_and_concept, solution) is None
