"""Make a GGUF model smaller with llama.cpp's own quantizer, and see what it did to every tensor.

The quantizer is ``llama_model_quantize`` from llama.cpp, called through llama-cpp-python: the same code
as the ``llama-quantize`` command line tool. Its log is captured and parsed, so a learner sees, tensor by
tensor, which type the quantization mix asked for and which type llama.cpp actually used (K-quants need
rows that are a multiple of 256 values; SmolLM2's 576-wide rows are not, so llama.cpp falls back).

llama.cpp quantizes from F16/F32 weights; re-quantizing an already quantized file stacks one rounding on
another. So when the source is quantized, :func:`reference_f16` first writes a dequantized F16 copy with
the ``gguf`` package, and every type is made from that copy. Outputs are cached under
``slmlab.models.resolver.cache_dir() / "quantized"`` and written atomically (a ``.partial`` file renamed at the end).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve

if TYPE_CHECKING:
    import pandas as pd

# The types the course compares, from most to fewest bits (llama.cpp's LLAMA_FTYPE_MOSTLY_<name>).
QUANT_TYPES: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
# Every file type llama.cpp can quantize to that this module accepts.
SUPPORTED: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1",
                              "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "TQ2_0", "TQ1_0")
UNQUANTIZED_TYPES = frozenset({"F32", "F16", "BF16"})
_LOCK = threading.Lock()  # llama.cpp's log callback is process-wide: one quantization at a time

# llama.cpp's per-tensor log lines (src/llama-quant.cpp), e.g.
# [  12/ 272]   blk.1.attn_q.weight - [   576,    576,      1,      1], type =    f16, converting to q5_0 .. size = ...
# [  13/ 272]   blk.1.attn_norm.weight - [   576,      1,      1,      1], type =    f32, size =    0.002 MiB
# (with --imatrix, a line "====== llama_model_quantize_impl: did not find weights for ..." may come in between)
_TENSOR_LINE = re.compile(
    r"\[\s*(?P<index>\d+)/\s*(?P<total>\d+)\]\s+(?P<name>\S+)\s+-\s+\[(?P<shape>[\d,\s]+)\],\s+"
    r"type\s*=\s*(?P<src>\w+),\s+(?:=+ [^\n]*\n)?(?:converting to (?P<dst>\w+)|size)")
# warning: blk.0.attn_q.weight - ncols    576 not divisible by 256 (required for type    q6_K) -> falling back to
# q8_0   (one line in llama-quantize's log)
_FALLBACK_LINE = re.compile(
    r"(?P<name>\S+)\s+-\s+ncols\s+(?P<ncols>\d+)\s+not divisible by\s+(?P<block>\d+)\s+"
    r"\(required for type\s+(?P<wanted>\w+)\)\s*->\s*falling back to\s+(?P<used>\w+)")
_SIZE_LINE = re.compile(r"(?P<what>model|quant) size\s*=\s*(?P<mib>[\d.]+) MiB \((?P<bpw>[\d.]+) BPW\)")


def _partial(path: Path) -> Path:
    """A temporary name next to `path`, unique to this process: renamed onto `path` once complete."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def quantized_dir() -> Path:
    """Where quantized files are cached: ``cache_dir()/quantized``."""
    path = cache_dir() / "quantized"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_type(qtype: str) -> str:
    """The canonical name of a quantization type (e.g. 'q4_k_m' -> 'Q4_K_M'), or a clear error."""
    key = str(qtype).strip().upper()
    if key not in SUPPORTED:
        raise SlmLabError(f"'{qtype}' is not a quantization type llama.cpp can make here.",
                          f"Use one of: {', '.join(SUPPORTED)} (the course compares {', '.join(QUANT_TYPES)}).")
    return key


