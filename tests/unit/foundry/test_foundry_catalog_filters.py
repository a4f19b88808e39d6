"""slmlab.foundry.catalog_filters: the model catalog's filters and pages, on entries of the course's real models."""

from __future__ import annotations

import pytest

from slmlab.errors import SlmLabError
from slmlab.foundry import gallery
from slmlab.foundry.catalog_filters import answer, check_filters, known_fields, matching, pages, read_path
from slmlab.models.catalog import CATALOG

pytestmark = pytest.mark.fast
TASK = "annotations/tags/task"
SIZE = "properties/variantInfo/variantMetadata/fileSizeBytes"


@pytest.fixture
def entries(tmp_path):
    """Every model of the course's catalog, and two variants of SmolLM2 whose files are made here (real sizes)."""
    gguf = tmp_path / "smol.gguf"
    gguf.write_bytes(b"\0" * 3000)
    onnx = tmp_path / "smollm2-135m-instruct-ort-int8"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"\0" * 5000)
    (onnx / "genai_config.json").write_text("{}")
    spec = CATALOG["smollm2-135m-instruct"]
    return [*map(gallery.model_entry, CATALOG.values()),
            gallery.variant_entry(spec, "smol-q4_1-gguf", gguf, "GGUF", "Q4_1"),
            gallery.variant_entry(spec, onnx.name, onnx, "ONNX", "int8")]


def names(found) -> list[str]:
    return [e["properties"]["name"] for e in found]


def query(entries, *filters) -> list[str]:
    return names(matching(entries, check_filters(list(filters), known_fields(entries))))


def test_filters_select_by_task_licence_and_size(entries):
    chat = {"field": TASK, "operator": "eq", "values": ["chat-completion"]}
    base = query(entries, {"field": TASK, "operator": "eq", "values": ["text-generation"]})
    assert base == [k for k, s in CATALOG.items() if not s.chat] == ["gemma-3-270m"]
    mit = query(entries, chat, {"field": "license", "operator": "eq", "values": ["mit"]})  # case does not matter
    assert mit == [k for k, s in CATALOG.items() if s.license == "MIT"]
    apache = query(entries, {"field": "license", "operator": "contains", "values": ["apache"]})
    assert set(apache) == {k for k, s in CATALOG.items() if s.license == "Apache-2.0"} | {
        "smol-q4_1-gguf", "smollm2-135m-instruct-ort-int8"}
    assert query(entries, {"field": SIZE, "operator": "lt", "values": [4000]}) == ["smol-q4_1-gguf"]
    assert query(entries, {"field": SIZE, "operator": "gt", "values": ["4000"]}) == ["smollm2-135m-instruct-ort-int8"]
    assert query(entries, {"field": SIZE, "operator": "exists"}) == ["smol-q4_1-gguf", "smollm2-135m-instruct-ort-int8"]
    assert len(query(entries, {"field": SIZE, "operator": "notexists"})) == len(CATALOG)
    two = {"field": "name", "operator": "eq", "values": ["qwen3-8b", "phi-4"]}  # values are alternatives
    assert query(entries, two) == ["qwen3-8b", "phi-4"]
    assert len(query(entries, {**two, "operator": "ne"})) == len(entries) - 2
    provider = "properties/variantInfo/variantMetadata/executionProvider"
    assert query(entries, {"field": provider, "operator": "eq", "values": ["cpuexecutionprovider"]}) == [
        "smollm2-135m-instruct-ort-int8"]  # llama.cpp's GGUF variant has no ONNX Runtime provider
    parent = {"field": "properties/variantInfo/parents/assetId", "operator": "eq",
              "values": [gallery.asset_id("smollm2-135m-instruct")]}
    assert query(entries, parent) == ["smol-q4_1-gguf", "smollm2-135m-instruct-ort-int8"]
    assert read_path(entries[0], "labels") == ["latest"] and read_path(entries[0], "no/such") == []


@pytest.mark.parametrize("bad, words", [
    ({"field": "annotations/tags/tsak", "operator": "eq", "values": ["x"]}, "no field 'annotations/tags/tsak'"),
    ({"field": TASK, "operator": "lte", "values": ["x"]}, "unknown operator 'lte'"),
    ({"field": TASK, "operator": "eq", "values": "chat-completion"}, "needs 'values': a non-empty list"),
    ({"field": TASK, "operator": "eq", "values": []}, "needs 'values'"),
    ({"field": SIZE, "operator": "lt", "values": ["big"]}, "compares with one number"),
    ({"field": SIZE, "operator": "lt", "values": [1, 2]}, "compares with one number"),
    ({"operator": "eq", "values": ["x"]}, "has no 'field'"),
    ("task=chat", "has no 'field'"),
])
def test_a_bad_filter_is_an_error_that_says_what_to_write(entries, bad, words):
    with pytest.raises(SlmLabError, match="Filter #2") as err:
        check_filters([{"field": "labels", "operator": "eq", "values": ["latest"]}, bad], known_fields(entries))
    assert words in err.value.problem and err.value.hint
    if "tsak" in str(bad):
        assert "Did you mean 'annotations/tags/task'" in err.value.hint
    if "lte" in str(bad):
        assert "Did you mean 'lt'" in err.value.hint and "notexists" in err.value.hint


def test_pages_follow_the_continuation_token_and_a_token_belongs_to_its_query(entries):
    latest = [{"field": "labels", "operator": "eq", "values": ["latest"]}]
    first = answer(entries, {"filters": latest, "pageSize": 5})
    assert len(first["value"]) == 5 and first["totalCount"] == len(entries) and first["continuationToken"]
    got = [page for page in pages(lambda body: answer(entries, body), latest, size=5)]
    assert [len(p) for p in got] == [5, 5, 5, 3] and names(sum(got, [])) == names(entries)
    assert answer(entries, {"filters": latest})["continuationToken"] == ""  # one page of 50 holds them all
    with pytest.raises(SlmLabError, match="belongs to a query with other filters"):
        answer(entries, {"filters": [], "pageSize": 5, "continuationToken": first["continuationToken"]})
    with pytest.raises(SlmLabError, match="not a token this catalog gave"):
        answer(entries, {"filters": latest, "continuationToken": "page-2"})
    for size in (0, 1001, "10", True):
        with pytest.raises(SlmLabError, match="pageSize"):
            answer(entries, {"pageSize": size})
    with pytest.raises(SlmLabError, match="must be a list"):
        answer(entries, {"filters": {"field": "labels"}})
