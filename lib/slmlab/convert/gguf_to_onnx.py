"""Convert a model between formats, offline, once: GGUF -> Hugging Face folder -> ONNX Runtime GenAI folder.

Each conversion is built in a temporary sibling folder and renamed into place only when complete, with a
marker file recording the source's SHA-256; a later call with the same source returns the cached folder at
once. So an interrupted conversion never leaves a folder that looks done, and notebooks never rebuild.

    hf_dir = gguf_to_hf("smollm2-135m-instruct")          # ~25 s: dequantized fp32 safetensors (538 MB)
    ort_dir = hf_to_ort_genai(hf_dir, precision="int4")    # ~10 s: model.onnx + genai_config.json
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve, sha256_file
from slmlab.progress import progress

MARKER = ".slmlab-converted.json"  # written last, inside the finished folder: its presence means "complete"
PRECISIONS = ("int4", "int8", "fp32")  # what the ORT GenAI model builder accepts for the CPU execution provider
PIP_HF = "pip install -e '.[hf]'"
PIP_ONNX = "pip install -e '.[onnx]'"
# What the model builder imports: the runtime, the graph library it writes with, and the stack that reads the folder.
BUILDER_MODULES = {"onnxruntime_genai": PIP_ONNX, "onnxruntime": PIP_ONNX, "onnx": PIP_ONNX, "onnx_ir": PIP_ONNX,
                   "torch": PIP_HF, "transformers": PIP_HF}


def converted_dir() -> Path:
    """Where converted models live: <cache_dir()>/converted."""
    return cache_dir() / "converted"


def gguf_to_hf(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, out_dir: str | os.PathLike | None = None,
               force: bool = False) -> Path:
    """A GGUF model as a Hugging Face folder (fp32 safetensors, tokenizer, config, generation config), cached."""
    _require({"torch": PIP_HF, "transformers": PIP_HF, "gguf": PIP_HF})
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format != "gguf":
        raise SlmLabError(f"{resolved.name} is a {resolved.format} model, not a GGUF file.",
                          "Pass a GGUF model (a bundled name such as 'smollm2-135m-instruct', or a .gguf path).")
    out = Path(out_dir) if out_dir is not None else converted_dir() / f"{resolved.name}-hf"
    source_sha = resolved.sha256 or _file_sha256(resolved.path)

    def build(tmp: Path) -> dict[str, Any]:
        model_, tokenizer = _load_gguf(resolved.path)
        _say(f"writing {out.name}/ (fp32 safetensors, tokenizer, config)")
        from slmlab.backends.hf import transformers_progress

        with transformers_progress():  # its "Writing model shards" bar: text when headless
            model_.save_pretrained(tmp)  # also writes generation_config.json
            tokenizer.save_pretrained(tmp)
        return {"dtype": "float32"}

    return _build(out, resolved.path, {"source_sha256": source_sha}, "hf", build, force)


def _load_gguf(path: Path) -> tuple[Any, Any]:
    """transformers' model and tokenizer for a GGUF file, dequantized to plain fp32 layers that can be saved."""
    import torch
    import transformers

    _say(f"loading {path.name} in transformers and dequantizing it to fp32 (about 20 s for 135M parameters)")
    # transformers 5 attaches a GGUF "quantizer" to every model loaded with gguf_file=, and save_pretrained()
    # refuses any model that still has one. GgufConfig(dequantize=True) asks for plain dense layers instead;
    # the loader then removes the quantization config itself (config.quantization_config, model.hf_quantizer).
    from slmlab.backends.hf import transformers_progress

    with transformers_progress():  # text progress bars when headless, never widget JSON in a saved notebook
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32,
            quantization_config=transformers.GgufConfig(dequantize=True))
        tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise SlmLabError(f"transformers {transformers.__version__} kept {path.name} quantized, so it cannot be saved.",
                          "Use transformers==5.24.0 (pip install -e '.[hf]').")
    return model, tokenizer


def hf_to_ort_genai(hf_dir: str | os.PathLike, precision: str = "int4", out_dir: str | os.PathLike | None = None,
                    force: bool = False, extra_options: Mapping[str, str | int | bool] | None = None) -> Path:
    """An ONNX Runtime GenAI folder (CPU) built from a Hugging Face folder by the GenAI model builder, cached.

    `extra_options` go to the builder's --extra_options (e.g. {"accuracy_level": 0} keeps fp32 activations in the
    int4/int8 matmuls; {"nodes_to_exclude": "/lm_head/MatMul"} keeps the output layer in fp32); a folder built
    with other options gets its own name.
    """
    precision = str(precision).strip().lower()
    if precision not in PRECISIONS:
        raise SlmLabError(f"Unknown precision '{precision}' for the CPU.",
                          f"Use one of {', '.join(PRECISIONS)} (int4/int8: weight-only quantized MatMulNBits; "
                          "fp32: full precision).")
    hf = Path(hf_dir).expanduser()
    if not (hf / "config.json").is_file():
        raise SlmLabError(f"{hf} is not a Hugging Face model folder (no config.json).",
                          "Convert a GGUF first: "
                          "hf_dir = slmlab.convert.gguf_to_onnx.gguf_to_hf('smollm2-135m-instruct').")
    _require(BUILDER_MODULES)
    options = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in sorted((extra_options or {}).items())}
    tag = "-" + hashlib.sha256(json.dumps(options).encode()).hexdigest()[:8] if options else ""
    name = hf.name.removesuffix("-hf")
    out = Path(out_dir) if out_dir is not None else converted_dir() / f"{name}-ort-{precision}{tag}"
    config = json.loads((hf / "config.json").read_text())

    def build(tmp: Path) -> dict[str, Any]:
        failed_log = out.parent / f"{out.name}.builder-failed.log"
        _run_builder(hf, tmp, precision, options, steps=int(config.get("num_hidden_layers", 0)) + 4,
                     failed_log=failed_log)
        failed_log.unlink(missing_ok=True)  # an earlier failure's log, now obsolete
        return {"precision": precision, "execution_provider": "cpu"}

    return _build(out, hf, {"source_sha256": _folder_sha256(hf), "options": options}, f"ort-genai-{precision}",
                  build, force)


