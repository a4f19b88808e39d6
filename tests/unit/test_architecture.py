"""The package's shape is enforced: no import circle (imports inside functions count), no function over 80 lines,
every command listed by `slmlab --help`, a missing extra named, and ruff + mypy clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "lib" / "slmlab"
MAX_FUNCTION_LINES = 80


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package at ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: None if is_package else -1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    submodules = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    # `from pkg import sub` depends on pkg.sub only (Python imports the package first in any case).
    targets = submodules if len(submodules) == len(node.names) else submodules | {base}
    return {t for t in targets if t in known and t != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports, at module level or inside functions."""
    known = module_names(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, module, path.name == "__init__.py", known)
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (N lines)`` for every function longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_import_cycle_in_slmlab():
    cycles = import_cycles(import_graph(PACKAGE))
    assert not cycles, "import circles (a name in the wrong module?): " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_made_by_an_import_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("def f():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert import_cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_no_function_over_80_lines_in_slmlab():
    assert not long_functions(PACKAGE), "split these: " + ", ".join(long_functions(PACKAGE))


def test_the_length_check_sees_a_long_function(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n" + "    x = 1\n" * 81)
    assert [line.split()[-3] for line in long_functions(tmp_path)] == ["f"]


def test_help_lists_every_command_module():
    from slmlab.cli import COMMAND_MODULES, build_parser

    listed = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    # a command group has register(); a part of one (e.g. containers_setup: add_setup_parser) is added by its group
    files = {p.stem for p in (PACKAGE / "cli").glob("*.py") if "\ndef register(" in p.read_text()}
    assert {m.__name__.rsplit(".", 1)[-1] for m in COMMAND_MODULES} == files, "a cli module is not in COMMAND_MODULES"
    assert {"doctor", "models", "inspect", "quantize", "bench", "compare", "loadtest", "serve", "setup", "monitor",
            "scale", "deploy", "build-labs", "run", "grade", "secrets-scan"} <= listed


def test_a_command_whose_extra_is_missing_names_the_pip_line(monkeypatch, capsys):
    from slmlab import cli
    from slmlab.cli import doctor

    def missing(args):
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    monkeypatch.setattr(doctor, "cmd_doctor", missing)
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "'serve' extra" in err and 'pip install -e ".[serve]"' in err


def test_a_typo_in_an_import_is_not_hidden_as_a_missing_extra(monkeypatch):
    from slmlab import cli
    from slmlab.cli import doctor

    def typo(args):
        raise ModuleNotFoundError("No module named 'slmlab.modles'", name="slmlab.modles")

    monkeypatch.setattr(doctor, "cmd_doctor", typo)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["doctor"])


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_is_clean():
    done = subprocess.run([_tool("ruff"), "check", "lib", "tests", "benchmarks"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-4000:]


def test_mypy_is_clean():
    done = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
