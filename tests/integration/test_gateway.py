"""slmlab.serve.gateway.app: the OpenAI-compatible FastAPI service over a real SmolLM2, in-process and under uvicorn.

In-process tests serve a LlamaCppBackend the test also holds, so an answer through HTTP can be compared with
the backend's own greedy answer. The subprocess tests run ``python -m slmlab.serve.gateway.app`` (via app_server) to
show what only a real server shows: a client that leaves mid-stream frees the model at once, requests queue
for the one model while health checks keep answering, and the official openai client and slmlab's openai
backend both talk to it.
"""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from fake_upstreams import FakeOllama
from slmlab.backends import open_backend
from slmlab.errors import SlmLabError
from slmlab.process import group_members, port_in_use
from slmlab.serve.gateway.app import AppSettings, backend_factory_from_env, backend_options, create_app, parse_args
from slmlab.serve.gateway.protocol import ChatRequest, validation_error
from slmlab.serve.gateway.server import app_command, app_server
from slmlab.serve.gateway.settings import backend_factory, upstream_options

N_CTX = 512
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0.0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == want:
            return float(found.group(2))
    return 0.0


def _events(lines) -> list[str]:
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def _wait_ready(client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.1)


# ---------------------------------------------------------------- fast: no model

@pytest.mark.fast
def test_request_validation_names_the_field():
    def problem(body):
        from pydantic import ValidationError

        with pytest.raises(ValidationError) as err:
            ChatRequest.model_validate(body)
        return validation_error(err.value.errors())["error"]

    error = problem({"messages": [{"role": "robot", "content": "hi"}]})
    assert error["param"] == "messages[0].role" and "robot" in error["message"]
    assert problem({})["param"] == "messages" and problem({})["code"] == "missing_field"
    assert problem({"messages": []})["param"] == "messages"
    assert problem({"messages": QUESTION, "n": 2})["param"] == "n"
    assert problem({"messages": QUESTION, "max_tokens": 0})["param"] == "max_tokens"
    assert problem({"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]})["param"] == "stop"
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}], "temperature": 0.5, "stop": "\n",
        "user": "ignored", "presence_penalty": 0})
    assert request.plain_messages() == [{"role": "user", "content": "Hello there"}]
    assert request.generation_options(32) == {"max_tokens": 32, "temperature": 0.5, "stop": ["\n"]}


@pytest.mark.fast
def test_bad_json_and_bad_fields_are_400s_before_the_model():
    client = TestClient(create_app(lambda: open_backend("llamacpp"), AppSettings()))  # lifespan not run: no model
    cases = {b'{"messages": [': (None, "not valid JSON (at character 14)"),
             b'{"messages": "hi"}': ("messages", "Invalid value for 'messages'"),
             b'{"messages": [{"role": "user"}]}': ("messages[0].content", "is required"),
             b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}': ("temperature", "hot"),
             b"": (None, "request body is missing")}
    for body, (param, words) in cases.items():
        answer = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400, body
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"]
    metrics = client.get("/metrics").text
    assert _metric(metrics, "slmlab_http_rejected_total", reason="bad_request") == len(cases)
    assert _metric(metrics, "slmlab_http_requests_total", method="GET", route="other", status="404") == 0
    client.get("/no/such/page")
    client.get("/v1/../etc/passwd")
    metrics = client.get("/metrics").text  # unknown paths share one label: no series per URL
    assert _metric(metrics, "slmlab_http_requests_total", method="GET", route="other", status="404") == 2


@pytest.mark.fast
def test_settings_and_backend_come_from_the_environment():
    env = {"SLMLAB_RATE_LIMIT": "30/minute", "SLMLAB_MAX_TOKENS": "64", "SLMLAB_CORS_ORIGINS": "http://a.example, ",
           "SLMLAB_SERVED_MODEL_NAME": "tiny", "SLMLAB_DOCS": "true", "SLMLAB_MAX_BODY_BYTES": "4096"}
    settings = AppSettings.from_env(env)
    assert (settings.rate_limit, settings.max_tokens_cap, settings.cors_origins, settings.served_model_name,
            settings.docs, settings.max_body_bytes, settings.api_keys) == (
        "30/minute", 64, ("http://a.example",), "tiny", True, 4096, ())
    with pytest.raises(SlmLabError, match="SLMLAB_MAX_TOKENS='lots' is not a whole number"):
        AppSettings.from_env({"SLMLAB_MAX_TOKENS": "lots"})
    with pytest.raises(SlmLabError, match="max_tokens_cap=0"):
        AppSettings(max_tokens_cap=0)
    factory = backend_factory_from_env({"SLMLAB_BACKEND": "llamacpp", "SLMLAB_MODEL": "smollm2-135m-instruct",
                                        "SLMLAB_CONTEXT": "1024"})
    assert callable(factory) and "llamacpp" in factory.__qualname__
    with pytest.raises(SlmLabError, match="neither a backend nor a function"):
        create_app(42, AppSettings())
    with pytest.raises(SlmLabError, match="settings must be an AppSettings"):
        create_app(factory, {"rate_limit": "1/s"})


