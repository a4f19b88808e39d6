"""slmlab.backends and slmlab.measure.evaluate: one interface over llama.cpp and transformers, and their parity.

Parity as measured on SmolLM2-135M-Instruct Q4_1: llama.cpp (quantized weights, 8-bit activations in its
matmuls) and transformers (the same weights dequantized to fp32) agree on the next token at ~96 % of the
held-out positions, but their free-running greedy answers are NOT identical (the first tokens of
"What is the capital of France?" are a near-tie: 24.74 vs 24.65). So greedy parity is asserted as
teacher-forced agreement on llama.cpp's greedy answer, not as equal strings.
"""

from __future__ import annotations

import sys

import pytest

from slmlab.backends import Backend, Generation, GenerationOptions, Scorer, Timings, open_backend
from slmlab.backends.base import as_messages, cut_at_stop, hf_kwargs, llamacpp_kwargs, prompt_too_long
from slmlab.errors import SlmLabError
from slmlab.measure.evaluate import HELDOUT_DIR, Agreement, heldout_text, next_token_agreement

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
PARITY_PROMPT = [{"role": "user", "content": "Explain what a barometer measures."}]


def show(capsys: pytest.CaptureFixture, line: str) -> None:
    """Print a measured figure even under pytest -q."""
    with capsys.disabled():
        print(f"\n  [measured] {line}")


# ---------------------------------------------------------------- fast: no model loaded

@pytest.mark.fast
@pytest.mark.parametrize("bad, name", [
    ({"max_tokens": -5}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 2.5}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"), ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"), ({"seed": -1}, "seed"), ({"stop": ["ok", ""]}, "stop"),
])
def test_bad_generation_options_are_clear_errors(bad, name):
    with pytest.raises(SlmLabError) as err:
        GenerationOptions.from_kwargs(**bad)
    assert f"Invalid generation option {name}=" in err.value.problem and err.value.hint.startswith("Use ")


@pytest.mark.fast
def test_options_from_other_libraries_get_a_suggestion():
    with pytest.raises(SlmLabError, match="'max_new_tokens' is not a generation option") as err:
        GenerationOptions.from_kwargs(max_new_tokens=10)
    assert "Did you mean 'max_tokens'?" in err.value.hint
    with pytest.raises(SlmLabError, match="Did you mean 'top_p'?"):
        GenerationOptions.from_kwargs(topp=0.9)


@pytest.mark.fast
def test_options_are_named_once_and_mapped_per_engine():
    greedy = GenerationOptions(max_tokens=7, stop="\n")
    assert greedy.greedy and greedy.stop == ("\n",)
    assert llamacpp_kwargs(greedy) | {"seed": 0} == {"max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "top_k": 0,
                                                     "min_p": 0.0, "repeat_penalty": 1.0, "seed": 0, "stop": ["\n"]}
    assert hf_kwargs(greedy) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                                 "max_new_tokens": 7, "stop_strings": ["\n"]}
    sampled = GenerationOptions(temperature=0.7, top_p=0.9, top_k=40, seed=None)
    assert hf_kwargs(sampled) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                                  "max_new_tokens": 128}
    assert isinstance(llamacpp_kwargs(sampled)["seed"], int)  # None = a fresh seed per call


@pytest.mark.fast
def test_unknown_engine_lists_the_engines():
    with pytest.raises(SlmLabError, match="Unknown engine 'vllm'") as err:
        open_backend("vllm")
    assert "'llamacpp'" in err.value.hint and "'hf'" in err.value.hint
    with pytest.raises(SlmLabError, match="Did you mean 'hf'"):
        open_backend("hff")


@pytest.mark.fast
def test_gpu_requested_but_absent():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from slmlab.backends.hf import HFBackend

    with pytest.raises(SlmLabError, match="GPU requested but absent") as err:
        HFBackend(device="cuda")
    assert "device='cpu'" in err.value.hint


