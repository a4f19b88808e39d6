"""Speculative decoding with llama.cpp's own server, measured: a small *draft* model proposes k tokens, the target
model checks them all in one forward pass and keeps the longest prefix it agrees with (plus one token of its own).

    result = measure_speculation("smollm2-135m-instruct", draft="smollm2-135m-instruct", draft_max=4)
    result.acceptance          # accepted / drafted, from llama-server's own count
    result.speedup             # tokens/s with the draft ÷ tokens/s without, same prompt, same server build

``llama-server --model-draft FILE --spec-type draft-simple --spec-draft-n-max K`` turns it on; the draft must share
the target's vocabulary. How much it gains depends on the acceptance rate and on what a draft token costs compared
with a target token (for a memory-bound decoder: roughly the ratio of their weight bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

PROMPT = "Write a short paragraph about the history of the printing press."
_ACCEPTANCE = re.compile(r"draft acceptance = ([\d.]+) \(\s*(\d+) accepted /\s*(\d+) generated\)")


def draft_args(draft: str | Path, draft_max: int = 4) -> list[str]:
    """llama-server's flags for speculative decoding with the GGUF file `draft`."""
    if not isinstance(draft_max, int) or not 1 <= draft_max <= 16:
        raise SlmLabError(f"draft_max={draft_max!r} is not a number of draft tokens.", "Use 1 to 16, e.g. 4.")
    return ["--model-draft", str(draft), "--spec-type", "draft-simple", "--spec-draft-n-max", str(draft_max)]


@dataclass(frozen=True)
class Speculation:
    """One model with and without a draft: decode speeds, and what the draft got accepted."""

    model: str
    draft: str
    draft_max: int
    tokens: int
    plain_tok_s: float
    draft_tok_s: float
    accepted: int
    drafted: int
    cost_ratio: float  # bytes a draft token reads ÷ bytes a target token reads (the weight files' sizes)

    @property
    def acceptance(self) -> float:
        """Share of drafted tokens the target accepted."""
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def speedup(self) -> float:
        """Measured: tokens/s with the draft ÷ tokens/s without."""
        return self.draft_tok_s / self.plain_tok_s

    def row(self) -> dict[str, Any]:
        """A flat dict for a table."""
        return {"model": self.model, "draft": self.draft, "k": self.draft_max, "tokens": self.tokens,
                "plain_tok_s": round(self.plain_tok_s, 1), "draft_tok_s": round(self.draft_tok_s, 1),
                "acceptance": round(self.acceptance, 3), "speedup": round(self.speedup, 2),
                "cost_ratio": round(self.cost_ratio, 3)}


def _decode(server: Any, prompt: str, tokens: int) -> tuple[float, dict[str, Any]]:
    """(decode tokens/s, timings) of one greedy completion, after one warm-up."""
    import httpx

    body = {"prompt": prompt, "n_predict": tokens, "temperature": 0, "cache_prompt": False, "ignore_eos": True}
    httpx.post(f"{server.url}/completion", json={**body, "n_predict": 4}, timeout=300).raise_for_status()
    reply = httpx.post(f"{server.url}/completion", json=body, timeout=300)
    reply.raise_for_status()
    timings = reply.json()["timings"]
    return float(timings["predicted_per_second"]), timings


def _accepted(timings: dict[str, Any], log_text: str) -> tuple[int, int]:
    """(accepted, drafted): from the answer's timings where the server reports them, else its log line."""
    if "draft_n" in timings:
        return int(timings.get("draft_n_accepted", 0)), int(timings["draft_n"])
    found = _ACCEPTANCE.findall(log_text)
    if not found:
        raise SlmLabError("llama-server reported no draft acceptance: was speculative decoding on?",
                          "Check that the draft shares the target's vocabulary (`slmlab inspect FILE`).")
    _, accepted, drafted = found[-1]
    return int(accepted), int(drafted)


def measure_speculation(model: str = "smollm2-135m-instruct", draft: str | None = None, draft_max: int = 4,
                        tokens: int = 48, prompt: str = PROMPT, threads: int | None = None) -> Speculation:
    """Decode the same greedy completion with `model` alone, then with `draft` proposing `draft_max` tokens at a
    time (default draft: the model itself, the one compatible draft every model has); one server each."""
    from slmlab.models.resolver import resolve
    from slmlab.serve.llama_server import llama_server

    target = resolve(model)
    helper = resolve(draft or model)
    with llama_server(target, parallel=1, n_ctx=1024, threads=threads) as server:
        plain, _ = _decode(server, prompt, tokens)
    with llama_server(target, parallel=1, n_ctx=1024, threads=threads,
                      extra_args=draft_args(helper.path, draft_max)) as server:
        speculative, timings = _decode(server, prompt, tokens)
        accepted, drafted = _accepted(timings, Path(server.log_path).read_text(errors="replace"))
    return Speculation(target.name, helper.name, draft_max, tokens, plain, speculative, accepted, drafted,
                       Path(helper.path).stat().st_size / Path(target.path).stat().st_size)
