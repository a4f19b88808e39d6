"""slmlab.convert.quantize: llama.cpp's quantizer through llama-cpp-python, its log parsed, the F16 reference, the
cache."""

from __future__ import annotations

import argparse

import pytest

from slmlab.convert import quantize as q
from slmlab.errors import SlmLabError
from slmlab.models.resolver import resolve

# Lines as llama.cpp (src/llama-quant.cpp) logs them while quantizing SmolLM2 to Q4_K_M.
LOG = """\
llama_model_loader: - type  f32:   61 tensors
[   1/ 272]                   output_norm.weight - [   576,      1,      1,      1], type =    f32, size =    0.002 MiB
[   2/ 272]                    token_embd.weight - [   576,  49152,      1,      1], type =    f16, converting to q8_0 .. size =    54.00 MiB ->    28.69 MiB
warning: blk.0.attn_k.weight                  - ncols    576 not divisible by 256 (required for type    q4_K) -> falling back to    q5_0
[   3/ 272]                  blk.0.attn_k.weight - [   576,    192,      1,      1], type =    f16, converting to q5_0 .. size =     0.21 MiB ->     0.07 MiB
warning: blk.0.attn_v.weight                  - ncols    576 not divisible by 256 (required for type    q6_K) -> falling back to    q8_0
[   6/ 272]                  blk.0.attn_v.weight - [   576,    192,      1,      1], type =    f16, converting to q8_0 .. size =     0.21 MiB ->     0.11 MiB
[   7/ 272]                blk.0.ffn_down.weight - [  1536,    576,      1,      1], type =    f16, converting to q6_K .. size =     1.69 MiB ->     0.69 MiB
llama_model_quantize_impl: model size  =   256.63 MiB (16.00 BPW)
llama_model_quantize_impl: quant size  =   100.54 MiB (6.27 BPW)
llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required fallback quantization
"""  # noqa: E501  (llama.cpp's own lines, as it writes them)


@pytest.mark.fast
def test_types_are_canonical_and_unknown_ones_are_clear_errors():
    assert q.check_type(" q4_k_m ") == "Q4_K_M"
    assert set(q.QUANT_TYPES) <= set(q.SUPPORTED)
    with pytest.raises(SlmLabError, match="Use one of: Q8_0"):
        q.check_type("Q9_K")
    with pytest.raises(SlmLabError, match="No quantization types"):
        q.quantize_all("smollm2-135m-instruct", [])


@pytest.mark.fast
def test_the_log_becomes_a_tensor_table():
    table = q.parse_quantize_log(LOG)
    assert list(table["tensor"]) == ["output_norm.weight", "token_embd.weight", "blk.0.attn_k.weight",
                                     "blk.0.attn_v.weight", "blk.0.ffn_down.weight"]
    rows = table.set_index("tensor")
    columns = ["source", "requested", "used", "fallback"]
    assert rows.loc["output_norm.weight", columns].tolist() == ["F32", "F32", "F32", False]
    assert rows.loc["blk.0.attn_k.weight", ["requested", "used", "fallback"]].tolist() == ["Q4_K", "Q5_0", True]
    assert rows.loc["blk.0.attn_k.weight", "shape"] == (576, 192)
    assert rows.loc["blk.0.attn_v.weight", "reason"] == "576 values per row is not a multiple of 256"
    assert rows.loc["blk.0.ffn_down.weight", ["requested", "used", "fallback"]].tolist() == ["Q6_K", "Q6_K", False]


@pytest.mark.fast
def test_a_tensor_line_split_by_the_imatrix_notice_is_read():
    # llama-quantize --imatrix writes a notice inside the tensor's line when the matrix has no entry for it
    log = ("[   2/ 272]                    token_embd.weight - [   576,  49152,      1,      1], type =    f16, \n"
           "====== llama_model_quantize_impl: did not find weights for token_embd.weight\n"
           "converting to q8_0 .. load_imatrix: imatrix datasets=['calibration.txt']\n"
           "[   3/ 272]                  blk.0.attn_k.weight - [   576,    192,      1,      1], type =    f16, "
           "converting to q5_0 .. size =     0.21 MiB ->     0.07 MiB\n")
    table = q.parse_quantize_log(log)
    assert table[["tensor", "used"]].values.tolist() == [["token_embd.weight", "Q8_0"], ["blk.0.attn_k.weight", "Q5_0"]]


@pytest.mark.fast
def test_fallback_summary_and_bits_from_the_log(tmp_path):
    result = q.QuantizedModel("Q4_K_M", tmp_path / "x.gguf", tmp_path / "src.gguf", 0.0, True, LOG)
    summary = q.fallback_summary(result)
    assert summary[["requested", "used", "tensors"]].values.tolist() == [["Q4_K", "Q5_0", 1], ["Q6_K", "Q8_0", 1]]
    assert result.llamacpp_bpw() == 6.27
    assert result.used_types() == {"F32": 1, "Q8_0": 2, "Q5_0": 1, "Q6_K": 1}
    with pytest.raises(SlmLabError, match="no per-tensor lines"):
        q.parse_quantize_log("llama_model_loader: nothing here\n")


