"""The `ollama` backend (official client) against `slmlab serve ollama`: same answers as llama.cpp in-process."""

from __future__ import annotations

import pytest

from slmlab.backends.base import Generation, GenerationOptions
from slmlab.backends.ollama import OllamaBackend, ollama_options
from slmlab.errors import SlmLabError
from slmlab.process import free_port


@pytest.mark.fast
def test_options_map_to_ollama_names():
    opts = GenerationOptions(max_tokens=9, temperature=0.5, top_p=0.8, top_k=3, seed=4, stop=("\n",))
    assert ollama_options(opts) == {"num_predict": 9, "temperature": 0.5, "top_p": 0.8, "top_k": 3,
                                    "repeat_penalty": 1.0, "min_p": 0.0, "seed": 4, "stop": ["\n"]}
    assert "seed" not in ollama_options(GenerationOptions(seed=None))


@pytest.mark.fast
def test_unreachable_server_says_how_to_start_one():
    unreachable = r"Cannot reach an Ollama server at http://127\.0\.0\.1:\d+[\s\S]*slmlab serve"
    with pytest.raises(SlmLabError, match=unreachable):
        OllamaBackend("smollm2:135m", host=f"127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from slmlab.serve.ollama import ollama_server

    with ollama_server(models=("smollm2:135m",), models_dir=tmp_path_factory.mktemp("store")) as srv:
        yield srv


@pytest.fixture(scope="module")
def local():
    from slmlab.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend("smollm2-135m-instruct") as backend:
        yield backend


@pytest.mark.slow
def test_chat_generate_and_stream_match_llamacpp(server, local):
    with OllamaBackend("smollm2-135m-instruct", host=server.url) as llm:  # slmlab's name maps to smollm2:135m
        assert llm.model_name == "smollm2:135m" and llm.engine == "ollama" and llm.load_s > 0
        messages = [{"role": "user", "content": "Name three fruits."}]
        chat = llm.chat(messages, max_tokens=8)
        expected = local.chat(messages, max_tokens=8)
        assert isinstance(chat, Generation) and chat.text == expected.text
        assert (chat.prompt_tokens, chat.completion_tokens, chat.finish_reason) == (
            expected.prompt_tokens, expected.completion_tokens, expected.finish_reason)
        assert chat.timings.ttft_s > 0 and chat.timings.prompt_eval_s > 0 and chat.extra["server_eval_s"] > 0
        plain = llm.generate("The capital of France is", max_tokens=6)
        assert plain.text == local.generate("The capital of France is", max_tokens=6).text
        assert "".join(llm.stream(messages, max_tokens=8)) == chat.text and llm.last.text == chat.text
        stopped = llm.generate("1, 2, 3,", max_tokens=20, stop=[","])
        assert "," not in stopped.text and stopped.finish_reason == "stop"
        with pytest.raises(SlmLabError, match="no tokenize endpoint"):
            llm.tokenize("hello")
    with pytest.raises(SlmLabError, match="closed"):
        llm.chat("Hi")


@pytest.mark.slow
def test_errors_are_actionable(server):
    with pytest.raises(SlmLabError, match=r"has no model 'ghost:7b'[\s\S]*pull"):
        OllamaBackend("ghost:7b", host=server.url)
    with pytest.raises(SlmLabError, match="cannot generate text"):
        OllamaBackend("all-minilm", host=server.url, pull=True)  # pulled, but an embedding model
    with OllamaBackend("smollm2:135m", host=server.url) as llm:
        with pytest.raises(SlmLabError, match="max_tokens"):
            llm.chat("Hi", max_tokens=0)
