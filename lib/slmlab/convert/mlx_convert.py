"""Apple MLX on this machine: ``mlx_lm``'s converter run on the course's HF folder, and what its files hold.

MLX quantizes a matrix in *groups* of ``group_size`` weights along each row: every group keeps ``bits``-bit
integers (packed eight 4-bit values to a uint32) and one scale and one bias in the model's float type, so a
weight costs ``bits + (scale_bits + bias_bits) / group_size`` bits (:func:`group_bits`)::

    folder = convert(hf_dir, bits=4, group_size=64)   # python -m mlx_lm convert --hf-path ... -q (cached)
    quantization(folder)                               # {'group_size': 64, 'bits': 4, ...} from its config.json
    bits_per_weight(folder)                            # from the safetensors headers: bytes x 8 / parameters

The headers are read with the standard library (a safetensors file starts with an 8-byte length and a JSON
header), so the sizes can be checked without MLX installed. MLX's speed lives on Apple silicon (unified memory,
Metal); the ``mlx[cpu]`` wheel runs the same code on a Linux CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import cache_dir

PIP_MLX = 'pip install -e ".[mlx]"  (mlx[cpu]==0.32.4 and mlx-lm==0.32.2 on Linux)'
BITS = (2, 3, 4, 5, 6, 8)  # what mlx.core.quantize accepts in its affine mode
GROUP_SIZES = (32, 64, 128)
DTYPE_BITS = {"F32": 32, "F16": 16, "BF16": 16, "U32": 32, "I32": 32, "U8": 8, "I8": 8, "I64": 64, "F64": 64}
MARKER = "slmlab-mlx.json"  # written last into a finished conversion, with the command and its seconds


def mlx_available() -> bool:
    """True when ``mlx.core`` and ``mlx_lm`` import (the ``mlx`` extra is installed)."""
    try:
        return importlib.util.find_spec("mlx.core") is not None and importlib.util.find_spec("mlx_lm") is not None
    except ModuleNotFoundError:  # no mlx package at all
        return False


def require_mlx() -> None:
    """A clear error when MLX is missing (note: the ``mlx-cpu`` wheel alone has no ``mlx.core``)."""
    if not mlx_available():
        raise SlmLabError("Apple MLX (mlx.core and mlx_lm) is not installed in this environment.",
                          f"Run: {PIP_MLX}. The mlx[cpu] extra matters: mlx-cpu alone installs no mlx.core.")


def check_quantization(bits: int, group_size: int) -> tuple[int, int]:
    """`bits` and `group_size` as MLX accepts them, or a clear error."""
    if bits not in BITS:
        raise SlmLabError(f"bits={bits!r}: MLX's affine quantization takes {', '.join(map(str, BITS))} bits.",
                          "Use bits=4 (the usual choice) or bits=8.")
    if group_size not in GROUP_SIZES:
        raise SlmLabError(f"group_size={group_size!r}: MLX groups {', '.join(map(str, GROUP_SIZES))} weights.",
                          "Use group_size=64 (mlx_lm's default).")
    return bits, group_size


def group_bits(bits: int, group_size: int, scale_bits: int = 16, bias_bits: int = 16) -> float:
    """Bits per quantized weight: the weight's own bits plus its share of its group's scale and bias."""
    if bits <= 0 or group_size <= 0:
        raise SlmLabError(f"bits={bits}, group_size={group_size}: both must be positive.", "Use e.g. 4 and 64.")
    return bits + (scale_bits + bias_bits) / group_size


def convert_command(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, bits: int = 4, group_size: int = 64,
                    dtype: str | None = None) -> list[str]:
    """``python -m mlx_lm convert --hf-path HF --mlx-path OUT -q --q-bits B --q-group-size G [--dtype D]``."""
    check_quantization(bits, group_size)
    command = [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(hf_dir), "--mlx-path", str(out_dir),
               "-q", "--q-bits", str(bits), "--q-group-size", str(group_size)]
    return command + (["--dtype", dtype] if dtype else [])


def mlx_dir() -> Path:
    """Where MLX conversions are cached: ``cache_dir()/mlx``."""
    return cache_dir() / "mlx"


def expected_folder(hf_dir: str | os.PathLike, bits: int = 4, group_size: int = 64, dtype: str | None = None) -> Path:
    """The cached folder of one conversion (whether or not it exists yet)."""
    name = Path(hf_dir).name.removesuffix("-hf")
    return mlx_dir() / (f"{name}-mlx-q{bits}-g{group_size}" + (f"-{dtype}" if dtype else ""))


def convert(hf_dir: str | os.PathLike, bits: int = 4, group_size: int = 64, *, dtype: str | None = None,
            out_dir: str | os.PathLike | None = None, force: bool = False, timeout: float = 600) -> Path:
    """Run mlx_lm's converter on an HF folder (in its own process), cached: the finished folder holds MARKER.

    mlx_lm refuses to write into an existing folder, so it writes a temporary one that is renamed at the end.
    """
    require_mlx()
    src = Path(hf_dir).expanduser()
    if not (src / "config.json").is_file():
        raise SlmLabError(f"{src} is not a Hugging Face model folder (no config.json).",
                          "Pass the course's HF folder: slmlab.convert.onnx_quantize.prepare(['hf'])['hf'].")
    out = Path(out_dir).expanduser() if out_dir is not None else expected_folder(src, bits, group_size, dtype)
    if (out / MARKER).is_file() and not force:
        return out
    tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    command = convert_command(src, tmp, bits, group_size, dtype)
    start = perf_counter()
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SlmLabError(f"mlx_lm convert did not finish within {timeout:g} s.", "Pass a larger timeout=.") from None
    if run.returncode != 0 or not (tmp / "config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        last = "\n".join((run.stderr or run.stdout).strip().splitlines()[-8:])
        raise SlmLabError(f"mlx_lm convert failed (exit code {run.returncode}). Its last lines:\n{last}",
                          f"Read the lines above; the command was: {' '.join(command)}")
    (tmp / MARKER).write_text(json.dumps({"command": command[1:], "seconds": round(perf_counter() - start, 1),
                                          "log": (run.stdout + run.stderr)[-2000:]}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def quantization(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``quantization`` entry of an MLX folder's config.json (group_size, bits, mode), or a clear error."""
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise SlmLabError(f"{folder} has no config.json: it is not an MLX model folder.",
                          "Convert one first: slmlab.convert.mlx_convert.convert(hf_dir).")
    config = json.loads(config_path.read_text())
    found = config.get("quantization") or config.get("quantization_config")
    if not found:
        raise SlmLabError(f"{folder} is not quantized (its config.json has no 'quantization').",
                          "Convert with -q (mlx_convert.convert does).")
    return {k: v for k, v in found.items() if not isinstance(v, dict)}