@pytest.mark.fast
def test_app_command_keeps_keys_off_the_command_line():
    key = "sk-course-0123456789abcdef"
    cmd = app_command(n_ctx=1024, rate_limit="5/minute", max_tokens=64, cors_origins=["http://a.example"])
    assert cmd[1:4] == ["-m", "slmlab.serve.gateway.app", "--engine"] and "{port}" in cmd
    assert cmd[cmd.index("--rate-limit") + 1] == "5/minute" and cmd[cmd.index("--n-ctx") + 1] == "1024"
    server = app_server(api_keys=[key], n_ctx=1024)
    assert key not in " ".join(server.cmd) and server.ready_url.endswith("/readyz")
    assert server._env["SLMLAB_API_KEYS"] == key and server._env["SLMLAB_RATE_LIMIT"] is None  # nothing inherited
    with pytest.raises(SlmLabError, match="option it does not know"):
        app_server(n_gpu_layers=3)


@pytest.mark.fast
def test_a_model_that_fails_to_load_makes_readyz_red_with_the_reason():
    with TestClient(create_app(lambda: open_backend("llamacpp", "no-such-model"), AppSettings())) as client:
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).json()["detail"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.status_code == 503 and "no-such-model" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200  # alive, not ready: restart rather than route to it
        answer = client.post("/v1/chat/completions", json={"messages": QUESTION})
        assert answer.status_code == 503 and "no-such-model" in answer.json()["error"]["message"]


@pytest.mark.fast
def test_a_gateway_calls_the_served_model_not_the_upstreams_first_listed_one(monkeypatch):
    """Issue 16: in front of an Ollama whose store lists an embedding model first, every chat got "400: does not
    support chat". The gateway now calls --served-model-name when the upstream has it (or its only chat model)."""
    import httpx2

    monkeypatch.delenv("SLMLAB_UPSTREAM_API_KEY_FILE", raising=False)
    args = parse_args(["--engine", "openai", "--upstream-url", "http://127.0.0.1:9/v1",
                       "--served-model-name", "smollm2:135m"])
    options = backend_options(args, AppSettings(served_model_name="smollm2:135m"))
    assert options == {"base_url": "http://127.0.0.1:9/v1", "preferred_model": "smollm2:135m"}
    env = {"SLMLAB_BACKEND": "openai", "SLMLAB_SERVED_MODEL_NAME": "smollm2:135m"}
    assert "open_backend('openai', None)" in backend_factory_from_env(env).__qualname__  # a preference, not a model
    upstream = FakeOllama(("all-minilm:latest", "gemma3:270m", "smollm2:135m"))
    assert upstream.models[0] == "all-minilm:latest"
    for served, answered_by in (("smollm2:135m", "smollm2:135m"), ("assistant", None)):
        client = httpx2.Client(transport=httpx2.MockTransport(upstream))
        factory = backend_factory("openai", None, {**upstream_options(options["base_url"], served),
                                                   "http_client": client})
        with TestClient(create_app(factory, AppSettings(served_model_name=served))) as gateway:
            deadline = time.monotonic() + 30
            while (ready := gateway.get("/readyz")).json()["detail"] == "loading":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            answer = gateway.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4})
            if answered_by:
                assert ready.status_code == 200 and answer.status_code == 200, answer.text
                assert answer.json()["choices"][0]["message"]["content"] == answered_by
                assert answer.json()["model"] == served
            else:  # two chat models upstream and a served name it does not have: say so, guess nothing
                assert ready.status_code == 503 and answer.status_code == 503
                assert "serves 2 models that can chat: 'gemma3:270m', 'smollm2:135m'" in ready.json()["detail"]


# ---------------------------------------------------------------- slow: in-process, real model

@pytest.fixture(scope="module")
def backend():
    with open_backend("llamacpp", n_ctx=N_CTX) as llm:
        yield llm


