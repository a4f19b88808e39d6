"""llama.cpp's own tools as part 1 teaches them, run for real (slow; skipped, saying so, without the build):
`llama-quantize`'s options and what they cost measured by `llama-perplexity`, `llama-perplexity` reproduced by the
Python binding with its method, `llama-bench`'s JSON read, and the GGUF -> Hugging Face -> GGUF round trip through
`convert_hf_to_gguf.py` (same tensors, same tokens, same greedy answer). The byte-identical CLI/API quantization is
tests/integration/test_llamacpp_programs.py's."""

from __future__ import annotations

import pytest

from slmlab.backends import open_backend
from slmlab.convert import llamacpp_cli
from slmlab.convert.hf_to_gguf import compare_gguf, convert_hf_to_gguf
from slmlab.convert.onnx_quantize import prepare
from slmlab.convert.quantize import reference_f16
from slmlab.errors import SlmLabError
from slmlab.measure import evaluate
from slmlab.measure.llama_bench import bench_table
from slmlab.measure.llama_perplexity import run_llama_perplexity
from slmlab.models import resolve
from slmlab.setup.llamacpp import SETUP_COMMAND, install_dir, llamacpp_available, read_marker

MODEL = "smollm2-135m-instruct"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llamacpp_available(),
                                 reason=f"llama.cpp is not built at {install_dir()} (run `{SETUP_COMMAND}`)")]


@pytest.fixture(scope="module")
def f16():
    return reference_f16(MODEL, show_progress=False).path


def test_the_options_of_llama_quantize_and_what_they_cost(f16, tmp_path):
    calibration, evaluation = llamacpp_cli.split_text(evaluate.heldout_text(), tmp_path)
    mix = llamacpp_cli.quantize_file(f16, tmp_path / "Q4_K_M.gguf", "Q4_K_M")
    pure = llamacpp_cli.quantize_file(f16, tmp_path / "Q4_K_M-pure.gguf", "Q4_K_M", pure=True)
    assert {"Q6_K", "Q8_0"} <= set(mix.used_types()) and not {"Q6_K", "Q8_0"} & set(pure.used_types())
    assert pure.size_bytes < mix.size_bytes

    plain = llamacpp_cli.quantize_file(f16, tmp_path / "Q2_K.gguf", "Q2_K")
    matrix = llamacpp_cli.make_imatrix(f16, calibration, tmp_path / "imatrix.gguf", n_ctx=128, chunks=2)
    weighted = llamacpp_cli.quantize_file(f16, tmp_path / "Q2_K-imatrix.gguf", "Q2_K", imatrix=matrix)
    assert weighted.used_types() == plain.used_types()  # the same types, rounded with other weights
    with pytest.raises(SlmLabError) as refused:
        llamacpp_cli.quantize_file(plain.path, tmp_path / "Q8_0-from-Q2_K.gguf", "Q8_0")
    assert "allow_requantize=True" in refused.value.hint and "Traceback" not in str(refused.value)
    requantized = llamacpp_cli.quantize_file(plain.path, tmp_path / "Q8_0-from-Q2_K.gguf", "Q8_0",
                                             allow_requantize=True)

    ppl = {label: run_llama_perplexity(path, evaluation, n_ctx=128).value
           for label, path in (("original", resolve(MODEL).path), ("Q2_K", plain.path),
                               ("Q2_K imatrix", weighted.path), ("Q8_0 from Q2_K", requantized.path))}
    assert ppl["Q2_K imatrix"] < ppl["Q2_K"], ppl  # calibrated on the other half of the text
    assert ppl["Q8_0 from Q2_K"] == pytest.approx(ppl["Q2_K"], rel=0.03), ppl  # Q8_0's size, Q2_K's quality
    assert ppl["Q8_0 from Q2_K"] > ppl["original"] * 1.2, ppl


def test_llama_perplexity_is_the_bindings_number_with_its_method():
    text = evaluate.heldout_file()
    cli = run_llama_perplexity(resolve(MODEL).path, text, n_ctx=128, chunks=2)
    same = evaluate.chunked_perplexity(MODEL, text.read_text(encoding="utf-8"), n_ctx=128, chunks=2)
    assert (cli.chunks, cli.tokens) == (2, same.tokens) == (2, 2 * 63)
    assert same.value == pytest.approx(cli.value, rel=1e-4) and len(cli.running) == 2
    sliding = evaluate.perplexity(MODEL, text.read_text(encoding="utf-8"), n_ctx=128, max_tokens=2 * 128)
    assert sliding.tokens == 2 * 128 - 1 and abs(sliding.value - cli.value) / cli.value > 1e-3  # another method


def test_a_text_too_short_for_llama_perplexity_says_how_long_it_must_be(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("A short text.")
    with pytest.raises(SlmLabError) as err:
        run_llama_perplexity(resolve(MODEL).path, short, n_ctx=128)
    assert "needs at least 256 tokens" in err.value.hint and "tokenizes to only" in err.value.problem


def test_llama_bench_json_gives_prefill_and_decode_speeds():
    table = bench_table({"Q4_1": resolve(MODEL)}, prompt_tokens=16, gen_tokens=4, repetitions=1, threads=1)
    row = table.iloc[0]
    assert (row["prefill_tokens"], row["decode_tokens"], row["threads"]) == (16, 4, 1)
    assert row["prefill_tok_s"] > 0 and row["decode_tok_s"] > 0
    assert row["build"] == f"b{read_marker()['llama_cpp_build']}"


def test_gguf_to_hugging_face_and_back_keeps_tensors_tokens_and_the_greedy_answer(f16, tmp_path):
    hf_dir = prepare(["hf"], MODEL)["hf"]  # built by `slmlab setup onnx`; here only if missing
    back = convert_hf_to_gguf(hf_dir, tmp_path / "roundtrip.F16.gguf", "f16")
    same = compare_gguf(back, f16)
    assert same.same_tensors and len(same.identical) == 272, same
    assert "general.license" in same.keys_only_second  # the folder has no model card to read it from
    text, question = evaluate.heldout_text(), "What is the capital of France? Answer in one sentence."
    with open_backend("llamacpp", resolve(MODEL)) as original, open_backend("llamacpp", back) as converted:
        assert original.tokenize(text) == converted.tokenize(text)
        assert original.chat(question, max_tokens=16).text == converted.chat(question, max_tokens=16).text
