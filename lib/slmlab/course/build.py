"""Build ``labs/`` from ``solutions/``: strip the code between the solution markers, keep the hints.

A solution cell such as::

    # HINT: call llm.create_chat_completion(...) with temperature=0.0
    ### BEGIN SOLUTION
    reply = llm.create_chat_completion(messages=messages, temperature=0.0)
    ### END SOLUTION

becomes, in the lab::

    raise NotImplementedError("call llm.create_chat_completion(...) with temperature=0.0")

Several blocks per cell are fine, markers may be indented (inside a function body), and a
markdown cell's block becomes "_Write your answer here._". Labs carry no outputs, no execution
counts, no widget state and no ``# NBVAL_...`` comments; check cells are locked (not editable,
not deletable) in JupyterLab.

Each lab carries a stamp, the SHA-256 of its cells' sources as generated (``metadata.slmlab.lab_sha256``). A lab
whose sources no longer match its stamp has been edited by someone, and build-labs leaves it alone unless forced:
a learner's work is never overwritten (``slmlab copy-labs`` makes the learner's own copy, see learner_copy.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from slmlab.course import (
    BEGIN_SOLUTION,
    CHECK_TAG,
    END_SOLUTION,
    HINT_PREFIX,
    PARAMETERS_TAG,
    cell_tags,
    check_name,
)
from slmlab.errors import SlmLabError

DEFAULT_CODE_HINT = "Write your solution here."
MARKDOWN_PLACEHOLDER = "_Write your answer here._"
KEPT_CELL_METADATA = ("tags", "editable", "deletable", "slideshow", "jupyter", "slmlab")  # slmlab: points
DROPPED_NOTEBOOK_METADATA = ("widgets", "papermill", "execution", "celltoolbar")
NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")  # test-only comments, noise for learners


@dataclass
class BuildReport:
    """What build-labs wrote (or, with ``check``, what is out of date)."""

    changed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    edited: list[Path] = field(default_factory=list)  # labs with somebody's edits, left as they are


    @property
    def in_sync(self) -> bool:
        """True when no lab differs from its solution and no lab lacks a solution."""
        return not self.changed and not self.orphans and not self.edited


def _strip_block(source: str, *, markdown: bool, where: str) -> str:
    """Replace every BEGIN/END SOLUTION block in one cell's source."""
    lines = source.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith(END_SOLUTION):
            raise SlmLabError(
                f"{where}: '{END_SOLUTION}' on line {index + 1} has no '{BEGIN_SOLUTION}' above it.",
                f"Put '{BEGIN_SOLUTION}' on its own line before the solution code.",
            )
        if not stripped.startswith(BEGIN_SOLUTION):
            out.append(line)
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(END_SOLUTION):
            if lines[end].strip().startswith(BEGIN_SOLUTION):
                raise SlmLabError(
                    f"{where}: '{BEGIN_SOLUTION}' on line {index + 1} is not closed before "
                    f"the next '{BEGIN_SOLUTION}' on line {end + 1}.",
                    f"Close each block with '{END_SOLUTION}' before opening another.",
                )
            end += 1
        if end == len(lines):
            raise SlmLabError(
                f"{where}: '{BEGIN_SOLUTION}' on line {index + 1} has no '{END_SOLUTION}'.",
                f"Add a line '{END_SOLUTION}' after the solution code.",
            )
        indent = line[: len(line) - len(line.lstrip())]
        if markdown:
            out.append(indent + MARKDOWN_PLACEHOLDER)
        else:
            hints: list[str] = []
            while out and out[-1].strip().startswith(HINT_PREFIX):
                hints.insert(0, out.pop().strip()[len(HINT_PREFIX) :].strip())
            message = " ".join(h for h in hints if h) or DEFAULT_CODE_HINT
            out.append(f"{indent}raise NotImplementedError({message!r})")
        index = end + 1
    return "\n".join(out)


def strip_solutions(source: str, where: str = "cell") -> str:
    """A code cell's source as its lab has it: solution blocks replaced, ``# NBVAL_...`` lines dropped."""
    source = _strip_block(source, markdown=False, where=where)
    return "\n".join(line for line in source.split("\n") if not NBVAL_MARKER.match(line))


def build_lab(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """Return the lab notebook generated from a solution notebook (the input is not modified)."""
    lab = copy.deepcopy(solution)
    for key in DROPPED_NOTEBOOK_METADATA:
        lab.metadata.pop(key, None)
    for number, cell in enumerate(lab.cells, start=1):
        where = f"{name}, cell {number}"
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where)
        elif cell.cell_type == "markdown":
            cell.source = _strip_block(cell.source, markdown=True, where=where)
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA}
        )
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if check_name(cell) is not None:
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False
    lab.metadata.setdefault("slmlab", {})["lab_sha256"] = sources_sha256(lab)
    return lab