@pytest.fixture(scope="module")
def client(backend):
    with TestClient(create_app(backend, AppSettings(max_tokens_cap=64))) as test_client:
        _wait_ready(test_client)
        yield test_client


@pytest.mark.slow
def test_answer_and_stream_equal_the_backends_greedy_answer(client, backend):
    expected = backend.chat(QUESTION, max_tokens=12)
    answer = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 12})
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion" and body["model"] == "smollm2-135m-instruct"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == expected.finish_reason
    assert body["usage"] == {"prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.completion_tokens,
                             "total_tokens": expected.prompt_tokens + expected.completion_tokens}

    request = {"messages": QUESTION, "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=request) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert sum(1 for p in pieces if p) > 1  # streamed in pieces, not in one block
    assert "".join(pieces) == expected.text
    assert chunks[-2]["choices"][0]["finish_reason"] == expected.finish_reason
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == expected.completion_tokens


@pytest.mark.slow
def test_the_official_openai_client_talks_to_it(client, backend):
    import openai

    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    assert [m.id for m in sdk.models.list().data] == ["smollm2-135m-instruct"]
    expected = backend.chat(QUESTION, max_tokens=6).text
    answer = sdk.chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=6)
    assert answer.choices[0].message.content == expected
    streamed = sdk.chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=6,
                                           stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
    with pytest.raises(openai.NotFoundError, match="serves 'smollm2-135m-instruct'"):
        sdk.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="limit of 64 tokens"):
        sdk.chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=65)


@pytest.mark.slow
def test_the_openai_client_reaches_it_at_azures_v1_path(client, backend):
    import openai

    sdk = openai.OpenAI(base_url="http://testserver/openai/v1/", api_key="unused", http_client=client,
                        max_retries=0)  # as Microsoft documents for a Foundry deployment: https://<resource>.openai...
    assert [m.id for m in sdk.models.list().data] == ["smollm2-135m-instruct"]
    expected = backend.chat(QUESTION, max_tokens=6).text
    answer = sdk.chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=6)
    assert answer.choices[0].message.content == expected
    streamed = sdk.chat.completions.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=6,
                                           stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


@pytest.mark.slow
def test_prompt_over_the_context_is_a_400_with_the_limit(client):
    answer = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "token " * 600}]})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert re.search(r"The prompt has \d+ tokens, the context is 512", error["message"])
    assert "n_ctx=" in error["message"]  # and what to do about it
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_metrics_count_requests_tokens_and_ttft(client):
    before = client.get("/metrics").text
    answer = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 5}).json()
    after = client.get("/metrics").text
    model = {"model": "smollm2-135m-instruct"}

    def grew(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert grew("slmlab_http_requests_total", method="POST", route="/v1/chat/completions", status="200") == 1
    assert grew("slmlab_completion_tokens_total", **model) == answer["usage"]["completion_tokens"]
    assert grew("slmlab_prompt_tokens_total", **model) == answer["usage"]["prompt_tokens"]
    assert grew("slmlab_time_to_first_token_seconds_count", **model) == 1
    assert grew("slmlab_generations_total", outcome=answer["choices"][0]["finish_reason"], **model) == 1
    assert grew("slmlab_http_request_duration_seconds_count", route="/v1/chat/completions") == 1
    assert _metric(after, "slmlab_http_requests_in_flight") == 1  # the scrape itself
    assert _metric(after, "slmlab_model_ready") == 1


@pytest.mark.slow
def test_foreseeable_series_exist_at_zero_before_the_first_request():
    from slmlab.serve.gateway.metrics import OUTCOMES, REJECTION_REASONS

    factory = lambda: open_backend("llamacpp", n_ctx=256)  # noqa: E731
    with TestClient(create_app(factory, AppSettings(served_model_name="smol"))) as fresh:
        _wait_ready(fresh)
        lines = set(fresh.get("/metrics").text.splitlines())
    for reason in REJECTION_REASONS:
        assert f'slmlab_http_rejected_total{{reason="{reason}"}} 0.0' in lines
    for outcome in OUTCOMES:
        assert f'slmlab_generations_total{{model="smol",outcome="{outcome}"}} 0.0' in lines
    assert "slmlab_generations_running 0.0" in lines and "slmlab_generations_waiting 0.0" in lines
    for name in ("slmlab_completion_tokens_total", "slmlab_prompt_tokens_total",
                 "slmlab_time_to_first_token_seconds_count", "slmlab_queue_wait_seconds_count"):
        assert f'{name}{{model="smol"}} 0.0' in lines, name


@pytest.mark.slow
def test_a_crashed_model_gives_503_and_readyz_goes_red():
    with TestClient(create_app(lambda: open_backend("llamacpp", n_ctx=256), AppSettings())) as crashed:
        _wait_ready(crashed)
        crashed.app.state.slot.backend.close()  # the model goes away under the service
        answer = crashed.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4})
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert answer.json()["error"]["code"] == "model_unavailable" and "closed" in answer.json()["error"]["message"]
        ready = crashed.get("/readyz")
        assert ready.status_code == 503 and "closed" in ready.json()["detail"]
        assert crashed.get("/healthz").status_code == 200
        metrics = crashed.get("/metrics").text
        assert _metric(metrics, "slmlab_model_ready") == 0
        assert _metric(metrics, "slmlab_http_rejected_total", reason="unavailable") == 1


