"""slmlab.convert.mlx_convert: mlx_lm's command line, MLX's group arithmetic, and the safetensors headers read
without MLX (a folder written here in the layout mlx_lm writes: packed uint32 weights, scales, biases)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from slmlab.convert import mlx_convert as m
from slmlab.errors import SlmLabError


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    """A real safetensors file: {name: (dtype, shape, bytes per value)}, zero-filled data."""
    header, offset = {}, 0
    for name, (dtype, shape, width) in tensors.items():
        size = width
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "mlx"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def mlx_folder(tmp_path: Path, bits: int = 4, group: int = 64, scale: tuple[str, int] = ("F32", 4)) -> Path:
    """One 128 x 256 matrix quantized at `bits` in groups of `group`, and one unquantized norm of 256."""
    folder = tmp_path / "model-mlx"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"quantization": {"group_size": group, "bits": bits}}))
    write_safetensors(folder / "model.safetensors", {
        "layer.weight": ("U32", [128, 256 * bits // 32], 4),
        "layer.scales": (scale[0], [128, 256 // group], scale[1]),
        "layer.biases": (scale[0], [128, 256 // group], scale[1]),
        "norm.weight": ("F32", [256], 4)})
    return folder


@pytest.mark.fast
def test_group_bits_is_the_weight_bits_plus_its_share_of_scale_and_bias():
    assert m.group_bits(4, 64) == 4.5  # 16-bit scale and bias
    assert m.group_bits(4, 64, 32, 32) == 5.0  # a 32-bit source: what the course's fp32 HF folder gives
    assert m.group_bits(8, 32) == 9.0
    with pytest.raises(SlmLabError):
        m.group_bits(0, 64)


@pytest.mark.fast
def test_convert_command_is_mlx_lms_own_cli_and_rejects_what_mlx_cannot_do(tmp_path):
    command = m.convert_command(tmp_path / "hf", tmp_path / "out", bits=4, group_size=64)
    assert command[1:4] == ["-m", "mlx_lm", "convert"]
    assert command[command.index("--q-bits") + 1] == "4" and "-q" in command
    assert command[command.index("--hf-path") + 1] == str(tmp_path / "hf")
    assert m.convert_command("hf", "out", dtype="float16")[-2:] == ["--dtype", "float16"]
    with pytest.raises(SlmLabError, match="bits"):
        m.convert_command("hf", "out", bits=7)
    with pytest.raises(SlmLabError, match="group_size"):
        m.convert_command("hf", "out", group_size=100)


@pytest.mark.fast
def test_tensors_unpack_the_parameters_and_count_scales_as_overhead(tmp_path):
    rows = {r["tensor"]: r for r in m.tensors(mlx_folder(tmp_path))}
    assert rows["layer.weight"]["parameters"] == 128 * 256 and rows["layer.weight"]["role"] == "packed weights"
    assert rows["layer.scales"]["parameters"] == 0 and rows["norm.weight"]["parameters"] == 256
    assert rows["layer.weight"]["bytes"] == 128 * 256 * 4 // 8


@pytest.mark.fast
@pytest.mark.parametrize(("bits", "group", "scale"), [(4, 64, ("F32", 4)), (4, 64, ("F16", 2)), (8, 32, ("F16", 2))])
def test_bits_per_weight_from_the_files_matches_the_group_formula(tmp_path, bits, group, scale):
    folder = mlx_folder(tmp_path, bits, group, scale)
    quantized, norm = 128 * 256, 256
    expected = (quantized * m.group_bits(bits, group, 8 * scale[1], 8 * scale[1]) + norm * 32) / (quantized + norm)
    assert m.bits_per_weight(folder) == pytest.approx(expected)
    assert m.quantization(folder)["bits"] == bits


@pytest.mark.fast
def test_folders_that_are_not_mlx_models_get_clear_errors(tmp_path):
    with pytest.raises(SlmLabError, match="no config.json"):
        m.quantization(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SlmLabError, match="not quantized"):
        m.quantization(tmp_path)
    with pytest.raises(SlmLabError, match="no .safetensors"):
        m.tensors(tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"123")
    with pytest.raises(SlmLabError, match="too short"):
        m.safetensors_header(tmp_path / "bad.safetensors")


@pytest.mark.fast
def test_convert_refuses_a_folder_without_config_and_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "require_mlx", lambda: None)
    with pytest.raises(SlmLabError, match="not a Hugging Face model folder"):
        m.convert(tmp_path)
    assert m.expected_folder(tmp_path / "smollm2-hf", 4, 64).name == "smollm2-mlx-q4-g64"


@pytest.mark.fast
def test_require_mlx_says_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(m, "mlx_available", lambda: False)
    with pytest.raises(SlmLabError) as info:
        m.require_mlx()
    assert "mlx[cpu]" in info.value.hint
