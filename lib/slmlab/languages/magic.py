"""``%%requires LANGUAGE``: a notebook cell that runs only where that language's toolchain is installed.

    %load_ext slmlab.languages.magic
    %%requires csharp
    exe = compile_csharp(work, ["Client.cs", "Ollama.cs"], "client.exe")

Where mcs or mono is missing the cell prints the skip message (what is missing, how to install it) and runs
nothing; otherwise it runs in the notebook's namespace as if the first line were not there, and its errors
stop the notebook as usual. ``ready(language)`` is the same test for plain Python (check cells).
"""

from __future__ import annotations

from typing import Any

from slmlab.languages.toolchains import toolchain


def ready(language: str, path: str | None = None) -> tuple[bool, str]:
    """(True, the versions) when the language can run here, else (False, the skip message); C++ also needs
    llama.cpp's build (`slmlab setup llamacpp`)."""
    if language.strip().lower() in ("cpp", "c++"):
        from slmlab.languages.cpp import cpp_ready

        return cpp_ready(path)
    tools = toolchain(language, path)
    return (True, tools.describe()) if tools.ok else (False, tools.skip_message(f"the {tools.label} cells"))


def requires(line: str, cell: str, shell: Any = None) -> None:
    """The cell magic: run `cell` when the language named on `line` is ready, else print why it is skipped."""
    usable, message = ready(line.strip())
    if not usable:
        print(message)
        return
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    shell.ex(cell)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext slmlab.languages.magic` registers %%requires."""
    ipython.register_magic_function(lambda line, cell: requires(line, cell, ipython), "cell", "requires")