@pytest.mark.fast
def test_missing_transformers_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(SlmLabError, match="needs torch and transformers") as err:
        open_backend("hf")
    assert "pip install -e '.[hf]'" in err.value.hint


@pytest.mark.fast
def test_stop_strings_are_cut_across_pieces():
    assert "".join(cut_at_stop(iter(["Hel", "lo\nWor", "ld"]), ["\n"])) == "Hello"
    assert list(cut_at_stop(iter(["a", "b", "c", "d"]), ["cx"])) == ["a", "b", "cd"]  # "c" held until ruled out
    found: list[bool] = []
    assert "".join(cut_at_stop(iter(["1. Red", "</", "end>"]), ["</end>"], found)) == "1. Red" and found
    assert "".join(cut_at_stop(iter(["no stop"]), [])) == "no stop"


@pytest.mark.fast
def test_messages_are_checked():
    assert as_messages("Hi") == [{"role": "user", "content": "Hi"}]
    with pytest.raises(SlmLabError, match="Message 0 is not a chat message"):
        as_messages([{"role": "robot", "content": "Hi"}])
    with pytest.raises(SlmLabError, match="No messages"):
        as_messages([])


@pytest.mark.fast
def test_generation_figures():
    gen = Generation("hi", 3, 11, "length", Timings(0.2, 0.05, 0.5, 0.06))
    assert gen.decode_tok_s == 20.0 and gen.summary()["decode_tok_s"] == 20.0
    assert Generation("", 3, 1, "stop", Timings(0.2, 0.05, 0.0, 0.06)).decode_tok_s is None


@pytest.mark.fast
def test_prompt_too_long_suggests_a_context_that_fits():
    err = prompt_too_long(3000, 2048, 8192, "n_ctx")
    assert "prompt has 3000 tokens, the context is 2048" in err.problem and "n_ctx=4096" in err.hint
    assert "at most 8192" in prompt_too_long(9000, 2048, 8192, "n_ctx").hint


class _Fake:
    """A scorer stand-in with a chosen tokenizer and argmax, to test the agreement arithmetic."""

    def __init__(self, engine, ids, argmax):
        self.engine, self.ids, self.argmax = engine, ids, argmax

    def tokenize(self, text):
        return list(self.ids)

    def next_token_argmax(self, token_ids):
        return list(self.argmax)


@pytest.mark.fast
def test_agreement_arithmetic_and_tokenizer_mismatch():
    result = next_token_agreement(_Fake("x", [1, 2, 3, 4], [2, 3, 9, 5]), _Fake("y", [1, 2, 3, 4], [2, 7, 9, 5]), "t")
    assert (result.agree, result.positions, result.rate, result.first_disagreement) == (3, 4, 0.75, 1)
    assert result.accuracy(0) == 2 / 3 and result.accuracy(1) == 1 / 3 and "3/4 positions (75.0%)" in str(result)
    with pytest.raises(SlmLabError, match="tokenize the text differently from token 2"):
        next_token_agreement(_Fake("x", [1, 2, 3], [0] * 3), _Fake("y", [1, 2, 5], [0] * 3), "t")
    assert next_token_agreement(_Fake("x", [1, 2, 3], [0] * 3), _Fake("y", [1, 2, 5], [0] * 3), "t",
                                strict=False).rate == 1.0
    with pytest.raises(SlmLabError, match="cannot score tokens"):
        next_token_agreement(_Fake("x", [1, 2], [0, 0]), object(), "t")


@pytest.mark.fast
def test_heldout_text_ships_with_its_licence():
    text = heldout_text()
    assert 600 <= len(text.split()) <= 900
    assert "CC0" in (HELDOUT_DIR / "README.md").read_text()
    with pytest.raises(SlmLabError, match="Available: weather_forecasting"):
        heldout_text("nope")


# ---------------------------------------------------------------- llama.cpp (loads in ~0.3 s)

@pytest.fixture(scope="module")
def llama():
    with open_backend("llamacpp") as backend:
        yield backend


