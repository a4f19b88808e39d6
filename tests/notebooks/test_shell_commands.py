"""Every shell command a solution notebook shows is run by that notebook, or says visibly why it cannot run here.

A notebook shows shell commands in code cells (`!cmd` lines, `x = !cmd`, and `%%bash` / `%%sh` cells: these run
when the notebook runs) and in markdown (fenced ```bash, ```sh, ```shell and ```console blocks: these only show).
A markdown command counts as run when it is identical, character for character, to a command one of the notebook's
code cells runs (a trailing `# comment` and the surrounding spaces aside). Every other markdown command must be in
the one reviewed allow-list, tests/notebooks/shell_commands_not_run.toml, with the reason it cannot run here, and
that reason must be written next to it in the notebook (in its cell or the cell just before or after).

The allow-list may only shrink: an entry that no longer matches a command shown and not run fails here too.
These tests only read notebooks (fast).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SOLUTIONS, solutions

ALLOW_LIST = Path(__file__).resolve().parent / "shell_commands_not_run.toml"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "shell-session"}
CELL_MAGIC = re.compile(r"^%%(?:bash|sh|script\s+(?:ba)?sh)\b")
BANG = re.compile(r"^\s*(?:[\w.\[\], ]+\s*=\s*)?!!?(?P<command>.*)$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
ENTRY_KEYS = {"notebook", "command", "reason"}
WHAT_TO_DO = (f"Run it in a code cell of that notebook (a `!` line or a %%bash cell; the markdown must then show it "
              f"exactly as it runs), or, if it cannot run here, add it to {ALLOW_LIST.relative_to(SOLUTIONS.parent)} "
              f"(notebook, command, reason: the list is reviewed) and write that reason next to it in the notebook.")


@dataclass(frozen=True)
class ShellCommand:
    """One shell command a notebook shows: where, what, and whether the notebook runs it (a code cell)."""

    notebook: str  # e.g. "02-local/03-foundry-local"
    cell: int  # 0-based index, markdown cells counted (as Jupyter and nbformat count them)
    where: str  # "a `!` line", "a %%bash cell", "a ```bash block"
    command: str
    runs: bool

    def __str__(self) -> str:
        return f"solutions/{self.notebook}.ipynb, cell {self.cell} ({self.where}): {self.command}"


def strip_comment(line: str) -> str:
    """`line` without a trailing shell comment (a `#` at the start or after a space, outside quotes), stripped."""
    quote, escaped = "", False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def logical_lines(lines: list[str]) -> list[str]:
    """Commands from shell lines: `\\`-continued lines joined, comments and blank lines dropped."""
    commands, pending = [], ""
    for raw in lines:
        line = raw.rstrip()
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1].rstrip() + " "
            continue
        command = strip_comment(pending + line.strip())
        pending = ""
        if command:
            commands.append(command)
    if pending and strip_comment(pending):
        commands.append(strip_comment(pending))
    return commands


def console_commands(lines: list[str]) -> list[str]:
    """The commands of a ```console block: the lines after a `$ ` prompt (and their continuations); the rest is
    the commands' output."""
    picked, continuing = [], False
    for line in lines:
        text = line.strip()
        if text.startswith("$ ") or text == "$" or continuing:
            picked.append(text[2:] if text.startswith("$ ") and not continuing else text)
            continuing = text.endswith("\\")
    return logical_lines(picked)


def fenced_blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced code block of a markdown cell (``` or ~~~, indented fences too)."""
    blocks, open_fence, language, body = [], None, "", []
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if open_fence is None:
            if match:
                open_fence, language, body = match["fence"], match["info"].strip().split(" ")[0].lower(), []
                indent = len(match["indent"])
            continue
        if match and match["fence"][0] == open_fence[0] and len(match["fence"]) >= len(open_fence) \
                and not match["info"].strip():
            blocks.append((language, body))
            open_fence = None
        else:
            body.append(line[indent:] if line[:indent].isspace() else line.lstrip())
    return blocks


def code_commands(source: str) -> list[tuple[str, str]]:
    """(where, command) of the shell commands of a code cell."""
    lines = source.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and CELL_MAGIC.match(lines[first].strip()):
        magic = lines[first].split()[0] if not lines[first].startswith("%%script") else "%%script"
        return [(f"a {magic} cell", command) for command in logical_lines(lines[first + 1:])]
    found, pending = [], ""
    for line in lines:
        match = BANG.match(pending + line) if pending or BANG.match(line) else None
        if match is None:
            continue
        if line.rstrip().endswith("\\"):
            pending = (pending + line).rstrip()[:-1] + " "
            continue
        pending = ""
        command = strip_comment(match["command"])
        if command:
            found.append(("a `!` line", command))
    return found


def shell_commands(path: Path, root: Path = SOLUTIONS) -> list[ShellCommand]:
    """Every shell command the notebook at `path` (under `root`) shows, in cell order."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    key, found = path.relative_to(root).with_suffix("").as_posix(), []
    for index, cell in enumerate(cells):
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "code":
            found += [ShellCommand(key, index, where, command, True) for where, command in code_commands(source)]
        elif cell["cell_type"] == "markdown":
            for language, body in fenced_blocks(source):
                if language in SHELL_LANGUAGES:
                    commands = console_commands(body) if language in ("console", "shell-session") \
                        else logical_lines(body)
                    found += [ShellCommand(key, index, f"a ```{language} block", command, False)
                              for command in commands]
    run = {c.command for c in found if c.runs}
    return [c if c.runs or c.command not in run else ShellCommand(c.notebook, c.cell, c.where, c.command, True)
            for c in found]


