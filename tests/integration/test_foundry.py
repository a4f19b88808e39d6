"""Foundry Local (foundry-local-sdk 2.2.1), in-process and offline: slmlab.foundry.local, the backend, the web service.

The model is the bundled SmolLM2 converted once to an ONNX Runtime GenAI int8 folder (slmlab.convert.gguf_to_onnx,
cached), put in Foundry's LOCAL catalog. Foundry runs the same ONNX Runtime GenAI as the 'onnx' engine, so greedy
answers must match it token for token. Nothing here goes online: the manager's public catalog points at 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slmlab.backends.base import GenerationOptions
from slmlab.backends.foundry import foundry_search_options
from slmlab.errors import SlmLabError
from slmlab.foundry import catalog as foundry_catalog
from slmlab.foundry import local as foundry_local

QUESTION = [{"role": "user", "content": "Name three colors."}]
PARITY_PROMPT = [{"role": "user", "content": "Explain what a barometer measures."}]


def show(capsys: pytest.CaptureFixture, line: str) -> None:
    """Print a measured figure even under pytest -q."""
    with capsys.disabled():
        print(f"\n  [measured] {line}")


# ---------------------------------------------------------------- fast: no runtime loaded

@pytest.mark.fast
def test_greedy_options_turn_sampling_off():
    search = foundry_search_options(GenerationOptions(max_tokens=12))
    assert search == {"max_output_tokens": 12, "do_sample": False}  # Foundry samples by default


@pytest.mark.fast
def test_sampling_options_pass_every_knob_and_a_seed():
    search = foundry_search_options(GenerationOptions(temperature=0.7, top_p=0.9, top_k=0, seed=3), max_output_tokens=5)
    assert search == {"max_output_tokens": 5, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0,
                      "seed": 3}
    unseeded = foundry_search_options(GenerationOptions(temperature=1.0, seed=None))
    assert isinstance(unseeded["seed"], int) and unseeded["seed"] >= 0


@pytest.mark.fast
def test_missing_sdk_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "foundry_local_sdk", None)  # makes the package look uninstalled
    with pytest.raises(SlmLabError, match="foundry-local-sdk") as err:
        foundry_local.sdk()
    assert err.value.hint == "Run: pip install -e '.[foundry]'"


@pytest.mark.fast
def test_missing_sdk_stops_the_backend_before_any_conversion(monkeypatch):
    from slmlab.backends.foundry import FoundryBackend

    monkeypatch.setitem(sys.modules, "foundry_local_sdk", None)
    with pytest.raises(SlmLabError, match="foundry-local-sdk"):
        FoundryBackend("anything")


@pytest.mark.fast
@pytest.mark.parametrize("name, model_id", [("smollm2-135m-instruct-ort-int8", "smollm2-135m-instruct-ort-int8:1"),
                                            ("My Model (v2)", "my-model-v2:1"), ("...", "model:1")])
def test_model_ids_are_what_foundry_accepts(name, model_id):
    assert foundry_local.model_id_for(Path("/x") / name) == model_id


@pytest.mark.fast
def test_native_errors_lose_their_cpp_location():
    raw = ("local_model_catalog.cc:276 virtual fl::Model* fl::LocalModelCatalog::RegisterModel(const std::string&, "
           "const fl::ModelInfo&) model_id is already registered: smol:1")
    assert foundry_local._native_message(Exception(raw)) == "model_id is already registered: smol:1"
    assert foundry_local._native_message(Exception("plain message")) == "plain message"


def fake_folder(folder: Path, context: int = 8192) -> Path:
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text(json.dumps(
        {"model": {"context_length": context, "type": "llama"}, "search": {"max_length": context, "top_k": 50}}))
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "tokenizer.json").write_text("{}")
    (folder / ".slmlab-converted.json").write_text("{}")
    return folder


@pytest.mark.fast
def test_context_view_links_the_files_and_shortens_the_context(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    source = fake_folder(tmp_path / "model-ort-int8")
    view = foundry_local.context_view(source, 512)
    assert view == tmp_path / "cache" / "foundry" / "views" / "model-ort-int8-ctx512"
    config = json.loads((view / "genai_config.json").read_text())
    assert config["model"]["context_length"] == config["search"]["max_length"] == 512
    assert config["search"]["top_k"] == 50  # the rest of the config is kept
    assert (view / "model.onnx").is_symlink() and (view / "model.onnx").resolve() == (source / "model.onnx").resolve()
    assert not (view / ".slmlab-converted.json").exists()
    assert foundry_local.context_view(source, 512) == view  # again: same view, links kept
    assert foundry_local.context_view(source, 8192) == source  # the full context is the folder itself


@pytest.mark.fast
@pytest.mark.parametrize("bad", [8, 9000, 1.5, True, "512"])
def test_context_view_rejects_lengths_that_do_not_fit(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SlmLabError, match="does not fit") as err:
        foundry_local.context_view(fake_folder(tmp_path / "m"), bad)
    assert "16 to 8192" in err.value.hint


@pytest.mark.fast
def test_stage_in_cache_lays_the_folder_out_as_a_downloaded_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    source = fake_folder(tmp_path / "m")
    staged = foundry_local.stage_in_cache(source, "m:1")
    assert staged == tmp_path / "cache" / "foundry" / "models" / "slmlab" / "m-1"
    assert json.loads((staged / "inference_model.json").read_text()) == {"Name": "m:1"}
    assert (staged / "genai_config.json").resolve() == (source / "genai_config.json").resolve()


@pytest.mark.fast
def test_catalog_entry_has_what_foundry_reads(tmp_path):
    entry = foundry_catalog.catalog_entry("smol:3", fake_folder(tmp_path / "m"), display_name="Smol")
    assert entry["properties"]["name"] == "smol" and entry["properties"]["version"] == 3
    assert entry["assetId"].endswith("/models/smol/versions/3") and entry["entityId"]
    assert entry["annotations"]["systemCatalogData"]["displayName"] == "Smol"
    variant = entry["properties"]["variantInfo"]["variantMetadata"]
    assert variant["device"] == "cpu" and variant["executionProvider"] == "CPUExecutionProvider"
    assert variant["fileSizeBytes"] > 0
    with pytest.raises(ValueError, match="name:version"):
        foundry_catalog.catalog_entry("smol", tmp_path)


# The filters foundry-local-sdk 2.2.1 sends for its public catalog on a CPU-only machine, as recorded from it.
FOUNDRY_FILTERS = [
    {"field": "type", "operator": "eq", "values": ["models"]},
    {"field": "kind", "operator": "eq", "values": ["Versioned"]},
    {"field": "annotations/systemCatalogData/deploymentOptions", "operator": "eq",
     "values": ["Foundry Local on Devices"]},
    {"field": "annotations/archived", "operator": "NotEquals", "values": ["true"]},
    {"field": "labels", "operator": "eq", "values": ["latest"]},
    {"field": "properties/variantInfo/variantMetadata/device", "operator": "eq", "values": ["cpu"]},
    {"field": "properties/variantInfo/variantMetadata/executionProvider", "operator": "eq",
     "values": ["CPUExecutionProvider"]}]


@pytest.mark.fast
def test_catalog_answers_foundrys_own_request_and_filters_by_name_and_device(tmp_path):
    from slmlab.foundry.catalog_filters import answer

    folder = fake_folder(tmp_path / "m")
    entries = [foundry_catalog.catalog_entry("a:1", folder), foundry_catalog.catalog_entry("b:1", folder, device="npu")]

    def names(filters):
        return [e["properties"]["name"] for e in answer(entries, {"filters": filters, "pageSize": 50})["value"]]

    assert names(FOUNDRY_FILTERS) == ["a"]  # b is for an NPU
    assert names([{"field": "name", "operator": "eq", "values": ["B"]}]) == ["b"] and names([]) == ["a", "b"]
    with pytest.raises(SlmLabError, match="no field 'labelz'"):
        names([{"field": "labelz", "operator": "eq", "values": ["latest"]}])


# ---------------------------------------------------------------- slow: the catalog server as a process

@pytest.mark.slow
def test_catalog_server_answers_foundrys_request(tmp_path):
    import httpx

    from slmlab.process import ServerProcess

    entries = tmp_path / "entries.json"
    entries.write_text(json.dumps([foundry_catalog.catalog_entry("a:1", fake_folder(tmp_path / "m"))]))
    server = ServerProcess([sys.executable, "-m", "slmlab.foundry.catalog", "--port", "{port}", "--entries",
                            str(entries)], ready_url=foundry_catalog.HEALTH_PATH, name="catalog-test")
    with server:
        url = server.url + foundry_catalog.CATALOG_PATH
        found = httpx.post(url, json={"filters": [{"field": "name", "operator": "eq", "values": ["a"]}]}).json()
        missing = httpx.post(url, json={"filters": [{"field": "name", "operator": "eq", "values": ["zz"]}]}).json()
        assert [e["properties"]["name"] for e in found["value"]] == ["a"] and found["totalCount"] == 1
        assert missing == {"value": [], "totalCount": 0, "continuationToken": ""}
        assert httpx.post(url, content=b"not json").status_code == 400
        refused = httpx.post(url, json={"filters": [{"field": "name", "operator": "like", "values": ["a"]}]})
        assert refused.status_code == 400 and "unknown operator 'like'" in refused.json()["error"]["message"]
        assert httpx.get(server.url + "/other").status_code == 404
    assert not server.running


@pytest.mark.slow
def test_the_gallery_is_served_and_searched_page_by_page():
    from slmlab.foundry import gallery

    listing = gallery.entries()
    chat = [{"field": "annotations/tags/task", "operator": "eq", "values": ["chat-completion"]}]
    expected = [e["properties"]["name"] for e in listing if e["annotations"]["tags"]["task"] == "chat-completion"]
    with gallery.serve() as server:
        found = gallery.search(server.url, chat, page_size=4)  # several pages: the token is followed
        assert [e["properties"]["name"] for e in found] == expected and len(expected) > 8
        assert gallery.search(server.url + foundry_catalog.CATALOG_PATH) == listing
        with pytest.raises(SlmLabError, match="refused the query: Filter #1: this catalog's entries have no field") \
                as err:
            gallery.search(server.url, [{"field": "tsak", "operator": "eq", "values": ["chat-completion"]}])
        assert "annotations/tags/task" in err.value.hint  # what to write instead
        with pytest.raises(SlmLabError, match="after 2 pages"):
            gallery.search(server.url, chat, page_size=1, max_pages=2)
        assert len(gallery.search(server.url, chat, page_size=len(expected), max_pages=1)) == len(expected)
    assert not server.running


# ---------------------------------------------------------------- slow: the runtime, the model

@pytest.fixture(scope="module")
def folder():
    from slmlab.convert.gguf_to_onnx import ort_genai_folder

    return ort_genai_folder("smollm2-135m-instruct", "int8")  # built once (~1 min), then cached


@pytest.fixture(scope="module")
def foundry(folder):
    from slmlab.backends.foundry import FoundryBackend

    with FoundryBackend(folder) as backend:
        yield backend
    foundry_local.shutdown()  # the later test modules get this process's memory back


@pytest.mark.slow
def test_the_sdks_writes_stay_in_the_cache_folder(foundry, folder):
    root = foundry_local.foundry_dir()
    fl = foundry_local.sdk()
    config = fl.FoundryLocalManager.instance.config
    assert {config.model_cache_dir, config.logs_dir, config.app_data_dir} == {
        str(root / "models"), str(root / "logs"), str(root / "app")}
    assert config.catalog_urls[0][0].startswith("http://127.0.0.1:")  # never Microsoft's online catalog
    registrations = json.loads((root / "models" / "foundry.local.modelinfo.json").read_text())
    assert any(m["model_path"] == str(folder) for m in registrations["models"])  # kept for the next process
    assert list((root / "logs").glob("*.log"))


@pytest.mark.slow
def test_the_local_catalog_holds_the_registered_folder(foundry, folder):
    assert foundry.model_name == foundry_local.model_id_for(folder)
    found = foundry_local.find_local(foundry.model_name)
    assert found is not None and Path(found.get_path()) == folder and found.is_loaded
    assert found.info.task == "chat-completion"
    assert foundry_local.register_local(folder).id == foundry.model_name  # again: reused, not duplicated


@pytest.mark.slow
def test_greedy_chat_matches_onnx_runtime_genai_token_for_token(foundry, folder, capsys):
    from slmlab.backends.onnx import OrtGenAIBackend

    with OrtGenAIBackend(folder) as onnx:
        reference = onnx.chat(PARITY_PROMPT, max_tokens=48)
        onnx_load = onnx.load_s
    answer = foundry.chat(PARITY_PROMPT, max_tokens=48)
    assert answer.text == reference.text
    assert (answer.prompt_tokens, answer.completion_tokens, answer.finish_reason) == (
        reference.prompt_tokens, reference.completion_tokens, reference.finish_reason) == (
        reference.prompt_tokens, 48, "length")
    show(capsys, f"load: foundry {foundry.load_s:.2f} s, onnx {onnx_load:.2f} s; decode tok/s: foundry "
                 f"{answer.decode_tok_s:.1f}, onnx {reference.decode_tok_s:.1f} (same folder, same greedy text)")


@pytest.mark.slow
def test_a_stream_is_the_chat_answer_in_pieces(foundry):
    answer = foundry.chat(QUESTION, max_tokens=40)
    pieces = list(foundry.stream(QUESTION, max_tokens=40))
    assert len(pieces) > 3 and "".join(pieces) == answer.text
    last = foundry.last
    assert last.text == answer.text and last.finish_reason == "stop" and last.completion_tokens == len(pieces)
    assert 0 < last.timings.ttft_s and 0 < last.timings.eval_s and last.decode_tok_s > 0
    assert last.extra["provider"] == "CPUExecutionProvider" and last.engine == "foundry"


@pytest.mark.slow
def test_every_call_starts_from_an_empty_conversation(foundry):
    first = foundry.chat(QUESTION, max_tokens=24).text
    foundry.chat([{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hello!"},
                  {"role": "assistant", "content": "Arr!"}, {"role": "user", "content": "Who are you?"}], max_tokens=8)
    abandoned = foundry.stream(PARITY_PROMPT, max_tokens=40)
    next(abandoned)
    abandoned.close()  # the caller stops reading: the request is cancelled, its turn undone
    assert foundry.chat(QUESTION, max_tokens=24).text == first
    assert foundry.session.turn_count == 0


@pytest.mark.slow
def test_stop_strings_end_the_answer_before_them(foundry):
    full = foundry.chat(QUESTION, max_tokens=40).text
    cut = foundry.chat(QUESTION, max_tokens=40, stop=["3."])
    assert "3." in full and cut.text == full[: full.index("3.")] and cut.finish_reason == "stop"
    assert foundry.chat(QUESTION, max_tokens=40).text == full


@pytest.mark.slow
def test_max_tokens_ends_with_length(foundry):
    answer = foundry.chat(PARITY_PROMPT, max_tokens=5)
    assert (answer.completion_tokens, answer.finish_reason) == (5, "length")


@pytest.mark.slow
def test_sampling_follows_the_seed(foundry):
    prompt = [{"role": "user", "content": "Write one sentence about the sea."}]
    one, again = (foundry.chat(prompt, max_tokens=24, temperature=1.0, seed=7).text for _ in range(2))
    others = {foundry.chat(prompt, max_tokens=24, temperature=1.0, seed=s).text for s in (1, 2, 3)}
    assert one == again and len(others | {one}) > 1


@pytest.mark.slow
def test_plain_completion_and_tokenize_say_why_not_and_what_instead(foundry):
    with pytest.raises(SlmLabError, match="only chats") as err:
        foundry.generate("The capital of France is")
    assert "open_backend('onnx'" in err.value.hint
    with pytest.raises(SlmLabError, match="only chats"):
        foundry.stream("a plain string is a completion prompt")
    with pytest.raises(SlmLabError, match="no tokenizer API") as err:
        foundry.tokenize("hello")
    assert ".tokenize(text)" in err.value.hint


@pytest.mark.slow
def test_bad_messages_and_options_are_rejected_before_running(foundry):
    with pytest.raises(SlmLabError, match="not a chat message"):
        foundry.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(SlmLabError, match="max_new_tokens"):
        foundry.chat("hi", max_new_tokens=3)


@pytest.mark.slow
def test_unknown_model_names_what_the_local_catalog_has(foundry):
    from slmlab.backends.foundry import FoundryBackend

    with pytest.raises(SlmLabError, match="neither a model slmlab knows") as err:
        FoundryBackend("phi-4-mini")
    assert foundry.model_name in err.value.problem
    assert "never downloads" in err.value.hint and "foundry model download phi-4-mini" in err.value.hint


@pytest.mark.slow
def test_a_registered_model_opens_by_its_id(foundry):
    from slmlab.backends.foundry import FoundryBackend

    with FoundryBackend(foundry.model_name) as again:  # shares the loaded model
        assert again.chat(QUESTION, max_tokens=16).text == foundry.chat(QUESTION, max_tokens=16).text
    assert foundry.model.is_loaded  # still held by the module's backend


@pytest.mark.slow
def test_a_shorter_context_rejects_a_long_prompt_with_both_numbers(folder):
    from slmlab.backends.foundry import FoundryBackend

    with FoundryBackend(folder, context_length=64) as small:
        assert small.model_name.endswith("-ctx64:1") and small.chat("Hi", max_tokens=4).completion_tokens > 0
        with pytest.raises(SlmLabError, match=r"The prompt has \d+ tokens, the context is 64") as err:
            small.chat("word " * 80)
        assert "context_length=" in err.value.hint
        long_answer = small.chat("Hi there, how are you?", max_tokens=200)  # capped by the room left, not an error
        assert long_answer.finish_reason in ("stop", "length") and long_answer.prompt_tokens < 64


@pytest.mark.slow
def test_a_closed_backend_says_so(folder):
    from slmlab.backends.foundry import FoundryBackend

    backend = FoundryBackend(folder, context_length=128)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(SlmLabError, match="closed"):
        backend.chat("hi")


@pytest.mark.slow
def test_shutdown_ends_open_backends_with_a_clear_error(folder):
    import subprocess

    # In a child process: shutdown() closes the process-wide manager, which this module's backend still uses.
    script = f"""
