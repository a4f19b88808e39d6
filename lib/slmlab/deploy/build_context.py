"""The build contexts of a bundle's images, staged in a temporary folder: the course's source tree (what the
app's Dockerfiles COPY: pyproject.toml, README.md, lib/) and, for offline builds, the weights at the path the
Dockerfile's WEIGHTS=context stage copies (models/…). Files are hard-linked where they can be (no copy of a
model), copied otherwise."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from slmlab.errors import SlmLabError

SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache", ".ruff_cache")


def source_tree() -> Path:
    """The course's source tree (the folder with pyproject.toml and lib/slmlab) this slmlab was installed from."""
    import slmlab

    root = Path(slmlab.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "lib" / "slmlab").is_dir():
        raise SlmLabError(f"slmlab is installed from {Path(slmlab.__file__).parent}, not from the course's source "
                          "tree, and the app's image is built from that tree (pyproject.toml, lib/).",
                          "Install the course from its repository: pip install -e .")
    return root


def source_files() -> dict[str, Path]:
    """What the app's Dockerfiles COPY from the context."""
    root = source_tree()
    return {"pyproject.toml": root / "pyproject.toml", "README.md": root / "README.md", "lib": root / "lib"}


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(source, target)


def stage(files: Mapping[str, Path], into: Path) -> Path:
    """Put each source (a file or a folder) at its relative path under `into`; returns `into`."""
    into.mkdir(parents=True, exist_ok=True)
    for rel, source in files.items():
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=SKIPPED, copy_function=_link_or_copy, dirs_exist_ok=True)
        elif source.is_file():
            _link_or_copy(str(source), str(target))
        else:
            raise SlmLabError(f"{source} (for {rel} in the build context) does not exist.",
                              "Check the path; for the weights see `slmlab deploy build --help`.")
    return into
