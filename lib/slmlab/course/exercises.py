"""Exercises that make learners think: a lab's hint names the concept or the API to read, never the code.

`exercises(nb)` lists each solution block with the ``# HINT:`` lines above it (what the lab shows);
`hint_giveaway` finds code of the solution that the hint spells out: a run of ``GIVEAWAY_TOKENS`` or more
tokens (names, numbers, punctuation) in the same order in both. A hint may still name an API
(``llm.create_chat_completion``), a concept ("tokens per second of decoding") or the interface the checks call: the
solution's definition and import lines (``def f(a, b):``, ``export async function f(...) {``, ``using System;``) are
the exercise's contract, not its answer, and are left out of the comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from slmlab.course import BEGIN_SOLUTION, END_SOLUTION, HINT_PREFIX

GIVEAWAY_TOKENS = 8  # `reply["choices"][0]` is 7 tokens; a whole call with its arguments is more
_TOKEN = re.compile(r"\w+|[^\w\s]")
_DEFINITION = re.compile(  # definitions and imports: the exercise's contract, which a hint may state
    r"^\s*(?:async\s+def|def|class|export|function|public|private|static|inline|using\s|import\s|from\s|#include"
    r"|[\w:<>*&\s]+\)\s*\{\s*$)")


@dataclass(frozen=True)
class Exercise:
    """One solution block of a notebook and the hint the lab shows in its place."""

    cell: int  # the cell's index in the notebook
    hint: str
    solution: str


def exercises(nb: Any) -> list[Exercise]:
    """Every code exercise of a solution notebook (markdown answers have no hint to check)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        hints: list[str] = []
        block: list[str] | None = None
        for line in cell.source.split("\n"):
            stripped = line.strip()
            if stripped.startswith(BEGIN_SOLUTION):
                block = []
            elif stripped.startswith(END_SOLUTION) and block is not None:
                found.append(Exercise(index, " ".join(hints), "\n".join(block)))
                hints, block = [], None
            elif block is not None:
                block.append(line)
            elif stripped.startswith(HINT_PREFIX):
                hints.append(stripped[len(HINT_PREFIX):].strip())
    return found


def hint_giveaway(hint: str, solution: str) -> str | None:
    """The longest run of the solution's code that the hint repeats, if it is GIVEAWAY_TOKENS long or more."""
    hint_tokens, solution_tokens = _TOKEN.findall(hint), _TOKEN.findall(_without_comments(solution))
    match = SequenceMatcher(None, hint_tokens, solution_tokens, autojunk=False).find_longest_match(
        0, len(hint_tokens), 0, len(solution_tokens))
    if match.size < GIVEAWAY_TOKENS:
        return None
    return " ".join(hint_tokens[match.a: match.a + match.size])


def solution_line_given(hint: str, solution: str, min_tokens: int = 4) -> str | None:
    """A whole line of the solution's code (``min_tokens`` tokens or more) that a second, more specific hint holds.

    A second hint may quote more than ``GIVEAWAY_TOKENS`` of the code (a method name with its arguments), never a
    complete line of the answer.
    """
    hint_tokens = _TOKEN.findall(hint)
    for line in _without_comments(solution).split("\n"):
        tokens = _TOKEN.findall(line)
        if len(tokens) >= min_tokens and any(hint_tokens[i:i + len(tokens)] == tokens
                                             for i in range(len(hint_tokens) - len(tokens) + 1)):
            return line.strip()
    return None


def _without_comments(code: str) -> str:
    """The solution's code without comment lines and without its definition lines (the contract)."""
    return "\n".join(line for line in code.split("\n")
                     if not line.lstrip().startswith(("#", "//")) and not _DEFINITION.match(line))
