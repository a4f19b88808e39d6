"""A learner's own copy of the labs (``slmlab copy-labs``): made once, updated without ever losing work.

Learners work in ``my-labs/`` (ignored by git), not in ``labs/`` (which `slmlab build-labs` and ``git pull``
rewrite). Running the copy again after an update brings each lab to its new version where the learner has not
touched it; where they have, their notebook stays as it is and the new version is written beside it as
``NAME.new.ipynb``. Whether a learner touched a lab is told by build-labs' stamp (see build.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from slmlab.course.build import generated_stamp, notebooks_in, read_or_none, sources_sha256
from slmlab.errors import SlmLabError

DEFAULT_COPY = Path("my-labs")
NEW_SUFFIX = ".new.ipynb"


@dataclass
class CopyReport:
    """What `copy_labs` did, one list of destination paths per outcome."""

    copied: list[Path] = field(default_factory=list)  # new to the learner
    updated: list[Path] = field(default_factory=list)  # untouched by the learner: now the new version
    beside: list[Path] = field(default_factory=list)  # the learner's edits kept; the new version is NAME.new.ipynb
    kept: list[Path] = field(default_factory=list)  # current already, or the learner's own work on a current lab

    def lines(self) -> list[str]:
        """One line per notebook that changed or needs the learner's attention."""
        out = [f"new      {path}" for path in self.copied]
        out += [f"updated  {path} (you had not changed it)" for path in self.updated]
        out += [f"kept     {path}: your edits are in it; the new version is {_beside(path).name} next to it"
                for path in self.beside]
        return out


def _beside(path: Path) -> Path:
    return path.with_name(path.name[: -len(".ipynb")] + NEW_SUFFIX)


def copy_labs(labs: Path | str = "labs", dest: Path | str = DEFAULT_COPY) -> CopyReport:
    """Copy every lab in `labs` into `dest` (same part folders), never overwriting a learner's edits."""
    labs, dest = Path(labs), Path(dest)
    if not labs.is_dir():
        raise SlmLabError(f"Labs folder not found: {labs}", "Run from the course's folder, or pass --labs.")
    if dest.resolve() == labs.resolve():
        raise SlmLabError(f"The copy would be the labs folder itself ({labs}).", "Pass another folder with --to.")
    report = CopyReport()
    for lab in notebooks_in(labs):
        target = dest / lab.relative_to(labs)
        outcome = _copy_one(lab, target)
        getattr(report, outcome).append(target)
    return report


def _copy_one(lab: Path, target: Path) -> str:
    """Bring one lab into the learner's copy; return the CopyReport list it belongs to."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lab, target)
        return "copied"
    upstream, mine = read_or_none(lab), read_or_none(target)  # an unreadable copy counts as edited
    if upstream is None:
        raise SlmLabError(f"{lab} is not a readable notebook.", "Run `slmlab build-labs`, or `git checkout` it.")
    new_stamp = generated_stamp(upstream)
    if mine is not None and generated_stamp(mine) == new_stamp:
        return "kept"  # the same version: whatever the learner did stays
    untouched = mine is not None and generated_stamp(mine) == sources_sha256(mine)
    if untouched:
        shutil.copyfile(lab, target)
        return "updated"
    shutil.copyfile(lab, _beside(target))
    return "beside"
