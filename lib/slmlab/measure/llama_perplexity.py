"""llama.cpp's own perplexity tool, ``llama-perplexity``, run and read.

``llama-perplexity -m MODEL -f TEXT -c N`` cuts the text into separate chunks of N tokens (at least two are
needed), and in each chunk scores only its second half, each token predicted from the chunk's tokens before it. It
prints a running estimate per chunk (``[1]22.36,[2]19.11,…``, on stdout) and ``Final estimate: PPL = X +/- Y`` (its
log, on stderr); it has no JSON output, so :func:`parse_perplexity` reads those lines.
``slmlab.measure.evaluate.chunked_perplexity`` computes the same number with the Python binding::

    run_llama_perplexity(path, "evaluation.txt", n_ctx=128)           # LlamaPerplexity(value=36.2, error=7.4, ...)
    perplexity_table({"Q4_K_M": path, ...}, "evaluation.txt", n_ctx=128, baseline="Q4_1 (original)")
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmlab.convert.llamacpp_cli import existing_file, run_program, tail
from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    import pandas as pd

_RUNNING = re.compile(r"\[(\d+)\]\s*([0-9.]+|nan|inf)\s*,")
_FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+|nan|inf) \+/- ([0-9.]+|nan|inf)")
_CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)")


@dataclass(frozen=True)
class LlamaPerplexity:
    """What ``llama-perplexity`` reported: the final perplexity, its ± (one standard error), each chunk's estimate."""

    model: str
    n_ctx: int
    chunks: int
    value: float
    error: float
    running: list[float] = field(repr=False)  # the running estimate after each chunk, as printed

    @property
    def tokens(self) -> int:
        """How many tokens were scored: the second half of each chunk, less its last position."""
        return self.chunks * (self.n_ctx - 1 - self.n_ctx // 2)

    def __str__(self) -> str:
        return (f"{self.model}: llama-perplexity {self.value:.3f} ± {self.error:.3f} over {self.tokens} tokens "
                f"({self.chunks} chunks of {self.n_ctx})")


def parse_perplexity(text: str, model: str = "model") -> LlamaPerplexity:
    """Read llama-perplexity's output (stdout and stderr together): the final estimate and the per-chunk ones."""
    final = _FINAL.search(text)
    chunks = _CHUNKS.search(text)
    if final is None or chunks is None:
        too_short = re.search(r"you need at least (\d+) tokens", text)
        hint = (f"The text is too short: llama-perplexity needs at least {too_short[1]} tokens (two chunks); use a "
                "smaller -c or a longer text." if too_short else "Read the lines above for llama-perplexity's error.")
        raise SlmLabError(f"llama-perplexity printed no final estimate. Its last lines:\n{tail(text)}", hint)
    running = [float(v) for _, v in _RUNNING.findall(text)]
    return LlamaPerplexity(model, int(chunks[2]), int(chunks[1]), float(final[1]), float(final[2]), running)


def run_llama_perplexity(model: str | os.PathLike, text_file: str | os.PathLike, *, n_ctx: int = 512,
                         chunks: int | None = None, threads: int | None = None,
                         timeout: float = 600) -> LlamaPerplexity:
    """Run ``llama-perplexity -m MODEL -f TEXT -c N -b N [--chunks K]`` (one chunk per batch) and read its result."""
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 8:
        raise SlmLabError(f"n_ctx={n_ctx!r} is not usable.", "Use a whole number of tokens such as 128 or 512.")
    path = existing_file(model, "model")
    args: list[str | int | os.PathLike] = ["-m", path, "-f", existing_file(text_file, "text to score"),
                                           "-c", n_ctx, "-b", n_ctx]
    args += ["--chunks", chunks] if chunks else []
    args += ["-t", threads] if threads else []
    run = run_program("llama-perplexity", args, what=f"Scoring {path.name} with llama-perplexity", timeout=timeout)
    return parse_perplexity(run.output, path.name)


def perplexity_table(models: Mapping[str, str | os.PathLike | Any], text_file: str | os.PathLike, *,
                     baseline: str | None = None, **options: Any) -> pd.DataFrame:
    """``llama-perplexity`` on each file of {label: path or model}: size, perplexity, ±, change from `baseline`."""
    import pandas as pd

    rows = []
    for label, model in models.items():
        path = existing_file(getattr(getattr(model, "resolved", model), "path", model), f"model {label!r}")
        result = run_llama_perplexity(path, text_file, **options)
        rows.append({"variant": label, "size_mb": round(path.stat().st_size / 1e6, 1),
                     "perplexity": round(result.value, 3), "plus_minus": round(result.error, 3),
                     "tokens": result.tokens})
    table = pd.DataFrame(rows)
    if baseline is not None:
        if baseline not in models:
            raise SlmLabError(f"The baseline {baseline!r} is not one of the variants.", f"Use one of {list(models)}.")
        base = float(table.set_index("variant").loc[baseline, "perplexity"])
        table["delta_pct"] = ((table["perplexity"] / base - 1) * 100).round(1)
    return table

