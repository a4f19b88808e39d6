"""llama.cpp's own `llama-server` (slmlab.serve.llama_server): its command line and bad input (fast), then one real
server with 4 slots and an API key for the whole module (slow), called with the openai client, read through /health,
/slots and /metrics, and loaded by 4 concurrent streams that decode together (continuous batching); and its web chat
UI, built from the vendored sources with npm, chatting in a headless Chromium.

The slow tests need the build (`slmlab setup llamacpp`); the UI test also the UI (`slmlab setup llamacpp --ui`) and
Debian's chromium and chromium-driver. Without them they are skipped and say so.
"""

from __future__ import annotations

import os
import stat
import time

import httpx
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import load_test
from slmlab.process import free_port, group_members, port_in_use
from slmlab.serve.llama_server import (
    LlamaServer,
    llama_server,
    llama_server_command,
    llamacpp_metrics,
    metrics,
    slots,
    write_key_file,
)
from slmlab.setup import llamacpp_ui
from slmlab.setup.llamacpp import SETUP_COMMAND, install_dir, llamacpp_available
from slmlab.setup.llamacpp_ui import UI_SETUP_COMMAND, llamacpp_ui_available, ui_install_dir

KEY = "llama-server-key-5"
MODEL = "smollm2-135m-instruct"
SLOTS = 4
N_CTX = 1024
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
needs_build = pytest.mark.skipif(not llamacpp_available(), reason=f"llama.cpp is not built at {install_dir()} "
                                 f"(run `{SETUP_COMMAND}`)")
needs_ui = pytest.mark.skipif(not llamacpp_ui_available(), reason=f"llama-server's web UI is not built at "
                              f"{ui_install_dir()} (run `{UI_SETUP_COMMAND}`: it needs npm)")


@pytest.fixture(scope="module", autouse=True)
def _logs_in_a_temp_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        yield


# ---------------------------------------------------------------- fast: no server


@pytest.mark.fast
def test_command_line_has_slots_batching_metrics_and_a_key_file():
    cmd = llama_server_command("/b/llama-server", "/m/smol.gguf", "smol", parallel=8, n_ctx=512, threads=2,
                               api_key_file="/k/keys.txt", extra_args=["--flash-attn", "on"])
    flags = {flag: cmd[i + 1] for i, flag in enumerate(cmd[:-2]) if flag.startswith("--")
             and i + 1 < len(cmd) and not cmd[i + 1].startswith("--")}
    assert cmd[0] == "/b/llama-server" and flags["--model"] == "/m/smol.gguf" and flags["--alias"] == "smol"
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "{port}" and flags["--threads"] == "2"
    assert flags["--parallel"] == "8" and flags["--ctx-size"] == str(8 * 512)  # n_ctx tokens for each slot
    assert "--cont-batching" in cmd and "--metrics" in cmd and flags["--api-key-file"] == "/k/keys.txt"
    assert "--api-key" not in cmd and "--path" not in cmd and cmd[-2:] == ["--flash-attn", "on"]
    with_ui = llama_server_command("/b/llama-server", "/m/smol.gguf", "smol", ui_path="/ui/dist")
    assert with_ui[with_ui.index("--path") + 1] == "/ui/dist"  # the web UI's files, served at /
    for bad in (0, -1, 2.5, True):
        with pytest.raises(SlmLabError, match="parallel"):
            llama_server_command("p", "m", "a", parallel=bad)
    with pytest.raises(SlmLabError, match="n_ctx"):
        llama_server_command("p", "m", "a", n_ctx=8)


@pytest.mark.fast
def test_the_key_file_is_private_and_one_line():
    folder = write_key_file("  sk-abc  ")
    try:
        key_file = folder / "api-keys.txt"
        assert key_file.read_text() == "sk-abc\n" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    for bad in ("", "  ", "a\nb", "# comment"):
        with pytest.raises(SlmLabError, match="one line"):
            write_key_file(bad)


@pytest.mark.fast
def test_a_missing_build_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    with pytest.raises(SlmLabError, match=SETUP_COMMAND):
        llama_server(MODEL)


@needs_build
@pytest.mark.fast
def test_the_web_ui_without_its_build_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setattr(llamacpp_ui, "ui_install_dir", lambda version=None: tmp_path / "no-ui")
    with pytest.raises(SlmLabError, match="web UI is not built") as err:
        llama_server(MODEL, ui=True)
    assert UI_SETUP_COMMAND in str(err.value)


@needs_build
@pytest.mark.fast
def test_a_model_path_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(SlmLabError, match="Model file not found") as err:
        llama_server(missing)
    assert str(missing.name) in str(err.value)


# ---------------------------------------------------------------- slow: one real llama-server