def _run_builder(hf: Path, out: Path, precision: str, options: dict[str, str], steps: int,
                 failed_log: Path | None = None) -> None:
    """`python -m onnxruntime_genai.models.builder` in a subprocess, its log kept in out/builder.log.

    If it fails, the log is copied to `failed_log` (the temporary `out` is deleted) and the error quotes its end.
    """
    # A subprocess: the builder adds its own folder to sys.path when imported, and its torch memory goes away.
    scratch = out / "_builder_cache"  # its hub cache (unused for a local folder, but it creates one)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
           "-p", precision, "-e", "cpu", "-c", str(scratch)]
    if options:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in options.items())]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    _say(f"building the ONNX Runtime GenAI model ({precision}, CPU) from {hf.name}/")
    log_path = out / "builder.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        with open(log_path, "w", encoding="utf-8") as log, progress(total=steps, desc=f"onnx {precision}") as bar:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith(("Reading ", "Saving ONNX model")):  # one line per layer, then the save
                    bar.update(min(1, steps - bar.n))
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: don't leave the builder running
            proc.kill()
            proc.wait()
    shutil.rmtree(scratch, ignore_errors=True)
    if code != 0 or not (out / "genai_config.json").is_file():
        failed_log = failed_log or log_path
        if failed_log != log_path:
            shutil.copyfile(log_path, failed_log)
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-12:])
        raise SlmLabError(f"The ONNX Runtime GenAI model builder failed (exit code {code}):\n{tail}",
                          f"Read the whole log in {failed_log}. The builder supports the architectures listed in "
                          "onnxruntime_genai/models/builder.py; it needs onnxruntime-genai, onnx-ir, torch and "
                          f"transformers ({PIP_ONNX} and {PIP_HF}).")


def ort_genai_folder(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, precision: str = "int8") -> Path:
    """The ORT GenAI folder for any model reference: an ORT folder as is; a GGUF or HF folder converted (cached)."""
    path = Path(model).expanduser() if isinstance(model, str | os.PathLike) else None
    if path is not None and (path / "genai_config.json").is_file():
        return path
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    hf = resolved.path if resolved.format == "hf-folder" else gguf_to_hf(resolved)
    return hf_to_ort_genai(hf, precision)


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """What a finished conversion recorded (source, its SHA-256, build time, versions), or None if unfinished."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _build(out: Path, source: Path, identity: dict[str, Any], kind: str, build: Callable[[Path], dict[str, Any]],
           force: bool) -> Path:
    """Run `build` into a temporary sibling of `out` and rename it into place when complete (or reuse a match).

    `identity` (the source's SHA-256, the options) is stored in the marker; a folder whose marker matches is reused.
    """
    marker = read_marker(out)
    if marker and all(marker.get(k) == v for k, v in identity.items()) and not force:
        _say(f"using the cached {out} (built {marker.get('created', '?')})")
        return out
    if out.exists() and marker is None and any(out.iterdir()):
        raise SlmLabError(f"{out} exists but was not made by slmlab (or is incomplete): it has no {MARKER}.",
                          "Pass another out_dir=, or delete that folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    start = perf_counter()
    try:
        details = build(tmp)
        seconds = perf_counter() - start
        record = {"kind": kind, "source": str(source), **identity, "built_s": round(seconds, 1),
                  "created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions(),
                  **details}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        _move_into_place(tmp, out)
    except BaseException:  # KeyboardInterrupt included: never leave a half folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    _say(f"wrote {out} ({size / 1e6:.0f} MB) in {seconds:.1f} s")
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():  # an older conversion (another source, or force=True): swap it out
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _remove_stale_partials(out: Path) -> None:
    """Delete temporary folders left by conversions that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(stale.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)  # still running: leave its folder alone
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError, IndexError):
            pass


def _require(modules: dict[str, str]) -> None:
    """Raise a clear error naming the first missing module and the pip command that installs it."""
    for module, command in modules.items():
        missing = sys.modules[module] is None if module in sys.modules else importlib.util.find_spec(module) is None
        if missing:
            package = {"onnx_ir": "onnx-ir", "onnxruntime_genai": "onnxruntime-genai"}.get(module, module)
            raise SlmLabError(f"This conversion needs the package {package}, which is not installed.",
                              f"Run: {command}")


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("transformers", "torch", "gguf", "onnxruntime-genai", "onnxruntime", "onnx-ir"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256_cached(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _folder_sha256(folder: Path) -> str:
    """One SHA-256 for a folder: over each file's relative path and SHA-256 (hidden files skipped)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _say(message: str) -> None:
    print(f"[convert] {message}", flush=True)
