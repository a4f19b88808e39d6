"""slmlab.course.limits: time limits from the solution's measured time, and the cache of those times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmlab.course.limits import SolutionRun, cached_run, derived_limits, flat_limits, run_key, store_run

pytestmark = pytest.mark.fast


def test_five_times_the_solution_at_least_a_minute():
    quick = SolutionRun(seconds=7.2, slowest_cell_s=1.5, peak_rss_bytes=300_000_000, measured_at="t")
    limits = derived_limits(quick)
    assert (limits.notebook_s, limits.cell_s) == (60, 60)
    assert limits.why == "5 × the solution's 7.2 s (measured now), at least 60 s; a cell 60 s"
    slow = SolutionRun(seconds=100, slowest_cell_s=30, peak_rss_bytes=0, measured_at="t", cached=True)
    assert (derived_limits(slow).notebook_s, derived_limits(slow).cell_s) == (500, 150)
    assert "(cached)" in derived_limits(slow).why
    assert derived_limits(slow, factor=3, minimum=10, cell_timeout=20).cell_s == 20
    assert flat_limits(600).cell_s == 600 and flat_limits(30, 90).cell_s == 30  # a cell never outlasts the notebook


def test_the_cache_is_keyed_by_what_the_time_depends_on(tmp_path: Path):
    solution = tmp_path / "lab.ipynb"
    solution.write_text("{}")
    key = run_key(solution, ["# CHECK: h"], {"fast": True}, 1)
    assert run_key(solution, ["# CHECK: h"], {"fast": True}, 1) == key
    assert len({key, run_key(solution, [], {"fast": True}, 1), run_key(solution, ["# CHECK: h"], {}, 1),
                run_key(solution, ["# CHECK: h"], {"fast": True}, 2)}) == 4
    solution.write_text('{"changed": 1}')
    assert run_key(solution, ["# CHECK: h"], {"fast": True}, 1) != key

    cache = tmp_path / "cache" / "times.json"
    assert cached_run(key, cache) is None
    store_run(key, SolutionRun(7.25, 1.5, 123, "2026-12-01T10:00:00+00:00"), cache)
    store_run("other", SolutionRun(1, 1, 1, "x"), cache)
    assert cached_run(key, cache) == SolutionRun(7.25, 1.5, 123, "2026-12-01T10:00:00+00:00", cached=True)
    assert set(json.loads(cache.read_text())) == {key, "other"}
    cache.write_text("{not json")
    assert cached_run(key, cache) is None  # a broken cache is no cache
