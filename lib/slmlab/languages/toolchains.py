"""Which of the other languages' toolchains this machine has: node/npm, mcs/mono, g++/cmake (+ llama.cpp's build).

    toolchain("csharp")            # Toolchain(language='csharp', found={'mcs': 'Mono C# compiler 6.8…', …})
    toolchain("csharp").ok         # False where mcs or mono is missing: the notebook skips those cells
    require("node")                # the Toolchain, or ToolchainMissing naming the program and how to install it

`path` (a PATH string) looks somewhere else than this process's PATH: the tests use it to prove the skip path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from slmlab.errors import SlmLabError, did_you_mean

# program -> the arguments that make it print its version on one line (first line of stdout or stderr)
VERSION_ARGS = {"node": ["--version"], "npm": ["--version"], "mcs": ["--version"], "mono": ["--version"],
                "g++": ["--version"], "cmake": ["--version"]}
PROGRAMS = {"node": ("node", "npm"), "csharp": ("mcs", "mono"), "cpp": ("g++", "cmake")}
LABELS = {"node": "Node.js", "csharp": "C# (Mono)", "cpp": "C++"}
INSTALL = {
    "node": "Debian/Ubuntu: apt-get install -y nodejs npm (Node.js 18 or newer); conda: conda install -c conda-forge "
            "nodejs (environment.yml does it on Binder).",
    "csharp": "Debian/Ubuntu: apt-get install -y mono-mcs mono-runtime libmono-system-net-http4.0-cil "
              "libmono-system-runtime-serialization4.0-cil (./lab installs them; Binder's apt.txt lists them).",
    "cpp": "Debian/Ubuntu: apt-get install -y g++ cmake; conda: conda install -c conda-forge cxx-compiler cmake.",
}


class ToolchainMissing(SlmLabError):
    """A language's compiler or runtime is not installed: the notebook skips that language, saying so."""


@dataclass(frozen=True)
class Toolchain:
    """One language's programs: each one's version line, or None where it is missing."""

    language: str
    found: Mapping[str, str | None] = field(default_factory=dict)
    paths: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every program of the language is there."""
        return all(version is not None for version in self.found.values())

    @property
    def missing(self) -> list[str]:
        """The programs not found."""
        return [name for name, version in self.found.items() if version is None]

    @property
    def label(self) -> str:
        return LABELS[self.language]

    def describe(self) -> str:
        """One line: the versions, or what is missing and how to install it."""
        if self.ok:
            return "; ".join(f"{name} {version}" for name, version in self.found.items())
        return f"missing: {', '.join(self.missing)}. {INSTALL[self.language]}"

    def skip_message(self, what: str = "") -> str:
        """The line a notebook prints instead of running this language's cells."""
        return (f"Skipped{' ' + what if what else ''}: {self.label} needs {', '.join(self.missing)}, not found on "
                f"this machine's PATH. {INSTALL[self.language]}")


def _language(language: str) -> str:
    key = language.strip().lower().replace("#", "sharp").replace("+", "p").replace("c++", "cpp")
    key = {"js": "node", "nodejs": "node", "javascript": "node", "cs": "csharp", "mono": "csharp", "cxx": "cpp",
           "cpp": "cpp", "cpp11": "cpp", "cpp17": "cpp"}.get(key, key)
    if key not in PROGRAMS:
        raise SlmLabError(f"Unknown language {language!r}.",
                          f"{did_you_mean(language, PROGRAMS)}Use one of {', '.join(PROGRAMS)}.")
    return key


def version_of(program: str, path: str | None = None, timeout: float = 20) -> tuple[str | None, str | None]:
    """(the version line, the executable's path) of a program on `path` (default PATH); (None, None) if absent."""
    where = shutil.which(program, path=path)
    if where is None:
        return None, None
    try:
        done = subprocess.run([where, *VERSION_ARGS.get(program, ["--version"])], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None, where
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    return (lines[0] if lines else "(no version printed)"), where


def toolchain(language: str, path: str | None = None) -> Toolchain:
    """The programs of `language` ("node", "csharp" or "cpp") found on `path` (default: this process's PATH)."""
    key = _language(language)
    found, paths = {}, {}
    for program in PROGRAMS[key]:
        found[program], paths[program] = version_of(program, path)
        if paths[program] and not found[program]:
            found[program] = None  # there, but it does not run: as good as missing
    return Toolchain(key, found, paths)


def toolchains(languages: Sequence[str] = tuple(PROGRAMS), path: str | None = None) -> dict[str, Toolchain]:
    """Every language's toolchain, by language."""
    return {_language(name): toolchain(name, path) for name in languages}


def require(language: str, path: str | None = None) -> Toolchain:
    """The language's toolchain, or ToolchainMissing naming what is missing and how to install it."""
    found = toolchain(language, path)
    if not found.ok:
        raise ToolchainMissing(f"{found.label}: {', '.join(found.missing)} not found on PATH.",
                               INSTALL[found.language])
    return found


def search_path(path: str | None) -> str:
    """The PATH a program is looked up on: `path`, else this process's."""
    return path if path is not None else os.environ.get("PATH", os.defpath)
