"""llama.cpp's ``convert_hf_to_gguf.py`` (Hugging Face folder -> GGUF), and what a round trip kept.

The script and the ``gguf-py`` it imports come from the same llama.cpp tree as the course's llama.cpp programs
(``slmlab setup llamacpp`` copies them beside the programs); it runs with this Python, which has torch::

    hf_dir = slmlab.convert.onnx_quantize.prepare(["hf"])["hf"]     # the GGUF as an HF folder (built in set-up)
    back = convert_hf_to_gguf(hf_dir, "roundtrip.F16.gguf", "f16")   # and back to GGUF
    compare_gguf(back, reference_f16)       # every tensor, byte for byte, and the metadata keys only one has
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

from slmlab.convert.llamacpp_cli import existing_file, run_command, tail
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
        code, out, err = run_command(command, timeout=timeout, cwd=Path(command[1]).parent)
    except BaseException as exc:  # the timeout, or Ctrl-C: no partial file left behind
        partial.unlink(missing_ok=True)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise SlmLabError(f"convert_hf_to_gguf.py took longer than {timeout:g} s and was stopped.",
                              "Pass a larger timeout=, or convert a smaller model.") from None
        raise
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise SlmLabError(f"convert_hf_to_gguf.py could not convert {command[2]} (exit code {code}). "
                          f"Its last lines:\n{tail(out + err)}",
                          "Read the lines above: an architecture it does not know, a missing tokenizer file, or a "
                          "missing package (it needs torch, transformers and safetensors: pip install -e '.[hf]').")
    os.replace(partial, target)
    print(f"[convert] wrote {target} ({target.stat().st_size / 1e6:.0f} MB) in {perf_counter() - start:.1f} s")
    return target


@dataclass(frozen=True)
class GGUFComparison:
    """Two GGUF files side by side: tensors with the same type and bytes, tensors that differ, what only one has."""

    identical: list[str] = field(repr=False)
    different: list[str]
    only_first: list[str]
    only_second: list[str]
    keys_only_first: list[str]  # metadata keys (the GGUF header's own skipped)
    keys_only_second: list[str]

    @property
    def same_tensors(self) -> bool:
        """True when both files hold the same tensors with the same types and bytes."""
        return bool(self.identical) and not (self.different or self.only_first or self.only_second)

    def __str__(self) -> str:
        said = f"{len(self.identical)} of {len(self.identical) + len(self.different)} shared tensors identical"
        for label, names in (("different", self.different), ("only in the first", self.only_first),
                             ("only in the second", self.only_second)):
            if names:
                said += f"; {label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
        return said


def compare_gguf(first: str | os.PathLike, second: str | os.PathLike) -> GGUFComparison:
    """Compare two GGUF files: every tensor (type and bytes, memory-mapped) and the metadata keys each has."""
    import numpy as np
    from gguf import GGUFReader

    readers = [GGUFReader(existing_file(path, "GGUF file")) for path in (first, second)]
    a, b = ({t.name: t for t in reader.tensors} for reader in readers)
    identical: list[str] = []
    different: list[str] = []
    for name in (n for n in a if n in b):
        same = a[name].tensor_type == b[name].tensor_type and np.array_equal(a[name].data, b[name].data)
        (identical if same else different).append(name)
    keys = [{name for name in reader.fields if not name.startswith("GGUF.")} for reader in readers]
    return GGUFComparison(identical, different, [n for n in a if n not in b], [n for n in b if n not in a],
                          sorted(keys[0] - keys[1]), sorted(keys[1] - keys[0]))