@pytest.mark.slow
def test_llamacpp_chat_generate_stream_tokenize(llama):
    assert isinstance(llama, Backend) and isinstance(llama, Scorer) and llama.load_s > 0
    gen = llama.chat(QUESTION, max_tokens=24)
    assert "4" in gen.text and gen.finish_reason == "stop" and gen.engine == "llamacpp"
    assert gen.prompt_tokens == 38 and 0 < gen.completion_tokens < 24
    assert gen.timings.ttft_s > 0 and gen.timings.prompt_eval_s > 0 and gen.decode_tok_s > 0
    cut = llama.generate("The history of weather forecasting", max_tokens=4)
    assert (cut.completion_tokens, cut.finish_reason, cut.prompt_tokens) == (4, "length", 5) and cut.text
    pieces = list(llama.stream("The barometer", max_tokens=6))  # a string is completed, not chatted
    assert len(pieces) > 1 and "".join(pieces) == llama.last.text and llama.last.completion_tokens == 6
    chat_pieces = list(llama.stream(QUESTION, max_tokens=24))
    assert "".join(chat_pieces) == gen.text
    assert llama.tokenize("Hello world") == [19556, 905]
    assert llama.tokenize("<|im_start|>") == [1]  # special tokens are parsed


@pytest.mark.slow
def test_llamacpp_counts_match_llama_cpp_python_usage(llama):
    gen = llama.chat("Say hello.", max_tokens=64)
    llama.llm.reset()
    raw = llama.llm.create_chat_completion([{"role": "user", "content": "Say hello."}], temperature=0.0, max_tokens=64)
    assert raw["choices"][0]["message"]["content"] == gen.text
    usage = raw["usage"]
    assert (gen.prompt_tokens, gen.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])


@pytest.mark.slow
def test_llamacpp_greedy_and_seeded_sampling_are_deterministic(llama):
    first = llama.chat(PARITY_PROMPT, max_tokens=24).text
    llama.generate("Something else entirely", max_tokens=3)  # the KV cache is reset between calls
    assert llama.chat(PARITY_PROMPT, max_tokens=24).text == first
    sampled = [llama.chat("Write a poem.", temperature=0.9, seed=s, max_tokens=16).text for s in (7, 7, 8)]
    assert sampled[0] == sampled[1] != sampled[2]


@pytest.mark.slow
def test_reusing_the_kv_cache_prefix_can_flip_a_greedy_answer_so_the_backend_resets(llama, capsys):
    """Why a server's greedy answer may differ from the in-process one: llama-cpp-python (and so its server)
    keeps the KV cache of the previous request and, for a prompt it has seen, evaluates only its last token again,
    a batch of 1 instead of the whole prompt. The float rounding differs, and on a near-tie the greedy token flips."""
    prompt = [{"role": "user", "content": "Give three tips for staying focused while studying."}]
    fresh = llama.chat(prompt, max_tokens=48).text  # LlamaCppBackend resets the KV cache before every call
    assert llama.chat(prompt, max_tokens=48).text == fresh  # so it is reproducible
    reused = llama.llm.create_chat_completion(prompt, max_tokens=48, temperature=0.0, top_k=40, min_p=0.0,
                                              repeat_penalty=1.0)["choices"][0]["message"]["content"]
    assert reused[:20] == fresh[:20], (fresh, reused)
    # Whether a near-tie flips depends on the CPU's SIMD kernels, so it is reported, not asserted (it flips here:
    # "... The ideal time to study" fresh, "... The most important thing" with the prefix reused).
    show(capsys, f"greedy answer with the KV prefix reused {'DIFFERS from' if reused != fresh else 'equals'} "
                 "the fresh one")


@pytest.mark.slow
def test_llamacpp_stop_strings(llama):
    gen = llama.chat("List three colours, one per line.", max_tokens=40, stop=["\n"])
    assert gen.text and "\n" not in gen.text and gen.finish_reason == "stop"


