"""A litert-torch ``.tflite`` language model run with LiteRT's interpreter (PyPI ai-edge-litert), token ids in and out.

litert-torch writes two signatures into one file, both taking and returning the whole KV cache (``kv_cache_k_<i>``,
``kv_cache_v_<i>`` for every layer, fixed at the conversion's length):

    prefill_<N>   tokens [1, N], input_pos [N]   -> the cache filled for those positions (no logits)
    decode        tokens [1, 1], input_pos [1]   -> logits [1, 1, vocab] for the next token, and the cache

So a prompt goes in as prefill calls of N tokens (the last one padded: the padding's cache rows are overwritten by
the decode steps that follow, before anything attends to them), then one decode call per new token::

    model = LiteRtDecoder("smollm2-135m-instruct_q8_ekv1024.tflite")
    for token in model.generate(prompt_ids, max_tokens=32, eos={2}): ...
    rows = model.score(ids)          # logits row i predicts ids[i + 1]: one decode call per token
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError

KV_PREFIX = "kv_cache_"


class LiteRtDecoder:
    """One .tflite file of litert-torch's generative layout, on the CPU (XNNPACK) with `threads` threads."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        file = Path(path)
        if file.is_dir():
            found = sorted(file.glob("*.tflite"))
            if not found:
                raise SlmLabError(f"{file} holds no .tflite file.", "Run `slmlab setup litert` to convert one.")
            file = found[0]
        if not file.is_file():
            raise SlmLabError(f"{file} does not exist.", "Run `slmlab setup litert` to convert the model.")
        self.path = file
        self.interpreter = Interpreter(model_path=str(file), num_threads=threads or os.cpu_count() or 1)
        self.signatures = self.interpreter.get_signature_list()
        prefills = sorted((name for name in self.signatures if name.startswith("prefill")),
                          key=lambda name: int(name.rsplit("_", 1)[-1]))
        if not prefills or "decode" not in self.signatures:
            raise SlmLabError(f"{file.name} has the signatures {', '.join(self.signatures)}, not litert-torch's "
                              "prefill_<N> and decode.", "Convert with litert-torch's generative examples.")
        self.prefill_runner = self.interpreter.get_signature_runner(prefills[-1])
        self.decode_runner = self.interpreter.get_signature_runner("decode")
        inputs = self.prefill_runner.get_input_details()
        self.prefill_width = int(inputs["tokens"]["shape"][1])
        self.cache_spec = {name: (tuple(d["shape"]), d["dtype"]) for name, d in inputs.items()
                           if name.startswith(KV_PREFIX)}
        self.context = int(next(iter(self.cache_spec.values()))[0][1])  # the cache's length: prompt + answer

    def empty_cache(self) -> dict[str, Any]:
        """A zeroed KV cache (every layer's keys and values, at the file's fixed length)."""
        import numpy as np

        return {name: np.zeros(shape, dtype) for name, (shape, dtype) in self.cache_spec.items()}

    def cache_bytes(self) -> int:
        """What the fixed KV cache takes in memory, in bytes."""
        import numpy as np

        return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in self.cache_spec.values())

    def prefill(self, ids: Sequence[int], start: int, cache: dict[str, Any]) -> dict[str, Any]:
        """Up to prefill_width tokens at positions start…: the cache filled for them."""
        import numpy as np

        if not 0 < len(ids) <= self.prefill_width:
            raise SlmLabError(f"A prefill call takes 1 to {self.prefill_width} tokens, not {len(ids)}.",
                              "Split the prompt (prefill_prompt does).")
        tokens = np.zeros((1, self.prefill_width), np.int32)
        tokens[0, :len(ids)] = ids
        positions = np.arange(start, start + self.prefill_width, dtype=np.int32)
        out = self.prefill_runner(tokens=tokens, input_pos=positions, **cache)
        return {name: out[name] for name in cache}

    def decode(self, token: int, position: int, cache: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One token at `position`: the logits for the next one (a vector over the vocabulary), and the cache."""
        import numpy as np

        out = self.decode_runner(tokens=np.array([[token]], np.int32), input_pos=np.array([position], np.int32),
                                 **cache)
        return out["logits"][0, -1], {name: out[name] for name in cache}

    def prefill_prompt(self, ids: Sequence[int]) -> dict[str, Any]:
        """The cache after every token of `ids`, in prefill calls of prefill_width tokens."""
        self._fits(len(ids))
        cache = self.empty_cache()
        for start in range(0, len(ids), self.prefill_width):
            cache = self.prefill(ids[start:start + self.prefill_width], start, cache)
        return cache

    def generate(self, prompt: Sequence[int], max_tokens: int, eos: set[int] | frozenset[int] = frozenset()
                 ) -> Iterator[int]:
        """Greedy: prefill all of the prompt but its last token, then decode until `eos` or max_tokens."""
        if not prompt:
            raise SlmLabError("The prompt has no tokens.", "Tokenize a prompt first.")
        self._fits(len(prompt) + max_tokens)
        cache = self.prefill_prompt(prompt[:-1]) if len(prompt) > 1 else self.empty_cache()
        token, position = int(prompt[-1]), len(prompt) - 1
        for _ in range(max_tokens):
            logits, cache = self.decode(token, position, cache)
            token, position = int(logits.argmax()), position + 1
            yield token
            if token in eos:
                return

    def score(self, ids: Sequence[int]) -> Any:
        """Logits for every position but the last (row i predicts ids[i + 1]), one decode call per token."""
        import numpy as np

        self._fits(len(ids))
        cache, rows = self.empty_cache(), []
        for position, token in enumerate(ids[:-1]):
            logits, cache = self.decode(int(token), position, cache)
            rows.append(logits)
        return np.stack(rows)

    def _fits(self, count: int) -> None:
        if count > self.context:
            raise SlmLabError(f"{count} tokens do not fit in {self.path.name}'s KV cache of {self.context}.",
                              "Use fewer tokens, or convert with a larger --kv_cache_max_len.")
