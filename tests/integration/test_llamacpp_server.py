"""slmlab.serve (server processes, llama-cpp-python's OpenAI server) and the openai backend that talks to it.

One llama.cpp server is started for the whole module (with an API key, so the 401 path is real too) and
stopped by the last test, which checks that its process group is gone and its port free. Greedy answers
through the server equal the in-process LlamaCppBackend's because both run the same llama.cpp with the same
sampling: the backend sends top_k=0, min_p=0 and repeat_penalty=1 explicitly (the server's defaults, 40 /
0.05 / 1.1, change even greedy answers), and the server uses the GGUF's own chat template.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import pytest

from fake_upstreams import FakeOllama
from slmlab.backends import Backend
from slmlab.backends.base import GenerationOptions
from slmlab.backends.openai_http import API_KEY_ENV, OpenAIBackend, _context_error, _split_url, openai_kwargs
from slmlab.errors import SlmLabError
from slmlab.serve import ServerProcess, free_port, group_members, llamacpp_command, llamacpp_server, port_in_use

KEY = "course-key-123"
N_CTX = 1024
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
PARITY_PROMPT = [{"role": "user", "content": "Explain what a barometer measures."}]
PY = sys.executable


@pytest.fixture(scope="module", autouse=True)
def _logs_in_a_temp_dir(tmp_path_factory):
    """Server logs of this module go to pytest's temp folder, not $TMPDIR/slmlab-logs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        yield


# ---------------------------------------------------------------- fast: no server

