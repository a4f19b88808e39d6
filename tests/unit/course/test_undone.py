"""slmlab.course.undone: which names a check depends on through its exercises, read from the cells' code."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from slmlab.course.undone import assigned_and_read, plan


@pytest.mark.fast
def test_assigned_names_are_the_top_level_ones_and_what_changes_in_place():
    source = ("import numpy as np, os.path\nfrom json import loads\nx, (y, z) = 1, (2, 3)\ntable['col'] = x\n"
              "obj.attr.deep = y\nfor i in range(3):\n    total = i\nwith open('f') as handle:\n    pass\n"
              "def helper(a):\n    local = a + x\n    return local\nclass Thing:\n    field = 1\n"
              "squares = [k * k for k in range(3)]\nf = lambda q: q\ndel z")
    assigned, read = assigned_and_read(source)
    assert assigned == {"np", "os", "loads", "x", "y", "z", "table", "obj", "i", "total", "handle", "helper",
                        "Thing", "squares", "f"}
    assert {"x", "y", "range", "open", "a", "k", "q"} <= read and "local" not in assigned and "k" not in assigned


@pytest.mark.fast
def test_ipython_lines_are_translated_and_broken_code_has_no_names():
    assigned, read = assigned_and_read("files = !ls\n%time result = compute(files)\n%%capture\n")
    assert "files" in assigned
    assert assigned_and_read("def broken(:\n") == (set(), set())


def _nb(*sources: str):
    cells = [new_markdown_cell("# A notebook")]
    for source in sources:
        tags = ["check"] if source.startswith("# CHECK:") else []
        cells.append(new_code_cell(source, metadata={"tags": tags}))
    return new_notebook(cells=cells)


@pytest.mark.fast
def test_a_check_sets_aside_its_exercises_names_and_every_cell_that_depends_on_them():
    nb = _nb("model = load()",                                                       # 1: independent
             "# HINT: add one\n### BEGIN SOLUTION\nanswer = model + 1\n### END SOLUTION",  # 2: exercise
             "doubled = answer * 2\nother = 5",                                      # 3: depends on the exercise
             "unrelated = model * 3",                                                # 4: independent
             "# CHECK: first\nchecks.equal(doubled, 4)",                             # 5
             "def f(v):\n    ### BEGIN SOLUTION\n    return v\n    ### END SOLUTION",   # 6: exercise, a function
             "# CHECK: second\nchecks.equal(f(unrelated), 3)")                       # 7
    checks = plan(nb)
    assert [(c.name, c.index) for c in checks.values()] == [("first", 5), ("second", 7)]
    first, second = checks[5], checks[7]
    assert first.names == ("answer", "doubled", "other") and [i for i, _ in first.stubs] == [2]
    assert first.stubs[0][1] == "raise NotImplementedError('add one')"
    assert second.names == ("answer", "doubled", "f", "other") and [i for i, _ in second.stubs] == [6]
    assert "raise NotImplementedError" in second.stubs[0][1] and "def f(v):" in second.stubs[0][1]
    assert "answer" in first.set_aside_code() and "globals().update" in first.put_back_code()
