"""llama.cpp's ``convert_hf_to_gguf.py`` (Hugging Face folder -> GGUF), and what a round trip kept.

The script and the ``gguf-py`` it imports come from the same llama.cpp tree as the course's llama.cpp programs
(``slmlab setup llamacpp`` copies them beside the programs); it runs with this Python, which has torch::

    hf_dir = slmlab.convert.onnx_quantize.prepare(["hf"])["hf"]     # the GGUF as an HF folder (built in set-up)
    back = convert_hf_to_gguf(hf_dir, "roundtrip.F16.gguf", "f16")   # and back to GGUF
    compare_tensors(reference_f16, back)                              # every tensor, byte for byte
    metadata_differences(original, back)                              # the keys one file has and the other lacks
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

from slmlab.convert.llamacpp_cli import existing_file, tail
from slmlab.errors import SlmLabError

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto")  # --outtype; lower bits are llama-quantize's job


def convert_command(hf_dir: str | os.PathLike, outfile: str | os.PathLike, outtype: str = "f16") -> list[str]:
    """``python convert_hf_to_gguf.py HF_DIR --outfile OUT --outtype TYPE`` with this Python and the course's script."""
    from slmlab.setup.llamacpp import convert_script

    kind = str(outtype).strip().lower()
    if kind not in OUTTYPES:
        raise SlmLabError(f"--outtype {outtype!r} is not one convert_hf_to_gguf.py accepts.",
                          f"Use one of {', '.join(OUTTYPES)}; lower bits come from llama-quantize afterwards.")
    folder = Path(hf_dir).expanduser()
    if not (folder / "config.json").is_file():
        raise SlmLabError(f"{folder} is not a Hugging Face model folder (it has no config.json).",
                          "Pass the folder that holds config.json and the *.safetensors, e.g. "
                          "slmlab.convert.onnx_quantize.prepare(['hf'])['hf'].")
    return [sys.executable, str(convert_script()), str(folder), "--outfile", str(Path(outfile).expanduser()),
            "--outtype", kind]


def convert_hf_to_gguf(hf_dir: str | os.PathLike, outfile: str | os.PathLike, outtype: str = "f16", *,
                       timeout: float = 900) -> Path:
    """Run ``convert_hf_to_gguf.py`` on an HF folder; returns the GGUF written, or raises with the script's last lines.

    The file is written under a temporary name and renamed at the end, so a failed run leaves nothing that looks done.
    """
    command = convert_command(hf_dir, outfile, outtype)
    target = Path(command[command.index("--outfile") + 1])
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    command[command.index("--outfile") + 1] = str(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = perf_counter()
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout, cwd=Path(command[1]).parent)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise SlmLabError(f"convert_hf_to_gguf.py took longer than {timeout:g} s and was stopped.",
                          "Pass a larger timeout=, or convert a smaller model.") from None
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise SlmLabError(f"convert_hf_to_gguf.py could not convert {command[2]} (exit code {done.returncode}). "
                          f"Its last lines:\n{tail(done.stdout + done.stderr)}",
                          "Read the lines above: an architecture it does not know, a missing tokenizer file, or a "
                          "missing package (it needs torch, transformers and safetensors: pip install -e '.[hf]').")
    os.replace(partial, target)
    print(f"[convert] wrote {target} ({target.stat().st_size / 1e6:.0f} MB) in {perf_counter() - start:.1f} s")
    return target


@dataclass(frozen=True)
class TensorComparison:
    """Two GGUF files tensor by tensor: which hold the same type and bytes, which differ, which only one has."""

    identical: list[str] = field(repr=False)
    different: list[str]
    only_first: list[str]
    only_second: list[str]

    @property
    def all_identical(self) -> bool:
        """True when both files hold the same tensors with the same types and bytes."""
        return bool(self.identical) and not (self.different or self.only_first or self.only_second)

    def __str__(self) -> str:
        total = len(self.identical) + len(self.different)
        said = f"{len(self.identical)} of {total} shared tensors identical (type and bytes)"
        for label, names in (("different", self.different), ("only in the first", self.only_first),
                             ("only in the second", self.only_second)):
            if names:
                said += f"; {label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
        return said


def compare_tensors(first: str | os.PathLike, second: str | os.PathLike) -> TensorComparison:
    """Compare every tensor of two GGUF files (read with the ``gguf`` package, memory-mapped)."""
    import numpy as np
    from gguf import GGUFReader

    a = {t.name: t for t in GGUFReader(existing_file(first, "GGUF file")).tensors}
    b = {t.name: t for t in GGUFReader(existing_file(second, "GGUF file")).tensors}
    identical, different = [], []
    for name in (n for n in a if n in b):
        same = a[name].tensor_type == b[name].tensor_type and np.array_equal(a[name].data, b[name].data)
        (identical if same else different).append(name)
    return TensorComparison(identical, different, [n for n in a if n not in b], [n for n in b if n not in a])


def metadata_differences(first: str | os.PathLike, second: str | os.PathLike) -> dict[str, list[str]]:
    """The metadata keys only the first file has, and those only the second has (the GGUF header's own skipped)."""
    from gguf import GGUFReader

    keys = [{name for name in GGUFReader(existing_file(path, "GGUF file")).fields if not name.startswith("GGUF.")}
            for path in (first, second)]
    return {"only_first": sorted(keys[0] - keys[1]), "only_second": sorted(keys[1] - keys[0])}
