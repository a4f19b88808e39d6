"""Convert the course's Hugging Face folder to LiteRT (TensorFlow Lite's successor) with litert-torch's own converter.

litert-torch ships a conversion program per model family in ``litert_torch.generative.examples``; SmolLM2's is::

    python -m litert_torch.generative.examples.smollm.convert_v2_to_tflite --checkpoint_path=<hf folder> \\
        --output_path=<folder> --output_name_prefix=smollm2-135m-instruct --prefill_seq_lens=32 \\
        --kv_cache_max_len=1024 --quantize=dynamic_int8

It re-authors the model in litert-torch's layers, loads the weights, traces it with torch.export and writes one
``.tflite`` file with two signatures: ``prefill_32`` (up to 32 prompt tokens at once) and ``decode`` (one token),
each taking and returning the KV cache (60 tensors for SmolLM2's 30 layers). It runs in the LiteRT Torch venv
(`slmlab setup litert`), offline, with the TensorFlow-schema shim on PYTHONPATH (see slmlab.setup.litert_env).
Measured here: about 1.5 minutes and 3.7 GB peak RSS for 135M parameters (the export holds several copies of the
graph), so `slmlab setup litert` runs it once and caches the file; a notebook reads the record.

    run = prepare()             # LiteRtRun, from the cache (or converted now, printing progress)
    print(describe(run))        # the command, its time and memory, and the file it wrote or why it stopped
    run.output                  # the .tflite file, in <cache>/converted/<model>-litert-<quantize>/
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmlab.convert import gguf_to_onnx as convert
from slmlab.convert import onnx_quantize
from slmlab.convert.tool_run import clean_log, last_exception, outcome, run_logged, source_id
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL
from slmlab.setup import litert_env

# litert-torch's conversion program for each bundled model family (its examples are per architecture)
EXAMPLES = {"smollm2": "litert_torch.generative.examples.smollm.convert_v2_to_tflite"}
# --quantize's recipes (litert-torch's QuantizationName) and the tag it puts in the file name
QUANTIZE = {"none": "f32", "dynamic_int8": "q8", "weight_only_int8": "q8_wo", "fp16": "fp16",
            "dynamic_int4_block32": "q4_block32", "dynamic_int4_block128": "q4_block128"}
PREFILL = 32  # the prefill signature's length: the course's chat prompts are shorter
KV_CACHE = 1024  # the KV cache's length: prompt plus answer
RUNS_FOLDER = "litert-runs"
TIMEOUT_S = 900.0


@dataclass
class LiteRtRun:
    """What one conversion did: measured, never assumed."""

    quantize: str
    command: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    output: str | None  # the .tflite file, moved into the cache; None when none was written
    error: str  # the last exception line of the converter's log ("" when there was none)
    log: str
    litert_torch_version: str
    created: str
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the converter wrote a .tflite file that is still there."""
        return self.output is not None and Path(self.output).is_file()

    def log_lines(self, last: int = 15) -> list[str]:
        """The last `last` lines of the converter's log (absl's and torch's messages, progress bars collapsed)."""
        try:
            return clean_log(Path(self.log).read_bytes().decode("utf-8", "replace"))[-last:]
        except OSError:
            return [f"(the log {self.log} is gone)"]


def example_module(model_name: str) -> str:
    """litert-torch's conversion program for a bundled model (by its name's family), or a clear error."""
    family = next((key for key in EXAMPLES if model_name.startswith(key)), None)
    if family is None:
        raise SlmLabError(f"litert-torch has no conversion program in this course for {model_name!r}.",
                          f"Convert one of: {', '.join(f'{k}-*' for k in EXAMPLES)} (litert-torch re-authors each "
                          "architecture in its own layers: see litert_torch/generative/examples/).")
    return EXAMPLES[family]


def check_quantize(quantize: str) -> str:
    """The recipe's name, or a clear error listing litert-torch's recipes."""
    if quantize not in QUANTIZE:
        raise SlmLabError(f"Unknown LiteRT quantization {quantize!r}.", f"Use one of: {', '.join(QUANTIZE)}.")
    return quantize


def litert_command(model_name: str, hf_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   quantize: str = "dynamic_int8", python: str | os.PathLike = "python") -> list[str]:
    """The converter's command line for a model's Hugging Face folder, writing into `out_dir`."""
    return [os.fspath(python), "-m", example_module(model_name), f"--checkpoint_path={os.fspath(hf_dir)}",
            f"--output_path={os.fspath(out_dir)}/", f"--output_name_prefix={model_name}",
            f"--prefill_seq_lens={PREFILL}", f"--kv_cache_max_len={KV_CACHE}", f"--quantize={check_quantize(quantize)}"]


def output_name(model_name: str, quantize: str) -> str:
    """The file the converter writes: <prefix>_<tag>_ekv<KV cache>.tflite."""
    return f"{model_name}_{QUANTIZE[check_quantize(quantize)]}_ekv{KV_CACHE}.tflite"


def output_folder(model_name: str, quantize: str) -> Path:
    """Where a conversion's file is kept: <cache>/converted/<model>-litert-<quantize>/."""
    return convert.converted_dir() / f"{model_name}-litert-{check_quantize(quantize).replace('_', '-')}"


def shown(command: list[str]) -> str:
    """A command as a shell line: the venv's python shortened, the shim's PYTHONPATH in front (as it ran)."""
    words = list(command)
    if words and Path(words[0]).name.startswith("python"):
        words[0] = "python"
    return f"PYTHONPATH=<venv>/{litert_env.SHIMS} HF_HUB_OFFLINE=1 " + shlex.join(words)