@pytest.mark.slow
def test_llamacpp_prompt_longer_than_the_context():
    long_text = "The barometer fell all night. " * 60  # 421 tokens
    with open_backend("llamacpp", n_ctx=200) as small:
        assert small.n_ctx == 256  # rounded up to llama.cpp's multiple of 256
        for call in (lambda: small.chat(long_text), lambda: small.generate(long_text), lambda: small.stream(long_text)):
            with pytest.raises(SlmLabError, match=r"prompt has \d+ tokens, the context is 256") as err:
                call()  # stream() raises at the call, before the first piece
            assert "load with n_ctx=1024" in err.value.hint
        small._formatter = None  # as for a base model (Gemma 3 270M): no chat template
        with pytest.raises(SlmLabError, match="no chat template"):
            small.chat("Hi")
    with pytest.raises(SlmLabError, match="closed"):
        small.generate("Hi")


# ---------------------------------------------------------------- transformers (loads in ~20 s)

@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    with open_backend("hf", device="cpu") as backend:
        yield backend


@pytest.mark.slow
def test_hf_chat_generate_stream_tokenize(hf, llama):
    assert isinstance(hf, Backend) and isinstance(hf, Scorer) and hf.engine == "hf"
    gen = hf.chat(QUESTION, max_tokens=16)
    assert "4" in gen.text and gen.finish_reason == "stop" and gen.prompt_tokens == 38
    assert 0 < gen.completion_tokens < 16 and gen.decode_tok_s > 0 and gen.timings.ttft_s > 0
    cut = hf.generate("The history of weather forecasting", max_tokens=4)
    assert (cut.completion_tokens, cut.finish_reason, cut.prompt_tokens) == (4, "length", 5)
    pieces = list(hf.stream("The history of weather forecasting", max_tokens=6))
    assert "".join(pieces) == hf.last.text and hf.last.completion_tokens == 6
    assert hf.chat("List three colours, one per line.", max_tokens=24, stop=["\n"]).text == \
        llama.chat("List three colours, one per line.", max_tokens=24, stop=["\n"]).text
    text = heldout_text()
    assert hf.tokenize(text) == llama.tokenize(text) and hf.tokenize("<|im_start|>") == [1]


@pytest.mark.slow
def test_hf_greedy_is_deterministic(hf):
    assert hf.generate("The barometer", max_tokens=8).text == hf.generate("The barometer", max_tokens=8).text


@pytest.mark.slow
def test_greedy_answers_llamacpp_vs_hf(hf, llama, capsys):
    ours = llama.chat(PARITY_PROMPT, max_tokens=48)
    theirs = hf.chat(PARITY_PROMPT, max_tokens=48)
    # Free-running greedy answers diverge after a near-tie; check instead how often transformers, fed
    # llama.cpp's answer token by token, would have picked the same next token.
    prompt = hf.tokenizer.apply_chat_template(PARITY_PROMPT, add_generation_prompt=True, tokenize=False)
    start = len(llama.tokenize(prompt))
    result = next_token_agreement(llama, hf, prompt + ours.text)
    answer = result.tokens[start:]
    assert len(answer) == ours.completion_tokens
    same = sum(h == t for h, t in zip(result.b_argmax[start - 1:], answer, strict=False)) / len(answer)
    show(capsys, f"greedy answers identical: {ours.text == theirs.text}; transformers picks llama.cpp's "
                 f"greedy token at {same:.1%} of {len(answer)} answer positions")
    assert same >= 0.85
    assert "pressure" in ours.text.lower() and "pressure" in theirs.text.lower()


@pytest.mark.slow
def test_next_token_agreement_on_heldout_text(hf, llama, capsys):
    result = next_token_agreement(llama, hf, heldout_text())
    show(capsys, f"held-out text: {result}")
    assert isinstance(result, Agreement) and 600 <= result.positions <= 1000
    assert result.rate >= 0.95
    assert abs(result.accuracy(0) - result.accuracy(1)) < 0.03
