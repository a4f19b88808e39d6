"""llama.cpp through llama-cpp-python: GGUF files on the CPU (or a GPU build), the course's default engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter
from typing import Any, cast

from slmlab.backends.base import (
    BackendBase,
    Generation,
    GenerationOptions,
    Timings,
    ids_to_score,
    llamacpp_kwargs,
    no_chat_template,
    prompt_too_long,
    release_memory,
)
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, load_llama, resolve


class LlamaCppBackend(BackendBase):
    """A GGUF model in llama-cpp-python; chat uses the chat template stored in the GGUF."""

    engine = "llamacpp"

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, n_ctx: int = 2048, seed: int = 0,
                 n_threads: int | None = None, **llama_kwargs: Any) -> None:
        if not isinstance(n_ctx, int) or n_ctx < 16:
            raise SlmLabError(f"n_ctx={n_ctx!r} is not a usable context size.", "Use a whole number such as 2048.")
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        start = perf_counter()
        self.resolved = model if isinstance(model, ResolvedModel) else resolve(model)
        self._load_args: dict[str, Any] = {"seed": seed, "n_threads": n_threads}
        # llama.cpp rounds the context up to a multiple of 256 but llama-cpp-python sizes its buffers by the
        # number asked for; asking for the rounded size keeps the two in step.
        n_ctx = -(-n_ctx // 256) * 256
        self.llm = load_llama(self.resolved, n_ctx=n_ctx, seed=seed, n_threads=n_threads, **llama_kwargs)
        self.load_s = perf_counter() - start
        self.model_name = self.resolved.name
        self.n_ctx = self.llm.n_ctx()
        self.trained_ctx = llama_cpp.llama_model_n_ctx_train(self.llm.model)
        self._formatter = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if template:  # use the GGUF's own template, never a built-in format llama-cpp-python guesses
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=self._token_text(self.llm.token_eos()),
                                                  bos_token=self._token_text(self.llm.token_bos()),
                                                  stop_token_ids=[self.llm.token_eos()])
            self.llm.chat_handler = self._formatter.to_chat_handler()

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def _open(self) -> Any:
        return self._require_open(self.llm)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed, no BOS added)."""
        return self._open().tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        llm, kwargs = self._open(), llamacpp_kwargs(opts)
        if isinstance(payload, str):
            ids = llm.tokenize(payload.encode("utf-8"), add_bos=True, special=True)  # BOS only if the model wants one
            call: Callable[[], Iterator[dict]] = lambda: llm.create_completion(ids, stream=True, **kwargs)  # noqa: E731
        else:
            if self._formatter is None:
                raise no_chat_template(self.model_name)
            prompt = self._formatter(messages=cast(Any, payload)).prompt  # llama_cpp types messages as TypedDicts
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            call = lambda: llm.create_chat_completion(payload, stream=True, **kwargs)  # noqa: E731
        if len(ids) >= self.n_ctx:
            raise prompt_too_long(len(ids), self.n_ctx, self.trained_ctx, "n_ctx")
        return self._pieces(call, len(ids), chat=not isinstance(payload, str))

    def _pieces(self, call: Callable[[], Iterator[dict]], n_prompt: int, chat: bool) -> Iterator[str]:
        import llama_cpp

        llm = self.llm
        llm.reset()  # start from an empty KV cache: same answer and honest timings on every call
        llama_cpp.llama_perf_context_reset(llm.ctx)
        parts: list[str] = []
        finish, start, first, last = "stop", perf_counter(), None, None
        for chunk in call():
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content") if chat else choice["text"]
            if piece:
                last = perf_counter()
                first = first or last
                parts.append(piece)
                yield piece
            finish = choice.get("finish_reason") or finish
        end = perf_counter()
        perf = llama_cpp.llama_perf_context(llm.ctx)
        # Every generated token but the last is evaluated; the last is too when an end-of-answer token follows it.
        completion = llm.n_tokens - n_prompt + (1 if finish == "length" else 0)
        ttft = (first or end) - start
        prompt_eval = perf.t_p_eval_ms / 1000 if perf.n_p_eval else ttft
        self.last = Generation("".join(parts), n_prompt, completion, finish,
                               Timings(self.load_s, prompt_eval, (last or end) - (first or end), ttft),
                               self.engine, self.model_name,
                               {"engine_eval_s": perf.t_eval_ms / 1000, "engine_n_eval": perf.n_eval})

    def next_token_argmax(self, token_ids: Sequence[int]) -> list[int]:
        """For each position, llama.cpp's most likely next token (one eval with logits for every position)."""
        import numpy as np

        ids = ids_to_score(token_ids, self.trained_ctx, "n_ctx")
        # A second, scoring-only context: logits_all keeps every row (n_ctx x vocab floats), so size it to the text.
        scorer = load_llama(self.resolved, n_ctx=-(-len(ids) // 256) * 256, logits_all=True, **self._load_args)
        try:
            scorer.eval(ids)
            return np.asarray(scorer.scores[: len(ids)]).argmax(axis=-1).tolist()
        finally:
            scorer.close()

    def close(self) -> None:
        """Free the model's memory (idempotent)."""
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            release_memory()