@pytest.mark.fast
def test_free_port_is_free_and_bindable():
    port = free_port()
    assert 1024 <= port < 65536 and not port_in_use(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_in_use(port)


@pytest.mark.fast
def test_server_process_arguments_are_checked():
    with pytest.raises(SlmLabError, match="non-empty list of strings"):
        ServerProcess([], ready_url="/")
    with pytest.raises(SlmLabError, match="not a TCP port"):
        ServerProcess([PY], port=70000)
    server = ServerProcess([PY, "-m", "http.server", "{port}"], port=8123, ready_url="/health", name="x")
    assert server.cmd[-1] == "8123" and server.ready_url == "http://127.0.0.1:8123/health"
    assert server.url == "http://127.0.0.1:8123" and server.pid is None and not server.running
    assert server.stop() is None  # never started: nothing to stop


@pytest.mark.fast
def test_a_taken_port_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(SlmLabError, match=f"port {port} on 127.0.0.1 is already in use") as err:
            ServerProcess([PY, "-c", "pass"], port=port, name="x").start()
        assert "port=None" in err.value.hint


@pytest.mark.fast
def test_a_command_that_exits_at_once_shows_its_exit_code_and_log():
    script = "import sys; print('loading model.gguf'); print('error: no such file', file=sys.stderr); sys.exit(3)"
    server = ServerProcess([PY, "-c", script], ready_url="/v1/models", name="broken")
    with pytest.raises(SlmLabError, match="broken exited during startup with exit code 3") as err:
        server.start()
    assert "loading model.gguf" in err.value.problem and "error: no such file" in err.value.problem
    assert str(server.log_path) in err.value.hint and "error: no such file" in server.log_tail()


@pytest.mark.fast
def test_a_missing_program_is_a_clear_error():
    with pytest.raises(SlmLabError, match="Cannot start ghost"):
        ServerProcess(["/nonexistent/llama-server"], name="ghost").start()


@pytest.mark.fast
def test_keyboard_interrupt_while_waiting_stops_the_server(monkeypatch):
    import slmlab.process as process

    real_sleep, pauses = time.sleep, []

    def sleep(seconds):  # the first pause in the readiness loop is "Ctrl-C"
        pauses.append(seconds)
        if len(pauses) == 1:
            raise KeyboardInterrupt
        real_sleep(seconds)

    server = ServerProcess([PY, "-c", "import time; time.sleep(60)"], name="slow", stop_timeout=5)
    monkeypatch.setattr(process.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    monkeypatch.undo()
    assert server.returncode == -signal.SIGTERM and group_members(server.pid) == []


@pytest.mark.fast
def test_a_second_interrupt_while_stopping_kills_at_once(monkeypatch):
    import slmlab.process as process

    real_sleep = time.sleep

    def sleep(_seconds):  # every pause is "Ctrl-C": in the readiness loop, then again while stopping
        deadline = time.monotonic() + 10
        while "ignoring SIGTERM" not in server.log_tail() and time.monotonic() < deadline:
            real_sleep(0.02)  # let the child install its handler first
        raise KeyboardInterrupt

    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring SIGTERM'); "
              "time.sleep(60)")
    server = ServerProcess([PY, "-c", script], name="stubborn", stop_timeout=30)
    monkeypatch.setattr(process.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    monkeypatch.undo()
    assert server.returncode == -signal.SIGKILL and group_members(server.pid) == []


@pytest.mark.fast
def test_urls_and_options_for_the_openai_client():
    assert _split_url("http://127.0.0.1:8000/v1/") == ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1")
    assert _split_url("localhost:9000") == ("http://localhost:9000", "http://localhost:9000/v1")
    with pytest.raises(SlmLabError, match="No server URL"):
        _split_url("")
    kwargs = openai_kwargs(GenerationOptions(max_tokens=7, stop="\n"))
    assert kwargs == {"max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": ["\n"],
                      "extra_body": {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "repetition_penalty": 1.0}}
    assert "stop" not in openai_kwargs(GenerationOptions())


@pytest.mark.fast
@pytest.mark.parametrize("message, problem, hint", [
    ("This model's maximum context length is 256 tokens. However, you requested 475 tokens (451 in the messages, "
     "24 in the completion). Please reduce the length of the messages or completion.",  # llama-cpp-python, chat
     "The prompt has 451 tokens, the context is 256: no room left to generate.", "n_ctx=1024"),
    ("This model's maximum context length is 256 tokens, however you requested 445 tokens (421 in your prompt; 24 "
     "for the completion). Please reduce your prompt; or completion length.",  # llama-cpp-python, completion
     "The prompt has 421 tokens, the context is 256", "n_ctx=1024"),
    ("This model's maximum context length is 2048 tokens. However, your request has 3000 input tokens. Please "
     "reduce the length of the input messages.",  # vLLM
     "The prompt has 3000 tokens, the context is 2048", "--max-model-len"),
    ("This model's maximum context length is 2048 tokens. However, you requested 2100 tokens (1000 in the "
     "messages, 1100 in the completion).",  # vLLM: the prompt fits, max_tokens does not
     "The prompt has 1000 tokens and max_tokens asks for more than the 1048 left", "max_tokens=1048"),
    ("request (1500 tokens) exceeds the available context size (1024 tokens), try increasing it",  # llama-server
     "The prompt has 1500 tokens, the context is 1024", "--ctx-size for llama-server"),
])
def test_server_context_errors_become_prompt_too_long(message, problem, hint):
    err = _context_error(message)
    assert problem in err.problem and hint in err.hint
    assert _context_error("Something else went wrong") is None


class FakeServer:
    """An OpenAI-style server in an httpx2 MockTransport: vLLM-like answers without starting anything."""

    def __init__(self, models=("m1", "m2"), key=None, tokenize=("/tokenize",)):
        self.models, self.key, self.tokenize, self.requests = list(models), key, tokenize, []

    def __call__(self, request):
        import httpx2

        self.requests.append(request)
        body = json.loads(request.content or b"{}")
        if self.key and request.headers.get("authorization") != f"Bearer {self.key}":
            return httpx2.Response(401, json={"error": "Unauthorized"})
        path = request.url.path
        if path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "x"} for m in self.models]})
        if path in self.tokenize:
            return httpx2.Response(200, json={"tokens": [7, 8, 9][: len(body["prompt"].split())], "count": 0})
        if path == "/v1/chat/completions" and body["model"] not in self.models:
            return httpx2.Response(404, json={"error": {"message": f"The model `{body['model']}` does not exist.",
                                                        "type": "NotFoundError", "code": 404}})
        if path == "/v1/chat/completions" and body["messages"][0]["content"] == "base model":  # llama-cpp-python
            return httpx2.Response(500, json={"error": {"message": "Invalid chat handler: chat_template.default "
                                                        "(valid formats: ['llama-2', 'chatml'])"}})
        if path == "/v1/chat/completions" and len(body["messages"][0]["content"]) > 100:
            return httpx2.Response(400, json={"error": {"message": "This model's maximum context length is 64 "
                                                        "tokens. However, your request has 90 input tokens."}})
        if path == "/v1/chat/completions":
            assert body["stream"] and body["stream_options"] == {"include_usage": True} and body["top_k"] == 0
            events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
            events += [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in ("Hi", "!")]
            events += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                       {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}]
            head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
            data = "".join(f"data: {json.dumps(head | e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data.encode())
        if path == "/v1/completions":
            return httpx2.Response(500, json={"error": {"message": "CUDA out of memory"}})
        return httpx2.Response(404, json={"detail": "Not Found"})


def fake_backend(server: FakeServer, **kwargs) -> OpenAIBackend:
    import httpx2

    return OpenAIBackend("http://127.0.0.1:8000", http_client=httpx2.Client(transport=httpx2.MockTransport(server)),
                         **kwargs)


@pytest.mark.fast
def test_openai_backend_against_a_vllm_like_server(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    server = FakeServer()
    with fake_backend(server, model="m1") as backend:
        assert isinstance(backend, Backend) and backend.model_name == "m1" and backend.server_models == ["m1", "m2"]
        gen = backend.chat("Hello")
        assert (gen.text, gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == ("Hi!", 12, 2, "stop")
        assert gen.extra["usage"] == "server" and gen.engine == "openai" and gen.timings.ttft_s > 0
        assert backend.tokenize("a b") == [7, 8]  # no /extras/tokenize here: vLLM's /tokenize
        with pytest.raises(SlmLabError, match="The prompt has 90 tokens, the context is 64") as err:
            backend.chat("x" * 200)
        assert "--max-model-len" in err.value.hint
        with pytest.raises(SlmLabError, match="answered 500: CUDA out of memory") as err:
            backend.generate("Once")
        assert "log_tail" in err.value.hint
        with pytest.raises(SlmLabError, match=r"m1 has no chat template \(it is a base model\)") as err:
            backend.chat("base model")
        assert "generate(" in err.value.hint
        server.models.remove("m1")  # the model went away (the server was restarted with another)
        with pytest.raises(SlmLabError, match="has no model 'm1'. It serves: 'm2'"):
            backend.chat("Hello")
    with pytest.raises(SlmLabError, match="closed"):
        backend.chat("Hello")


@pytest.mark.fast
def test_openai_backend_error_texts(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(SlmLabError, match="has no model 'gpt-4o'. It serves: 'm1', 'm2'") as err:
        fake_backend(FakeServer(), model="gpt-4o")
    assert "Pass model= one of the ids it serves" in err.value.hint
    with pytest.raises(SlmLabError, match="Did you mean 'm2'"):
        fake_backend(FakeServer(models=("m1", "m2")), model="M2 ")
    with pytest.raises(SlmLabError, match="needs an API key") as err:
        fake_backend(FakeServer(key="k"))
    assert API_KEY_ENV in err.value.hint
    with pytest.raises(SlmLabError, match="rejected the API key"):
        fake_backend(FakeServer(key="k"), api_key="wrong")
    monkeypatch.setenv(API_KEY_ENV, "k")
    assert fake_backend(FakeServer(models=("m1",), key="k")).model_name == "m1"  # the only one: no guess
    with pytest.raises(SlmLabError, match="cannot tokenize") as err:
        fake_backend(FakeServer(tokenize=()), model="m1").tokenize("Hi")
    assert "open_backend('llamacpp'" in err.value.hint


@pytest.mark.fast
def test_the_model_is_never_the_first_listed_one_but_one_that_can_chat(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    ollama = FakeOllama()
    assert ollama.models[0] == "all-minilm:latest"  # what issue 16's gateway used to call
    with fake_backend(ollama) as backend:  # nothing named: the only model that can chat
        assert backend.model_name == "smollm2:135m" and backend.chat("Hi").text == "smollm2:135m"
    with pytest.raises(SlmLabError, match="'all-minilm:latest' .* cannot chat: the server says it does embedding"
                       ) as err:
        fake_backend(FakeOllama(), model="all-minilm:latest")
    assert "model='smollm2:135m'" in err.value.hint
    several = FakeOllama(("all-minilm:latest", "gemma3:270m", "smollm2:135m"))
    with pytest.raises(SlmLabError, match="serves 2 models that can chat: 'gemma3:270m', 'smollm2:135m'") as err:
        fake_backend(several)
    assert "all-minilm:latest' (embedding)" in err.value.problem and "--served-model-name" in err.value.hint
    with pytest.raises(SlmLabError, match="has no model 'smollm2' and serves 2 models") as err:
        fake_backend(several, preferred_model="smollm2")
    assert "Did you mean 'smollm2:135m'" in err.value.hint
    assert fake_backend(several, preferred_model="gemma3:270m").model_name == "gemma3:270m"
    assert fake_backend(several, preferred_model="gemma3:270m", model="smollm2:135m").model_name == "smollm2:135m"
    with pytest.raises(SlmLabError, match=r"has no model that can chat: it serves 'all-minilm:latest' \(embedding\)"):
        fake_backend(FakeOllama(("all-minilm:latest",)))


@pytest.mark.fast
def test_a_server_that_lists_ids_only_needs_the_name_when_it_has_several(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    server = FakeServer(models=("m1", "m2"))
    with pytest.raises(SlmLabError, match=r"serves 2 models \('m1', 'm2'\) and does not say which can chat") as err:
        fake_backend(server)
    assert "model='...'" in err.value.hint
    assert fake_backend(server, preferred_model="m2").model_name == "m2"
    assert fake_backend(FakeServer(models=("only",))).model_name == "only"
    shows = [r for r in server.requests if r.url.path == "/api/show"]
    assert len(shows) == 2  # one per backend: a 404 says the server cannot tell, it is not asked again
    with pytest.raises(SlmLabError, match="lists no models"):
        fake_backend(FakeServer(models=()))


@pytest.mark.fast
def test_unreachable_server_says_how_to_start_one():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SlmLabError, match=f"Cannot reach an OpenAI-compatible server at {url}") as err:
        OpenAIBackend(url)
    assert "llama_server()" in err.value.hint and "llama-server --model" in err.value.hint


@pytest.mark.fast
def test_llamacpp_command_flags():
    cmd = llamacpp_command("/m.gguf", "tiny", n_ctx=1000, api_key="k", n_gpu_layers=-1)
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert cmd[:3] == [PY, "-m", "llama_cpp.server"]
    assert flags == {"--model": "/m.gguf", "--model_alias": "tiny", "--host": "127.0.0.1", "--port": "{port}",
                     "--n_ctx": "1024", "--n_threads": flags["--n_threads"], "--chat_format": "chat_template.default",
                     "--logits_all": "false", "--interrupt_requests": "false", "--api_key": "k", "--n_gpu_layers": "-1"}
    with pytest.raises(SlmLabError, match="(?s)'n_gpu_layer' is not a setting.*Did you mean 'n_gpu_layers'"):
        llamacpp_command("/m.gguf", "tiny", n_gpu_layer=1)


# ---------------------------------------------------------------- real processes

@pytest.mark.slow
def test_server_process_lifecycle_with_a_real_http_server():
    server = ServerProcess([PY, "-m", "http.server", "{port}", "--bind", "127.0.0.1"], ready_url="/", name="files")
    with pytest.raises(RuntimeError, match="boom"):
        with server:
            assert server.running and os.getpgid(server.pid) == server.pid  # its own process group
            assert port_in_use(server.port) and server.startup_s < 30
            raise RuntimeError("boom")  # an error in the block still stops the server
    assert not server.running and group_members(server.pid) == [] and not port_in_use(server.port)
    assert "GET / HTTP" in server.log_tail()


@pytest.fixture
def owner():
    """A Python process that started a server; yields (process, server pid, server port)."""
    import subprocess

    script = ("import sys; from slmlab.serve import ServerProcess; "
              "s = ServerProcess([sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1']).start(); "
              "print(s.pid, s.port, flush=True); import time; time.sleep(60)")
    process = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, port = map(int, process.stdout.readline().split())
        assert group_members(pid) and port_in_use(port)
        yield process, pid, port
    finally:
        process.kill()
        process.wait()


@pytest.mark.fast
def test_sigterm_to_the_owner_stops_its_servers_and_still_ends_it(owner):
    # A kernel stopped with SIGTERM runs no atexit hooks; the servers live in their own session, so without the
    # handler they would outlive it.
    process, pid, port = owner
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == -signal.SIGTERM  # it still dies of SIGTERM, as before
    assert group_members(pid) == [] and not port_in_use(port)


@pytest.mark.fast
def test_a_server_outlives_no_owner_killed_by_sigkill(owner):
    # SIGKILL runs no handler at all: the kernel's parent-death signal stops the server instead.
    process, pid, port = owner
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(pid) == [] and not port_in_use(port)


@pytest.mark.slow
def test_a_server_that_never_gets_ready_is_killed_with_its_children():
    # A parent that ignores SIGTERM and a child: both must go (SIGKILL after stop_timeout).
    script = ("import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "subprocess.Popen(['sleep', '60']); print('warming up', flush=True); time.sleep(60)")
    server = ServerProcess([PY, "-c", script], ready_url="/health", name="stuck", startup_timeout=1.5, stop_timeout=1)
    with pytest.raises(SlmLabError, match=r"stuck did not become ready: http://127.0.0.1:\d+/health did not "
                                          r"answer 200 within 1.5 s") as err:
        server.start()
    assert "warming up" in err.value.problem and "log_tail" in err.value.hint and "startup_timeout" in err.value.hint
    assert server.returncode == -signal.SIGKILL and group_members(server.pid) == []


# ---------------------------------------------------------------- llama-cpp-python's server (one per module)

@pytest.fixture(scope="module")
def server():
    with llamacpp_server(n_ctx=N_CTX, api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(server):
    with OpenAIBackend(server, api_key=KEY) as backend:
        yield backend


@pytest.fixture(scope="module")
def local():
    from slmlab.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend(n_ctx=N_CTX) as backend:
        yield backend


@pytest.mark.slow
def test_llamacpp_server_runs_on_loopback_in_its_own_group(server):
    import psutil

    assert server.running and os.getpgid(server.pid) == server.pid == os.getsid(server.pid)
    listening = [c.laddr for c in psutil.Process(server.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", server.port)]
    assert "--chat_format chat_template.default" in " ".join(server.cmd)


@pytest.mark.slow
def test_chat_stream_generate_tokenize_through_the_server(remote, local):
    assert remote.model_name == "smollm2-135m-instruct" and remote.server_models == ["smollm2-135m-instruct"]
    gen = remote.chat(QUESTION, max_tokens=24)
    assert "4" in gen.text and gen.finish_reason == "stop" and gen.engine == "openai"
    assert 0 < gen.completion_tokens < 24 and gen.timings.ttft_s > 0 and gen.decode_tok_s > 0
    # llama-cpp-python's server sends no usage in streams: answer tokens are counted from the stream
    # (exact here), a chat prompt's are unknown.
    assert gen.extra["usage"] == "estimated" and gen.prompt_tokens == 0
    assert gen.completion_tokens == local.chat(QUESTION, max_tokens=24).completion_tokens
    cut = remote.generate("The history of weather forecasting", max_tokens=4)
    assert (cut.completion_tokens, cut.finish_reason, cut.prompt_tokens) == (4, "length", 5) and cut.text
    pieces = list(remote.stream("The barometer", max_tokens=6))
    assert len(pieces) == 6 and "".join(pieces) == remote.last.text
    assert "".join(remote.stream(QUESTION, max_tokens=24)) == gen.text
    stopped = remote.chat("List three colours, one per line.", max_tokens=40, stop=["\n"])
    assert stopped.text and "\n" not in stopped.text and stopped.finish_reason == "stop"
    text = "Hello world <|im_start|> the barometer"
    assert remote.tokenize(text) == local.tokenize(text) and remote.tokenize("<|im_start|>") == [1]


@pytest.mark.slow
def test_greedy_answers_equal_the_in_process_backend(remote, local):
    for call in (lambda b: b.chat(PARITY_PROMPT, max_tokens=48), lambda b: b.chat(QUESTION, max_tokens=24),
                 lambda b: b.chat("List three colours, one per line.", max_tokens=24, stop=["\n"]),
                 lambda b: b.generate("The barometer", max_tokens=32)):
        ours, theirs = call(remote), call(local)
        assert ours.text == theirs.text and ours.completion_tokens == theirs.completion_tokens
        assert ours.finish_reason == theirs.finish_reason
    assert "pressure" in remote.chat(PARITY_PROMPT, max_tokens=48).text.lower()


@pytest.mark.slow
def test_seeded_sampling_equals_the_in_process_backend(remote, local):
    opts = {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": 7, "max_tokens": 16}
    assert remote.chat("Write a poem.", **opts).text == local.chat("Write a poem.", **opts).text


@pytest.mark.slow
def test_api_key_is_required_and_works(server, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(SlmLabError, match="needs an API key .*401: Invalid API key") as err:
        OpenAIBackend(server.url)
    assert API_KEY_ENV in err.value.hint
    with pytest.raises(SlmLabError, match="rejected the API key"):
        OpenAIBackend(server.url, api_key="wrong")
    monkeypatch.setenv(API_KEY_ENV, KEY)
    with OpenAIBackend(server.url + "/v1") as backend:
        assert backend.chat(QUESTION, max_tokens=8).text


@pytest.mark.slow
def test_open_backend_reaches_the_server_by_engine_name(server):
    from slmlab.backends import open_backend

    with open_backend("openai", base_url=server.url, api_key=KEY) as backend:
        assert backend.chat("Say hi.", max_tokens=4).completion_tokens >= 1


@pytest.mark.slow
def test_unknown_model_lists_the_real_ones(server):
    with pytest.raises(SlmLabError, match="has no model 'gpt-4o'. It serves: 'smollm2-135m-instruct'"):
        OpenAIBackend(server, model="gpt-4o", api_key=KEY)


@pytest.mark.slow
def test_prompt_longer_than_the_server_context(remote):
    long_text = "The barometer fell all night. " * 160  # ~1120 tokens
    for call in (lambda: remote.chat(long_text), lambda: remote.generate(long_text), lambda: remote.stream(long_text)):
        with pytest.raises(SlmLabError, match=rf"prompt has \d+ tokens, the context is {N_CTX}: no room") as err:
            call()  # stream() raises at the call too
        assert "n_ctx=2048 when you start the server" in err.value.hint
    assert remote.chat(QUESTION, max_tokens=8).text  # the server (and our connection) still work


@pytest.mark.slow
def test_stopping_frees_the_port_and_the_group(server):
    """Runs last: stops the module's server (the fixture's own stop is then a no-op)."""
    pid, port = server.pid, server.port
    code = server.stop()
    assert code == -signal.SIGTERM and not server.running  # stopped by SIGTERM, no SIGKILL needed
    assert group_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    deadline = time.monotonic() + 5
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_in_use(port)
    with socket.socket() as sock:  # a new server can listen there again (servers set SO_REUSEADDR, as uvicorn does)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
