"""The course's programs in other languages, kept as package data beside this module, and a folder to build them in.

    work = new_workdir("node")      # a fresh temporary folder with node/'s package.json, lock file and scripts
    SOURCES / "csharp"              # the C# files as shipped

Programs are built and run in a copy, never in the installed package (which may be read-only), and a learner's
exercise file is written into that copy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.languages.programs import copy_tree

SOURCES = Path(__file__).resolve().parent
FOLDERS = {"node": "node", "csharp": "csharp", "cpp": "cpp"}


def source_dir(language: str) -> Path:
    """The folder of the course's sources for `language` ("node", "csharp" or "cpp")."""
    if language not in FOLDERS:
        raise SlmLabError(f"No sources for {language!r}.", f"Use one of {', '.join(FOLDERS)}.")
    return SOURCES / FOLDERS[language]


def new_workdir(language: str, parent: str | os.PathLike | None = None) -> Path:
    """A fresh folder (under `parent`, default the temp dir) holding a copy of the language's sources."""
    target = Path(tempfile.mkdtemp(prefix=f"slmlab-{language}-", dir=parent))
    return copy_tree(source_dir(language), target)


def write_source(workdir: str | os.PathLike, name: str, text: str) -> Path:
    """Write a source file (an exercise's answer) into the work folder; returns its path."""
    if not isinstance(text, str) or not text.strip():
        raise SlmLabError(f"The source for {name} is empty.", "Write the code in the string, then run the cell again.")
    path = Path(workdir) / name
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path
