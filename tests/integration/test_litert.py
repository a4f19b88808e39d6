"""The real .tflite file `slmlab setup litert` converted, run with LiteRT's interpreter: its signatures, prefill's
padding (the same answer as decoding the prompt token by token), the answer, and a prompt too long for its cache."""

from __future__ import annotations

import pytest

from slmlab.errors import SlmLabError

pytestmark = pytest.mark.slow
pytest.importorskip("ai_edge_litert", reason="pip install -e '.[litert]'")


@pytest.fixture(scope="module")
def tflite():
    from slmlab.convert import litert_cli

    run = litert_cli.read_run("smollm2-135m-instruct")
    if run is None or not run.ok:
        pytest.skip("no LiteRT conversion in the cache: run `slmlab setup litert`")
    return run


@pytest.fixture(scope="module")
def hf_dir():
    from slmlab.convert import onnx_quantize

    return onnx_quantize.prepare(["hf"], "smollm2-135m-instruct")["hf"]


def test_signatures_cache_and_an_answer(tflite, hf_dir):
    from slmlab.backends.litert import LiteRtDecoder
    from slmlab.measure import formats

    model = LiteRtDecoder(tflite.output, threads=2)
    assert set(model.signatures) == {"prefill_32", "decode"} and model.prefill_width == 32 and model.context == 1024
    assert len(model.cache_spec) == 60  # keys and values of SmolLM2's 30 layers
    assert model.cache_bytes() == 2 * 30 * 1024 * 3 * 64 * 4  # 3 KV heads of 64, float32, fixed at 1024 positions
    prompt = formats.prompt_ids(hf_dir, "What is the capital of France?")
    assert len(prompt) > 33  # prefill_prompt needs two calls, the second one padded
    answer = list(model.generate(prompt, 8))
    assert "Paris" in formats.decode(hf_dir, answer)

    # the same greedy tokens when the prompt goes through `decode` one token at a time (no prefill, no padding)
    cache, by_decode = model.empty_cache(), []
    for position, token in enumerate(prompt[:-1]):
        cache = model.decode(token, position, cache)[1]
    token, position = prompt[-1], len(prompt) - 1
    for _ in range(8):
        logits, cache = model.decode(token, position, cache)
        token, position = int(logits.argmax()), position + 1
        by_decode.append(token)
    assert answer == by_decode

    with pytest.raises(SlmLabError, match="do not fit in .*KV cache of 1024"):
        list(model.generate(prompt * 30, 8))


def test_a_folder_without_a_model_says_what_to_run(tmp_path):
    from slmlab.backends.litert import LiteRtDecoder

    with pytest.raises(SlmLabError) as empty:
        LiteRtDecoder(tmp_path)
    assert "no .tflite file" in empty.value.problem and "slmlab setup litert" in empty.value.hint
