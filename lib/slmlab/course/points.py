"""Points per check: read from the check cell's metadata, ``{"slmlab": {"points": 4}}``; 1 where absent.

A check is all or nothing: a learner earns its points when the cell runs without an error. A notebook's
maximum is the sum over its check cells (the visible ones in the lab and the instructor's hidden ones)::

    from slmlab.course.points import questions_of
    [(q.name, q.points) for q in questions_of(nb)]   # [("messages", 4.0), ("hello", 6.0)]

The namespace ``slmlab`` is kept by ``slmlab build-labs`` (cell metadata it copies into the lab), so the lab
a grader reads carries the same points as its solution. To give a check other points, edit the solution's
cell metadata (JupyterLab: property inspector → Advanced tools → Cell metadata) and run ``slmlab build-labs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from slmlab.course import check_cells, check_name
from slmlab.errors import SlmLabError

METADATA_KEY = "slmlab"  # cell.metadata["slmlab"]["points"]
POINTS_FIELD = "points"
DEFAULT_POINTS = 1.0


@dataclass(frozen=True)
class Question:
    """One graded check: its name, the points it is worth, and whether the learners can see it."""

    name: str
    points: float
    hidden: bool = False


def cell_points(cell: Any, where: str = "notebook") -> float:
    """The points of one check cell (DEFAULT_POINTS when its metadata names none); bad values are errors."""
    meta = cell.get("metadata", {}).get(METADATA_KEY, {})
    value = meta.get(POINTS_FIELD, DEFAULT_POINTS) if isinstance(meta, dict) else DEFAULT_POINTS
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SlmLabError(
            f"{where}: check {check_name(cell)!r} has points={value!r} in its metadata.",
            f'Give it a number of points >= 0, e.g. "{METADATA_KEY}": {{"{POINTS_FIELD}": 2}}, '
            "in the solution's cell metadata, then run slmlab build-labs.",
        )
    return float(value)


def set_points(cell: Any, points: float) -> None:
    """Write a check cell's points into its metadata (other slmlab metadata is kept)."""
    meta = dict(cell.metadata.get(METADATA_KEY, {}))
    meta[POINTS_FIELD] = int(points) if float(points).is_integer() else float(points)
    cell.metadata[METADATA_KEY] = meta


def has_points(cell: Any) -> bool:
    """True when the check cell names its points explicitly."""
    meta = cell.get("metadata", {}).get(METADATA_KEY, {})
    return isinstance(meta, dict) and POINTS_FIELD in meta


def questions_of(nb: Any, where: str = "notebook", *, hidden: bool = False) -> list[Question]:
    """The graded checks of a notebook in order, with their points."""
    cells = nb.get("cells", [])
    return [Question(name, cell_points(cells[index], where), hidden) for name, index in check_cells(nb).items()]


def max_score(questions: list[Question]) -> float:
    """The points a perfect submission earns."""
    return sum(q.points for q in questions)