@pytest.mark.slow
def test_a_failed_load_is_retried_until_the_model_is_there(tmp_path):
    from slmlab.models.resolver import resolve

    later = tmp_path / "arrives-later.gguf"  # like a gateway whose upstream (or volume) is not up yet
    with TestClient(create_app(lambda: open_backend("llamacpp", later, n_ctx=256), AppSettings())) as client:
        client.app.state.slot.reload_after_s = 0.2
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["detail"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 503
        later.symlink_to(resolve("smollm2-135m-instruct").path)
        _wait_ready(client)  # no restart needed
        answer = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 2})
        assert answer.status_code == 200 and answer.json()["model"] == "arrives-later"


@pytest.mark.slow
def test_a_gateway_in_front_of_ollama_with_an_embedding_model_listed_first(tmp_path, monkeypatch):
    """Issue 16 end to end: slmlab's Ollama server, whose store got all-minilm pulled (listed before smollm2),
    behind the gateway as notebook 3.4 runs it (model=None, served_model_name='smollm2:135m')."""
    from slmlab.backends.openai_http import OpenAIBackend
    from slmlab.serve.ollama.server import ollama_server

    monkeypatch.setenv("SLMLAB_LOG_DIR", str(tmp_path / "logs"))
    with ollama_server(models=("smollm2:135m",), models_dir=tmp_path / "store") as ollama:
        with httpx.Client(base_url=ollama.url, trust_env=False, timeout=180) as http:
            assert http.post("/api/pull", json={"model": "all-minilm", "stream": False}).json() == {"status": "success"}
            listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert listed == ["all-minilm:latest", "smollm2:135m"]  # the first one listed cannot chat
        with OpenAIBackend(ollama.url) as direct:  # the upstream's only chat model, told by /api/show
            assert direct.model_name == "smollm2:135m"
        with pytest.raises(SlmLabError, match="'all-minilm:latest' .* cannot chat"):
            OpenAIBackend(ollama.url, model="all-minilm:latest")
        with app_server(engine="openai", model=None, upstream_url=f"{ollama.url}/v1",
                        served_model_name="smollm2:135m") as gateway:
            with httpx.Client(base_url=gateway.url, trust_env=False, timeout=180) as http:
                answer = http.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4})
                streamed = http.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4,
                                                                    "stream": True}).text
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "smollm2:135m" and body["usage"]["completion_tokens"] >= 1
    assert body["choices"][0]["message"]["content"].strip()
    assert streamed.rstrip().endswith("data: [DONE]") and "model_error" not in streamed


# ---------------------------------------------------------------- slow: under uvicorn, as a subprocess

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        with app_server(n_ctx=N_CTX, max_tokens=256) as running:
            yield running
    assert not running.running and not group_members(running.pid) and not port_in_use(running.port)


