"""The acquisition notebook's library: picking a quantization, the hub cache stand-in, offline switch, GGUF metadata."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from hub_standin import make_hub_cache, write_tiny_gguf
from slmlab.errors import SlmLabError
from slmlab.models import hub_standin
from slmlab.models import resolver as models

pytestmark = pytest.mark.fast

BARTOWSKI_STYLE = ["README.md", "M-Q4_K_M.gguf", "M-Q4_K_S.gguf", "M-Q4_0.gguf", "M-Q4_0_4_4.gguf", "M-IQ4_XS.gguf",
                   "M-Q8_0.gguf", "mmproj-M-f16.gguf", "M-f16.gguf"]


@pytest.mark.parametrize(("tag", "expected"), [("Q4_K_M", "M-Q4_K_M.gguf"), ("q4_k_s", "M-Q4_K_S.gguf"),
                                               ("Q4_0", "M-Q4_0.gguf"), ("IQ4_XS", "M-IQ4_XS.gguf"),
                                               ("F16", "M-f16.gguf")])
def test_pick_gguf_file_matches_whole_tags_only(tag, expected):
    assert models.pick_gguf_file(BARTOWSKI_STYLE, tag) == expected


def test_pick_gguf_file_takes_the_first_shard_and_explains_misses():
    split = ["Q8_0/M-Q8_0-00002-of-00002.gguf", "Q8_0/M-Q8_0-00001-of-00002.gguf", "M-Q4_K_M.gguf"]
    assert models.pick_gguf_file(split, "Q8_0") == "Q8_0/M-Q8_0-00001-of-00002.gguf"
    with pytest.raises(SlmLabError, match="No GGUF file matching Q4_K in org/m"):
        models.pick_gguf_file(BARTOWSKI_STYLE, "Q4_K", repo_id="org/m")
    with pytest.raises(SlmLabError, match="several GGUF files: M-IQ4_XS.gguf, M-Q4_0.gguf"):
        models.pick_gguf_file(BARTOWSKI_STYLE)


def test_offline_switch_is_restored(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with models.hub_offline_mode():
        assert models.hub_offline() and not models.hub_reachable(timeout=0.2)
    assert not models.hub_offline()
    assert models.set_hub_offline(True) is False and models.set_hub_offline(False) is True


class _Hub(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path.startswith("/api/models") else 404)
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args):
        pass


def test_hub_reachable_sees_a_server_and_its_absence(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = HTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert models.hub_reachable(timeout=2, endpoint=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not models.hub_reachable(timeout=0.5, endpoint=f"http://127.0.0.1:{port}")


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_hub_files_offline_lists_sizes_and_lfs_sha256(tmp_path, offline):
    gguf = write_tiny_gguf(tmp_path / "t.gguf").read_bytes()
    make_hub_cache(tmp_path / "hub", "org/Tiny-GGUF", {"tiny-Q8_0.gguf": gguf, "sub/notes.txt": b"hi"}, "b" * 40)
    rows = models.hub_files("org/Tiny-GGUF", cache_dir=tmp_path / "hub")
    assert [r["file"] for r in rows] == ["sub/notes.txt", "tiny-Q8_0.gguf"]
    assert rows[1]["bytes"] == len(gguf) and rows[1]["from"] == "cache"
    assert rows[1]["sha256"] == __import__("hashlib").sha256(gguf).hexdigest()
    assert models.hub_files("org/Tiny-GGUF", revision="c" * 40, cache_dir=tmp_path / "hub") == []
    assert models.hub_files("org/Other", cache_dir=tmp_path / "hub") == []


def test_standin_holds_the_bundled_file_as_its_hub_repo_and_heals(tmp_path, offline):
    src = hub_standin.STANDIN_SOURCE
    cache = hub_standin.build_standin(tmp_path / "hub")
    bundled = models.resolve(src.bundled)
    got = models.resolve_hub(src.repo_id, filename=src.filename, revision=src.commit, cache_dir=cache)
    assert got.sha256 == bundled.sha256 and got.path.name == src.filename and got.source == "hub"
    assert models.resolve(f"{src.repo_id}:Q4_1", cache_dir=cache).path == got.path  # the tag finds it too
    assert any(line.startswith("refs/main") for line in hub_standin.cache_tree(cache, src.repo_id))
    blob = got.path.resolve()
    blob.write_bytes(b"GGUF damaged")  # damage the stand-in: the next build replaces the blob
    hub_standin.build_standin(cache)
    assert models.resolve_hub(src.repo_id, filename=src.filename, cache_dir=cache).sha256 == bundled.sha256
    assert bundled.path.stat().st_size == bundled.size_bytes  # the package's own file was never touched


def test_cache_tree_of_a_missing_repo_says_so(tmp_path):
    with pytest.raises(SlmLabError, match="not in the hub cache"):
        hub_standin.cache_tree(tmp_path, "org/none")


def test_gguf_metadata_license_and_tensors_of_the_default_model():
    info = models.resolve().inspect()
    assert info.license == "apache-2.0" and info.summary()["license"] == "apache-2.0"
    rows = {r["key"]: r for r in info.metadata_rows()}
    assert rows["tokenizer.ggml.tokens"] == {"key": "tokenizer.ggml.tokens", "type": "array",
                                             "value": "<array of 49152 string>"}
    assert rows["llama.block_count"]["value"] == "30" and rows["tokenizer.chat_template"]["value"].endswith("…")
    assert not [r for r in info.metadata_rows(skip_prefixes=("tokenizer.",)) if r["key"].startswith("tokenizer.")]
    tensors = info.tensor_rows()
    assert len(tensors) == info.tensor_count and sum(t["parameters"] for t in tensors) == info.parameter_count
    assert tensors[0] == {"name": "token_embd.weight", "type": "Q8_0", "shape": "49152×576", "parameters": 49152 * 576}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hub_files_online_but_unreachable_answers_from_the_cache_at_once(tmp_path, monkeypatch):
    import time

    import httpx
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    make_hub_cache(tmp_path, "org/Tiny-GGUF", {"tiny-Q8_0.gguf": write_tiny_gguf(tmp_path / "t.gguf").read_bytes()})
    start = time.perf_counter()
    rows = models.hub_files("org/Tiny-GGUF", cache_dir=tmp_path)
    assert [(r["file"], r["from"]) for r in rows] == [("tiny-Q8_0.gguf", "cache")]
    assert time.perf_counter() - start < 5  # no retries against a hub that is not there
    assert models._is_network_error(httpx.ConnectError("[Errno -2] Name or service not known"))
    assert not models._is_network_error(ValueError("bad repo id"))
