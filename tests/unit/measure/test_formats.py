"""slmlab.measure.formats: the arithmetic of the side-by-side table (the engines run in tests/notebooks)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure import formats as f


@pytest.mark.fast
def test_nll_and_argmax_score_row_i_against_token_i_plus_one():
    rows = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]))
    nll, best = f.nll_and_argmax(rows, [0, 1, 2, 0])
    assert nll == pytest.approx([-math.log(0.2), -math.log(0.8), -math.log(0.3)])
    assert best == [0, 2, 2]
    with pytest.raises(SlmLabError):
        f.nll_and_argmax(rows[:1], [0, 1, 2, 0])


@pytest.mark.fast
def test_tokens_per_second_counts_the_steps_after_the_first_token():
    assert f.tokens_per_second([1.0, 1.5, 2.0, 2.5]) == pytest.approx(3 / 1.5)
    with pytest.raises(SlmLabError):
        f.tokens_per_second([1.0])


def run(label: str, fmt: str, size: int, nll: list[float], argmax: list[int]) -> f.FormatRun:
    return f.FormatRun(label, fmt, Path(label), size, 100.0, 300.0, 0.1, [1, 2], nll, argmax)


@pytest.mark.fast
def test_compare_computes_bits_per_weight_perplexity_change_and_agreement():
    ref = run("ref", "gguf", 2_000_000, [1.0, 1.0], [5, 6])
    small = run("small", "mlx", 500_000, [2.0, 2.0], [5, 7])
    table = f.compare([ref, small], reference="ref", parameters=1_000_000)
    assert table.loc["small", "bits_per_weight"] == 4.0 and table.loc["ref", "bits_per_weight"] == 16.0
    assert table.loc["small", "perplexity"] == round(math.e**2, 2)
    assert table.loc["small", "delta_pct"] == round((math.e - 1) * 100, 1)
    assert table.loc["small", "agreement"] == 0.5 and table.loc["ref", "agreement"] == 1.0
    with pytest.raises(SlmLabError, match="labelled"):
        f.compare([small], reference="ref", parameters=1)
    with pytest.raises(SlmLabError, match="different numbers"):
        f.agreement(ref, run("short", "onnx", 1, [1.0], [5]))


@pytest.mark.fast
def test_size_bytes_reads_each_formats_weight_files(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x" * 10)
    assert f.size_bytes("GGUF", tmp_path / "m.gguf") == 10
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"x" * 3)
    (onnx / "model.onnx.data").write_bytes(b"x" * 4)
    (onnx / "tokenizer.json").write_bytes(b"x" * 100)
    assert f.size_bytes("onnx", onnx) == 7
    with pytest.raises(SlmLabError, match="not a mlx model folder"):
        f.size_bytes("mlx", onnx)
    litert = tmp_path / "litert"
    litert.mkdir()
    (litert / "m_q8_ekv1024.tflite").write_bytes(b"x" * 5)
    (litert / "litert-torch.log").write_bytes(b"x" * 50)
    assert f.size_bytes("litert", litert) == 5
    with pytest.raises(SlmLabError, match=r"not a litert model folder \(no \*\.tflite\)"):
        f.size_bytes("litert", onnx)
    with pytest.raises(SlmLabError, match="Unknown format") as unknown:
        f.check_format("tflite")
    assert "litert" in unknown.value.hint


@pytest.mark.fast
def test_measure_refuses_too_little_to_measure_before_starting_a_process(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(SlmLabError, match="two token ids"):
        f.measure("x", "gguf", tmp_path / "m.gguf", [1], [1, 2])
    with pytest.raises(SlmLabError, match="gen_tokens"):
        f.measure("x", "gguf", tmp_path / "m.gguf", [1, 2], [1], gen_tokens=1)
