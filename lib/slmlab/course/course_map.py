"""The course map (``docs/course-map.md``): each notebook's number, objectives, estimated time, prerequisites, topics.

The numbers, topics and prerequisites come from ``syllabus.toml``; the objectives are the numbered list in each
notebook's first cell ("You will ..."); the learner's time is an *estimate* from a stated rule (ESTIMATE_RULE),
computed from the notebook's own prose, code cells and exercises, never typed in. `map_problems` names what
disagrees (a notebook missing from the syllabus, a title whose number differs, an unknown prerequisite).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from slmlab.course.build import notebooks_in
from slmlab.errors import SlmLabError

SYLLABUS = Path(__file__).with_name("syllabus.toml")
WORDS_PER_MINUTE = 150  # careful reading of technical prose
MINUTES_PER_CODE_CELL = 1  # run it, read what it printed
MINUTES_PER_EXERCISE = 15  # read the hint and the API, write, run the check, fix
ESTIMATE_RULE = (f"prose at {WORDS_PER_MINUTE} words a minute, {MINUTES_PER_CODE_CELL} minute per code cell, "
                 f"{MINUTES_PER_EXERCISE} minutes per exercise, rounded up to 5 minutes")
_TITLE = re.compile(r"^#\s+(?:(\d+(?:\.\d+)?)\s*·\s*)?(.+)$")
_ITEM = re.compile(r"^\d+\.\s+(.*)$")


@dataclass(frozen=True)
class Entry:
    """One notebook in the syllabus."""

    path: str  # "02-local/05-api-integration", no suffix
    number: str  # "2.5"
    topics: str
    prerequisites: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    """What a notebook itself says: its title, objectives and size."""

    title_number: str | None
    title: str
    objectives: tuple[str, ...]
    words: int
    code_cells: int
    exercises: int

    @property
    def minutes(self) -> int:
        """The learner's time by ESTIMATE_RULE."""
        raw = (self.words / WORDS_PER_MINUTE + self.code_cells * MINUTES_PER_CODE_CELL
               + self.exercises * MINUTES_PER_EXERCISE)
        return 5 * math.ceil(raw / 5)


def load_syllabus(path: Path = SYLLABUS) -> list[Entry]:
    """Read the syllabus; a bad file or field is named with what to fix."""
    try:
        rows = tomllib.loads(path.read_text(encoding="utf-8")).get("notebook", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SlmLabError(f"Cannot read the syllabus {path}: {exc}",
                          "Fix the TOML (each [[notebook]] a table).") from None
    entries = []
    for index, row in enumerate(rows, start=1):
        missing = [key for key in ("path", "number", "topics") if not isinstance(row.get(key), str)]
        if missing:
            raise SlmLabError(f"{path}: [[notebook]] number {index} lacks {', '.join(missing)}.",
                              "Give each notebook a path, a number (e.g. \"2.5\") and its topics.")
        entries.append(Entry(row["path"], row["number"], row["topics"], tuple(row.get("prerequisites", ()))))
    return entries


def notebook_facts(path: Path) -> Facts:
    """Title, objectives and size of one notebook."""
    nb = nbformat.read(path, as_version=4)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    first = markdown[0].splitlines() if markdown else [""]
    match = _TITLE.match(first[0].strip())
    number, title = (match[1], match[2].strip()) if match else (None, first[0].strip("# ").strip())
    return Facts(
        title_number=number, title=title, objectives=_objectives(first[1:]),
        words=sum(len(re.findall(r"\w+", text)) for text in markdown),
        code_cells=sum(cell.cell_type == "code" for cell in nb.cells),
        exercises=sum(cell.source.count("### BEGIN SOLUTION") for cell in nb.cells),
    )


def _objectives(lines: list[str]) -> tuple[str, ...]:
    """The first numbered list: one item per number, continuation lines joined."""
    items: list[str] = []
    for line in lines:
        item = _ITEM.match(line.strip())
        if item:
            items.append(item[1])
        elif items and line.startswith("   ") and line.strip():
            items[-1] += " " + line.strip()
        elif items and not line.strip():
            break
    return tuple(" ".join(item.split()) for item in items)


def map_problems(solutions: Path, entries: list[Entry]) -> list[str]:
    """What disagrees between the syllabus and the notebooks; empty when the map can be made."""
    found = {p.relative_to(solutions).with_suffix("").as_posix(): p for p in notebooks_in(solutions)}
    listed = {entry.path for entry in entries}
    problems = [f"{found[name]}: not in {SYLLABUS.name}; add a [[notebook]] with its number, topics, prerequisites"
                for name in sorted(set(found) - listed)]
    problems += [f"{SYLLABUS.name}: {name} has no notebook in {solutions}/" for name in sorted(listed - set(found))]
    seen: set[str] = set()
    for entry in entries:
        unknown = [number for number in entry.prerequisites if number not in seen]
        if unknown:
            problems.append(f"{SYLLABUS.name}: {entry.number} needs {', '.join(unknown)}, which is not an "
                            f"earlier notebook")
        seen.add(entry.number)
        if entry.path in found:
            number = notebook_facts(found[entry.path]).title_number
            if number != entry.number:
                problems.append(f"{found[entry.path]}: its title is numbered {number or 'nothing'}, the syllabus "
                                f"says {entry.number}; start the title with '# {entry.number} · '")
    return problems


def render_map(solutions: Path, entries: list[Entry], promises_table: str = "") -> str:
    """docs/course-map.md: an overview table, the chapter's promises (when given), then one section per notebook."""
    rows, sections, total = [], [], 0
    for entry in entries:
        facts = notebook_facts(solutions / f"{entry.path}.ipynb")
        total += facts.minutes
        before = ", ".join(entry.prerequisites) or "none"
        rows.append(f"| {entry.number} | [{facts.title}](#{_anchor(entry, facts)}) | {facts.minutes} | {before} |")
        goals = "\n".join(f"{i}. {goal}" for i, goal in enumerate(facts.objectives, start=1))
        sections.append(f"## {entry.number} · {facts.title}\n\n`labs/{entry.path}.ipynb` · about {facts.minutes} "
                        f"min (estimate) · before it: {before} · {facts.exercises} exercise(s)\n\n"
                        f"Chapter topics: {entry.topics}.\n\nYou will\n\n{goals}\n")
    head = ("# Course map\n\n<!-- generated by `slmlab course-map` from lib/slmlab/course/syllabus.toml and the "
            "notebooks; do not edit by hand -->\n\n"
            f"Estimated learner times follow one rule, not a measurement: {ESTIMATE_RULE}. The machine's own run "
            f"time is extra and small. In all: about {total / 60:.0f} hours.\n\n"
            "| # | notebook | minutes (estimate) | before it |\n| --- | --- | --- | --- |\n")
    promises = (f"## The chapter's promises, and where they run\n\n{promises_table}\n" if promises_table else "")
    return head + "\n".join(rows) + "\n\n" + promises + "\n".join(sections)


def _anchor(entry: Entry, facts: Facts) -> str:
    """GitHub's anchor for the section heading '## N · Title'."""
    text = f"{entry.number} · {facts.title}".lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