def read_allow_list(path: Path = ALLOW_LIST) -> list[dict[str, str]]:
    """The allow-list's entries (`[[command]]` tables: notebook, command, reason)."""
    return list(tomllib.loads(path.read_text(encoding="utf-8")).get("command", []))


def visible_text(text: str) -> str:
    """Text as a reader sees it: markdown emphasis and code marks dropped, spaces collapsed, lower case."""
    return " ".join(re.sub(r"[*`]", "", text).split()).lower()


@pytest.fixture(scope="module")
def shown() -> list[ShellCommand]:
    return [command for path in solutions() for command in shell_commands(path)]


@pytest.fixture(scope="module")
def allowed() -> list[dict[str, str]]:
    return read_allow_list()


# ----------------------------------------------------------------------------- the course's notebooks


@pytest.mark.fast
def test_every_shown_shell_command_runs_or_is_allowed_with_a_reason(shown, allowed):
    listed = {(entry.get("notebook"), entry.get("command")) for entry in allowed}
    missing = [command for command in shown if not command.runs and (command.notebook, command.command) not in listed]
    if missing:
        pytest.fail(f"{len(missing)} shell command(s) shown in a notebook but neither run by it nor in the "
                    f"allow-list:\n" + "\n".join(f"  {command}" for command in missing) + f"\n{WHAT_TO_DO}",
                    pytrace=False)


@pytest.mark.fast
def test_the_allow_list_has_no_stale_entries(shown, allowed):
    not_run = {(command.notebook, command.command) for command in shown if not command.runs}
    run = {(command.notebook, command.command) for command in shown if command.runs}
    stale = []
    for entry in allowed:
        key = (entry.get("notebook"), entry.get("command"))
        if key in run:
            stale.append(f"  {key[0]}: {key[1]!r} now runs in the notebook: delete its entry")
        elif key not in not_run:
            stale.append(f"  {key[0]}: {key[1]!r} is shown nowhere in that notebook any more: delete its entry")
    if stale:
        pytest.fail(f"{ALLOW_LIST.name} may only shrink, and these entries match no command shown and not run (the "
                    f"list keeps only what still needs its reason):\n" + "\n".join(stale), pytrace=False)


