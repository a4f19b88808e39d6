"""The one interface every engine implements, the options it takes, and what a generation returns.

Options are named once here (``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``)
and validated once; each engine gets them through its own mapping function, so "temperature=0 means
greedy" and "top_k=0 means off" hold on every engine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import math
import random
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from slmlab.errors import SlmLabError, did_you_mean

Messages = Sequence[Mapping[str, str]]
ROLES = ("system", "user", "assistant")
# What learners type from other libraries' habits, mapped to our names.
_ALIASES = {"max_new_tokens": "max_tokens", "n_predict": "max_tokens", "num_predict": "max_tokens",
            "temp": "temperature", "stop_strings": "stop", "stop_sequences": "stop", "random_seed": "seed"}


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate: the same names and meaning on every engine."""

    max_tokens: int = 128  # new tokens at most
    temperature: float = 0.0  # 0 = greedy (deterministic)
    top_p: float = 1.0  # nucleus sampling; 1 = off
    top_k: int = 0  # 0 = off
    seed: int | None = 0  # sampling seed; None = a fresh one each call
    stop: tuple[str, ...] = ()  # strings that end the answer (not included in the text)

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        _check(_is_int(self.max_tokens) and self.max_tokens >= 1, "max_tokens", self.max_tokens,
               "a whole number of new tokens, at least 1 (e.g. max_tokens=128)")
        _check(_is_num(self.temperature) and self.temperature >= 0, "temperature", self.temperature,
               "0 for greedy decoding, or a positive number such as 0.7 for sampling")
        _check(_is_num(self.top_p) and 0 < self.top_p <= 1, "top_p", self.top_p, "a number in (0, 1]; 1 turns it off")
        _check(_is_int(self.top_k) and self.top_k >= 0, "top_k", self.top_k, "a whole number >= 0; 0 turns it off")
        _check(self.seed is None or (_is_int(self.seed) and self.seed >= 0), "seed", self.seed,
               "a whole number >= 0, or None")
        _check(all(isinstance(s, str) and s for s in stop), "stop", self.stop,
               "a string or a list of non-empty strings, e.g. stop=['\\n\\n']")

    @property
    def greedy(self) -> bool:
        """True when decoding picks the most likely token every step."""
        return self.temperature == 0

    @classmethod
    def from_kwargs(cls, **gen: Any) -> GenerationOptions:
        """Options from keyword arguments, with a clear error for names that are not options."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in gen if k not in names]
        if unknown:
            key = unknown[0]
            alias = _ALIASES.get(key)
            hint = f"Did you mean {alias!r}? " if alias else did_you_mean(key, names, n=1)
            raise SlmLabError(f"'{key}' is not a generation option.", f"{hint}Options: {', '.join(names)}.")
        return cls(**gen)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise SlmLabError(f"Invalid generation option {name}={value!r}.", f"Use {expected}.")


def llamacpp_kwargs(opts: GenerationOptions) -> dict[str, Any]:
    """The options as llama-cpp-python's create_completion / create_chat_completion arguments."""
    # min_p and repeat_penalty are set to "off" so sampling means the same as in transformers.
    return {"max_tokens": opts.max_tokens, "temperature": opts.temperature, "top_p": opts.top_p,
            "top_k": opts.top_k, "min_p": 0.0, "repeat_penalty": 1.0,
            "seed": opts.seed if opts.seed is not None else random.randrange(2**31),
            "stop": list(opts.stop)}


