"""The glossary is one click away: the first use of each of its terms in the course links to the term's entry.

The rule, simple enough to apply by hand:

* a term is a ``### `` entry of docs/glossary.md; the hidden ``<!-- terms: a, b -->`` line under its heading lists
  the words that count as a use of it;
* the course's text is the markdown of the solutions in course order (``solutions/00-setup-check.ipynb``, then
  ``01-foundations/*``, ``02-local/*``, ``03-cloud/*`` by file name), as the labs show it: solution blocks,
  headings, fenced code blocks and the text of links to anywhere but the glossary do not count, and a code span
  counts only when it holds exactly one term word (a span of ``fsGroup`` does, one of ``model.gguf`` does not);
* a use is a case-insensitive whole-word match: no letter, digit, ``_`` or ``-`` right before or after it;
* the first use of every term must sit inside a link to its anchor (GitHub's rule: lower case, spaces become
  ``-``, other punctuation is dropped), e.g. ``[KV cache](../../docs/glossary.md#kv-cache)``.

Every glossary link of every solution and lab must also lead to docs/glossary.md from where the notebook sits and
name an anchor that exists there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, labs, solutions
from slmlab.course import BEGIN_SOLUTION, END_SOLUTION

pytestmark = pytest.mark.fast
GLOSSARY = REPO / "docs" / "glossary.md"
_TERMS_LINE = re.compile(r"^<!--\s*terms:(.*?)-->\s*$")
_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]*)\)")  # [text](target); the text may hold `[...]`
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_SOLUTION = re.compile(re.escape(BEGIN_SOLUTION) + r".*?" + re.escape(END_SOLUTION), re.S)
_HEADING = re.compile(r"^#.*$", re.M)


@dataclass(frozen=True)
class Term:
    """One glossary entry: its heading, its anchor and the words that count as a use of it."""

    heading: str
    anchor: str
    words: tuple[str, ...]

    def pattern(self) -> re.Pattern[str]:
        """Any of the words, whole, case-insensitive (longest first, so "KV caches" wins over "KV cache")."""
        words = sorted(self.words, key=len, reverse=True)
        return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?![\w-])", re.I)


def anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces become hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def glossary_terms(text: str | None = None) -> list[Term]:
    """The entries of docs/glossary.md with the words listed under each heading."""
    lines = (GLOSSARY.read_text(encoding="utf-8") if text is None else text).split("\n")
    terms = []
    for index, line in enumerate(lines):
        if line.startswith("### "):
            heading = line[4:].strip()
            listed = _TERMS_LINE.match(lines[index + 1]) if index + 1 < len(lines) else None
            words = tuple(w.strip() for w in listed.group(1).split(",") if w.strip()) if listed else ()
            terms.append(Term(heading, anchor(heading), words))
    return terms


def glossary_anchors() -> set[str]:
    """Every heading's anchor in docs/glossary.md (sections and entries)."""
    return {anchor(line.lstrip("#")) for line in GLOSSARY.read_text(encoding="utf-8").split("\n")
            if re.match(r"#{1,6} ", line)}


def _blank(text: str, start: int, end: int) -> str:
    """The text with [start, end) replaced by spaces (positions of the rest stay where they were)."""
    return text[:start] + " " * (end - start) + text[end:]


def readable(markdown: str, words: set[str]) -> tuple[str, list[tuple[int, int, str]]]:
    """A markdown cell's text as matching sees it, and its glossary links as (start, end, anchor) of their text.

    What does not count is blanked out, so positions stay those of the cell: solution blocks, fenced code,
    headings, the targets of all links and the text of non-glossary links, and code spans that are not one term word.
    """
    text = markdown
    for pattern in (_SOLUTION, _FENCE, _HEADING):
        for match in list(pattern.finditer(text)):
            text = _blank(text, match.start(), match.end())
    links = []
    for match in list(_LINK.finditer(text)):
        target = match.group(2)
        if "glossary.md#" in target:
            links.append((match.start(1), match.end(1), target.split("#", 1)[1]))
            text = _blank(text, match.end(1), match.end())
        else:
            text = _blank(text, match.start(), match.end())
    for match in list(_CODE_SPAN.finditer(text)):
        if match.group(1).strip().lower() not in words:
            text = _blank(text, match.start(), match.end())
    return text, links


@dataclass(frozen=True)
class Use:
    """Where a term is first used: notebook, cell index, the words around it and whether it links to its entry."""

    notebook: str
    cell: int
    excerpt: str
    linked: bool


