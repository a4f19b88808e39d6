"""slmlab.foundry.gallery: the catalog stand-in's entries come from the course's catalog and the files on disk."""

from __future__ import annotations

import json

import pytest

from slmlab.errors import SlmLabError
from slmlab.foundry import gallery
from slmlab.models import resolver
from slmlab.models.catalog import CATALOG
from slmlab.models.gguf import inspect_gguf

pytestmark = pytest.mark.fast


def test_a_model_entry_carries_the_catalog_s_licence_task_publisher_and_context():
    for key, spec in CATALOG.items():
        entry = gallery.model_entry(spec)
        tags, system = entry["annotations"]["tags"], entry["annotations"]["systemCatalogData"]
        assert entry["properties"]["name"] == tags["alias"] == key and tags["license"] == spec.license
        assert tags["task"] == system["inferenceTasks"][0] == ("chat-completion" if spec.chat else "text-generation")
        assert f"{system['publisher']}/{system['displayName']}" == spec.hub_id
        assert system["modelLimits"]["textLimits"]["inputContextWindow"] == spec.context
        assert not gallery.is_variant(entry)


def test_the_bundled_gguf_is_a_variant_with_its_real_size_and_quantization():
    resolved = resolver.resolve("smollm2-135m-instruct", verify=False)
    [variant] = [e for e in gallery.gguf_variants() if e["annotations"]["tags"]["alias"] == resolved.name]
    metadata = variant["properties"]["variantInfo"]["variantMetadata"]
    assert metadata["fileSizeBytes"] == resolved.path.stat().st_size
    assert metadata["quantization"] == [inspect_gguf(resolved.path).file_type] == ["Q4_1"]
    assert variant["properties"]["name"] == "smollm2-135m-instruct-q4_1-gguf" and gallery.is_variant(variant)
    assert variant["properties"]["variantInfo"]["parents"] == [{"assetId": gallery.asset_id(resolved.name)}]
    assert gallery.deployment(variant) == {"engine": "llamacpp", "model": "smollm2-135m-instruct"}


def test_bundled_file_lists_what_is_on_disk_and_assembles_nothing(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    assert resolver.bundled_file("smollm2-135m-instruct") == resolver.resolve(verify=False).path
    gemma = resolver.BUNDLED["gemma-3-270m"]
    assembled = tmp_path / "models" / gemma.relpath
    assert resolver.bundled_file("gemma-3-270m") is None and not assembled.exists()  # listed, not assembled
    assembled.parent.mkdir(parents=True)
    assembled.write_bytes(b"GGUF")
    installed = importlib.util.find_spec(gemma.module) is not None
    assert resolver.bundled_file("gemma-3-270m") == (assembled if installed else None)


def test_onnx_variants_are_the_finished_folders_of_catalog_models(tmp_path):
    def folder(name: str, finished: bool = True) -> None:
        path = tmp_path / name
        path.mkdir()
        (path / "genai_config.json").write_text("{}")
        (path / "model.onnx").write_bytes(b"\0" * 1234)
        if finished:
            (path / ".slmlab-converted.json").write_text(json.dumps({"kind": "ort-genai-int8"}))

    folder("smollm2-135m-instruct-ort-int4")
    folder("qwen3-0.6b-ort-fp32-0123abcd")
    folder("smollm2-135m-instruct-ort-int8", finished=False)  # a conversion still running, or broken
    folder("not-in-the-catalog-ort-int4")
    (tmp_path / "smollm2-135m-instruct-hf").mkdir()
    found = {e["properties"]["name"]: e for e in gallery.onnx_variants(tmp_path)}
    assert sorted(found) == ["qwen3-0.6b-ort-fp32-0123abcd", "smollm2-135m-instruct-ort-int4"]
    variant = found["smollm2-135m-instruct-ort-int4"]
    metadata = variant["properties"]["variantInfo"]["variantMetadata"]
    on_disk = sum(p.stat().st_size for p in (tmp_path / "smollm2-135m-instruct-ort-int4").iterdir())
    assert metadata == {"modelType": "ONNX", "quantization": ["int4"], "device": "cpu",
                        "executionProvider": "CPUExecutionProvider", "fileSizeBytes": on_disk}
    assert gallery.deployment(variant) == {"engine": "onnx", "model": str(tmp_path / "smollm2-135m-instruct-ort-int4")}
    assert gallery.rows([variant])[0] == {"name": "smollm2-135m-instruct-ort-int4", "task": "chat-completion",
                                          "license": "Apache-2.0", "publisher": "HuggingFaceTB",
                                          "variant": "ONNX int4", "MB": 0.0}


def test_a_model_entry_cannot_be_deployed_and_says_how_to_find_its_variants():
    with pytest.raises(SlmLabError, match="is a model entry, not a variant") as err:
        gallery.deployment(gallery.model_entry(CATALOG["phi-4-mini-instruct"]))
    assert "properties/variantInfo/parents/assetId" in err.value.hint and "phi-4-mini-instruct" in err.value.hint
