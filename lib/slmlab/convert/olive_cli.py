"""Microsoft Olive's own CLI on the course's Hugging Face folder, offline, from Olive's virtualenv; results cached.

Each job is one real `olive` command (`auto-opt`, `optimize`, `quantize`) run as a subprocess of Olive's venv
(`slmlab setup olive`, see slmlab.setup.olive_env) with the hub switched off (HF_HUB_OFFLINE=1 …) and telemetry off.
Whatever happens is recorded: the command, exit status, seconds, peak RSS (the child's own, from wait4), Olive's log,
the last exception line it printed, and the model folder when Olive wrote one. A model lands in the conversion
cache next to the ONNX builds (``<cache>/converted/<model>-olive-<job>/``, with slmlab's marker); every record in
``<cache>/converted/olive-runs/<model>-<job>.json`` (its log beside it). A later call with the same Olive, pins and
source returns the record at once: `slmlab setup olive` runs them all once, because the model builder inside Olive
peaks near 1.9 GB, over a notebook's 1.5 GB.

    runs = prepare()                       # {job name: OliveRun}, from the cache (or run now, printing progress)
    print(describe(runs["auto-opt-int4"])) # the command, its time and memory, and what it wrote or why it stopped
    runs["auto-opt-int4"].output           # an ONNX Runtime GenAI folder (model.onnx + genai_config.json)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmlab.convert import gguf_to_onnx as convert
from slmlab.convert import onnx_quantize
from slmlab.convert.tool_run import clean_log, last_exception, outcome, run_logged, source_id
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL
from slmlab.setup import olive_env

CPU = ("--device", "cpu", "--provider", "CPUExecutionProvider")


@dataclass(frozen=True)
class OliveJob:
    """One `olive` command: its subcommand, its options after -m/-o, and what it asks Olive for."""

    subcommand: str
    options: tuple[str, ...]
    what: str


JOBS: dict[str, OliveJob] = {
    "auto-opt-int4": OliveJob("auto-opt", (*CPU, "--precision", "int4", "--use_model_builder", "--use_ort_genai"),
                              "ModelBuilder pass, int4 weights (MatMulNBits), an ORT GenAI folder"),
    "auto-opt-int8": OliveJob("auto-opt", (*CPU, "--precision", "int8", "--use_model_builder", "--use_ort_genai"),
                              "the same with int8 weights"),
    "optimize-int4": OliveJob("optimize", (*CPU, "--precision", "int4"),
                              "Olive's current command: it schedules GPTQ (calibrated) before the ModelBuilder"),
    "quantize-rtn-int4": OliveJob("quantize", ("--algorithm", "rtn", "--precision", "int4"),
                                  "round-to-nearest int4 weights on the PyTorch model, no data needed"),
}
RUNS_FOLDER = "olive-runs"
TIMEOUT_S = 900.0


@dataclass
class OliveRun:
    """What one `olive` command did: measured, never assumed."""

    job: str
    command: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    output: str | None  # the ORT GenAI folder Olive wrote, moved into the cache; None when it wrote none
    error: str  # the last exception line in Olive's log ("" when there was none)
    log: str  # the whole log (stdout and stderr), a file
    olive_version: str
    created: str
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when Olive wrote a model folder that ONNX Runtime GenAI can open."""
        return self.output is not None and (Path(self.output) / "genai_config.json").is_file()

    def log_lines(self, last: int = 15) -> list[str]:
        """The last `last` lines of Olive's log, progress bars collapsed to their final state."""
        return self._lines()[-last:]

    def excerpt(self, context: int = 3) -> list[str]:
        """The part of Olive's log that says what happened: the lines up to its last exception (`context` before
        it), or, when there was none, the passes it ran and their times."""
        lines = self._lines()
        if self.error and self.error in (line.strip() for line in lines):
            end = max(i for i, line in enumerate(lines) if line.strip() == self.error)
            return lines[max(0, end - context):end + 1]
        return [line.split("] ", 3)[-1] for line in lines if "Running pass" in line or "finished in" in line]

    def _lines(self) -> list[str]:
        try:
            return clean_log(Path(self.log).read_bytes().decode("utf-8", "replace"))
        except OSError:
            return [f"(the log {self.log} is gone)"]


def olive_command(job: OliveJob, hf_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  program: str | os.PathLike = "olive") -> list[str]:
    """The `olive` command line for `job` on a Hugging Face folder, writing to `out_dir` (INFO log: pass timings)."""
    return [os.fspath(program), job.subcommand, "-m", os.fspath(hf_dir), "-o", os.fspath(out_dir), *job.options,
            "--log_level", "1"]


def shown(command: Sequence[str]) -> str:
    """A command as a shell line, with the venv's path to `olive` shortened to `olive`."""
    words = list(command)
    if words and Path(words[0]).name == "olive":
        words[0] = "olive"
    return shlex.join(words)


def runs_dir() -> Path:
    """Where the run records live: <cache>/converted/olive-runs/."""
    return convert.converted_dir() / RUNS_FOLDER


