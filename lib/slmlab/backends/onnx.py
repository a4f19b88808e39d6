"""ONNX Runtime: ORT GenAI's generation loop (`OrtGenAIBackend`), and the same loop by hand (`OrtGreedyBackend`).

Both run a folder made by ONNX Runtime GenAI's model builder (see slmlab.convert.gguf_to_onnx): ``model.onnx``
(+ ``.data``), ``genai_config.json`` and the tokenizer files. ORT GenAI does for you what ``OrtGreedyBackend``
spells out in a dozen lines: tokenize, apply the chat template, run the prompt, then feed each new token back with
the KV cache (``past_key_values.*`` in, ``present.*`` out) until the end-of-answer token.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.backends.base import (
    BackendBase,
    Generation,
    GenerationOptions,
    TokenizerBackend,
    cut_and_collect,
    eos_ids,
    ids_to_score,
    no_chat_template,
    prompt_too_long,
    release_memory,
    stream_timings,
)
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel

PIP_ONNX = "pip install -e '.[onnx]'"


def _import(module: str, package: str, command: str = PIP_ONNX) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise SlmLabError(f"The onnx backends need {package}, which is not installed.", f"Run: {command}") from None


def model_folder(model: ResolvedModel | str | os.PathLike, precision: str) -> Path:
    """An ORT GenAI folder as is; any other model reference converted (GGUF -> HF -> ONNX, cached)."""
    path = Path(model).expanduser() if isinstance(model, str | os.PathLike) else None
    if path is not None and (path / "genai_config.json").is_file():
        return path
    if path is not None and path.is_dir() and (path / "model.onnx").is_file():
        raise SlmLabError(f"{path} has a model.onnx but no genai_config.json.",
                          "Build the folder with slmlab.convert.gguf_to_onnx.hf_to_ort_genai(), which writes both.")
    from slmlab.convert.gguf_to_onnx import ort_genai_folder

    return ort_genai_folder(model, precision)


def _genai_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "genai_config.json").read_text())["model"]


class OrtGenAIBackend(BackendBase):
    """A model in ONNX Runtime GenAI on the CPU: its tokenizer, chat template, sampling and KV cache.

    `model` is an ORT GenAI folder, or any model reference, converted once (cached) at `precision`. int8 is the
    default: from the bundled Q4_1 GGUF, int4 re-quantizes weights that were already 4-bit and agrees with the
    fp32 model on only ~62 % of next tokens (int8: ~94 %, fp32: 100 %).
    """

    engine = "onnx"

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, precision: str = "int8",
                 n_ctx: int | None = None) -> None:
        if n_ctx is not None and (not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 16):
            raise SlmLabError(f"n_ctx={n_ctx!r} is not a usable context size.",
                              "Use a whole number of tokens, at least 16 (or None for the model's own).")
        og = _import("onnxruntime_genai", "onnxruntime-genai")
        start = perf_counter()
        self.folder = model_folder(model, precision)  # converts (once, cached) unless given an ORT GenAI folder
        try:
            config = og.Config(str(self.folder))
            config.clear_providers()  # the CPU execution provider
            self.model = og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as exc:  # noqa: BLE001  (og raises plain RuntimeErrors for broken folders)
            raise SlmLabError(f"ONNX Runtime GenAI could not load {self.folder}: {exc}",
                              "Rebuild it: slmlab.convert.gguf_to_onnx.hf_to_ort_genai(hf_dir, precision, "
                              "force=True).") from None
        self.load_s = perf_counter() - start
        self.model_name = self.folder.name
        self.trained_ctx = int(_genai_config(self.folder).get("context_length") or 1 << 30)
        self.n_ctx = min(n_ctx or self.trained_ctx, self.trained_ctx)  # the cap a service was sized for
        self._eos = {int(t) for t in self.tokenizer.eos_token_ids}
        tokenizer_config = self.folder / "tokenizer_config.json"  # where older folders keep the chat template
        self._has_template = (self.folder / "chat_template.jinja").is_file() or (
            tokenizer_config.is_file() and "chat_template" in json.loads(tokenizer_config.read_text()))

    def _open(self) -> Any:
        return self._require_open(self.model)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed, no BOS added)."""
        self._open()
        return [int(t) for t in self.tokenizer.encode(text)]

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        self._open()
        if not isinstance(payload, str):
            if not self._has_template:
                raise no_chat_template(self.model_name)
            payload = self.tokenizer.apply_chat_template(json.dumps(payload), add_generation_prompt=True)
        ids = self.tokenizer.encode(payload)
        if len(ids) >= self.n_ctx:
            raise prompt_too_long(len(ids), self.n_ctx, self.trained_ctx, "n_ctx")
        return self._pieces(ids, opts)

    def _pieces(self, ids: Any, opts: GenerationOptions) -> Iterator[str]:
        og = _import("onnxruntime_genai", "onnxruntime-genai")
        params = og.GeneratorParams(self.model)
        # max_length counts the prompt too, and sizes the KV cache buffer: ask for no more than needed.
        search: dict[str, Any] = {"max_length": min(len(ids) + opts.max_tokens, self.n_ctx),
                                  "do_sample": not opts.greedy, "repetition_penalty": 1.0}
        if not opts.greedy:  # top_k=0 means off in ORT GenAI too; the folder's defaults (top_k=50) are overridden
            search |= {"temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k,
                       "random_seed": opts.seed if opts.seed is not None else random.randrange(2**31)}
        params.set_search_options(**search)
        generator = og.Generator(self.model, params)
        decoder = self.tokenizer.create_stream()
        new: list[int] = []
        times: list[float] = []

        def tokens() -> Iterator[str]:
            generator.append_tokens(ids)  # the prompt (prefill)
            prefill_end.append(perf_counter())
            while len(new) < opts.max_tokens and not generator.is_done():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                new.append(token)
                times.append(perf_counter())
                if token in self._eos:
                    return
                yield decoder.decode(token)

        prefill_end: list[float] = []
        start = perf_counter()
        text, stopped = yield from cut_and_collect(tokens(), opts.stop)
        end = perf_counter()
        generator = None  # frees its KV cache now (the closure above holds the only other reference)
        self.last = _generation(self, text, len(ids), new, times, stopped, start, end,
                                prefill_end[0] if prefill_end else None)

    def next_token_argmax(self, token_ids: Sequence[int]) -> list[int]:
        """For each position, the most likely next token: one pass of the folder's model.onnx in onnxruntime.

        ORT GenAI returns the logits of the last position only, so scoring runs the same graph directly
        (a second, scoring-only session, freed afterwards), as llama.cpp's backend opens a scoring context.
        """
        self._open()
        return folder_next_token_argmax(self.folder, token_ids)

    def close(self) -> None:
        """Free the model's memory (idempotent)."""
        if getattr(self, "model", None) is not None:
            self.tokenizer = None
            self.model = None
            release_memory()