def _ftype(qtype: str) -> int:
    import llama_cpp

    return int(getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{check_type(qtype)}"))


def _gguf_source(model: ResolvedModel | str | os.PathLike) -> ResolvedModel:
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format != "gguf":
        raise SlmLabError(f"{resolved.name} is a {resolved.format} model; llama.cpp quantizes GGUF files.",
                          "Pass a GGUF model, e.g. 'smollm2-135m-instruct' or a path to a .gguf file.")
    return resolved


def _source_key(path: Path) -> str:
    """A folder name for one source file version: its stem plus a hash of path, size and mtime."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return f"{path.stem}-{digest}"


def _out_dir(source: Path, out_dir: str | Path | None) -> Path:
    folder = Path(out_dir) if out_dir is not None else quantized_dir() / _source_key(source)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def source_type(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL) -> str:
    """The weight type of a GGUF file as llama.cpp names it (e.g. 'Q4_1', 'F16'), from its header."""
    return _gguf_source(model).inspect().file_type


# ----------------------------------------------------------------------------- the F16 reference


def reference_f16(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, *, out_dir: str | Path | None = None,
                  force: bool = False, show_progress: bool = True) -> ResolvedModel:
    """A dequantized F16 copy of a GGUF model (the starting point for every quantization), cached.

    Quantized tensors are dequantized with ``gguf.quants.dequantize`` and stored as F16; F32/F16 tensors
    (norms, for instance) are copied as they are; the metadata is copied and ``general.file_type`` set to
    MOSTLY_F16. The copy holds exactly the values the quantized file encodes, at 16 bits each.
    """
    source = _gguf_source(model)
    target = _out_dir(source.path, out_dir) / f"{source.path.stem}.F16.gguf"
    if force or not target.is_file():
        _write_f16(source.path, target, show_progress)
    return ResolvedModel(target.stem, target, "local", "gguf")


def _write_f16(source: Path, target: Path, show_progress: bool) -> None:
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    from slmlab.progress import progress

    try:
        reader = GGUFReader(source)
    except Exception as exc:  # noqa: BLE001  (the gguf reader raises ValueError/IndexError/... on damaged files)
        raise SlmLabError(f"{source} could not be read as GGUF ({type(exc).__name__}: {exc}).",
                          "Delete the file and resolve the model again.") from None
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise SlmLabError(f"{source} has no {gguf.Keys.General.ARCHITECTURE} field: not a model llama.cpp can load.",
                          "Delete the file and resolve the model again.")
    arch = arch_field.contents()
    partial = _partial(target)
    writer = GGUFWriter(partial, arch)
    try:
        for fld in reader.fields.values():
            if fld.name == gguf.Keys.General.ARCHITECTURE or fld.name.startswith("GGUF."):
                continue  # written by GGUFWriter itself
            value = fld.contents()
            if fld.name == gguf.Keys.General.FILE_TYPE:
                value = int(gguf.LlamaFileType.MOSTLY_F16)
            kind = fld.types[0]
            writer.add_key_value(fld.name, value, kind, sub_type=fld.types[-1] if kind == GGUFValueType.ARRAY else None)
        plan = []
        for tensor in reader.tensors:
            keep = tensor.tensor_type in (T.F32, T.F16)
            dtype = np.dtype(np.float32 if tensor.tensor_type == T.F32 else np.float16)
            shape = tuple(int(n) for n in reversed(tensor.shape))  # gguf lists ne0 (the row length) first
            writer.add_tensor_info(tensor.name, shape, dtype, int(np.prod(shape)) * dtype.itemsize,
                                   T.F32 if dtype == np.float32 else T.F16)
            plan.append((tensor, dtype, keep))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        bar = progress(plan, desc=f"dequantizing to F16 ({source.name})", unit="tensor", disable=not show_progress)
        for tensor, dtype, keep in bar:
            data = tensor.data if keep else dequantize(tensor.data, tensor.tensor_type)
            writer.write_tensor_data(np.ascontiguousarray(data, dtype=dtype).reshape(-1))
        writer.close()
        os.replace(partial, target)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- quantizing


@dataclass(frozen=True)
class QuantizedModel:
    """One quantization: the file, where it came from, how long it took, and llama.cpp's log."""

    qtype: str
    path: Path
    source: Path
    seconds: float  # time llama.cpp took (0 when it came from the cache)
    cached: bool
    log: str = field(repr=False)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk."""
        return self.path.stat().st_size

    @property
    def size_mb(self) -> float:
        """Size in MB (10^6 bytes)."""
        return self.size_bytes / 1e6

    @property
    def resolved(self) -> ResolvedModel:
        """The file as a model reference the backends and `evaluate` accept."""
        return ResolvedModel(f"{self.path.stem}", self.path, "local", "gguf")

    def tensors(self) -> pd.DataFrame:
        """One row per tensor: shape, source type, the type the mix asked for, the type used, fallback or not."""
        return parse_quantize_log(self.log)

    def fallbacks(self) -> pd.DataFrame:
        """Only the tensors that did not get the type the mix asked for."""
        table = self.tensors()
        return table[table["fallback"]].reset_index(drop=True)

    def used_types(self) -> dict[str, int]:
        """How many tensors ended up in each type (from llama.cpp's log), most common first."""
        return dict(Counter(self.tensors()["used"]).most_common())

    def llamacpp_bpw(self) -> float | None:
        """llama.cpp's own bits per weight over the tensors of the output (the 'quant size' log line)."""
        sizes = {m["what"]: float(m["bpw"]) for m in _SIZE_LINE.finditer(self.log)}
        return sizes.get("quant")

    def summary(self) -> dict[str, Any]:
        """A flat dict for a table."""
        table = self.tensors()
        return {"type": self.qtype, "size_mb": round(self.size_mb, 1), "llamacpp_bpw": self.llamacpp_bpw(),
                "tensors": len(table), "fallbacks": int(table["fallback"].sum()),
                "seconds": round(self.seconds, 2), "cached": self.cached}


def parse_quantize_log(log: str) -> pd.DataFrame:
    """llama.cpp's quantization log as a table: tensor → source type → requested type → used type.

    ``requested`` is what the quantization mix chose for the tensor; when llama.cpp could not use it (a
    K-quant on rows not a multiple of 256), its warning line names the fallback it used instead.
    Tensors copied unchanged (1-D norms) have ``used`` equal to their source type.
    """
    import pandas as pd

    wanted = {m["name"]: m for m in _FALLBACK_LINE.finditer(log)}
    rows = []
    for match in _TENSOR_LINE.finditer(log):
        name, src = match["name"], match["src"].upper()
        used = (match["dst"] or match["src"]).upper()
        shape = tuple(int(n) for n in match["shape"].replace(" ", "").split(",") if n)
        while len(shape) > 1 and shape[-1] == 1:
            shape = shape[:-1]
        warn = wanted.get(name)
        rows.append({"tensor": name, "shape": shape, "source": src,
                     "requested": warn["wanted"].upper() if warn else used, "used": used,
                     "fallback": warn is not None,
                     "reason": (f"{warn['ncols']} values per row is not a multiple of {warn['block']}"
                                if warn else "")})
    if not rows:
        raise SlmLabError("llama.cpp's quantization log has no per-tensor lines to read.",
                          "Quantize again with slmlab.convert.quantize.quantize(..., force=True); if this persists, "
                          "the llama-cpp-python version logs in a format this module does not know.")
    return pd.DataFrame(rows, columns=["tensor", "shape", "source", "requested", "used", "fallback", "reason"])


def gguf_tensor_types(path: str | Path) -> pd.DataFrame:
    """The type of every tensor as stored in a GGUF file (read with the ``gguf`` package, not from a log)."""
    import pandas as pd
    from gguf import GGUFReader

    from slmlab.models.gguf import check_gguf_file

    reader = GGUFReader(check_gguf_file(path))
    return pd.DataFrame([{"tensor": t.name, "shape": tuple(int(n) for n in t.shape), "type": t.tensor_type.name}
                         for t in reader.tensors])


class _LogCapture:
    """Route llama.cpp's log into a list while a block runs, then hand it back to llama-cpp-python."""

    def __init__(self) -> None:
        import llama_cpp

        self.lines: list[str] = []

        @llama_cpp.llama_log_callback
        def _collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            self.lines.append(text.decode("utf-8", errors="replace"))

        self._callback = _collect  # keep a reference: llama.cpp calls it from C

    def __enter__(self) -> _LogCapture:
        import llama_cpp

        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        import llama_cpp
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _run_quantizer(source: Path, target: Path, qtype: str, threads: int | None, requantize: bool) -> tuple[str, float]:
    import llama_cpp

    from slmlab.models.hardware import physical_cores

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftype(qtype)
    params.nthread = threads or physical_cores()
    params.allow_requantize = requantize  # only matters for tensors that are already quantized
    partial = _partial(target)
    with _LOCK, _LogCapture() as capture:
        start = perf_counter()
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        seconds = perf_counter() - start
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        last = [line.strip() for line in capture.lines if line.strip()][-3:]
        raise SlmLabError(f"llama.cpp could not quantize {source.name} to {qtype} (code {code}): {' '.join(last)}",
                          "Check that the source is a complete GGUF file and that the disk has room "
                          f"(about {source.stat().st_size / 1e6:.0f} MB free).")
    return capture.text, seconds


def quantize(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, qtype: str = "Q4_K_M", *,
             out_dir: str | Path | None = None, threads: int | None = None, force: bool = False,
             from_reference: bool = True, show_progress: bool = True) -> QuantizedModel:
    """Quantize a GGUF model to `qtype` with llama.cpp (``llama-quantize``'s code), cached.

    A quantized source is first dequantized to an F16 reference (see :func:`reference_f16`); pass
    ``from_reference=False`` to re-quantize it directly (llama.cpp's ``--allow-requantize``).
    """
    qtype = check_type(qtype)
    source = _gguf_source(model)
    folder = _out_dir(source.path, out_dir)
    if from_reference:
        reference = folder / f"{source.path.stem}.F16.gguf"
        if reference.is_file() or source_type(source) not in UNQUANTIZED_TYPES:
            source = reference_f16(source, out_dir=folder, show_progress=show_progress)
    stem = source.path.stem.removesuffix(".F16")
    target = folder / f"{stem}.{qtype}{'' if from_reference else '.requant'}.gguf"
    log_path = target.with_suffix(".log")
    if not force and target.is_file() and log_path.is_file():
        return QuantizedModel(qtype, target, source.path, 0.0, True, log_path.read_text(encoding="utf-8"))
    log, seconds = _run_quantizer(source.path, target, qtype, threads, requantize=not from_reference)
    partial_log = _partial(log_path)
    partial_log.write_text(log, encoding="utf-8")
    os.replace(partial_log, log_path)  # the log first: a .gguf without its log is made again
    os.replace(_partial(target), target)
    return QuantizedModel(qtype, target, source.path, seconds, False, log)


def quantize_all(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL,
                 types: tuple[str, ...] | list[str] = QUANT_TYPES,
                 *, out_dir: str | Path | None = None, threads: int | None = None, force: bool = False,
                 show_progress: bool = True) -> dict[str, QuantizedModel]:
    """Quantize one model into several types (from one F16 reference), with a progress bar."""
    from slmlab.progress import progress

    types = [check_type(t) for t in types]
    if not types:
        raise SlmLabError("No quantization types given.", f"Pass some of: {', '.join(QUANT_TYPES)}.")
    source = _gguf_source(model)
    results: dict[str, QuantizedModel] = {}
    bar = progress(types, desc="quantizing", unit="type", disable=not show_progress)
    for qtype in bar:
        bar.set_postfix_str(qtype)
        results[qtype] = quantize(source, qtype, out_dir=out_dir, threads=threads, force=force,
                                  show_progress=show_progress)
    return results


def summary_table(results: dict[str, QuantizedModel] | list[QuantizedModel]) -> pd.DataFrame:
    """One row per quantization: size, llama.cpp's bits per weight, fallbacks, time."""
    import pandas as pd

    items = results.values() if isinstance(results, dict) else results
    return pd.DataFrame([q.summary() for q in items])


def fallback_summary(result: QuantizedModel) -> pd.DataFrame:
    """Fallbacks grouped: requested type → used type, with the tensor count and an example tensor."""
    table = result.fallbacks()
    if table.empty:
        import pandas as pd

        return pd.DataFrame(columns=["requested", "used", "reason", "tensors", "example"])
    grouped = table.groupby(["requested", "used", "reason"], sort=False)
    return grouped["tensor"].agg(tensors="count", example="first").reset_index()