from slmlab.foundry import local as foundry_local
from slmlab.backends.foundry import FoundryBackend
from slmlab.errors import SlmLabError
backend = FoundryBackend({str(folder)!r}, context_length=128)
foundry_local.shutdown()
try:
    backend.chat("hi", max_tokens=2)
except SlmLabError as err:
    print("ERROR:", err.problem)
backend.close()
again = FoundryBackend({str(folder)!r}, context_length=128)  # a new manager starts on demand
print("AGAIN:", again.chat("hi", max_tokens=2).completion_tokens)
again.close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR: Foundry Local was shut down" in done.stdout and "AGAIN: 2" in done.stdout


@pytest.mark.slow
def test_the_web_service_serves_the_model_offline_to_the_openai_backend(foundry, folder):
    import httpx

    from slmlab.backends.openai_http import OpenAIBackend

    with foundry_local.web_service(folder) as service:
        assert service.url.startswith("http://127.0.0.1:") and service.catalog_url.startswith("http://127.0.0.1:")
        listed = httpx.get(f"{service.base_url}/models").json()
        assert service.model_id in [m["id"] for m in listed["data"]]
        with OpenAIBackend(service.base_url, model=service.model_id) as client:
            over_http = client.chat(QUESTION, max_tokens=40)
            streamed = "".join(client.stream(QUESTION, max_tokens=40))
        assert over_http.text == streamed == foundry.chat(QUESTION, max_tokens=40).text
        assert over_http.completion_tokens == foundry.last.completion_tokens
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{service.base_url}/models", timeout=2)
    with pytest.raises(httpx.TransportError):  # the catalog server is stopped too
        httpx.get(service.catalog_url, timeout=2)
    assert not (foundry_local.foundry_dir() / "models" / "slmlab" / service.model_id.replace(":", "-")).exists()