def first_uses(terms: list[Term], notebooks: list[Path]) -> dict[str, Use]:
    """The first use of each term over the notebooks in the order given (terms never used are left out)."""
    words = {w.lower() for term in terms for w in term.words}
    found: dict[str, Use] = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            text, links = readable(cell.source, words)
            for term in terms:
                if term.heading in found or not term.words:
                    continue
                match = term.pattern().search(text)
                if match:
                    linked = any(start <= match.start() and match.end() <= end and target == term.anchor
                                 for start, end, target in links)
                    excerpt = " ".join(cell.source[max(match.start() - 50, 0):match.end() + 30].split())
                    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                    found[term.heading] = Use(shown.as_posix(), index, excerpt, linked)
    return found


def glossary_links(path: Path) -> list[str]:
    """The targets of every link to docs/glossary.md in a notebook's markdown."""
    nb = nbformat.read(path, as_version=4)
    return [m.group(2) for cell in nb.cells if cell.cell_type == "markdown"
            for m in _LINK.finditer(cell.source) if "glossary.md" in m.group(2)]


def test_every_entry_lists_its_words_and_has_its_own_anchor():
    terms = glossary_terms()
    assert terms, f"no '### ' entries in {GLOSSARY}"
    unlisted = [t.heading for t in terms if not t.words]
    assert not unlisted, f"{GLOSSARY.name}: add a '<!-- terms: … -->' line under the headings of {unlisted}"
    anchors = [t.anchor for t in terms]
    assert len(set(anchors)) == len(anchors), f"two entries share an anchor: {sorted(anchors)}"


@pytest.mark.parametrize("path", solutions() + labs(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_glossary_links_lead_to_an_entry(path: Path):
    anchors = glossary_anchors()
    wrong = []
    for target in glossary_links(path):
        file, _, name = target.partition("#")
        if (path.parent / file).resolve() != GLOSSARY.resolve():
            wrong.append(f"{target}: the file is not docs/glossary.md seen from {path.parent.relative_to(REPO)}/")
        elif name not in anchors:
            wrong.append(f"{target}: no heading of docs/glossary.md has the anchor #{name}")
    assert not wrong, f"{path.relative_to(REPO)}:\n" + "\n".join(wrong)


def test_the_first_use_of_each_term_links_to_it():
    terms = glossary_terms()
    uses = first_uses(terms, solutions())
    depth = {1: "../docs/glossary.md", 2: "../../docs/glossary.md"}
    unlinked = []
    for term in terms:
        use = uses.get(term.heading)
        if use and not use.linked:
            link = depth.get(len(Path(use.notebook).parts) - 1, "docs/glossary.md")
            unlinked.append(f"{use.notebook}, cell {use.cell}: link the first use of '{term.heading}' to "
                            f"{link}#{term.anchor}: …{use.excerpt}…")
    assert not unlinked, "\n".join(unlinked)


def test_the_rule_sees_an_unlinked_use_and_a_linked_one(tmp_path: Path):
    glossary = "### KV cache\n<!-- terms: KV cache, KV caches -->\nKeys and values.\n"
    terms = glossary_terms(glossary)
    assert terms == [Term("KV cache", "kv-cache", ("KV cache", "KV caches"))]
    cells = [nbformat.v4.new_markdown_cell("# The KV cache\n\nCode: `kv_cache_size`, and `fsGroup`."),
             nbformat.v4.new_markdown_cell("Then the **KV caches** fill memory. The KV cache again.")]
    first = tmp_path / "first.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), first)
    use = first_uses(terms, [first])["KV cache"]
    assert (use.cell, use.linked) == (1, False)  # the heading and the code span are not uses
    cells[1].source = "Then the **[KV caches](../docs/glossary.md#kv-cache)** fill memory. The KV cache again."
    nbformat.write(nbformat.v4.new_notebook(cells=cells), first)
    assert first_uses(terms, [first])["KV cache"].linked
    cells[1].source = "Then the **[KV caches](../docs/glossary.md#gguf)** fill memory."
    nbformat.write(nbformat.v4.new_notebook(cells=cells), first)
    assert not first_uses(terms, [first])["KV cache"].linked  # a link to another entry is no link to this one
    assert anchor("Ternary weights (BitNet, TQ1_0, TQ2_0)") == "ternary-weights-bitnet-tq1_0-tq2_0"
    assert anchor("GPTQ, AWQ, SmoothQuant") == "gptq-awq-smoothquant"
