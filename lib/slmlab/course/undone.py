"""Prove, inside a solution's one run, that every check fails when the exercises before it are left undone.

A lab is its solution with each ``### BEGIN SOLUTION`` block replaced by ``raise NotImplementedError``. Running
every lab in full, after its solution, would run each notebook twice. Instead, just before each check cell of the
solution's own run:

1. the names the exercise cells before it assign, and the names of every cell that reads one of those (and so on,
   in notebook order), are set aside in the kernel: in an untouched lab they would not exist, or hold what a
   failed exercise left;
2. the lab's version of this check's exercise cells (those since the previous check) runs, as a learner's untouched
   lab would run them: each raises ``NotImplementedError``, or defines a function that does;
3. the check cell runs on that state, and must fail;
4. the names are put back and the solution's own check runs as usual, its output the one the notebook saves.

Cells that do not depend on an exercise keep their results, as they would in the lab. A check that passes in
step 3 checks nothing its exercises do. The dependency is read from the cells' code (names assigned and read,
with IPython's ``%`` and ``!`` lines translated first): an object an independent cell changes in place through a
method call is not seen as dependent, so such a check would be reported as passing, never silently accepted.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from slmlab.course import BEGIN_SOLUTION, check_name

SET_ASIDE = "__slmlab_set_aside = {{name: globals().pop(name) for name in {names!r} if name in globals()}}"
PUT_BACK = ("for __slmlab_name in {names!r}:\n    globals().pop(__slmlab_name, None)\n"
            "globals().update(__slmlab_set_aside)\ndel __slmlab_set_aside, __slmlab_name")


@dataclass(frozen=True)
class UndoneCheck:
    """What runs before one check cell to show that it fails with its exercises undone."""

    name: str
    index: int  # the check cell
    stubs: tuple[tuple[int, str], ...]  # (cell index, the lab's source) of the exercise cells since the last check
    names: tuple[str, ...]  # set aside while the check runs undone

    def set_aside_code(self) -> str:
        """Kernel code that moves `names` out of the notebook's namespace into a stash."""
        return SET_ASIDE.format(names=list(self.names))

    def put_back_code(self) -> str:
        """Kernel code that drops what the stubs defined under those names and restores the stash."""
        return PUT_BACK.format(names=list(self.names))


NEW_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
              ast.DictComp, ast.GeneratorExp)


def _assigned(node: ast.AST, names: set[str]) -> None:
    """Add the names `node` binds or changes at the notebook's top level (functions, classes, lambdas and
    comprehensions have scopes of their own: only a definition's name counts)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
        return
    if isinstance(node, NEW_SCOPES):
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names.update((alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name != "*")
    elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        names.add(node.id)
    elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
        base: ast.expr = node  # table["x"] = ..., obj.attr = ...: `table` and `obj` change
        while isinstance(base, (ast.Subscript, ast.Attribute)):
            base = base.value
        if isinstance(base, ast.Name):
            names.add(base.id)
    for child in ast.iter_child_nodes(node):
        _assigned(child, names)


def python_source(source: str) -> str:
    """A cell's code as plain Python (IPython's ``%magic``, ``%%cell`` and ``!shell`` lines translated)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return str(TransformerManager().transform_cell(source))


def assigned_and_read(source: str) -> tuple[set[str], set[str]]:
    """The top-level names a cell assigns (or changes), and every name it reads; empty for code that does not
    parse."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return set(), set()
    assigned: set[str] = set()
    _assigned(tree, assigned)
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return assigned, read


def lab_source(cell: Any) -> str | None:
    """The lab's source of an exercise cell (solution blocks replaced), or None for a cell without one."""
    from slmlab.course.build import strip_solutions

    if cell.get("cell_type") != "code" or BEGIN_SOLUTION not in cell.get("source", ""):
        return None
    return strip_solutions(cell.source)


def plan(nb: Any) -> dict[int, UndoneCheck]:
    """For each check cell (by index), the exercise stubs to run and the names to set aside before it."""
    undone: set[str] = set()
    stubs: list[tuple[int, str]] = []
    checks: dict[int, UndoneCheck] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assigned, read = assigned_and_read(cell.source)
        name = check_name(cell)
        if name is not None:
            checks[index] = UndoneCheck(name, index, tuple(stubs), tuple(sorted(undone)))
            stubs = []
        stub = lab_source(cell)
        if stub is not None:
            stubs.append((index, stub))
            undone |= assigned
        elif read & undone:
            undone |= assigned
    return checks


# ----------------------------------------------------------------------------- inside papermill's run

ENGINE_NAME = "slmlab-undone-checks"


def _error_of(cell: Any) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    return None


def _client_class() -> type:
    from nbformat.v4 import new_code_cell
    from papermill.clientwrap import PapermillNotebookClient

    class UndoneChecksClient(PapermillNotebookClient):
        """papermill's client, running each check once with its exercises undone before it runs as written."""

        undone_results: dict[str, str | None]

        def _aside(self, source: str, index: int) -> str | None:
            """Run code in the kernel outside the notebook (no history, no saved output); its error, if any."""
            cell = new_code_cell(source, metadata={"tags": ["raises-exception"]})
            kept = self.nb.cells[index]
            try:
                self.execute_cell(cell, index, store_history=False)
            finally:
                self.nb.cells[index] = kept  # nbclient stores the cell it ran at its index
            return _error_of(cell)

        def _run_undone(self, check: UndoneCheck) -> None:
            self._aside(check.set_aside_code(), check.index)
            try:
                for index, stub in check.stubs:
                    self._aside(stub, index)
                self.undone_results[check.name] = self._aside(self.nb.cells[check.index].source, check.index)
            finally:
                error = self._aside(check.put_back_code(), check.index)
                if error:
                    raise RuntimeError(f"could not restore the notebook's names after check {check.name!r}: {error}")

        def papermill_execute_cells(self) -> None:
            from nbclient.exceptions import CellExecutionError

            checks = plan(self.nb)
            for index, cell in enumerate(self.nb.cells):
                try:
                    self.nb_man.cell_start(cell, index)
                    if index in checks:
                        self._run_undone(checks[index])
                    self.execute_cell(cell, index)
                except CellExecutionError as ex:
                    self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                    break
                finally:
                    self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)

    return UndoneChecksClient


def register_engine() -> str:
    """Register the papermill engine that runs each check undone first; its name (for ``engine_name=``)."""
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    client_class = _client_class()

    class UndoneChecksEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: float | None = None, undone_results: dict | None = None,
                                     **kwargs: Any) -> Any:
            import logging

            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging.getLogger("papermill"), log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            client = client_class(nb_man, **final)
            client.undone_results = {} if undone_results is None else undone_results
            return client.execute()

    papermill_engines.register(ENGINE_NAME, UndoneChecksEngine)
    return ENGINE_NAME