def hf_kwargs(opts: GenerationOptions) -> dict[str, Any]:
    """The options as transformers' generate() arguments (the seed is set separately)."""
    if opts.greedy:  # passing sampling knobs with do_sample=False only produces warnings
        kwargs: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    else:
        kwargs = {"do_sample": True, "temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k}
    kwargs["max_new_tokens"] = opts.max_tokens
    if opts.stop:
        kwargs["stop_strings"] = list(opts.stop)
    return kwargs


@dataclass(frozen=True)
class Timings:
    """Where the time went, in seconds."""

    load_s: float  # loading the model (once per backend)
    prompt_eval_s: float  # evaluating the prompt (prefill): the engine's own figure where it reports one, else ttft_s
    eval_s: float  # generating after the first token (decode)
    ttft_s: float  # from the call to the first generated token


@dataclass(frozen=True)
class Generation:
    """One answer: its text, token counts, why it ended, and timings."""

    text: str
    prompt_tokens: int
    completion_tokens: int  # not counting the end-of-answer token, nor the one that completed a stop string
    finish_reason: str  # "stop" (end of answer or a stop string) | "length" (hit max_tokens)
    timings: Timings
    engine: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def decode_tok_s(self) -> float | None:
        """Decode speed: tokens after the first one, per second of decoding (None under 2 tokens)."""
        if self.completion_tokens < 2 or self.timings.eval_s <= 0:
            return None
        return (self.completion_tokens - 1) / self.timings.eval_s

    def summary(self) -> dict[str, object]:
        """The figures as a flat dict, for a table."""
        speed = self.decode_tok_s
        return {"engine": self.engine, "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason,
                "load_s": round(self.timings.load_s, 3), "ttft_s": round(self.timings.ttft_s, 3),
                "prompt_eval_s": round(self.timings.prompt_eval_s, 3), "eval_s": round(self.timings.eval_s, 3),
                "decode_tok_s": round(speed, 1) if speed else None}


def as_messages(messages: str | Messages) -> list[dict[str, str]]:
    """Chat messages as plain dicts; a string is one user message. Rejects malformed input clearly."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str) or msg.get("role") not in ROLES:
            raise SlmLabError(f"Message {i} is not a chat message: {msg!r}.",
                              f"Use dicts like {{'role': 'user', 'content': 'Hi'}} with role in {ROLES}.")
        out.append({"role": msg["role"], "content": msg["content"]})
    if not out:
        raise SlmLabError("No messages to answer.", "Pass at least one {'role': 'user', 'content': ...} message.")
    return out


def cut_at_stop(pieces: Iterator[str], stops: Sequence[str], found: list[bool] | None = None) -> Iterator[str]:
    """Pass text pieces through, ending before the first stop string and never yielding part of one."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        hits = [buffer.index(s) for s in stops if s in buffer]
        if hits:
            if found is not None:
                found.append(True)
            if buffer[: min(hits)]:
                yield buffer[: min(hits)]
            return
        held = max((k for s in stops for k in range(len(s) - 1, 0, -1) if buffer.endswith(s[:k])), default=0)
        if len(buffer) > held:
            yield buffer[: len(buffer) - held]
            buffer = buffer[len(buffer) - held:]
    if buffer:
        yield buffer


def cut_and_collect(pieces: Iterator[str], stops: Sequence[str]) -> Generator[str, None, tuple[str, bool]]:
    """cut_at_stop's pieces, passed on; at the end it returns the whole text and whether a stop string ended it.

    ``text, stopped = yield from cut_and_collect(tokens(), opts.stop)`` in an engine's generator.
    """
    parts: list[str] = []
    found: list[bool] = []
    for piece in cut_at_stop(pieces, stops, found):
        parts.append(piece)
        yield piece
    return "".join(parts), bool(found)


def stream_timings(load_s: float, start: float, end: float, times: Sequence[float], completion: int,
                   prefill_end: float | None = None) -> Timings:
    """Timings of a streamed answer from when each counted token arrived (`times`; the clock's `start`, `end`).

    TTFT runs from the start to the first token; decoding from the first to the last counted token; prefill ends
    at `prefill_end` where the engine says so, else it is the TTFT.
    """
    times = times[: max(completion, 1)]
    ttft = (times[0] if times else end) - start
    prompt_eval = prefill_end - start if prefill_end is not None else ttft
    return Timings(load_s, prompt_eval, times[-1] - times[0] if times else 0.0, ttft)


def eos_ids(eos: int | Sequence[int] | None) -> set[int]:
    """The end-of-answer token ids from a config's ``eos_token_id``: one id, a list of them, or None."""
    if eos is None:
        return set()
    return {int(t) for t in eos} if isinstance(eos, Sequence) else {int(eos)}


def no_chat_template(model_name: str) -> SlmLabError:
    """The error for chat() on a model without a chat template."""
    return SlmLabError(f"{model_name} has no chat template (it is a base model).",
                       "Use generate('some text to continue') instead of chat().")


def prompt_too_long(prompt_tokens: int, max_context: int, trained_context: int, what: str) -> SlmLabError:
    """The error for a prompt that leaves no room in the context, with the n_ctx that would fit it."""
    if prompt_tokens >= trained_context:
        hint = f"Shorten it: this model was trained on at most {trained_context} tokens."
    else:
        fits = min(trained_context, 1 << max(prompt_tokens + 256, 512).bit_length())
        hint = f"Shorten it or load with {what}={fits}."
    return SlmLabError(f"The prompt has {prompt_tokens} tokens, the context is {max_context}: "
                       "no room left to generate.", hint)


@runtime_checkable
class Backend(Protocol):
    """Run a language model: chat, complete, stream, tokenize. Use it as a context manager."""

    engine: str
    model_name: str
    load_s: float

    def chat(self, messages: str | Messages, **gen: Any) -> Generation:
        """Answer chat messages with the model's chat template."""
        ...

    def generate(self, prompt: str, **gen: Any) -> Generation:
        """Continue a plain-text prompt (no chat template)."""
        ...

    def stream(self, prompt_or_messages: str | Messages, **gen: Any) -> Iterator[str]:
        """Yield the answer in pieces as it is generated: a string is completed, messages are chatted."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed, no BOS added)."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PieceStream(Iterator[str]):
    """The text pieces of one generation; read to the end, `generation` is that generation's record.

    Backends that answer several requests at once (the HTTP clients: ``concurrent = True``) return one, so each of
    several streams running together keeps its own record; the backend's `last` is only the latest to end.
    `pieces` is a generator that returns the record.
    """

    def __init__(self, pieces: Generator[str, None, Generation]) -> None:
        self._pieces = pieces
        self.generation: Generation | None = None

    def __iter__(self) -> PieceStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._pieces)
        except StopIteration as end:
            self.generation = end.value
            raise StopIteration from None

    def close(self) -> None:
        """Stop early: the server stops generating."""
        self._pieces.close()


class BackendBase(Backend):
    """Shared plumbing: chat/generate/stream on top of one `_start` per engine; `last` keeps the latest Generation."""

    engine = ""
    model_name = ""
    load_s = 0.0
    last: Generation | None = None  # set when a generation (or a fully read stream) ends
    concurrent = False  # True where streams may run at once from several threads (a client of a server with slots)

    def chat(self, messages: str | Messages, **gen: Any) -> Generation:
        """Answer chat messages with the model's chat template (a string is one user message)."""
        return self._drain(self._start(as_messages(messages), GenerationOptions.from_kwargs(**gen)))

    def generate(self, prompt: str, **gen: Any) -> Generation:
        """Continue a plain-text prompt (no chat template)."""
        return self._drain(self._start(_as_prompt(prompt), GenerationOptions.from_kwargs(**gen)))

    def stream(self, prompt_or_messages: str | Messages, **gen: Any) -> Iterator[str]:
        """Yield the answer in pieces; a string is completed, messages are chatted. Errors are raised here."""
        opts = GenerationOptions.from_kwargs(**gen)
        payload = (_as_prompt(prompt_or_messages) if isinstance(prompt_or_messages, str)
                   else as_messages(prompt_or_messages))
        return self._start(payload, opts)

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        """Check the request now, return a generator of text pieces that sets `self.last` at its end."""
        raise NotImplementedError

    def _require_open(self, handle: Any) -> Any:
        """The engine's handle, or a clear error once the backend is closed."""
        if handle is None:
            raise SlmLabError(f"This {self.engine} backend is closed.", "Open a new one with open_backend(...).")
        return handle

    def _drain(self, pieces: Iterator[str]) -> Generation:
        for _ in pieces:
            pass
        assert self.last is not None
        return self.last

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_name!r}>"