def runs_dir() -> Path:
    """Where the run records live: <cache>/converted/litert-runs/."""
    return convert.converted_dir() / RUNS_FOLDER


def read_run(model_name: str, quantize: str = "dynamic_int8") -> LiteRtRun | None:
    """The recorded conversion of `model_name` with `quantize`, or None."""
    try:
        return LiteRtRun(**json.loads((runs_dir() / f"{model_name}-{quantize}.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def describe(run: LiteRtRun) -> str:
    """The command, one line of what happened, and the converter's last log lines."""
    wrote = (f"wrote {Path(run.output).name} ({Path(run.output).stat().st_size / 1e6:.0f} MB)"
             if run.ok and run.output else None)
    line = outcome(run.returncode, run.seconds, run.peak_rss_mb, wrote, run.error, "litert-torch")
    return (f"$ {shown(run.command)}\n  {line}\n  (ran {run.created}, litert-torch {run.litert_torch_version}; "
            f"log {run.log})")


def convert_model(hf_dir: str | os.PathLike, model_name: str, quantize: str, python: str | os.PathLike,
                  identity: dict[str, Any], echo: Callable[[str], None] = print,
                  timeout: float = TIMEOUT_S) -> LiteRtRun:
    """Run the converter now (in a scratch folder, removed after), record it, and cache the file if it wrote one."""
    records = runs_dir()
    records.mkdir(parents=True, exist_ok=True)
    log_path = records / f"{model_name}-{quantize}.log"
    convert._remove_stale_partials(records / f"{model_name}-{quantize}")
    work = Path(tempfile.mkdtemp(prefix=f".{model_name}-{quantize}.partial-{os.getpid()}-", dir=records))
    try:
        command = litert_command(model_name, hf_dir, work / "output", quantize, python)
        echo(f"[litert] {shown(command)}")
        code, seconds, peak_mb = run_logged(command, work, log_path, litert_env.converter_env(Path(python).parents[1]),
                                            echo, timeout, progress=_is_step_line, tag="litert")
        written = work / "output" / output_name(model_name, quantize)
        kept = output_folder(model_name, quantize)
        output = None
        if code == 0 and written.is_file():
            output = str(_keep_file(written, kept, identity, command, log_path))
        lines = clean_log(log_path.read_bytes().decode("utf-8", "replace"))
        kept_at = f"--output_path={Path(output).parent}/" if output else "--output_path=<output>/"
        run = LiteRtRun(quantize, [*command[:4], kept_at, *command[5:]], code,
                        round(seconds, 1), round(peak_mb), output, last_exception(lines), str(log_path),
                        str(identity.get("litert_torch", "?")), datetime.now(UTC).isoformat(timespec="seconds"),
                        identity)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (records / f"{model_name}-{quantize}.json").write_text(json.dumps(asdict(run), indent=2) + "\n")
    echo(f"[litert] {quantize}: " + outcome(code, run.seconds, run.peak_rss_mb, output and f"wrote {Path(output).name}",
                                            run.error or f"see {log_path}", "litert-torch"))
    return run


def prepare(model: str = DEFAULT_MODEL, quantize: str = "dynamic_int8", force: bool = False,
            echo: Callable[[str], None] = print) -> LiteRtRun:
    """The LiteRT conversion of `model`'s Hugging Face folder: from the cache when litert-torch, its pins and the
    source match, else converted now (about 1.5 minutes and 3.7 GB on 2 cores: `slmlab setup litert` runs it).

    Raises a SlmLabError naming `slmlab setup litert` when the venv is missing.
    """
    check_quantize(quantize)
    python = litert_env.litert_python()
    hf = onnx_quantize.prepare(["hf"], model)["hf"]
    model_name = hf.name.removesuffix("-hf")
    example_module(model_name)  # a model without a converter fails before anything runs
    options = [word for word in litert_command(model_name, "", "", quantize)[2:]  # the program and its flags
               if not word.startswith(("--checkpoint_path=", "--output_path="))]
    identity = {"litert_torch": litert_env.litert_torch_version(python.parents[1]), "pins": list(litert_env.PINS),
                "source_id": source_id(hf), "options": options}
    cached = None if force else read_run(model_name, quantize)
    if cached and cached.identity == identity and (cached.output is None or cached.ok):
        echo(f"[litert] {quantize}: cached conversion of {cached.created} ({cached.seconds} s, exit "
             f"{cached.returncode})")
        return cached
    return convert_model(hf, model_name, quantize, python, identity, echo)


def _is_step_line(line: str) -> bool:
    """The converter's finished top-level steps: '(00:17) [ DONE] LiteRT-Torch Convert > Torch Export: … (+00:17)'."""
    return "[ DONE] LiteRT-Torch Convert >" in line and line.count(">") == 1


def _keep_file(written: Path, out: Path, identity: dict[str, Any], command: list[str], log_path: Path) -> Path:
    """Move the .tflite file into the folder `out`, with slmlab's marker and the converter's log beside it."""
    staged = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staged.mkdir(parents=True)
    shutil.move(written, staged / written.name)
    shutil.copyfile(log_path, staged / "litert-torch.log")
    record = {"kind": "litert", **identity, "command": command,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    (staged / convert.MARKER).write_text(json.dumps(record, indent=2) + "\n")
    convert._remove_stale_partials(out)
    convert._move_into_place(staged, out)
    return out / written.name