@pytest.mark.slow
def test_a_client_leaving_mid_stream_frees_the_model(server):
    with httpx.Client(base_url=server.url, trust_env=False, timeout=120) as http:
        request = {"messages": STORY, "max_tokens": 256, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=request) as stream:
            contents = 0
            for line in stream.iter_lines():
                if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                    contents += 1
                if contents == 2:
                    break  # leave: the connection closes with the block
        left = time.monotonic()
        deadline = left + 60
        while True:
            metrics = http.get("/metrics").text
            if _metric(metrics, "slmlab_generations_total", model="smollm2-135m-instruct", outcome="cancelled"):
                break
            assert time.monotonic() < deadline, "the generation was not cancelled"
            time.sleep(0.2)
        # The model stopped within a few tokens of the client leaving, far from the 256 asked for.
        generated = _metric(metrics, "slmlab_completion_tokens_total", model="smollm2-135m-instruct")
        assert 2 <= generated < 40
        assert _metric(metrics, "slmlab_http_requests_in_flight") == 1  # only this scrape
        answer = http.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
        # A client that gives up on a whole (non-streamed) answer frees the model too.
        before = _metric(http.get("/metrics").text, "slmlab_completion_tokens_total", model="smollm2-135m-instruct")
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json={"messages": STORY, "max_tokens": 256}, timeout=0.5)
        while _metric(http.get("/metrics").text, "slmlab_generations_total", model="smollm2-135m-instruct",
                      outcome="cancelled") < 2:
            assert time.monotonic() < deadline + 60, "the abandoned answer was not cancelled"
            time.sleep(0.2)
        # It stopped well before the 256 tokens asked for (about 0.5 s of decoding, whatever the machine's speed).
        assert _metric(http.get("/metrics").text, "slmlab_completion_tokens_total",
                       model="smollm2-135m-instruct") - before < 200
    assert "POST /v1/chat/completions HTTP/1.1\" 200" in server.log_tail(2000)  # after the /metrics polls


@pytest.mark.slow
def test_requests_queue_for_the_one_model_while_probes_answer(server):
    results: dict[str, object] = {}

    def ask(name: str) -> None:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=180) as http:
            answer = http.post("/v1/chat/completions", json={"messages": STORY, "max_tokens": 24})
            results[name] = (answer.status_code, answer.json()["choices"][0]["message"]["content"], time.monotonic())

    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
        waits_before = _metric(http.get("/metrics").text, "slmlab_queue_wait_seconds_sum",
                               model="smollm2-135m-instruct")
        threads = [threading.Thread(target=ask, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        load = []  # (running, waiting) at each scrape, until both answers are in

        def scrape() -> str:
            text = http.get("/metrics").text
            load.append((_metric(text, "slmlab_generations_running"), _metric(text, "slmlab_generations_waiting")))
            return text

        deadline = time.monotonic() + 30
        while _metric(scrape(), "slmlab_http_requests_in_flight") < 3:  # both, and this scrape
            assert time.monotonic() < deadline
            time.sleep(0.05)
        probes = [http.get("/healthz").status_code, http.get("/readyz").status_code]  # while the model works
        probed = time.monotonic()
        while any(thread.is_alive() for thread in threads):
            scrape()
            time.sleep(0.02)
        for thread in threads:
            thread.join(180)
        metrics = http.get("/metrics").text
    assert probes == [200, 200]
    assert results["a"][0] == results["b"][0] == 200
    assert results["a"][1] == results["b"][1]  # greedy: the same answer, one after the other
    assert probed < max(results["a"][2], results["b"][2])  # the probes did not wait for the generations
    waited = _metric(metrics, "slmlab_queue_wait_seconds_sum", model="smollm2-135m-instruct") - waits_before
    assert waited > 0.05  # the second request waited for the first
    assert max(running for running, _ in load) == 1 and (1, 1) in load, load  # one generates while one waits


@pytest.mark.slow
def test_slmlabs_openai_backend_works_through_it(server, backend):
    with open_backend("openai", base_url=server.url) as remote:
        assert remote.model_name == "smollm2-135m-instruct"
        answer = remote.chat(QUESTION, max_tokens=8)
    expected = backend.chat(QUESTION, max_tokens=8)
    assert answer.text == expected.text and answer.completion_tokens == expected.completion_tokens
    assert answer.prompt_tokens == expected.prompt_tokens  # from the stream's usage chunk


@pytest.mark.fast
def test_an_upstream_server_that_fails_is_a_502_not_a_client_error():
    import httpx2

    from slmlab.backends.openai_http import OpenAIBackend

    down = {"chat": "refused"}

    def upstream(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "m1", "object": "model"}]})
        if down["chat"] == "refused":
            raise httpx2.ConnectError("Connection refused", request=request)
        return httpx2.Response(500, json={"error": {"message": "out of memory"}})

    backend = OpenAIBackend("http://127.0.0.1:9", http_client=httpx2.Client(transport=httpx2.MockTransport(upstream)))
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    with TestClient(create_app(backend, AppSettings())) as client:
        for state in ("refused", "500"):
            down["chat"] = state
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 502, (state, reply.text)
            assert reply.json()["error"]["code"] == "upstream_error" and reply.headers["retry-after"] == "1"
        assert _metric(client.get("/metrics").text, "slmlab_http_rejected_total", reason="upstream_error") == 2
    backend.close()
