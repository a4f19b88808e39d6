"""The course's servers from other languages: Node.js, C#, C++ (llama.cpp's C API) and Flask, built and run here.

| module | job |
| --- | --- |
| `toolchains` | which of node/npm, mcs/mono, g++/cmake are here (versions), the skip message where one is missing |
| `programs` | run a compiler or a program to its end: its own message on failure, its process group killed |
| `sources` | the sources as package data (node/, csharp/, cpp/), copied into a fresh work folder |
| `node` | `npm ci` from the committed lock file, `node script.mjs`, the Node SSE service as a ServerProcess |

Every program is started by the code on 127.0.0.1 and stopped afterwards; a missing toolchain is a clear
ToolchainMissing (the notebook prints the skip message and goes on), a compile error shows the compiler's
messages (CompileError), a program that fails shows its own last lines (ProgramFailed).
"""

from __future__ import annotations

from slmlab.languages.programs import CompileError, ProgramFailed, ProgramRun, last_json, run_program
from slmlab.languages.sources import SOURCES, new_workdir, source_dir, write_source
from slmlab.languages.toolchains import Toolchain, ToolchainMissing, require, toolchain, toolchains

__all__ = ["SOURCES", "CompileError", "ProgramFailed", "ProgramRun", "Toolchain", "ToolchainMissing", "last_json",
           "new_workdir", "require", "run_program", "source_dir", "toolchain", "toolchains", "write_source"]