@pytest.fixture(scope="module")
def server():
    # one thread: llama.cpp's threads wait for each other at every step, so on a busy 2-core machine two threads
    # crawl (~2 tok/s measured next to other work, against ~22 with one) and the streams below time out
    with llama_server(MODEL, parallel=SLOTS, n_ctx=N_CTX, api_key=KEY, threads=1) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, http_client=httpx.Client(trust_env=False))


@needs_build
@pytest.mark.slow
def test_health_is_public_and_the_key_never_reaches_the_command_line(server):
    assert isinstance(server, LlamaServer) and server.alias == MODEL and server.parallel == SLOTS
    answer = httpx.get(f"{server.url}/health", trust_env=False)
    assert answer.status_code == 200 and answer.json().get("status") == "ok"
    assert KEY not in " ".join(server.cmd)
    key_file = server.cmd[server.cmd.index("--api-key-file") + 1]
    assert open(key_file).read().strip() == KEY and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


@needs_build
@pytest.mark.slow
def test_chat_and_stream_with_the_openai_client(client):
    models = [m.id for m in client.models.list().data]
    assert MODEL in models
    answer = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0)
    assert answer.choices[0].message.content.strip() and answer.usage.completion_tokens > 0
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0,
                                            stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 3 and "".join(pieces) == answer.choices[0].message.content  # greedy: the same answer


@needs_build
@pytest.mark.slow
def test_without_the_key_or_with_a_wrong_one_it_answers_401(server):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 4}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        for method, path in (("POST", "/v1/chat/completions"), ("GET", "/slots"), ("GET", "/metrics")):
            answer = httpx.request(method, f"{server.url}{path}", json=body if method == "POST" else None,
                                   headers=headers, trust_env=False)
            assert answer.status_code == 401, (path, headers, answer.text)


@needs_build
@pytest.mark.slow
def test_slots_lists_each_slot_with_its_context(server):
    found = slots(server)
    assert [slot["id"] for slot in found] == list(range(SLOTS))
    assert all(slot["n_ctx"] == N_CTX for slot in found)
    assert len(slots(server.url, api_key=KEY)) == SLOTS  # a URL and the key
    with pytest.raises(SlmLabError, match="401"):
        slots(server.url)  # a URL without the key


@needs_build
@pytest.mark.slow
def test_metrics_have_llamacpp_names_and_count_tokens(server, client):
    before = llamacpp_metrics(server)
    for name in ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", "llamacpp:requests_processing",
                 "llamacpp:n_decode_total", "llamacpp:n_busy_slots_per_decode"):
        assert name in before, sorted(before)
    answer = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8, temperature=0)
    after = metrics(server)
    predicted = after.value("llamacpp:tokens_predicted_total") - before["llamacpp:tokens_predicted_total"]
    assert predicted == answer.usage.completion_tokens


@needs_build
@pytest.mark.slow
def test_four_streams_decode_together(server):
    settings = {"api_key": KEY, "max_tokens": 48, "extra_body": {"ignore_eos": True}, "show_progress": False}
    alone = load_test(server, concurrency=1, num_requests=3, warmups=1, **settings)
    together = load_test(server, concurrency=SLOTS, num_requests=2 * SLOTS, **settings)
    df = together.requests
    assert df["ok"].all() and (df["output_tokens"] == 48).all(), df[["error", "output_tokens"]]
    decoding = list(zip(df["start_s"] + df["ttft_s"], df["end_s"], strict=True))  # first → last token, per request
    overlapping = max(sum(start < end_b and start_b < end for start_b, end_b in decoding) for start, end in decoding)
    assert overlapping >= SLOTS, df[["start_s", "ttft_s", "end_s"]]  # all four decoding at the same time
    # how much more throughput batching gives is a benchmark's job (benchmarks/llama_server_vs_python.py), not a
    # timed test's: on a busy 2-core machine the ratio for this Q4_1 model ranged 1.2-1.7 at concurrency 4-8
    assert alone.summary()["output_throughput"] > 0 and together.summary()["output_throughput"] > 0
    assert llamacpp_metrics(server)["llamacpp:n_busy_slots_per_decode"] > 1  # the server's own count


