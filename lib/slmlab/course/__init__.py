"""Course machinery: build labs from solutions, run notebooks headlessly, grade submissions.

The notebook conventions every part relies on (docs/architecture.md, "A notebook") live here:

* the first code cell is tagged ``parameters``; papermill injects values after it;
* exercise code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; ``# HINT:``
  comment lines right above ``### BEGIN SOLUTION`` become the message of the lab's
  ``raise NotImplementedError(...)`` (see :mod:`slmlab.course.build`);
* a check cell is tagged ``check`` and its first line is ``# CHECK: <name>``; it calls
  :mod:`slmlab.checks` helpers and is recorded by name, pass or fail, when grading.

The submodules (``build``, ``execute``, ``grade``, ``commands``) import nbformat, papermill and
nbclient; this package root stays light so ``slmlab --help`` starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

PARAMETERS_TAG = "parameters"
CHECK_TAG = "check"
CHECK_PREFIX = "# CHECK:"
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
HINT_PREFIX = "# HINT:"


def cell_tags(cell: Any) -> list[str]:
    """The tags of a notebook cell (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def check_name(cell: Any) -> str | None:
    """The name of a check cell (``# CHECK: <name>`` on its first line), or None for other cells."""
    if cell.get("cell_type") != "code":
        return None
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    first = source.lstrip().split("\n", 1)[0].strip()
    if first.startswith(CHECK_PREFIX):
        return first[len(CHECK_PREFIX) :].strip() or None
    return None


def check_cells(nb: Any) -> dict[str, int]:
    """Map each check name in a notebook to its cell index, in notebook order."""
    found: dict[str, int] = {}
    for index, cell in enumerate(nb.get("cells", [])):
        name = check_name(cell)
        if name is not None:
            found.setdefault(name, index)
    return found


def parameters_cell_index(nb: Any, path: Path | str = "notebook") -> int:
    """Index of the cell tagged ``parameters``; a learner-readable error when there is none."""
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and PARAMETERS_TAG in cell_tags(cell):
            return index
    raise SlmLabError(
        f"{path} has no cell tagged 'parameters'.",
        "Tag the first code cell 'parameters' (JupyterLab: property inspector → Cell Tags) "
        "and assign the notebook's knobs there, e.g. model = \"smollm2-135m-instruct\".",
    )
