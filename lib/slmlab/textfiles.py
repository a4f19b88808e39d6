"""Read text files that learners write the way the real tools do: a UTF-8 byte-order mark skipped, CRLF accepted.

Windows Notepad starts a UTF-8 file with a byte-order mark (U+FEFF) and ends lines with CRLF; Ollama's Modelfile
parser, YAML loaders and csv readers all accept that, so every file the course parses goes through here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

BOM = "\ufeff"


def normalize_text(text: str) -> str:
    """``text`` without a leading byte-order mark, with CRLF and lone CR line ends read as LF."""
    if text.startswith(BOM):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A learner-written UTF-8 text file, normalized; a clear error when it is missing or not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SlmLabError(f"The {what} {path} does not exist.", "Check the path (relative paths start from the "
                          f"current folder, {Path.cwd()}).") from None
    except IsADirectoryError:
        raise SlmLabError(f"The {what} {path} is a folder, not a file.",
                          "Give the path of the file inside it.") from None
    try:
        return normalize_text(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SlmLabError(f"The {what} {path} is not UTF-8 text (line {line}, byte {exc.start}).",
                          "Save it as UTF-8 (in Notepad: Save as → Encoding: UTF-8).") from None


def json_records(path: str | os.PathLike, what: str, shape: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-empty line of a JSON-lines file of `what`s ("labelled review");
    a missing file or a line that is not JSON is a clear error naming the file and the line, `shape` (one example
    line) its hint."""
    path = Path(path)
    if not path.is_file():
        raise SlmLabError(f"No {what}s at {path}.", "Run from a checkout of the course, or pass path=.")
    for number, line in enumerate(read_text(path, f"{what}s file").split("\n"), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as err:
                raise bad_record(path, number, what, shape, err) from None
            yield number, record


def bad_record(path: str | os.PathLike, number: int, what: str, shape: str, err: Exception) -> SlmLabError:
    """The error for line `number` of `path` that is not a `what` (its first line), with `shape` as the hint."""
    return SlmLabError(f"{Path(path).name} line {number} is not a {what}: {err}".splitlines()[0],
                       f"Each line: {shape}.")
