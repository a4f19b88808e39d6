"""The other languages against the course's real servers (notebook 2.7's programs): Node.js's official npm clients
and SSE service, C# on Mono (client, HttpListener service, retry against 503s), C++ on llama.cpp's C API, and the
Flask endpoint under gunicorn. Each part is skipped, saying why, where its toolchain is missing."""

from __future__ import annotations

import secrets

import httpx
import openai
import pytest

from slmlab.languages import CompileError, ProgramFailed, last_json, new_workdir, write_source
from slmlab.languages.magic import ready
from slmlab.measure.loadtest import load_test
from slmlab.process import free_port
from slmlab.serve.ollama import ensure_ollama

pytestmark = pytest.mark.slow
MODEL, OLLAMA_MODEL, EMBED_MODEL = "smollm2-135m-instruct", "smollm2:135m", "all-minilm"


def needs(language: str) -> pytest.MarkDecorator:
    usable, message = ready(language)
    return pytest.mark.skipif(not usable, reason=message)


@pytest.fixture(scope="module")
def ollama_url(tmp_path_factory):
    with ensure_ollama(models=[OLLAMA_MODEL, EMBED_MODEL], models_dir=tmp_path_factory.mktemp("store")) as found:
        yield found.url


@pytest.fixture(scope="module")
def node_work(tmp_path_factory):
    if not ready("node")[0]:
        pytest.skip(ready("node")[1])
    from slmlab.languages.node import npm_ci

    work = new_workdir("node", parent=tmp_path_factory.mktemp("node"))
    npm_ci(work, echo=False)
    return work


@needs("node")
def test_node_ollama_client_chats_streams_embeds_and_reports_errors(node_work, ollama_url):
    from slmlab.languages.node import run_node

    env = {"OLLAMA_HOST": ollama_url, "MODEL": OLLAMA_MODEL, "EMBED_MODEL": EMBED_MODEL, "MAX_TOKENS": "12"}
    result = last_json(run_node(node_work, "ollama-client.mjs", env=env, echo=False).stdout)
    assert result["answer"] and "".join(result["pieces"]) == result["answer"] and len(result["pieces"]) > 1
    assert result["dims"] == 384 and result["similar"] > result["unrelated"]
    assert result["error"]["status"] == 404 and "not found" in result["error"]["message"]
    with pytest.raises(ProgramFailed, match="refused the connection. Is it running"):
        run_node(node_work, "ollama-client.mjs", env={**env, "OLLAMA_HOST": f"http://127.0.0.1:{free_port()}"},
                 echo=False)


@needs("node")
def test_node_openai_client_against_the_gateway_with_its_key(node_work, ollama_url):
    from slmlab.languages.node import run_node
    from slmlab.serve.gateway.server import app_server

    key = secrets.token_urlsafe(24)
    with app_server(model=MODEL, n_ctx=1024, max_tokens=64, api_keys=[key]) as gateway:
        result = last_json(run_node(node_work, "openai-client.mjs", echo=False, env={
            "OPENAI_BASE_URL": f"{gateway.url}/v1", "OPENAI_API_KEY": key, "EMBED_BASE_URL": f"{ollama_url}/v1",
            "EMBED_MODEL": EMBED_MODEL, "MAX_TOKENS": "12"}).stdout)
    assert result["models"] == [MODEL] and "".join(result["pieces"]) == result["answer"]
    assert result["usage"]["completion_tokens"] == len(result["pieces"]) and result["dims"] == 384
    assert result["errors"]["wrong API key"]["status"] == 401
    assert result["errors"]["max_tokens over the cap"]["name"] == "BadRequestError"


@needs("node")
def test_node_sse_service_streams_and_survives_a_load_test(node_work, ollama_url):
    from slmlab.languages.node import node_service

    with node_service(node_work, ollama_url, OLLAMA_MODEL) as service:
        client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0,
                               http_client=httpx.Client(trust_env=False, timeout=120))
        whole = client.chat.completions.create(model=OLLAMA_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=8)
        chunks = list(client.chat.completions.create(model=OLLAMA_MODEL, max_tokens=8, stream=True,
                                                     messages=[{"role": "user", "content": "Hi"}]))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content and chunks[-1].choices[0].finish_reason == "length"
        bad = httpx.post(f"{service.url}/v1/chat/completions", json={"messages": []}, trust_env=False)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
        result = load_test(service.url, concurrency=2, num_requests=4, max_tokens=8, show_progress=False)
        assert result.summary()["successful_requests"] == 4
    assert not service.running


