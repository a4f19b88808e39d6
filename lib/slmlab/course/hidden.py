"""Hidden checks: an instructor's extra checks, kept outside the learners' repository, run after the visible ones.

``slmlab grade --hidden DIR`` reads ``DIR/<lab>.py`` (``DIR/01-foundations/01-slm-landscape.py`` for a lab in a
part folder). The file is plain Python split into checks at ``# CHECK: <name>`` lines, the same first line a
visible check cell has; a ``# POINTS: <n>`` line inside a block sets its points (1 without one). What comes
before the first check runs first and is not graded (imports, helpers)::

    from slmlab import checks

    # CHECK: asks for a greeting
    # POINTS: 2
    checks.true("hello" in messages[-1]["content"].lower(), "the user message asks for a greeting")

Each block becomes a check cell appended to the learner's notebook, so it runs in the same kernel, in the same
sandbox and under the same timeouts as the visible checks, after the learner's last cell: it sees the
variables the notebook left (servers the notebook stopped at its end are gone). Hidden cells are tagged
``hidden`` and taken out of the executed copy the learner gets back; the feedback names each hidden check
and its message.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from slmlab.course import CHECK_PREFIX, CHECK_TAG, cell_tags
from slmlab.course.points import Question, cell_points, set_points
from slmlab.errors import SlmLabError, did_you_mean

HIDDEN_TAG = "hidden"
POINTS_LINE = re.compile(r"^#\s*POINTS:\s*(?P<value>\S*)\s*$")


def hidden_path(hidden_dir: Path | str, lab: str) -> Path:
    """Where the hidden checks of ``lab`` live in an instructor's folder."""
    return Path(hidden_dir) / f"{lab}.py"


def _blocks(text: str) -> tuple[str, list[tuple[int, list[str]]]]:
    """The preamble and each check block (its first line number, its lines) of a hidden-checks file."""
    lines = text.replace("\r\n", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(CHECK_PREFIX)]
    preamble = "\n".join(lines[: starts[0] if starts else len(lines)]).strip()
    if not starts:
        return preamble, []
    ends = [*starts[1:], len(lines)]
    return preamble, [(start + 1, lines[start:end]) for start, end in zip(starts, ends, strict=True)]


def _check_syntax(source: str, path: Path, first_line: int) -> None:
    """A syntax error names the file and its line, as the instructor's editor shows it."""
    try:
        ast.parse(source)
    except SyntaxError as err:
        line = first_line + (err.lineno or 1) - 1
        raise SlmLabError(f"{path}, line {line}: {err.msg}.",
                          "Fix the hidden check; it must be valid Python.") from None


def _check_cell(path: Path, first_line: int, lines: list[str]) -> nbformat.NotebookNode:
    """One ``# CHECK:`` block as a hidden check cell, its ``# POINTS:`` line moved into the metadata."""
    kept: list[str] = []
    points: float | None = None
    for line in lines:
        match = POINTS_LINE.match(line.strip())
        if match and points is None:
            try:
                points = float(match["value"])
            except ValueError:
                points = -1.0
            if points < 0:
                raise SlmLabError(f"{path}, line {first_line + len(kept)}: {line.strip()!r} is not a number of points.",
                                  "Write it as '# POINTS: 2' (a number >= 0).")
            continue
        kept.append(line)
    source = "\n".join(kept).rstrip()
    _check_syntax(source, path, first_line)
    cell = new_code_cell(source, metadata={"tags": [CHECK_TAG, HIDDEN_TAG]})
    if points is not None:
        set_points(cell, points)
    return cell


def load_hidden(hidden_dir: Path | str, lab: str, visible: list[str]) -> list[nbformat.NotebookNode]:
    """The hidden cells for ``lab`` (an ungraded preamble first, if any); [] when the folder has no file for it.

    A missing folder, a file without checks, a syntax error or a name that repeats a check is an error.
    """
    folder = Path(hidden_dir)
    if not folder.is_dir():
        raise SlmLabError(f"Hidden-checks folder not found: {folder}",
                          "Pass the folder that holds <lab>.py files, e.g. --hidden ~/course-private/hidden-tests.")
    path = hidden_path(folder, lab)
    if not path.is_file():
        return []
    preamble, blocks = _blocks(path.read_text(encoding="utf-8-sig"))
    if not blocks:
        raise SlmLabError(f"{path} has no check.", f"Start each hidden check with a line '{CHECK_PREFIX} <name>'.")
    cells = [new_code_cell(preamble, metadata={"tags": [HIDDEN_TAG]})] if preamble else []
    if preamble:
        _check_syntax(preamble, path, 1)
    seen = set(visible)
    for first_line, lines in blocks:
        name = lines[0][len(CHECK_PREFIX):].strip()
        if not name or name in seen:
            why = "has no name" if not name else "repeats the name of another check"
            raise SlmLabError(f"{path}, line {first_line}: the check {why} ({lines[0].strip()!r}).",
                              "Give every hidden check a name of its own: it is a column of the gradebook.")
        seen.add(name)
        cells.append(_check_cell(path, first_line, lines))
    return cells


def unused_files(hidden_dir: Path | str, labs: list[str]) -> list[str]:
    """Hidden-check files in the folder that belong to none of ``labs``, each with a did-you-mean."""
    folder = Path(hidden_dir)
    found = [p.relative_to(folder).with_suffix("").as_posix() for p in sorted(folder.rglob("*.py"))]
    return [f"{folder / name}.py {did_you_mean(name, labs)}".rstrip() for name in found if name not in labs]


def is_hidden(cell: object) -> bool:
    """True for a cell added from the hidden checks."""
    return HIDDEN_TAG in cell_tags(cell)


def hidden_questions(cells: list[nbformat.NotebookNode], where: str) -> list[Question]:
    """The graded checks among hidden cells, with their points."""
    from slmlab.course import check_name

    return [Question(name, cell_points(cell, where), True) for cell in cells if (name := check_name(cell))]


def without_hidden(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without its hidden cells (what goes back to the learner)."""
    copy = nbformat.from_dict(nb)
    copy.cells = [cell for cell in copy.cells if not is_hidden(cell)]
    return copy