class TokenizerBackend(BackendBase):
    """A backend whose text goes through a transformers tokenizer (``self.tokenizer``): hf and ort-greedy."""

    tokenizer: Any = None

    def _open(self) -> Any:
        """The engine's handle (its model), or a clear error once the backend is closed."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed, no BOS added)."""
        self._open()
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, payload: str | list[dict[str, str]], **kwargs: Any) -> Any:
        """The tokenizer's encoding of a prompt (BOS only if the model wants one) or of chat messages (its chat
        template, ready for the answer); `kwargs` go to the tokenizer (e.g. return_tensors="pt")."""
        if isinstance(payload, str):
            return self.tokenizer(payload, **kwargs)
        if not self.tokenizer.chat_template:
            raise no_chat_template(self.model_name)
        return self.tokenizer.apply_chat_template(payload, add_generation_prompt=True, return_dict=True, **kwargs)


def release_memory() -> None:
    """Collect garbage, then hand freed heap memory back to the operating system (glibc's malloc_trim).

    After a model is closed, glibc keeps much of its freed memory for reuse, so the process still looks
    ~500 MB bigger; on a 2 GB machine the next model would not fit. Where there is no glibc this only collects.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        return None


def ids_to_score(token_ids: Sequence[int], max_context: int, setting: str = "n_ctx") -> list[int]:
    """Token ids for next_token_argmax, checked: at least one, and no more than the context holds."""
    ids = [int(t) for t in token_ids]
    if not ids:
        raise SlmLabError("No tokens to score.", "Pass the token ids of a non-empty text.")
    if len(ids) > max_context:
        raise prompt_too_long(len(ids), max_context, max_context, setting)
    return ids


def _as_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt:
        raise SlmLabError(f"The prompt must be a non-empty string, not {prompt!r}.",
                          "Pass text to generate(); for chat messages use chat().")
    return prompt


@runtime_checkable
class Scorer(Protocol):
    """A backend that can score text: the argmax next token at every position (teacher forcing)."""

    def next_token_argmax(self, token_ids: Sequence[int]) -> list[int]:
        """For each position i, the most likely token to follow token_ids[: i + 1]."""
        ...