@needs("csharp")
def test_csharp_client_service_compile_error_and_retry(ollama_url, tmp_path):
    from slmlab.languages.csharp import compile_csharp, csharp_service, run_mono
    from slmlab.languages.flaky import flaky_server, reset, seen

    work = new_workdir("csharp", parent=tmp_path)
    client = compile_csharp(work, ["Client.cs", "Ollama.cs"], "client.exe", echo=False)
    result = last_json(run_mono(work, client, [ollama_url, OLLAMA_MODEL, "12", "Hi"], echo=False).stdout)
    assert "".join(result["pieces"]) == result["answer"] and result["error_status"] == 404
    service = compile_csharp(work, ["Service.cs", "Ollama.cs"], "service.exe", echo=False)
    with csharp_service(work, service, ollama_url, OLLAMA_MODEL) as running:
        with httpx.stream("POST", f"{running.url}/v1/chat/completions", trust_env=False, timeout=120,
                          json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12,
                                "stream": True}) as answer:
            events = [line for line in answer.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 3
    write_source(work, "Broken.cs", "class B { void f() { int x = ; } }")
    with pytest.raises(CompileError, match=r"Broken.cs\(1,29\): error CS1525"):
        compile_csharp(work, ["Broken.cs"], "broken.exe", echo=False)
    with pytest.raises(ProgramFailed, match="Is the server running"):  # a server that is down
        run_mono(work, client, [f"http://127.0.0.1:{free_port()}", OLLAMA_MODEL, "4", "Hi"], echo=False)
    write_source(work, "Retry.cs", RETRY_NOT_BACKING_OFF)
    retry = compile_csharp(work, ["RetryDemo.cs", "Retry.cs", "Ollama.cs"], "retry.exe", echo=False)
    with flaky_server(upstream=ollama_url, fail=2) as flaky:
        outcome = last_json(run_mono(work, retry, [flaky.url, OLLAMA_MODEL, "4", "100"], echo=False).stdout)
        assert outcome["status"] == 200 and [a["status"] for a in seen(flaky)] == [503, 503, None]
        reset(flaky, fail=5)
        outcome = last_json(run_mono(work, retry, [flaky.url, OLLAMA_MODEL, "3", "10"], echo=False).stdout)
        assert outcome["status"] == 503 and len(seen(flaky)) == 3  # gave up after maxAttempts


RETRY_NOT_BACKING_OFF = """
using System; using System.Net.Http; using System.Threading.Tasks;
public static class Retry {
    public static async Task<HttpResponseMessage> SendAsync(HttpClient client, Func<HttpRequestMessage> makeRequest,
                                                            int maxAttempts, TimeSpan baseDelay) {
        for (int attempt = 1; ; attempt++) {
            var response = await client.SendAsync(makeRequest());
            if ((int)response.StatusCode < 500 || attempt == maxAttempts) return response;
            await Task.Delay(baseDelay);
        }
    }
}
"""


@needs("cpp")
def test_cpp_greedy_equals_llama_cpp_python_and_a_compile_error_is_the_compilers(tmp_path):
    from slmlab.languages.cpp import BY_HAND, cmake_build, python_greedy, run_greedy
    from slmlab.models import resolve

    work = new_workdir("cpp", parent=tmp_path)
    build = cmake_build(work, echo=False)
    gguf = resolve(MODEL).path
    ours = run_greedy(build, gguf, "The capital of France is", 12, threads=2, echo=False)
    theirs = python_greedy(gguf, "The capital of France is", 12, threads=2)
    assert ours["prompt_tokens"] == theirs["prompt_tokens"] and ours["tokens"] == theirs["tokens"]
    assert ours["text"] == theirs["text"] and ours["decode_tok_s"] > 0
    write_source(work, "pick.hpp", "inline llama_token pick_greedy(const float * logits, int n) { return 0 }")
    with pytest.raises(CompileError, match="pick.hpp:1:.*error"):
        cmake_build(work, echo=False)
    write_source(work, "pick.hpp", "inline llama_token pick_greedy(const float *, int) { return 0; }")  # wrong pick
    cmake_build(work, echo=False)
    wrong = run_greedy(build, gguf, "The capital of France is", 4, threads=2, program=BY_HAND, echo=False)
    assert wrong["tokens"] != theirs["tokens"][:4]


def test_flask_endpoint_under_gunicorn_answers_like_the_gateway():
    from slmlab.languages.flask_chat import flask_server

    with flask_server(model=MODEL, threads=2) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                               http_client=httpx.Client(trust_env=False, timeout=120))
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=100000)
        result = load_test(server.url, concurrency=2, num_requests=4, max_tokens=8, show_progress=False)
        assert result.summary()["successful_requests"] == 4 and result.summary()["max_concurrent_requests"] == 2
    assert not server.running
