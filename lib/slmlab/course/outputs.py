"""Compare the checked outputs of an executed notebook with the outputs saved in its source.

A solution marks the cells whose printed output is part of what it teaches with ``# NBVAL_CHECK_OUTPUT``.
nbval compares those when it executes a notebook itself; CI executes each solution once, with papermill
and CI parameters, and compares the executed copy here instead::

    for difference in output_differences("solutions/00-setup-check.ipynb", "runs/00-setup-check.ipynb",
                                         sanitize_file="tests/nbval_sanitize.cfg"):
        print(difference)   # notebook, cell, and a diff of saved vs. new output after sanitizing

The rules are nbval's, through nbval's own code where it is importable (nbval is in the ``test`` extra):
its marker and tag parser picks the cells (``--nbval-lax``: only marked ones, and only if the saved cell
ran), its stream coalescing merges the printed text, its sanitize-file reader gives the regexes. Its
comparison itself is a method of a pytest item, so :func:`comparable` restates it: outputs are flattened
per key (``stdout``, ``text/plain`` …), keys nbval skips are dropped, and each value is sanitized.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from slmlab.errors import SlmLabError

INJECTED_TAG = "injected-parameters"  # the cell papermill adds after the parameters cell
PAPERMILL_TAGS = (INJECTED_TAG, "papermill-error-cell-tag")  # cells papermill adds (and the error banners)
# What nbval leaves out of a comparison (IPyNbFile.skip_compare without --nbdime): ids, counts, images.
SKIPPED_KEYS = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")

Patterns = Sequence[tuple[str, str]]


@dataclass
class OutputDifference:
    """A checked cell whose new output is not its saved output, after sanitizing."""

    notebook: Path
    cell: int  # 1-based position in the source notebook, markdown cells counted
    first_line: str
    diff: str

    def __str__(self) -> str:
        return (f"{self.notebook}, cell {self.cell} ({self.first_line}): the output differs from the saved one "
                f"after sanitizing (- saved, + this run):\n{self.diff}")


def _nbval() -> Any:
    """nbval's plugin module, or a clear error when the test extra is not installed."""
    try:
        from nbval import plugin
    except ImportError as exc:
        raise SlmLabError("Comparing checked outputs needs nbval.",
                          'Install the test extra: pip install -e ".[test]".') from exc
    return plugin


def read_sanitizers(path: Path | str) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlmLabError(f"Cannot read the sanitize file {path}: {exc.strerror}.",
                          "Pass the file nbval uses, e.g. tests/nbval_sanitize.cfg.") from exc
    patterns = [(regex, replace) for regex, replace in _nbval().get_sanitize_patterns(text)]
    for regex, _ in patterns:
        try:
            re.compile(regex)
        except re.error as exc:
            raise SlmLabError(f"{path}: the regex {regex!r} does not compile: {exc}.",
                              "Fix that 'regex:' line.") from exc
    return patterns


def is_checked(cell: Any) -> bool:
    """True when ``pytest --nbval-lax`` would compare this cell's output: marked, and the saved cell ran."""
    if cell.get("cell_type") != "code" or cell.get("execution_count") is None:
        return False
    plugin = _nbval()
    options = dict(plugin.find_metadata_tags(cell.get("metadata", {})))
    options.update(plugin.find_comment_markers(cell.get("source", "")))  # comments win, as in nbval
    return bool(options.get("check", False)) and not options.get("skip", False)


def sanitize(value: Any, patterns: Patterns) -> Any:
    """Apply every regex in order to a string; anything else is returned as it is."""
    if not isinstance(value, str):
        return value
    for regex, replace in patterns:
        value = re.sub(regex, replace, value)
    return value


def comparable(outputs: Sequence[Any], patterns: Patterns) -> dict[str, list[Any]]:
    """A cell's outputs as nbval compares them: key (stream name or MIME type) -> sanitized values, in order."""
    plugin = _nbval()
    merged = plugin.coalesce_streams([nbformat.from_dict(copy.deepcopy(dict(o))) for o in outputs])
    flat: dict[str, list[Any]] = defaultdict(list)
    for output in plugin.transform_streams_for_comparison(merged):
        for key, value in output.items():
            if key in SKIPPED_KEYS:
                continue
            items = value.items() if key == "data" else [(key, value)]
            for name, item in items:
                if name not in SKIPPED_KEYS:
                    flat[name].append(sanitize(item, patterns))
    return dict(flat)


def _as_text(flat: dict[str, list[Any]]) -> list[str]:
    """Lines to diff: each key once, then its values."""
    lines: list[str] = []
    for key in sorted(flat):
        lines.append(f"[{key}]")
        for value in flat[key]:
            lines += str(value).splitlines() or [""]
    return lines


def difference(saved: Sequence[Any], new: Sequence[Any], patterns: Patterns) -> str:
    """A unified diff of two cells' outputs after sanitizing; empty when nbval would call them equal."""
    old, fresh = comparable(saved, patterns), comparable(new, patterns)
    if old == fresh:
        return ""
    diff = difflib.unified_diff(_as_text(old), _as_text(fresh), "saved", "this run", lineterm="", n=2)
    return "\n".join(diff)


def _executed_cells(source: Any, executed: Any, executed_path: Path) -> list[Any]:
    """The executed copy's cells aligned with the source's (the cells papermill added dropped)."""
    cells = [c for c in executed.cells if not set(PAPERMILL_TAGS) & set(c.get("metadata", {}).get("tags", []))]
    if len(cells) != len(source.cells) or any(a.source != b.source for a, b in zip(source.cells, cells, strict=True)):
        raise SlmLabError(f"{executed_path} is not an executed copy of this notebook: its cells differ.",
                          "Compare a notebook with the copy papermill (slmlab run) wrote for it.")
    return cells


def output_differences(notebook: Path | str, executed: Path | str, *, sanitize_file: Path | str | None = None,
                       patterns: Patterns | None = None, skip: Sequence[str] = ()) -> list[OutputDifference]:
    """Every checked cell of ``notebook`` whose output in ``executed`` differs after sanitizing.

    ``skip`` lists cell ids not to compare (outputs that depend on an injected parameter, say).
    """
    notebook, executed = Path(notebook), Path(executed)
    if patterns is None:
        patterns = read_sanitizers(sanitize_file) if sanitize_file else []
    source = nbformat.read(notebook, as_version=4)
    ran = _executed_cells(source, nbformat.read(executed, as_version=4), executed)
    found = []
    for number, (saved, new) in enumerate(zip(source.cells, ran, strict=True), start=1):
        if not is_checked(saved) or saved.get("id") in skip:
            continue
        diff = difference(saved.outputs, new.get("outputs", []), patterns)
        if diff:
            first = next((line.strip() for line in saved.source.splitlines()
                          if line.strip() and not line.lstrip().startswith("#")), "")
            found.append(OutputDifference(notebook, number, first[:60], diff))
    return found


def checked_cell_ids(notebook: Path | str) -> list[str]:
    """The ids of the cells whose output is compared (for listing exceptions by id)."""
    nb = nbformat.read(Path(notebook), as_version=4)
    return [c.get("id", "") for c in nb.cells if is_checked(c)]