def describe(run: OliveRun, excerpt: bool = True) -> str:
    """The command, one line of what happened, and (with `excerpt`) the lines of Olive's log that show it."""
    wrote = (f"wrote {Path(run.output).name}/ ({onnx_quantize.folder_mb(run.output):.0f} MB of model files)"
             if run.ok and run.output else None)
    line = outcome(run.returncode, run.seconds, run.peak_rss_mb, wrote, run.error, "Olive")
    text = f"$ {shown(run.command)}\n  {line}\n  (ran {run.created}, olive-ai {run.olive_version}; log {run.log})"
    if excerpt:
        text += "".join(f"\n  | {line}" for line in run.excerpt())
    return text


# ------------------------------------------------------------------------------------------------ running

def run_job(name: str, hf_dir: str | os.PathLike, program: str | os.PathLike, model_name: str,
            identity: dict[str, Any], echo: Callable[[str], None] = print, timeout: float = TIMEOUT_S) -> OliveRun:
    """Run one job now (Olive's cwd a scratch folder, removed after), record it, and cache its model if it wrote one."""
    job = _job(name)
    records = runs_dir()
    records.mkdir(parents=True, exist_ok=True)
    log_path = records / f"{model_name}-{name}.log"
    convert._remove_stale_partials(records / f"{model_name}-{name}")  # scratch folders of killed runs
    # Olive's working folder (its .olive-cache goes there), named as convert's partial folders are
    work = Path(tempfile.mkdtemp(prefix=f".{model_name}-{name}.partial-{os.getpid()}-", dir=records))
    try:
        out_tmp = work / "output"
        command = olive_command(job, hf_dir, out_tmp, program)
        echo(f"[olive] {shown(command)}")
        code, seconds, peak_mb = run_logged(command, work, log_path, olive_env.tool_env(), echo, timeout,
                                            progress=_is_pass_line, tag="olive")
        lines = clean_log(log_path.read_bytes().decode("utf-8", "replace"))
        output = None
        if (out_tmp / "genai_config.json").is_file() and (out_tmp / "model.onnx").is_file():
            output = str(_keep_model(out_tmp, convert.converted_dir() / f"{model_name}-olive-{name}", identity,
                                     command, log_path))
        run = OliveRun(name, [*command[:5], "<output>" if output is None else output, *command[6:]], code,
                       round(seconds, 1), round(peak_mb), output, last_exception(lines), str(log_path),
                       str(identity.get("olive", "?")), datetime.now(UTC).isoformat(timespec="seconds"), identity)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (records / f"{model_name}-{name}.json").write_text(json.dumps(asdict(run), indent=2) + "\n")
    echo(f"[olive] {name}: " + outcome(code, run.seconds, run.peak_rss_mb, output and f"wrote {Path(output).name}/",
                                       run.error or f"see {log_path}", "Olive"))
    return run


def _is_pass_line(line: str) -> bool:
    return "Running pass" in line or "finished in" in line


def _keep_model(folder: Path, out: Path, identity: dict[str, Any], command: list[str], log_path: Path) -> Path:
    """Move the folder Olive wrote into the conversion cache, with slmlab's marker and Olive's log beside it."""
    shutil.copyfile(log_path, folder / "olive.log")
    record = {"kind": "olive", **identity, "command": command,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    (folder / convert.MARKER).write_text(json.dumps(record, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    convert._remove_stale_partials(out)
    staged = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shutil.move(folder, staged)
    convert._move_into_place(staged, out)
    return out


def _job(name: str) -> OliveJob:
    if name not in JOBS:
        raise SlmLabError(f"Unknown Olive job '{name}'.", f"Use one of {', '.join(JOBS)}.")
    return JOBS[name]


def _identity(hf_dir: Path, name: str, venv: Path) -> dict[str, Any]:
    """What a cached run must match: Olive's version and pins, the source folder, the job's options."""
    job = _job(name)
    return {"olive": olive_env.olive_version(venv), "pins": list(olive_env.PINS), "source_id": source_id(hf_dir),
            "job": [job.subcommand, *job.options]}


def read_run(model_name: str, name: str) -> OliveRun | None:
    """The recorded run of job `name` for `model_name`, or None."""
    try:
        data = json.loads((runs_dir() / f"{model_name}-{name}.json").read_text())
        return OliveRun(**data)
    except (OSError, ValueError, TypeError):
        return None


def prepare(model: str = DEFAULT_MODEL, jobs: Sequence[str] = tuple(JOBS), force: bool = False,
            echo: Callable[[str], None] = print) -> dict[str, OliveRun]:
    """Every job of `jobs` on `model`'s Hugging Face folder: from the cache when Olive, pins and source match,
    else run now (about 20 s each on 2 cores; the int4 ModelBuilder run peaks near 2 GB, more than a 2 GB
    Binder session leaves beside a kernel, so `slmlab setup olive` runs them first).

    Raises a SlmLabError naming `slmlab setup olive` when Olive's venv is missing.
    """
    for name in jobs:
        _job(name)  # an unknown name fails before anything runs
    program = olive_env.olive_program()
    venv = program.parent.parent
    hf = onnx_quantize.prepare(["hf"], model)["hf"]
    model_name = hf.name.removesuffix("-hf")
    runs = {}
    for name in jobs:
        identity = _identity(hf, name, venv)
        cached = None if force else read_run(model_name, name)
        if cached and cached.identity == identity and (cached.output is None or cached.ok):
            echo(f"[olive] {name}: cached run of {cached.created} ({cached.seconds} s, exit {cached.returncode})")
            runs[name] = cached
        else:
            runs[name] = run_job(name, hf, program, model_name, identity, echo)
    return runs