@pytest.mark.fast
def test_each_reason_is_written_next_to_its_command(shown, allowed):
    where = {(command.notebook, command.command): command for command in shown if not command.runs}
    hidden = []
    for entry in allowed:
        command = where.get((entry.get("notebook"), entry.get("command")))
        if command is None:
            continue  # stale: the test above names it
        cells = json.loads((SOLUTIONS / f"{command.notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
        near = cells[max(command.cell - 1, 0):command.cell + 2]
        text = visible_text("\n".join("".join(cell.get("source", "")) for cell in near))
        if visible_text(entry.get("reason", "")) not in text:
            hidden.append(f"  {command}\n    reason {entry.get('reason')!r} is not written in cell {command.cell} or "
                          f"the cells around it")
    if hidden:
        pytest.fail("A learner must see why a command shown is not run, next to it: write each allow-list reason "
                    "(word for word) in the notebook beside its command, or shorten the reason to a sentence the "
                    "notebook already says there.\n" + "\n".join(hidden), pytrace=False)


@pytest.mark.fast
def test_the_allow_list_is_well_formed(allowed):
    text = ALLOW_LIST.read_text(encoding="utf-8")
    assert "review" in text.split("[[command]]")[0], "the file starts with the comment saying additions need review"
    seen = set()
    for number, entry in enumerate(allowed, 1):
        assert set(entry) == ENTRY_KEYS, f"entry {number}: give exactly {sorted(ENTRY_KEYS)}, found {sorted(entry)}"
        assert all(isinstance(entry[k], str) and entry[k].strip() for k in ENTRY_KEYS), f"entry {number}: empty field"
        assert (SOLUTIONS / f"{entry['notebook']}.ipynb").is_file(), \
            f"entry {number}: no notebook solutions/{entry['notebook']}.ipynb"
        key = (entry["notebook"], entry["command"])
        assert key not in seen, f"entry {number} repeats {key}"
        seen.add(key)


# ----------------------------------------------------------------------------- the collector itself


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    nb = {"cells": [{"cell_type": kind, "metadata": {}, "source": source, **({"outputs": [], "execution_count": None}
                                                                           if kind == "code" else {})}
                    for kind, source in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.mark.fast
def test_the_collector_finds_bang_lines_cell_magics_and_fenced_blocks(tmp_path):
    path = write_notebook(tmp_path / "demo.ipynb", [
        ("markdown", "Run:\n\n```bash\nllama-server --version   # which build\nnpm ci \\\n  --no-audit\n```\n\n"
                     "```python\nprint('not shell')\n```\n\n"
                     "- in a list:\n\n  ```console\n  $ foundry cache list\n  output line\n  ```\n"),
        ("code", "import os\n!llama-server --version\nfiles = !ls -1 /tmp\nx = 1  # !not a command\n"),
        ("code", "%%bash -s \"$port\"\n# start it\nllama-server --port \"$1\" \\\n    --parallel 2 &\n"
                 "echo 'a # inside quotes' # a comment\n\nkill %1\n"),
    ])
    found = [(c.cell, c.where, c.command, c.runs) for c in shell_commands(path, tmp_path)]
    assert found == [
        (0, "a ```bash block", "llama-server --version", True),  # identical to cell 1's: it runs
        (0, "a ```bash block", "npm ci --no-audit", False),
        (0, "a ```console block", "foundry cache list", False),
        (1, "a `!` line", "llama-server --version", True),
        (1, "a `!` line", "ls -1 /tmp", True),
        (2, "a %%bash cell", 'llama-server --port "$1" --parallel 2 &', True),
        (2, "a %%bash cell", "echo 'a # inside quotes'", True),
        (2, "a %%bash cell", "kill %1", True),
    ]
    assert str(shell_commands(path, tmp_path)[1]) == "solutions/demo.ipynb, cell 0 (a ```bash block): npm ci --no-audit"


@pytest.mark.fast
def test_a_markdown_command_must_match_what_runs_exactly(tmp_path):
    path = write_notebook(tmp_path / "near.ipynb", [
        ("markdown", "```sh\nllama-bench -m model.gguf -p 128\n```"),
        ("code", "!llama-bench -m model.gguf -p 64\n"),
    ])
    assert [c.runs for c in shell_commands(path, tmp_path)] == [False, True]  # one flag differs: the markdown is shown


@pytest.mark.fast
def test_reasons_are_compared_as_a_reader_sees_them():
    assert visible_text("The CLI **cannot** be\ninstalled here (`no internet`)") == \
        "the cli cannot be installed here (no internet)"
    assert strip_comment("curl -s 'http://x/#frag' # fetch") == "curl -s 'http://x/#frag'"
    assert strip_comment("echo a#b") == "echo a#b"