def safetensors_header(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The tensors a .safetensors file holds, {name: {'dtype', 'shape', 'data_offsets'}}, read from its header."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SlmLabError(f"{path} is too short to be a safetensors file.", "Convert the model again.")
        (length,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SlmLabError(f"{path} has no readable safetensors header.", "Convert the model again.") from None
    header.pop("__metadata__", None)
    return header


def tensors(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per tensor of the folder's safetensors files: name, dtype, stored shape, bytes, parameters.

    A quantized matrix is stored as uint32 words, each packing 32 / bits values; its parameters are counted
    unpacked. Its ``.scales`` and ``.biases`` are bookkeeping, not parameters (0 in the parameters column).
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise SlmLabError(f"{folder} holds no .safetensors files.", "Convert the model first.")
    bits = int(quantization(folder).get("bits", 32))
    header: dict[str, dict[str, Any]] = {}
    for path in files:
        header |= safetensors_header(path)
    rows = []
    for name, info in sorted(header.items()):
        begin, end = info["data_offsets"]
        count = 1
        for dim in info["shape"]:
            count *= int(dim)
        stem = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")):
            role, params = name.rsplit(".", 1)[1], 0
        elif info["dtype"] == "U32" and f"{stem}.scales" in header:
            role, params = "packed weights", count * 32 // bits
        else:
            role, params = "unquantized", count
        rows.append({"tensor": name, "dtype": info["dtype"], "shape": tuple(info["shape"]), "bytes": end - begin,
                     "parameters": params, "role": role})
    return rows


def bits_per_weight(folder: str | os.PathLike) -> float:
    """Stored bits per parameter: every tensor's bytes x 8 / the parameters (what mlx_lm prints after -q)."""
    rows = tensors(folder)
    params = sum(r["parameters"] for r in rows)
    return sum(r["bytes"] for r in rows) * 8 / params


def folder_mb(folder: str | os.PathLike) -> float:
    """Size of the folder's weight files (*.safetensors) in MB."""
    return round(sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 1e6, 1)