@needs_build
@pytest.mark.slow
def test_the_gateway_in_front_passes_as_many_streams_at_once_as_the_server_has_slots(server, tmp_path):
    """The course's gateway (engine="openai") with upstream_parallel=SLOTS: four clients through it decode
    together. Before the gateway knew the upstream's slots it ran one generation at a time, so the same four
    decoded one after another (p95 TTFT 2.2 s through it where llama-server alone gave 0.17 s)."""
    from slmlab.serve import app_server

    key_file = tmp_path / "upstream-key"  # the gateway's key for the upstream, as a mounted secret would hold it
    key_file.write_text(KEY + "\n")
    story = [[{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]]
    with app_server(engine="openai", model=None, upstream_url=f"{server.url}/v1", served_model_name=server.alias,
                    upstream_parallel=SLOTS, env={"SLMLAB_UPSTREAM_API_KEY_FILE": str(key_file)}) as gateway:
        settings = {"prompts": story, "concurrency": SLOTS, "num_requests": SLOTS, "max_tokens": 24, "warmups": 1,
                    "show_progress": False}
        load_test(server, api_key=KEY, **settings)  # the first concurrent round is slow on any server: not compared
        direct = load_test(server, api_key=KEY, **settings)
        through = load_test(gateway, **settings)
    df = through.requests
    assert df["ok"].all() and (df["output_tokens"] >= 8).all(), df[["error", "output_tokens"]]
    decoding = list(zip(df["start_s"] + df["ttft_s"], df["end_s"], strict=True))
    overlapping = max(sum(start < end_b and start_b < end for start_b, end_b in decoding) for start, end in decoding)
    assert overlapping == SLOTS, df[["start_s", "ttft_s", "end_s"]]  # one at a time would give 1
    print(f"\n  [measured] p95 TTFT at concurrency {SLOTS}: {through.summary()['p95_ttft_ms']:.0f} ms through the "
          f"gateway, {direct.summary()['p95_ttft_ms']:.0f} ms direct (same run)")


@needs_build
@pytest.mark.slow
def test_a_prompt_longer_than_a_slot_is_a_clear_error(server):
    from slmlab.backends.openai_http import OpenAIBackend

    backend = OpenAIBackend(server.url, api_key=KEY)
    try:
        with pytest.raises(SlmLabError, match=f"the context is {N_CTX}") as err:
            backend.chat("tell me more " * 400, max_tokens=8)  # about 1,200 tokens: more than one slot holds
    finally:
        backend.close()
    assert "--ctx-size for llama-server" in err.value.hint


@needs_build
@pytest.mark.slow
def test_a_port_in_use_is_a_clear_error_and_leaves_no_key_file(server):
    second = llama_server(MODEL, port=server.port, api_key="other-key")
    key_file = second.cmd[second.cmd.index("--api-key-file") + 1]
    assert os.path.exists(key_file)
    with pytest.raises(SlmLabError, match=f"port {server.port} .* already in use"):
        second.start()
    assert not os.path.exists(key_file) and not second.running


@needs_build
@pytest.mark.slow
def test_stop_ends_the_process_group_frees_the_port_and_deletes_the_key_file():
    port = free_port()
    running = llama_server(MODEL, parallel=1, n_ctx=256, port=port, api_key="k").start()
    key_file = running.cmd[running.cmd.index("--api-key-file") + 1]
    assert os.path.exists(key_file) and running.startup_s is not None
    pid = running.pid
    running.stop()
    deadline = time.monotonic() + 5
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(pid) and not port_in_use(port) and not os.path.exists(key_file)


# ---------------------------------------------------------------- the web UI, in a real browser


def _wait(condition, timeout: float, what: str, browser=None):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            page = browser.find_element("tag name", "body").text[:600] if browser is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the page shows: {page!r}")
        time.sleep(0.1)
    return value


@needs_build
@needs_ui
@pytest.mark.slow
def test_the_web_ui_built_from_the_vendored_sources_chats_in_chromium(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with llama_server(MODEL, parallel=1, n_ctx=N_CTX, threads=1, ui=True) as ui_server:
        page = httpx.get(f"{ui_server.url}/", trust_env=False)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert httpx.get(f"{ui_server.url}/build.json", trust_env=False).json() == {"version": "b11312"}
        browser.get(f"{ui_server.url}/")
        box = _wait(lambda: next((t for t in browser.find_elements(By.TAG_NAME, "textarea") if t.is_displayed()),
                                 None), 30, "the message box", browser)
        assert browser.title == "llama-ui"
        _wait(lambda: MODEL in browser.page_source or "smollm2" in browser.page_source, 15, "the model's name",
              browser)
        box.send_keys(QUESTION[0]["content"] + Keys.ENTER)

        def answer() -> str:
            found = browser.find_elements(By.CSS_SELECTOR, '[aria-label="Assistant message with actions"]')
            return found[-1].text.strip() if found else ""

        _wait(lambda: llamacpp_metrics(ui_server).get("llamacpp:tokens_predicted_total", 0) > 0 and answer(), 120,
              "the assistant's answer", browser)
        shown = browser.find_elements(By.CSS_SELECTOR, '[aria-label="User message with actions"]')
        assert shown and QUESTION[0]["content"] in shown[-1].text  # the question as sent, the answer below it
        assert len(answer()) > 3
