"""slmlab.convert.onnx_quantize: int8 dynamic quantization with onnxruntime, the variants' folders, and their
comparison.

Fast tests quantize a small real ONNX graph (a MatMul with its weights) with onnxruntime's quantize_dynamic.
The slow test measures SmolLM2's fp32, int8-dynamic and int4 folders (built once in the user's cache, the one
the notebooks use) and prints the figures; only sanity floors are asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from slmlab.convert import gguf_to_onnx as convert
from slmlab.convert import onnx_quantize
from slmlab.convert.onnx_quantize import Measured, agreement, compare, same_prefix
from slmlab.errors import SlmLabError
from slmlab.process import WORKER_ERROR_KEY


def tiny_ort_folder(folder: Path, size: int = 64) -> Path:
    """A folder shaped like an ORT GenAI export: model.onnx (X @ W, W an initializer) and a genai_config.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/lm_head/MatMul")], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
        [numpy_helper.from_array(weights, "w")])
    folder.mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, folder / "model.onnx")
    (folder / "genai_config.json").write_text('{"model": {"type": "tiny"}}')
    (folder / "tokenizer.json").write_text("{}")
    return folder


def run(folder: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def measured(variant: str, argmax: list[int], answer: list[int], size: float = 100.0, speed: float = 10.0) -> Measured:
    return Measured(variant, Path(variant), size, 0.5, speed, "text", answer, list(range(len(argmax))), argmax)


# ---------------------------------------------------------------- fast

@pytest.mark.fast
def test_quantize_dynamic_writes_int8_weights_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    src = tiny_ort_folder(tmp_path / "tiny-ort-fp32")
    out = onnx_quantize.quantize_int8_dynamic(src)
    assert out == tmp_path / "cache" / "converted" / "tiny-ort-int8-dynamic"
    ops = onnx_quantize.op_counts(out)
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops and "MatMul" not in ops
    assert {"genai_config.json", "tokenizer.json", "quantize.log", convert.MARKER} <= {p.name for p in out.iterdir()}
    marker = convert.read_marker(out)
    assert marker["precision"] == "int8-dynamic" and marker["per_channel"] is False
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    exact, quantized = run(src, x), run(out, x)
    assert not np.array_equal(exact, quantized)  # really quantized...
    assert np.corrcoef(exact.ravel(), quantized.ravel())[0, 1] > 0.99  # ...and still the same function
    stamp = (out / "model.onnx").stat().st_mtime_ns
    start = time.perf_counter()
    assert onnx_quantize.quantize_int8_dynamic(src) == out and (out / "model.onnx").stat().st_mtime_ns == stamp
    assert time.perf_counter() - start < 1  # served from the cache
    per_channel = onnx_quantize.quantize_int8_dynamic(src, per_channel=True)
    assert per_channel.name == "tiny-ort-int8-dynamic-per-channel" and convert.read_marker(per_channel)["per_channel"]


@pytest.mark.fast
def test_quantize_dynamic_rejects_what_it_cannot_quantize(tmp_path):
    with pytest.raises(SlmLabError, match="not an ORT GenAI model folder") as err:
        onnx_quantize.quantize_int8_dynamic(tmp_path)
    assert "prepare(['fp32'])" in err.value.hint
    src = tiny_ort_folder(tmp_path / "tiny-ort-int4")
    (src / convert.MARKER).write_text(json.dumps({"precision": "int4"}))
    with pytest.raises(SlmLabError, match="already quantized \\(int4\\)"):
        onnx_quantize.quantize_int8_dynamic(src, out_dir=tmp_path / "out")


@pytest.mark.fast
def test_quantizer_failure_is_a_clear_error(tmp_path):
    src = tiny_ort_folder(tmp_path / "broken-ort-fp32")
    (src / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(SlmLabError, match="quantize_dynamic failed") as err:
        onnx_quantize.quantize_int8_dynamic(src, out_dir=tmp_path / "out")
    assert "force=True" in err.value.hint
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out.partial-*")) == []


@pytest.mark.fast
def test_variant_names_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    with pytest.raises(SlmLabError, match="Unknown variant 'int3'") as err:
        onnx_quantize.prepare(["fp32", "int3"])
    assert "int8-dynamic" in err.value.hint
    folders = {v: onnx_quantize.expected_folder(v).name for v in onnx_quantize.VARIANTS}
    assert folders == {"hf": "smollm2-135m-instruct-hf", "fp32": "smollm2-135m-instruct-ort-fp32",
                       "int8-dynamic": "smollm2-135m-instruct-ort-int8-dynamic",
                       "int8": "smollm2-135m-instruct-ort-int8", "int4": "smollm2-135m-instruct-ort-int4"}


@pytest.mark.fast
def test_child_process_errors_arrive_as_the_same_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    with pytest.raises(SlmLabError, match="Model file not found: .*missing.gguf") as err:
        onnx_quantize._build_in_child(["int4"], tmp_path / "missing.gguf")
    assert "resolve" in err.value.hint  # the child's SlmLabError, problem and hint, raised here
    out = capsys.readouterr().out
    assert "in a child process" in out and WORKER_ERROR_KEY not in out


@pytest.mark.fast
def test_compare_table_and_plot():
    ref = measured("fp32", [1, 2, 3, 4], [5, 6, 7, 8], size=400.0, speed=20.0)
    half = measured("int4", [1, 2, 9, 9], [5, 6, 0, 8], size=100.0, speed=50.0)
    assert agreement(ref, half) == 0.5 and same_prefix(ref.answer_ids, half.answer_ids) == 2
    table = compare([ref, half])
    row = table.loc["int4"]
    assert (row.size_vs_ref, row.speedup, row.next_token_agreement, row.same_greedy_tokens) == (0.25, 2.5, 0.5, "2/4")
    assert table.loc["fp32", "next_token_agreement"] == 1.0
    with pytest.raises(SlmLabError, match="No measured variant named 'fp16'"):
        compare([ref, half], reference="fp16")
    other = Measured("x", Path("x"), 1.0, 0.1, 1.0, "", [], [0, 1], [1, 2])
    with pytest.raises(SlmLabError, match="scored different token ids"):
        agreement(ref, other)
    import matplotlib

    matplotlib.use("Agg")
    fig = onnx_quantize.plot(table, title="tiny")
    assert len(fig.axes) == 3 and fig.axes[2].get_ylim()[1] > 1


@pytest.mark.fast
def test_measure_needs_a_timed_run(tmp_path):
    with pytest.raises(SlmLabError, match="repeats=0"):
        onnx_quantize.measure(tmp_path, "Hi", "some text", repeats=0)


# ---------------------------------------------------------------- slow: the real model

@pytest.mark.slow
def test_smollm2_variants_measured_side_by_side(capsys):
    pytest.importorskip("onnxruntime_genai")
    from slmlab.measure.evaluate import heldout_text

    folders = onnx_quantize.prepare(["fp32", "int8-dynamic", "int4"])  # built once in a child process, cached
    ops = {v: onnx_quantize.op_counts(f) for v, f in folders.items()}
    assert ops["fp32"]["MatMul"] > 100 and "GroupQueryAttention" in ops["fp32"]  # the builder's fused graph
    assert ops["int8-dynamic"]["MatMulInteger"] == ops["fp32"]["MatMul"] and "MatMul" not in ops["int8-dynamic"]
    assert ops["int4"]["MatMulNBits"] == ops["fp32"]["MatMul"]
    results = [onnx_quantize.measure(f, "Explain what a barometer measures.", heldout_text(), variant=v,
                                     max_tokens=16, score_tokens=128, repeats=1) for v, f in folders.items()]
    table = compare(results)
    with capsys.disabled():
        print("\n  [measured] ONNX variants of SmolLM2-135M:\n" + table.to_string())
    assert table.loc["int8-dynamic", "size_vs_ref"] < 0.5 and table.loc["int4", "size_vs_ref"] < 0.2
    assert table.loc["int8-dynamic", "next_token_agreement"] > 0.3 and table.loc["int4", "next_token_agreement"] > 0.4
    assert all(r.answer and r.decode_tok_s > 0 for r in results)


@pytest.mark.fast
def test_prepare_builds_only_what_is_missing_in_child_processes(tmp_path, monkeypatch):
    """The GGUF -> HF step gets its own child (torch's memory leaves with it); cached variants start no child."""
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    children, built = [], []
    monkeypatch.setattr(onnx_quantize, "_build_in_child", lambda variants, model: children.append(list(variants)))
    monkeypatch.setattr(onnx_quantize, "variant_folder", lambda v, model: built.append(v) or tmp_path / v)
    folders = onnx_quantize.prepare(["fp32", "int4"])
    assert children == [["hf"], ["fp32", "int4"]] and folders == {"fp32": tmp_path / "fp32", "int4": tmp_path / "int4"}
    for variant in ("hf", "fp32"):  # now pretend these two are cached
        folder = onnx_quantize.expected_folder(variant)
        folder.mkdir(parents=True)
        (folder / convert.MARKER).write_text("{}")
    children.clear()
    onnx_quantize.prepare(["fp32", "int4"])
    assert children == [["int4"]]
    children.clear()
    onnx_quantize.prepare(["hf", "fp32"])
    assert children == [] and built[-2:] == ["hf", "fp32"]
