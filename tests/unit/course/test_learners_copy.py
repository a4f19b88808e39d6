"""The instructor guide's recipe for a learners' copy, run as written: labs, no solutions, no history of them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.fast

GUIDE = REPO / "docs" / "instructor-guide.md"
MARKER = "<!-- learners-copy recipe"


def recipe() -> str:
    """The first bash block after the recipe's marker in the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    after = text[text.index(MARKER):]
    return re.search(r"```bash\n(.*?)```", after, flags=re.DOTALL)[1]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_the_learners_copy_has_the_labs_and_no_solution(tmp_path: Path):
    clone = tmp_path / "course"
    git("clone", "--quiet", str(REPO), str(clone), cwd=tmp_path)
    learners = tmp_path / "learners"
    script = re.sub(r"^LEARNERS=\S+", f"LEARNERS={learners}", recipe(), flags=re.MULTILINE)
    assert f"LEARNERS={learners}" in script and "COURSE_REF=HEAD" in script
    identity = {"GIT_AUTHOR_NAME": "Instructor", "GIT_AUTHOR_EMAIL": "i@example.org",
                "GIT_COMMITTER_NAME": "Instructor", "GIT_COMMITTER_EMAIL": "i@example.org"}
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=clone, check=True, env={**os.environ, **identity})

    assert not (learners / "solutions").exists() and not (learners / "instructor").exists()
    labs = sorted(p.relative_to(clone / "labs") for p in (clone / "labs").rglob("*.ipynb"))
    assert labs and sorted(p.relative_to(learners / "labs") for p in (learners / "labs").rglob("*.ipynb")) == labs
    assert (learners / "lab").is_file() and os.access(learners / "lab", os.X_OK)  # ./lab still sets it up
    assert "my-labs/" not in (learners / ".gitignore").read_text().split()  # learners commit their work
    assert git("rev-list", "--count", "HEAD", cwd=learners).strip() == "1"
    everything = git("log", "--all", "--format=", "--name-only", cwd=learners).split()
    assert everything and not [p for p in everything if p.startswith(("solutions/", "instructor/"))]
    notebooks = [p for p in learners.rglob("*.ipynb") if "fixtures" not in p.parts]
    leaks = [p for p in notebooks if "### BEGIN SOLUTION" in p.read_text(encoding="utf-8")]
    assert not leaks, f"solution blocks in the learners' copy: {leaks}"
