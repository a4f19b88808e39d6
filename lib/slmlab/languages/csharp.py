"""C# on Mono from the notebook: compile with `mcs`, run with `mono`, and the HttpListener service as a server.

    work = new_workdir("csharp")
    exe = compile_csharp(work, ["Client.cs", "Ollama.cs"], "client.exe")      # mcs -r:System.Net.Http.dll …
    run_mono(work, exe, [ollama_url, "smollm2:135m", "32", "Why is the sky blue?"])
    with csharp_service(work, service_exe, ollama_url, "smollm2:135m") as service:   # mono service.exe PORT …
        ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.languages.programs import ProgramRun, run_program
from slmlab.process import ServerProcess

REFERENCES = ("System.Net.Http.dll", "System.Runtime.Serialization.dll")  # HttpClient; DataContractJsonSerializer


def mcs_command(sources: Sequence[str], output: str, references: Sequence[str] = REFERENCES) -> list[str]:
    """The `mcs` command line that compiles `sources` into the program `output`."""
    return ["mcs", *(f"-r:{ref}" for ref in references), f"-out:{output}", *sources]


def compile_csharp(workdir: str | os.PathLike, sources: Sequence[str], output: str, echo: bool = True) -> Path:
    """Compile C# `sources` (in `workdir`) with mcs into `output`; a CompileError shows mcs's own messages."""
    missing = [name for name in sources if not (Path(workdir) / name).exists()]
    if missing:
        raise SlmLabError(f"{', '.join(missing)} not found in {workdir}.",
                          "Write the exercise's file first (write_source), or check the names.")
    run_program(mcs_command(sources, output), cwd=workdir, what=f"mcs ({output})", compiler=True, echo=echo,
                timeout=180)
    return Path(workdir) / output


def run_mono(workdir: str | os.PathLike, exe: str | os.PathLike, args: Sequence[str] = (), echo: bool = True,
             timeout: float = 180) -> ProgramRun:
    """`mono EXE ARGS` in `workdir`; a failure raises ProgramFailed with the program's message."""
    name = Path(exe).name
    return run_program(["mono", name, *args], cwd=workdir, what=f"mono {name}", echo=echo, timeout=timeout)


def csharp_service(workdir: str | os.PathLike, exe: str | os.PathLike, ollama_url: str, model: str,
                   port: int | None = None) -> ServerProcess:
    """The HttpListener chat service (`mono service.exe PORT OLLAMA_URL MODEL`) as a ServerProcess on 127.0.0.1."""
    return ServerProcess(["mono", Path(exe).name, "{port}", ollama_url, model], port=port, ready_url="/healthz",
                         name="csharp-service", cwd=workdir, startup_timeout=30)