def sources_sha256(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of a notebook's cells (type and source): running a notebook leaves it unchanged, editing does not."""
    cells = [(cell.cell_type, cell.source) for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def generated_stamp(nb: nbformat.NotebookNode) -> str | None:
    """The stamp build-labs wrote into a lab (None for a notebook it did not write)."""
    stamp = nb.metadata.get("slmlab", {}).get("lab_sha256")
    return stamp if isinstance(stamp, str) else None


def is_edited(nb: nbformat.NotebookNode) -> bool:
    """True when a generated lab's sources differ from what build-labs wrote (a learner's work is in it)."""
    stamp = generated_stamp(nb)
    return stamp is not None and stamp != sources_sha256(nb)


def _read(path: Path) -> nbformat.NotebookNode:
    """Read a notebook, turning a parse error into a learner-readable one."""
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise SlmLabError(f"Notebook not found: {path}", "Check the path (ls solutions/).") from None
    except Exception as exc:  # nbformat raises several types for broken JSON
        raise SlmLabError(f"{path} is not a readable notebook: {exc}", "Open it in JupyterLab and re-save it.") from exc


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """Serialize a notebook the way Jupyter does (1-space indent, sorted keys, final newline)."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def lab_text(solution_path: Path | str) -> str:
    """The exact text build-labs writes for one solution notebook."""
    path = Path(solution_path)
    return notebook_text(build_lab(_read(path), name=str(path)))


def notebooks_in(folder: Path | str) -> list[Path]:
    """Every notebook under a folder (part folders included), checkpoints excluded, sorted."""
    return sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def build_labs(solutions: Path | str = "solutions", labs: Path | str = "labs", *, check: bool = False,
               force: bool = False) -> BuildReport:
    """Write ``labs/P/X.ipynb`` for every ``solutions/P/X.ipynb``; with ``check``, only report what differs.

    A lab somebody edited (see `is_edited`) is reported in ``edited`` and kept, unless ``force``.
    """
    solutions, labs = Path(solutions), Path(labs)
    if not solutions.is_dir():
        raise SlmLabError(f"Solutions folder not found: {solutions}",
                          "Run from the repository root or pass --solutions.")
    report = BuildReport()
    sources = notebooks_in(solutions)
    for solution in sources:
        target = labs / solution.relative_to(solutions)
        text = lab_text(solution)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            report.unchanged.append(target)
            continue
        if current is not None and not force and _has_edits(target):
            report.edited.append(target)
            continue
        report.changed.append(target)
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    if labs.is_dir():
        names = {s.relative_to(solutions) for s in sources}
        report.orphans = [p for p in notebooks_in(labs) if p.relative_to(labs) not in names]
    return report


def read_or_none(path: Path) -> nbformat.NotebookNode | None:
    """The notebook at `path`, or None when it cannot be read (half-saved, hand-broken, not JSON)."""
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # nbformat's errors for broken notebooks
        return None


def _has_edits(lab: Path) -> bool:
    """True for a lab file with somebody's edits; an unreadable file counts as edited (never overwrite it)."""
    nb = read_or_none(lab)
    return nb is None or is_edited(nb)


def solution_problems(path: Path | str) -> list[str]:
    """Convention problems in a solution notebook (outputs, widget state, tags); empty when clean."""
    path = Path(path)
    nb = _read(path)
    problems: list[str] = []
    if "widgets" in nb.metadata:
        problems.append(f"{path}: notebook metadata holds widget state (metadata.widgets)")
    code_cells = [(i, c) for i, c in enumerate(nb.cells, start=1) if c.cell_type == "code"]
    if not code_cells or PARAMETERS_TAG not in cell_tags(code_cells[0][1]):
        problems.append(f"{path}: the first code cell is not tagged '{PARAMETERS_TAG}'")
    for number, cell in code_cells:
        keeps = "NBVAL_CHECK_OUTPUT" in cell.source
        if cell.outputs and not keeps:
            problems.append(f"{path}, cell {number}: has outputs but no '# NBVAL_CHECK_OUTPUT' marker")
        for output in cell.outputs:
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                problems.append(f"{path}, cell {number}: output holds a widget view")
        named = check_name(cell) is not None
        if named != (CHECK_TAG in cell_tags(cell)):
            problems.append(
                f"{path}, cell {number}: a check cell needs both the tag '{CHECK_TAG}' "
                "and a first line '# CHECK: <name>'"
            )
    return problems
