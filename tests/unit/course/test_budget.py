"""slmlab.course.budget: measured notebook runs against the course's time and memory budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmlab.course.budget import budget_report, budget_rows, part_of
from slmlab.course.execute import RunResult

pytestmark = pytest.mark.fast


def run(path: str, seconds: float, rss_mb: float) -> RunResult:
    return RunResult(Path(path), Path("/tmp/out.ipynb"), "ok", seconds, int(rss_mb * 1e6))


def test_parts_come_from_the_folder():
    assert part_of("solutions/01-foundations/03-quantization-llamacpp.ipynb") == "01-foundations"
    assert part_of("solutions/00-setup-check.ipynb") == "setup"


def test_rows_per_notebook_part_and_course_with_verdicts():
    results = [run("solutions/00-setup-check.ipynb", 10, 300),
               run("solutions/01-foundations/01-a.ipynb", 150, 900),
               run("solutions/01-foundations/02-b.ipynb", 100, 1600),
               run("solutions/03-cloud/01-vllm-openai-server.ipynb", 90, 4200)]
    rows = {r["what"]: r for r in budget_rows(results)}
    assert rows["01-foundations/01-a"]["within"] and not rows["01-foundations/02-b"]["within"]
    assert rows["03-cloud/01-vllm-openai-server"]["within"] and "vLLM" in rows["03-cloud/01-vllm-openai-server"]["note"]
    assert rows["part 01-foundations"]["seconds"] == 250 and not rows["part 01-foundations"]["within"]
    assert rows["part 03-cloud"]["within"] and rows["part 03-cloud"]["budget"] == ""
    assert rows["course"]["seconds"] == 350 and rows["course"]["within"]
    text = budget_report(results)
    assert "✗ part 01-foundations" in text and "✓ course" in text and "≤ 240 s" in text
    assert not budget_rows(results, course_seconds=300)[-1]["within"]