def _generation(backend: Any, text: str, prompt_tokens: int, new: list[int], times: list[float], stopped: bool,
                start: float, end: float, prefill_end: float | None = None) -> Generation:
    """The Generation record of a finished answer: `new` token ids, each one's arrival time, the run's clock."""
    ended = bool(new) and (new[-1] in backend._eos or stopped)  # the last token ended the answer
    completion = len(new) - (1 if ended else 0)
    finish = "stop" if ended else "length"  # else max_tokens (or the context) ran out
    return Generation(text, prompt_tokens, completion, finish,
                      stream_timings(backend.load_s, start, end, times, completion, prefill_end),
                      backend.engine, backend.model_name,
                      {"folder": str(backend.folder), "provider": "cpu", "token_ids": new[:completion]})


class _Decoder:
    """The exported decoder in plain onnxruntime: ids + attention mask + past KV cache -> logits + present cache."""

    def __init__(self, folder: Path) -> None:
        ort = _import("onnxruntime", "onnxruntime")
        np = _import("numpy", "numpy")
        config = _genai_config(folder)["decoder"]
        self.session = ort.InferenceSession(str(folder / config.get("filename", "model.onnx")),
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.past = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[self.past[0].type]
        # An empty cache to start from: [batch=1, kv_heads, 0 positions, head_size] per layer, keys and values.
        self.empty = {i.name: np.zeros((1, config["num_key_value_heads"], 0, config["head_size"]), dtype)
                      for i in self.past}

    def run(self, ids: Sequence[int], past: dict[str, Any], total: int) -> tuple[Any, dict[str, Any]]:
        """Logits for `ids` given `past` (the cache of the `total - len(ids)` tokens before them), and the new cache."""
        import numpy as np

        feeds = {"input_ids": np.array([list(ids)], dtype=np.int64),
                 "attention_mask": np.ones((1, total), dtype=np.int64), **past}
        result = dict(zip(self.outputs, self.session.run(None, feeds), strict=True))
        present = {i.name: result[i.name.replace("past_key_values.", "present.")] for i in self.past}
        return result["logits"][0], present

    def argmax_all(self, token_ids: Sequence[int], max_context: int) -> list[int]:
        ids = ids_to_score(token_ids, max_context, "context_length")
        logits, _ = self.run(ids, self.empty, len(ids))
        return logits.argmax(axis=-1).tolist()


def folder_next_token_argmax(folder: str | os.PathLike, token_ids: Sequence[int]) -> list[int]:
    """For each position, the most likely next token from an ORT GenAI folder's model.onnx, in plain onnxruntime.

    No ORT GenAI model is loaded: one onnxruntime session, freed on return (to compare many variants one at a time).
    """
    folder = Path(folder)
    if not (folder / "genai_config.json").is_file():
        raise SlmLabError(f"{folder} is not an ORT GenAI model folder (no genai_config.json).",
                          "Build one with slmlab.convert.gguf_to_onnx.hf_to_ort_genai() or "
                          "slmlab.convert.onnx_quantize.prepare().")
    decoder = _Decoder(folder)
    try:
        return decoder.argmax_all(token_ids, int(_genai_config(folder).get("context_length") or 1 << 30))
    finally:
        del decoder
        release_memory()


class OrtGreedyBackend(TokenizerBackend):
    """Greedy decoding written out over plain onnxruntime: what ORT GenAI's Generator does, step by step."""

    engine = "ort-greedy"

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, precision: str = "fp32") -> None:
        try:
            import transformers  # only for the tokenizer and its chat template
        except ImportError:
            raise SlmLabError("The ort-greedy backend uses transformers' tokenizer, which is not installed.",
                              "Run: pip install -e '.[hf,onnx]'") from None
        _import("onnxruntime", "onnxruntime")
        start = perf_counter()
        self.folder = model_folder(model, precision)
        self.decoder: _Decoder | None = _Decoder(self.folder)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
        config = _genai_config(self.folder)
        self.load_s = perf_counter() - start
        self.model_name = self.folder.name
        self.trained_ctx = int(config.get("context_length") or 1 << 30)
        self._eos = eos_ids(config.get("eos_token_id"))

    def _open(self) -> _Decoder:
        return self._require_open(self.decoder)

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        self._open()
        if not opts.greedy:
            raise SlmLabError("The ort-greedy backend only decodes greedily (temperature=0).",
                              "Use temperature=0, or the 'onnx' engine (ONNX Runtime GenAI) to sample.")
        ids = self._encode(payload)["input_ids"]
        if len(ids) >= self.trained_ctx:
            raise prompt_too_long(len(ids), self.trained_ctx, self.trained_ctx, "context_length")
        return self._pieces(list(ids), opts)

    def _pieces(self, ids: list[int], opts: GenerationOptions) -> Iterator[str]:
        decoder = self._open()
        new: list[int] = []
        times: list[float] = []

        def tokens() -> Iterator[str]:
            past, step, text = decoder.empty, ids, ""  # first step: the whole prompt, with an empty cache
            while len(new) < opts.max_tokens and len(ids) + len(new) < self.trained_ctx:
                logits, past = decoder.run(step, past, len(ids) + len(new))
                token = int(logits[-1].argmax())  # greedy: the most likely next token
                new.append(token)
                times.append(perf_counter())
                if token in self._eos:
                    return
                step = [token]  # next step: only the new token; the cache holds the rest
                full = self.tokenizer.decode(new, skip_special_tokens=True)
                if not full.endswith("\ufffd"):  # else half a UTF-8 character: wait for the next token
                    yield full[len(text):]
                    text = full

        start = perf_counter()
        text, stopped = yield from cut_and_collect(tokens(), opts.stop)
        end = perf_counter()
        self.last = _generation(self, text, len(ids), new, times, stopped, start, end)

    def next_token_argmax(self, token_ids: Sequence[int]) -> list[int]:
        """For each position, the most likely next token (one pass over all the ids, empty cache)."""
        return self._open().argmax_all(token_ids, self.trained_ctx)

    def close(self) -> None:
        """Free the model's memory (idempotent)."""
        if getattr(self, "decoder", None) is not None:
            self.decoder = None
            release_memory()