@pytest.mark.fast
def test_bad_sources_are_clear_errors(tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(SlmLabError, match="not a usable GGUF file"):
        q.quantize(not_gguf, "Q8_0", out_dir=tmp_path)
    with pytest.raises(SlmLabError, match="not found"):
        q.quantize(str(tmp_path / "missing.gguf"), "Q8_0", out_dir=tmp_path)


@pytest.mark.fast
def test_cli_rejects_unknown_types_as_a_usage_error(capsys):
    from slmlab.cli.quantize import register

    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["quantize", "--types", "q8_0,Q2_K"]).types == ["Q8_0", "Q2_K"]
    with pytest.raises(SystemExit):
        parser.parse_args(["quantize", "--types", "Q9"])
    assert "not a quantization type" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real quantizations (~15 s)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """SmolLM2 (Q4_1) -> F16 reference -> Q8_0 and Q4_K_M, in a fresh folder."""
    out = tmp_path_factory.mktemp("quantized")
    return out, q.quantize_all("smollm2-135m-instruct", ["Q8_0", "Q4_K_M"], out_dir=out, show_progress=False)


@pytest.mark.slow
def test_reference_f16_holds_the_dequantized_weights(made):
    import numpy as np
    from gguf import GGUFReader, LlamaFileType
    from gguf.quants import dequantize

    out, _ = made
    source = resolve("smollm2-135m-instruct")
    reference = q.reference_f16(source, out_dir=out)  # cached by the fixture's quantize_all
    src_reader, ref_reader = GGUFReader(source.path), GGUFReader(reference.path)
    assert int(ref_reader.get_field("general.file_type").contents()) == LlamaFileType.MOSTLY_F16
    template = "tokenizer.chat_template"
    assert ref_reader.get_field(template).contents() == src_reader.get_field(template).contents()
    assert [t.name for t in ref_reader.tensors] == [t.name for t in src_reader.tensors]
    assert {t.tensor_type.name for t in ref_reader.tensors} == {"F16", "F32"}
    assert sum(int(t.n_elements) for t in ref_reader.tensors) == sum(int(t.n_elements) for t in src_reader.tensors)
    for src, ref in zip(src_reader.tensors, ref_reader.tensors, strict=True):
        if src.name in ("blk.3.attn_q.weight", "output_norm.weight"):
            expected = dequantize(src.data, src.tensor_type).astype(ref.data.dtype)
            assert np.array_equal(np.asarray(ref.data).reshape(expected.shape), expected)
    assert not list(out.glob("*.partial"))


@pytest.mark.slow
def test_fallbacks_are_exactly_the_tensors_k_quants_cannot_hold(made):
    _, results = made
    assert results["Q8_0"].fallbacks().empty  # Q8_0 blocks are 32 values: 576 = 18 x 32
    table = results["Q4_K_M"].tensors()
    k_quant = table["requested"].str.endswith("_K")
    rows_256 = table["shape"].map(lambda s: s[0] % 256 == 0)
    assert (table["fallback"] == (k_quant & ~rows_256)).all()
    assert table["fallback"].sum() > 100 and set(table.loc[table["fallback"], "used"]) <= {"Q5_0", "Q8_0"}
    assert (table.loc[k_quant & rows_256, "used"].str.endswith("_K")).all()  # ffn_down: 1536 = 6 x 256


@pytest.mark.slow
def test_the_log_agrees_with_the_file(made):
    _, results = made
    result = results["Q4_K_M"]
    stored = q.gguf_tensor_types(result.path).set_index("tensor")["type"]
    logged = result.tensors().set_index("tensor")["used"]
    assert logged.sort_index().equals(stored.sort_index())
    assert result.resolved.inspect().file_type == "Q4_K_M"


@pytest.mark.slow
def test_outputs_are_cached_and_load_in_llama_cpp(made):
    from slmlab.backends.llamacpp import LlamaCppBackend

    out, results = made
    again = q.quantize("smollm2-135m-instruct", "Q4_K_M", out_dir=out, show_progress=False)
    assert again.cached and again.seconds == 0 and again.path == results["Q4_K_M"].path
    assert again.tensors().equals(results["Q4_K_M"].tensors())
    assert not results["Q4_K_M"].cached and results["Q4_K_M"].seconds > 0
    assert results["Q8_0"].size_bytes > results["Q4_K_M"].size_bytes > 0.5 * results["Q8_0"].size_bytes
    with LlamaCppBackend(results["Q8_0"].resolved, n_ctx=256) as llm:
        assert llm.generate("The capital of France is", max_tokens=4).text.strip()


@pytest.mark.slow
def test_fewer_bits_cost_quality(made):
    from slmlab.measure.evaluate import perplexity

    out, results = made
    q2 = q.quantize("smollm2-135m-instruct", "Q2_K", out_dir=out, show_progress=False)
    ppl = {name: perplexity(model, max_tokens=200, n_ctx=256).value
           for name, model in [("source", "smollm2-135m-instruct"), ("Q8_0", results["Q8_0"]), ("Q2_K", q2)]}
    assert ppl["Q8_0"] == pytest.approx(ppl["source"], rel=0.02)  # Q8_0 of the F16 copy of Q4_1 ~ the Q4_1 itself
    assert ppl["Q2_K"] > 1.1 * ppl["Q8_0"]


@pytest.mark.fast
def test_the_ternary_types_are_accepted_and_llama_cpp_knows_them():
    """TQ1_0/TQ2_0 (notebook 1.6): llama-quantize makes them from any F16 model; the binding has their file types."""
    import llama_cpp

    assert q.check_type("tq1_0") == "TQ1_0" and q.check_type("TQ2_0") == "TQ2_0"
    assert q._ftype("TQ1_0") == llama_cpp.LLAMA_FTYPE_MOSTLY_TQ1_0 != q._ftype("TQ2_0")
