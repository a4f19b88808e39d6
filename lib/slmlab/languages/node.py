"""Node.js from the notebook: `npm ci` from the committed lock file, the course's scripts, and its SSE service.

    work = new_workdir("node")
    npm_ci(work)                                        # the exact versions of package-lock.json
    run = run_node(work, "ollama-client.mjs", env={"OLLAMA_HOST": url, "MODEL": "smollm2:135m", ...})
    last_json(run.stdout)                               # each script ends with one JSON result line
    with node_service(work, ollama_url, "smollm2:135m") as service:   # node sse-server.mjs on 127.0.0.1
        load_test(service.url, ...)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.languages.programs import ProgramRun, run_program
from slmlab.process import ServerProcess

NPM_CI = ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"]


def npm_ci(workdir: str | os.PathLike, echo: bool = True, timeout: float = 300) -> ProgramRun:
    """`npm ci` in the work folder: node_modules exactly as package-lock.json says (npm's cache makes reruns quick)."""
    if not (Path(workdir) / "package-lock.json").exists():
        raise SlmLabError(f"{workdir} has no package-lock.json.", "Make the folder with new_workdir('node').")
    return run_program(NPM_CI, cwd=workdir, what="npm ci", echo=echo, timeout=timeout,
                       env={"npm_config_update_notifier": "false"})


def run_node(workdir: str | os.PathLike, script: str, env: Mapping[str, str | None] | None = None,
             args: Sequence[str] = (), echo: bool = True, timeout: float = 180) -> ProgramRun:
    """`node SCRIPT ARGS` in the work folder with `env` added; a failure raises ProgramFailed with its message."""
    if not (Path(workdir) / "node_modules").is_dir():
        raise SlmLabError(f"{workdir} has no node_modules.", "Run npm_ci(workdir) first.")
    return run_program(["node", script, *args], cwd=workdir, env=env, what=f"node {script}", echo=echo,
                       timeout=timeout)


def node_service(workdir: str | os.PathLike, ollama_url: str, model: str, port: int | None = None,
                 script: str = "sse-server.mjs", max_tokens_cap: int = 256) -> ServerProcess:
    """The Node.js SSE chat service (node:http) over the Ollama API at `ollama_url`, as a ServerProcess."""
    env = {"PORT": "{port}", "OLLAMA_HOST": ollama_url, "MODEL": model, "MAX_TOKENS_CAP": str(max_tokens_cap)}
    return ServerProcess(["node", script], port=port, ready_url="/healthz", name="node-sse", env=env, cwd=workdir,
                         startup_timeout=30)
