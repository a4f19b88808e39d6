"""`slmlab serve ollama` against Ollama's REST contract (docs/api.md) and the official `ollama` client.

One server subprocess for the module (127.0.0.1, its own model store in a temp folder); generations are greedy
and a few tokens long. The fast tests at the top check the pure parts (templates, durations, hosts) in-process.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime

import httpx
import pytest

from slmlab.errors import SlmLabError
from slmlab.serve.ollama import template as tpl
from slmlab.serve.ollama.names import SMOLLM2_TEMPLATE, normalize
from slmlab.serve.ollama.runner import FOREVER, parse_keep_alive
from slmlab.serve.ollama.server import host_url, parse_host

CHAT = "smollm2:135m"
GREEDY = {"temperature": 0, "num_predict": 4}
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


# ---------------------------------------------------------------------------------------------- fast, in-process
@pytest.mark.fast
def test_go_templates_render_like_ollama():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "Q"}]
    assert tpl.render_chat(SMOLLM2_TEMPLATE, msgs) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    legacy = "{{ if .System }}[{{ .System }}] {{ end }}U: {{ .Prompt }}\nA: {{ .Response }}</s>\n"
    assert tpl.render_chat(legacy, msgs) == "[S] U: Hi\nA: Yo</s>\nU: Q\nA: "  # cut after .Response at the end
    assert tpl.render_chat("{{ .Prompt }}", msgs[1:2]) == "Hi"
    fancy = ('{{- range $i, $m := .Messages }}{{ if eq $m.Role "user" "tool" }}>{{ $m.Content }}{{ else if '
             '(and (ne .Role "system") (gt (len $.Messages) 2)) }}<{{ .Content }}{{ else }}#{{ end }}'
             '{{- /* a comment */ -}}  \n{{ end }}')
    assert tpl.render_chat(fancy, msgs) == "#>Hi<Yo>Q"


@pytest.mark.fast
@pytest.mark.parametrize("source", ["{{ if .System }}", "{{ end }}", "{{ foo .X }}", '{{ template "x" }}',
                                    "{{ .A | len }}", "{{ (eq .A }}", "{{ $nope }}"])
def test_bad_templates_raise_clear_errors(source):
    with pytest.raises(SlmLabError, match="TEMPLATE"):
        tpl.check_template(source)


@pytest.mark.fast
def test_keep_alive_and_hosts():
    assert parse_keep_alive(None) == 300 and parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive(0) == 0 and parse_keep_alive("0") == 0 and parse_keep_alive("-1") == FOREVER
    assert parse_keep_alive(-5) == FOREVER and parse_keep_alive("250ms") == 0.25 and parse_keep_alive(12.5) == 12.5
    with pytest.raises(SlmLabError, match="invalid duration"):
        parse_keep_alive("five minutes")
    assert parse_host(None) == ("127.0.0.1", 11434) and parse_host(":8080") == ("127.0.0.1", 8080)
    assert parse_host("0.0.0.0:1234") == ("0.0.0.0", 1234) and parse_host("http://example.com") == ("example.com", 80)
    assert host_url("localhost") == "http://localhost:11434" and host_url(None) == "http://127.0.0.1:11434"
    # Ollama's rules: a scheme without a port means its own port; "every interface" is reached through loopback
    assert host_url("https://ollama.example.org") == "https://ollama.example.org:443"
    assert host_url("0.0.0.0:8080") == "http://127.0.0.1:8080" and host_url("::") == "http://[::1]:11434"
    assert host_url("https://example.com:56789/path/") == "https://example.com:56789/path"
    with pytest.raises(SlmLabError, match="invalid port"):
        host_url("localhost:port")
    assert normalize("SmolLM2") == "smollm2:latest" and normalize("registry.ollama.ai/library/x:1") == "x:1"


@pytest.mark.fast
def test_serve_ollama_command_line(monkeypatch, tmp_path):
    import argparse

    from slmlab.cli.serve import cmd_serve_ollama, register

    monkeypatch.delenv("OLLAMA_CONTEXT_LENGTH", raising=False)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    parser = argparse.ArgumentParser(prog="slmlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "ollama", "--host", "127.0.0.1:8123", "--models", "smollm2:135m,all-minilm"])
    assert args.func is cmd_serve_ollama and args.host == "127.0.0.1:8123" and args.context == 2048
    assert args.keep_alive in ("5m", __import__("os").environ.get("OLLAMA_KEEP_ALIVE"))
    from slmlab.serve.ollama.cli import run

    with pytest.raises(SlmLabError, match="not bundled"):
        run(parser.parse_args(["serve", "ollama", "--models", "llama3.2"]))


@pytest.fixture
def app_http(tmp_path):
    """The app in-process (no model loaded): the bundled chat model registered by hand, nothing hashed."""
    from starlette.testclient import TestClient

    from slmlab.serve.ollama.app import create_app
    from slmlab.serve.ollama.names import BUNDLED
    from slmlab.serve.ollama.registry import ModelEntry, Registry

    registry = Registry(tmp_path)
    spec = BUNDLED[CHAT]
    registry.put(ModelEntry(name=CHAT, base=spec.key, template=spec.template, system=spec.system,
                            parameters=dict(spec.parameters)))
    with TestClient(create_app(registry)) as http:
        yield http


@pytest.mark.fast
@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/api/generate", {"prompt": "x"}, 400, "model is required"),
    ("/api/chat", {"name": " ", "messages": []}, 400, "model is required"),
    ("/api/generate", {"model": CHAT, "stream": "yes"}, 400, "invalid value for 'stream': Input should be a valid"),
    ("/api/generate", {"model": CHAT, "prompt": 5}, 400, "invalid value for 'prompt'"),
    ("/api/chat", {"model": CHAT, "messages": [{"role": "robot"}]}, 400, "invalid value for 'messages[0].role'"),
    ("/api/generate", {"model": CHAT, "options": {"num_ctx": "big"}}, 400, "options: PARAMETER num_ctx 'big'"),
    ("/api/generate", {"model": CHAT, "keep_alive": "soon"}, 400, 'time: invalid duration "soon"'),
    ("/api/generate", {"model": CHAT, "template": "{{ end }}"}, 400, "TEMPLATE"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "images": ["aGk="]}, 400, "does not support image input"),
    ("/api/embed", {"model": CHAT, "input": [1, 2]}, 400, "'input' must be a string or a list of strings"),
    ("/api/embed", {"model": CHAT, "input": "x"}, 400, '"smollm2:135m" does not support embeddings'),
    ("/api/copy", {"source": CHAT}, 400, "destination is required"),
    ("/api/create", {"model": "x", "from": CHAT, "parameters": {"n_ctx": 1}}, 400, "Ollama calls it num_ctx"),
    ("/api/create", {"model": "x", "modelfile": "FROM ./m.gguf\n"}, 400, "FROM ./m.gguf is a local file"),
    ("/api/create", {"model": "x", "modelfile": "FORM x\n"}, 400, "modelfile, line 1: 'FORM'"),
    ("/api/show", {"model": "ghost", "verbose": None}, 404, "model 'ghost' not found"),
    ("/api/pull", {"model": "llama3.2"}, 404, "file does not exist"),
])
def test_requests_are_checked_before_any_model_loads(app_http, path, body, status, error):
    answer = app_http.post(path, json=body)
    assert answer.status_code == status and error in answer.json()["error"], answer.text


@pytest.mark.fast
def test_bodies_are_json_whatever_their_content_type(app_http):
    assert app_http.post("/api/generate", content=b"").json() == {"error": "missing request body"}
    assert "invalid JSON" in app_http.post("/api/chat", content=b"{not json").json()["error"]
    assert app_http.post("/api/chat", content=b"[1]").json() == {"error": "the request body must be a JSON object"}
    # curl -d sends application/x-www-form-urlencoded; Ollama reads the body as JSON anyway
    made = app_http.post("/api/copy", content=json.dumps({"source": CHAT, "destination": "by-curl"}),
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert made.status_code == 200
    assert "by-curl:latest" in [m["name"] for m in app_http.get("/api/tags").json()["models"]]
    assert app_http.get("/api/nothing").json() == {"error": "404 page not found"}
    assert app_http.get("/api/generate").json() == {"error": "405 method not allowed"}


@pytest.mark.fast
def test_legacy_modelfile_create_and_openai_error_shape(app_http):
    created = app_http.post("/api/create", json={"model": "legacy", "stream": False, "license": None,
                                                 "modelfile": "FROM smollm2:135m\r\nPARAMETER top_k 5\r\n"})
    assert created.json() == {"status": "success"}
    shown = app_http.post("/api/show", json={"name": "legacy"}).json()
    assert "top_k                          5" in shown["parameters"]
    assert "legacy:latest" in [m["id"] for m in app_http.get("/v1/models").json()["data"]]
    for body, status, words in [({"model": CHAT, "messages": []}, 400, "messages must not be empty"),
                                ({"model": CHAT, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400,
                                 "invalid value for 'max_tokens'"),
                                ({"model": "ghost", "messages": [{"role": "user", "content": "x"}]}, 404, "not found")]:
        answer = app_http.post("/v1/chat/completions", json=body)
        error = answer.json()["error"]
        assert answer.status_code == status and words in error["message"] and error["type"] == "invalid_request_error"
    empty = app_http.post("/v1/embeddings", json={"model": CHAT, "input": ""})
    assert empty.status_code == 400 and "non-empty" in empty.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from slmlab.serve.ollama import ollama_server

    with ollama_server(models=(CHAT,), models_dir=tmp_path_factory.mktemp("ollama-store")) as srv:
        yield srv
    assert not srv.running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, trust_env=False, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def client(server):
    import ollama

    with ollama.Client(host=server.url, trust_env=False) as c:
        yield c


def ndjson(response: httpx.Response) -> list[dict]:
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert lines and all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def check_final(chunk: dict) -> None:
    assert chunk["done"] is True and chunk["done_reason"] in ("stop", "length")
    for key in STATS:
        assert isinstance(chunk[key], int) and chunk[key] >= 0, key
    assert chunk["eval_count"] >= 1 and chunk["eval_duration"] > 0 and chunk["prompt_eval_count"] >= 1
    # nanoseconds: a generation on this machine takes between a millisecond and ten minutes
    assert 1e6 < chunk["total_duration"] < 600e9
    assert chunk["total_duration"] >= chunk["eval_duration"]
    datetime.fromisoformat(chunk["created_at"].replace("Z", "+00:00"))


@pytest.mark.slow
def test_root_version_and_unknown_routes(http):
    root = http.get("/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert http.head("/").status_code == 200
    version = http.get("/api/version").json()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version["version"])
    missing = http.get("/api/nothing")
    assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.slow
def test_tags_lists_the_preinstalled_model(http):
    models = http.get("/api/tags").json()["models"]
    entry = next(m for m in models if m["name"] == CHAT)
    assert entry["model"] == CHAT and re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    assert entry["size"] > 50_000_000
    assert entry["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                "parameter_size": "134.52M", "quantization_level": "Q4_1"}
    datetime.fromisoformat(entry["modified_at"])


@pytest.mark.slow
def test_generate_streams_ndjson_then_the_same_answer_without_streaming(http):
    body = {"model": CHAT, "prompt": "Name a colour.", "options": GREEDY}
    chunks = ndjson(http.post("/api/generate", json=body))
    *pieces, final = chunks
    assert pieces and all(c["done"] is False and isinstance(c["response"], str) and c["model"] == CHAT
                          for c in pieces)
    check_final(final)
    assert final["response"] == "" and final["done_reason"] == "length" and final["eval_count"] == 4
    assert isinstance(final["context"], list) and all(isinstance(t, int) for t in final["context"])
    single = http.post("/api/generate", json={**body, "stream": False})
    assert single.headers["content-type"].startswith("application/json")
    one = single.json()
    check_final(one)
    assert one["response"] == "".join(c["response"] for c in pieces)
    assert one["load_duration"] < final["total_duration"]  # warm: no load the second time


@pytest.mark.slow
def test_chat_matches_llamacpp_backend_greedy(http):
    from slmlab.backends.llamacpp import LlamaCppBackend

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = http.post("/api/chat", json={"model": CHAT, "messages": messages, "stream": False,
                                          "options": {"temperature": 0, "num_predict": 12}}).json()
    check_final(answer)
    assert answer["message"]["role"] == "assistant"
    with LlamaCppBackend("smollm2-135m-instruct") as local:
        expected = local.chat(messages, max_tokens=12)
        raw = local.generate("The capital of France is", max_tokens=6)
    # the server's Go template + SYSTEM reproduce the GGUF's own chat template, token for token
    assert answer["message"]["content"] == expected.text
    assert answer["prompt_eval_count"] == expected.prompt_tokens and answer["eval_count"] == expected.completion_tokens
    plain = http.post("/api/generate", json={"model": CHAT, "prompt": "The capital of France is", "raw": True,
                                             "stream": False, "options": {"temperature": 0, "num_predict": 6}}).json()
    assert plain["response"] == raw.text and "context" not in plain


@pytest.mark.slow
def test_chat_stream_frames(http):
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "options": GREEDY}
    *pieces, final = ndjson(http.post("/api/chat", json=body))
    assert all(c["message"]["role"] == "assistant" and c["done"] is False for c in pieces)
    check_final(final)
    assert final["message"] == {"role": "assistant", "content": ""}


@pytest.mark.slow
def test_context_and_options_change_the_answer(http):
    first = http.post("/api/generate", json={"model": CHAT, "prompt": "My name is Ada.", "stream": False,
                                             "options": GREEDY}).json()
    follow = http.post("/api/generate", json={"model": CHAT, "prompt": "What is my name?", "stream": False,
                                              "context": first["context"], "options": GREEDY}).json()
    assert follow["prompt_eval_count"] > len(first["context"])  # the earlier turn was part of the prompt
    stopped = http.post("/api/generate", json={"model": CHAT, "prompt": "Count: 1, 2, 3,", "raw": True, "stream": False,
                                               "options": {"temperature": 0, "num_predict": 20, "stop": [","]}}).json()
    assert "," not in stopped["response"] and stopped["done_reason"] == "stop"


@pytest.mark.slow
def test_load_unload_keep_alive_and_ps(http):
    loaded = http.post("/api/generate", json={"model": CHAT, "keep_alive": "10m"}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load" and loaded["response"] == ""
    ps = http.get("/api/ps").json()["models"]
    entry = next(m for m in ps if m["name"] == CHAT)
    assert entry["size_vram"] == 0 and entry["context_length"] == 2048 and entry["size"] > 50_000_000
    expires = datetime.fromisoformat(entry["expires_at"]).timestamp()
    assert 500 < expires - time.time() <= 600
    unloaded = http.post("/api/chat", json={"model": CHAT, "messages": [], "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload" and unloaded["message"] == {"role": "assistant", "content": ""}
    assert all(m["name"] != CHAT for m in http.get("/api/ps").json()["models"])
    # a short keep_alive unloads by itself; num_ctx reloads with another context
    http.post("/api/generate", json={"model": CHAT, "prompt": "Hi", "keep_alive": 1, "stream": False,
                                     "options": {**GREEDY, "num_predict": 1, "num_ctx": 1024}})
    ps = http.get("/api/ps").json()["models"]
    assert [m["context_length"] for m in ps if m["name"] == CHAT] in ([1024], [])
    deadline = time.time() + 10
    while any(m["name"] == CHAT for m in http.get("/api/ps").json()["models"]) and time.time() < deadline:
        time.sleep(0.25)
    assert all(m["name"] != CHAT for m in http.get("/api/ps").json()["models"])


@pytest.mark.slow
def test_show(http):
    shown = http.post("/api/show", json={"model": CHAT}).json()
    assert shown["template"] == SMOLLM2_TEMPLATE and shown["capabilities"] == ["completion"]
    assert shown["details"]["quantization_level"] == "Q4_1"
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 8192
    assert shown["modelfile"].splitlines()[4].startswith("FROM /") and "TEMPLATE" in shown["modelfile"]
    assert 'stop                           "<|im_end|>"' in shown["parameters"]
    assert "Apache" in shown["license"] and "SmolLM" in shown["system"]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/api/generate", {"prompt": "x"}, 400, "model is required"),
    ("/api/generate", {"model": "nope:1b", "prompt": "x"}, 404, "not found"),
    ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "not found"),
    ("/api/chat", {"model": CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "options": {"num_ctx": "big"}}, 400, "num_ctx"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "stream": "yes"}, 400, "stream"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "keep_alive": "soon"}, 400, "invalid duration"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "format": "json"}, 400, "format"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "suffix": "y"}, 400, "does not support insert"),
    ("/api/generate", {"model": CHAT, "prompt": "x", "template": "{{ if .System }}"}, 400, "TEMPLATE"),
    ("/api/generate", {"model": CHAT, "prompt": "word " * 300, "options": {"num_ctx": 128}}, 400, "context"),
    ("/api/embed", {"model": CHAT, "input": "x"}, 400, "does not support embeddings"),
    ("/api/show", {"model": "ghost"}, 404, "not found"),
    ("/api/pull", {"model": "llama3.2"}, 404, "file does not exist"),
    ("/api/copy", {"source": "ghost", "destination": "x"}, 404, "not found"),
])
def test_error_contract(http, path, body, status, words):
    answer = http.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert words in answer.json()["error"]


@pytest.mark.slow
def test_malformed_bodies(http):
    assert http.post("/api/generate", content=b"").json() == {"error": "missing request body"}
    bad = http.post("/api/chat", content=b"{not json")
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]
    gone = http.request("DELETE", "/api/delete", json={"model": "ghost"})
    assert gone.status_code == 404 and "not found" in gone.json()["error"]


@pytest.mark.slow
def test_error_line_mid_stream(tmp_path):
    """A failure after the first chunk arrives as an {"error": ...} line (HTTP 200 already sent)."""
    import ollama
    from starlette.testclient import TestClient

    from slmlab.serve.ollama.app import create_app
    from slmlab.serve.ollama.registry import Registry
    from slmlab.serve.ollama.runner import Runner

    class FailingRunner(Runner):  # the real model, with a fault after two pieces
        def stream(self, loaded, prompt, gen, cancel):
            pieces = super().stream(loaded, prompt, gen, cancel)

            def broken():
                for i, piece in enumerate(pieces):
                    if i == 2:
                        raise RuntimeError("the runner crashed")
                    yield piece
            return broken()

    registry = Registry(tmp_path)
    app = create_app(registry, FailingRunner(registry), preload=[CHAT])
    with TestClient(app) as http:
        lines = ndjson(http.post("/api/generate", json={"model": CHAT, "prompt": "Hello", "options": GREEDY}))
        assert [c["done"] for c in lines[:-1]] == [False, False] and lines[-1] == {"error": "the runner crashed"}
    # the official client, over real HTTP (uvicorn in a thread on 127.0.0.1), raises the error line
    import threading

    import uvicorn

    from slmlab.process import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(registry, FailingRunner(registry)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        client = ollama.Client(host=f"http://127.0.0.1:{port}", trust_env=False)
        with pytest.raises(ollama.ResponseError, match="the runner crashed"):
            list(client.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], stream=True, options=GREEDY))
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


@pytest.mark.slow
def test_installed_models_have_their_series_at_zero_before_any_request(tmp_path):
    from starlette.testclient import TestClient

    from slmlab.serve.ollama.app import create_app
    from slmlab.serve.ollama.registry import Registry

    with TestClient(create_app(Registry(tmp_path), preload=[CHAT])) as http:
        lines = set(http.get("/metrics").text.splitlines())
    for name in ("slmlab_ollama_eval_tokens_total", "slmlab_ollama_prompt_tokens_total",
                 "slmlab_ollama_eval_duration_seconds_count", "slmlab_ollama_prompt_eval_duration_seconds_count"):
        assert f'{name}{{model="{CHAT}"}} 0.0' in lines, name  # rate() sees the first generation as an increase


@pytest.mark.slow
def test_pull_status_sequence(http):
    statuses = ndjson(http.post("/api/pull", json={"model": "all-minilm"}))
    assert statuses[0] == {"status": "pulling manifest"}
    layers = statuses[1:-3]
    assert layers and all(re.fullmatch(r"pulling [0-9a-f]{12}", s["status"]) and
                          s["digest"] == f"sha256:{s['digest'][7:]}" and s["status"][8:] == s["digest"][7:19] and
                          s["completed"] == s["total"] > 0 for s in layers)
    assert [s["status"] for s in statuses[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    assert http.post("/api/pull", json={"model": "all-minilm", "stream": False}).json() == {"status": "success"}
    assert "all-minilm:latest" in [m["name"] for m in http.get("/api/tags").json()["models"]]


@pytest.mark.slow
def test_embeddings(http):
    http.post("/api/pull", json={"model": "all-minilm", "stream": False})
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply today."]
    answer = http.post("/api/embed", json={"model": "all-minilm", "input": texts}).json()
    vectors = answer["embeddings"]
    assert answer["model"] == "all-minilm" and len(vectors) == 3 and len(vectors[0]) == 384
    assert answer["prompt_eval_count"] > 10 and answer["total_duration"] > 0 and "load_duration" in answer
    dot = [[sum(a * b for a, b in zip(u, v, strict=True)) for v in vectors] for u in vectors]
    assert all(abs(dot[i][i] - 1) < 1e-4 for i in range(3))  # unit length
    assert dot[0][1] > dot[0][2] + 0.2  # cat/kitten closer than cat/markets
    one = http.post("/api/embed", json={"model": "all-minilm", "input": texts[0]}).json()["embeddings"]
    assert len(one) == 1 and max(abs(a - b) for a, b in zip(one[0], vectors[0], strict=True)) < 1e-5
    short = http.post("/api/embed", json={"model": "all-minilm", "input": texts[0], "dimensions": 64}).json()
    assert len(short["embeddings"][0]) == 64
    too_long = http.post("/api/embed", json={"model": "all-minilm", "input": "word " * 400, "truncate": False})
    assert too_long.status_code == 400 and "context length" in too_long.json()["error"]
    legacy = http.post("/api/embeddings", json={"model": "all-minilm", "prompt": texts[0]}).json()
    assert max(abs(a - b) for a, b in zip(legacy["embedding"], vectors[0], strict=True)) < 1e-5
    assert http.post("/api/embeddings", json={"model": "all-minilm", "prompt": ""}).json() == {"embedding": []}
    not_chat = http.post("/api/chat", json={"model": "all-minilm", "messages": [{"role": "user", "content": "x"}]})
    assert not_chat.status_code == 400 and "does not support chat" in not_chat.json()["error"]


@pytest.mark.slow
def test_create_from_a_modelfile_changes_behaviour(http):
    from slmlab.serve.ollama.modelfile import parse_modelfile

    mf = parse_modelfile('FROM smollm2:135m\nPARAMETER num_predict 3\nPARAMETER temperature 0\n'
                         'SYSTEM """You are a poet."""\nMESSAGE user Hello\nMESSAGE assistant Hi\n')
    statuses = ndjson(http.post("/api/create", json=mf.create_request("brief")))
    assert statuses[0]["status"].startswith("using existing layer sha256:")
    assert all(s["status"].startswith("creating new layer sha256:") for s in statuses[1:-2])
    assert [s["status"] for s in statuses[-2:]] == ["writing manifest", "success"]
    shown = http.post("/api/show", json={"model": "brief"}).json()
    assert shown["system"] == "You are a poet." and shown["details"]["parent_model"] == "smollm2:135m"
    assert "num_predict                    3" in shown["parameters"] and shown["messages"][0]["content"] == "Hello"
    base = http.post("/api/generate", json={"model": CHAT, "prompt": "Hi", "stream": False,
                                            "options": {"temperature": 0, "num_predict": 5}}).json()
    brief = http.post("/api/generate", json={"model": "brief", "prompt": "Write a poem about the sea.",
                                             "stream": False}).json()
    assert brief["eval_count"] == 3 and brief["done_reason"] == "length"  # PARAMETER num_predict applied
    assert brief["prompt_eval_count"] > base["prompt_eval_count"]  # MESSAGE examples are in the prompt
    raw_template = http.post("/api/create", json={"model": "plain", "from": "brief", "template": "{{ .Prompt }}",
                                                  "stream": False}).json()
    assert raw_template == {"status": "success"}
    plain = http.post("/api/generate", json={"model": "plain", "prompt": "Hi", "stream": False}).json()
    assert plain["prompt_eval_count"] <= 3  # no chat markup: just "Hi" (and a BOS if the model wants one)
    legacy = http.post("/api/create", json={"model": "legacy", "stream": False,
                                            "modelfile": "FROM smollm2:135m\nPARAMETER top_k 5\n"}).json()
    assert legacy == {"status": "success"}
    assert "top_k" in http.post("/api/show", json={"model": "legacy"}).json()["parameters"]


@pytest.mark.slow
@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "x", "from": CHAT, "parameters": {"context_length": 4096}}, 400, "num_ctx"),
    ({"model": "x", "from": CHAT, "template": "{{ range .Messages }}"}, 400, "TEMPLATE"),
    ({"model": "x", "from": "ghost"}, 404, "not found"),
    ({"model": "x"}, 400, "neither 'from' or 'files'"),
    ({"model": "Bad Name!", "from": CHAT}, 400, "invalid model name"),
    ({"model": "x", "from": CHAT, "quantize": "q4_K_M"}, 400, "quantize"),
    ({"model": "x", "modelfile": "FROM smollm2:135m\nFILE ./doc.txt\n"}, 400, "FILE is not"),
    ({"model": "x", "files": {"m.gguf": "sha256:" + "0" * 64}}, 400, "not found"),
])
def test_create_errors(http, body, status, words):
    answer = http.post("/api/create", json={**body, "stream": False})
    assert answer.status_code == status and words in answer.json()["error"]


@pytest.mark.slow
def test_copy_delete_and_blobs(http, client, tmp_path):
    from slmlab.models.resolver import resolve
    from slmlab.serve.ollama.modelfile import create_model

    assert http.post("/api/copy", json={"source": CHAT, "destination": "backup"}).status_code == 200
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert "backup:latest" in names
    assert http.request("DELETE", "/api/delete", json={"model": "backup"}).status_code == 200
    assert http.request("DELETE", "/api/delete", json={"model": "backup"}).status_code == 404
    assert http.post("/api/generate", json={"model": "backup", "prompt": "x"}).status_code == 404
    # blobs: digests checked, then a model FROM a local GGUF file (the Modelfile helper uploads it)
    digest = "sha256:" + "1" * 64
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=b"not that").status_code == 400
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(resolve("smollm2-135m-instruct").path.read_bytes())
    progress = create_model(client, "from-file", "FROM ./mine.gguf\nPARAMETER temperature 0\n", base_dir=tmp_path)
    assert progress.status == "success"
    answer = client.generate("from-file", "The capital of France is", options={"num_predict": 4})
    assert answer.eval_count == 4 and client.show("from-file").details.format == "gguf"


@pytest.mark.slow
def test_openai_compatible_endpoints(server):
    import openai

    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama",
                       http_client=openai.DefaultHttpxClient(trust_env=False))
    assert CHAT in [m.id for m in oa.models.list().data]
    reply = oa.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       temperature=0)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    streamed = oa.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                          temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(streamed)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content and chunks[-1].usage.completion_tokens == 5
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "Hi"}])


@pytest.mark.slow
def test_metrics_from_the_timing_fields(http):
    http.post("/api/generate", json={"model": CHAT, "prompt": "Hi", "stream": False, "options": GREEDY})
    text = http.get("/metrics").text
    assert f'slmlab_ollama_eval_tokens_total{{model="{CHAT}"}}' in text
    assert 'slmlab_ollama_requests_total{endpoint="/api/generate",status="200"}' in text
    assert f'slmlab_ollama_eval_duration_seconds_count{{model="{CHAT}"}}' in text
    assert re.search(r"^slmlab_ollama_loaded_models \d", text, re.M)


# ---------------------------------------------------------------------------------------------- official client
@pytest.mark.slow
def test_official_sync_client(client, http):
    import ollama

    assert CHAT in [m.model for m in client.list().models]
    assert client.show(CHAT).capabilities == ["completion"]
    answer = client.generate(CHAT, "Name a colour.", options=GREEDY)
    assert isinstance(answer, ollama.GenerateResponse) and answer.done and answer.eval_count == 4
    parts = list(client.generate(CHAT, "Name a colour.", options=GREEDY, stream=True))
    assert "".join(p.response for p in parts) == answer.response and parts[-1].done_reason == "length"
    chat = client.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options=GREEDY)
    streamed = list(client.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options=GREEDY, stream=True))
    assert "".join(p.message.content for p in streamed) == chat.message.content
    assert CHAT in [m.model for m in client.ps().models]
    client.pull("all-minilm")
    pulled = list(client.pull("all-minilm", stream=True))
    assert pulled[0].status == "pulling manifest" and pulled[-1].status == "success"
    assert len(client.embed("all-minilm", ["a", "b"]).embeddings) == 2
    assert len(client.embeddings("all-minilm", "a").embedding) == 384
    assert client.create("sync-made", from_=CHAT, system="Be brief.").status == "success"
    assert client.copy("sync-made", "sync-copy").status == "success"
    assert client.delete("sync-copy").status == "success"
    with pytest.raises(ollama.ResponseError) as info:
        client.chat("ghost", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert http.get("/api/version").json()["version"]  # the client has no version(); the REST call is the way


@pytest.mark.slow
def test_official_async_client(server):
    import ollama

    async def main() -> None:
        client = ollama.AsyncClient(host=server.url, trust_env=False)
        assert CHAT in [m.model for m in (await client.list()).models]
        assert (await client.show(CHAT)).details.family == "llama"
        answer = await client.generate(CHAT, "Name a colour.", options=GREEDY)
        parts = [p async for p in await client.generate(CHAT, "Name a colour.", options=GREEDY, stream=True)]
        assert "".join(p.response for p in parts) == answer.response
        chat = await client.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options=GREEDY)
        streamed = [p async for p in await client.chat(CHAT, messages=[{"role": "user", "content": "Hi"}],
                                                        options=GREEDY, stream=True)]
        assert "".join(p.message.content for p in streamed) == chat.message.content
        assert isinstance((await client.ps()).models, list)
        assert (await client.pull("all-minilm")).status == "success"
        assert len((await client.embed("all-minilm", "a")).embeddings[0]) == 384
        assert len((await client.embeddings("all-minilm", "a")).embedding) == 384
        assert (await client.create("async-made", from_=CHAT, parameters={"temperature": 0})).status == "success"
        assert (await client.copy("async-made", "async-copy")).status == "success"
        assert (await client.delete("async-copy")).status == "success"
        with pytest.raises(ollama.ResponseError):
            await client.delete("async-copy")
        await client.close()

    asyncio.run(main())


@pytest.mark.slow
def test_ensure_ollama_uses_ollama_host_or_starts_one(server, monkeypatch):
    from slmlab.process import free_port
    from slmlab.serve.ollama import ensure_ollama

    monkeypatch.setenv("OLLAMA_HOST", server.url)
    with ensure_ollama() as found:
        assert found.url == server.url and not found.started and found.served_by == "slmlab"
    assert server.running  # not ours to stop
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")  # nothing answers there
    with ensure_ollama(fresh=True) as started:
        assert started.started and started.url != server.url
        store = started.store.name
        assert httpx.get(f"{started.url}/api/tags", trust_env=False, timeout=60).json()["models"][0]["name"] == CHAT
        process = started.server
    assert not process.running and not __import__("os").path.exists(store)
