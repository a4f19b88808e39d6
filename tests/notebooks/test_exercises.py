"""Exercises make learners think: every code exercise has a hint, and the hint does not spell out the solution."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import SOLUTIONS, solutions
from slmlab.course.exercises import GIVEAWAY_TOKENS, exercises, hint_giveaway, solution_line_given

pytestmark = pytest.mark.fast
TO_REWRITE = Path(__file__).with_name("hints_to_rewrite.txt")
HINT_2 = "<details><summary>Hint 2</summary>"  # a collapsed markdown cell right after the exercise


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


@pytest.mark.parametrize("path", solutions(), ids=lambda p: p.stem)
def test_a_second_hint_follows_its_exercise_and_holds_no_whole_solution_line(path: Path):
    nb = nbformat.read(path, as_version=4)
    blocks: dict[int, list[str]] = {}
    for exercise in exercises(nb):
        blocks.setdefault(exercise.cell, []).append(exercise.solution)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown" or not cell.source.startswith(HINT_2):
            continue
        if index - 1 not in blocks:
            problems.append(f"cell {index}: a second hint goes right after the exercise cell it helps with")
        for solution in blocks.get(index - 1, []):
            line = solution_line_given(cell.source, solution)
            if line:
                problems.append(f"cell {index}: the second hint holds the solution's line {line!r}")
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_second_hint_detector_sees_a_whole_line_and_allows_its_parts():
    solution = 'reply = llm.create_chat_completion(messages=messages, temperature=0.0)\nanswer = reply["choices"][0]'
    assert solution_line_given('Write `answer = reply["choices"][0]`.', solution) == 'answer = reply["choices"][0]'
    assert solution_line_given('The text is in `reply["choices"][0]`, the first choice.', solution) is None


def test_the_detector_sees_a_copied_call_and_allows_an_api_name():
    solution = 'reply = llm.create_chat_completion(messages=messages, temperature=0.0)\nanswer = reply["choices"][0]'
    assert hint_giveaway("reply = llm.create_chat_completion(messages=messages, temperature=0.0)", solution)
    api_and_concept = "read llm.create_chat_completion's docstring: greedy decoding is temperature 0"
    assert hint_giveaway(api_and_concept, solution) is None
