"""transformers on PyTorch: a Hugging Face model folder, or a GGUF file dequantized to full precision."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from threading import Event, Thread
from time import perf_counter
from typing import Any

from slmlab.backends.base import (
    Generation,
    GenerationOptions,
    TokenizerBackend,
    cut_and_collect,
    eos_ids,
    hf_kwargs,
    ids_to_score,
    prompt_too_long,
    release_memory,
    stream_timings,
)
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.progress import progress_class

PIP_HF = "pip install -e '.[hf]'  (install torch from the CPU index first: see README)"
DEVICES = ("auto", "cpu", "cuda", "mps")


def _import_stack() -> tuple[Any, Any]:
    """torch and transformers, or a clear error saying how to install them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise SlmLabError(f"The hf backend needs torch and transformers, and {exc.name or 'one of them'} "
                          "is not installed.", f"Run: {PIP_HF}") from None
    return torch, transformers


@contextmanager
def transformers_progress() -> Iterator[None]:
    """Inside the block, transformers' progress bars are slmlab's: a widget in JupyterLab, plain text when headless.

    transformers draws its bars with ``tqdm.auto``, which is an ipywidgets bar in any Jupyter kernel, so a
    headless run (papermill, nbval, CI) would save widget JSON into the notebook. Two bars matter: "Loading
    weights" (every ``from_pretrained``; it honours ``transformers.utils.logging.set_tqdm_hook``) and the GGUF
    loader's "Converting and de-quantizing GGUF tensors" (a module-level ``tqdm.auto`` import, so it is swapped
    here). A bar turned off with ``transformers.utils.logging.disable_progress_bar()`` stays off.
    """
    from tqdm import auto as tqdm_auto
    from transformers.utils import logging as hf_logging

    bar = progress_class()

    def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return bar(*args, **kwargs) if factory is tqdm_auto.tqdm else factory(*args, **kwargs)

    try:
        gguf_loader: Any = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:  # a transformers without GGUF support: only the hook is needed
        gguf_loader = None
    previous_hook = hf_logging.set_tqdm_hook(hook)
    previous_bar = getattr(gguf_loader, "tqdm", None)
    if gguf_loader is not None and previous_bar is not None:
        gguf_loader.tqdm = bar if hf_logging.is_progress_bar_enabled() else _silent_tqdm(bar)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous_hook)
        if gguf_loader is not None and previous_bar is not None:
            gguf_loader.tqdm = previous_bar


def _silent_tqdm(cls: Any) -> Any:
    """`cls` with disable=True: an iterator wrapper that draws nothing."""
    return functools.partial(cls, disable=True)


def pick_device(device: str, torch: Any) -> str:
    """"cuda", "mps" or "cpu" for a device request; asking for a GPU that is absent is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else ("mps" if mps else "cpu")
    if device.split(":")[0] == "cuda" and not cuda:
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        raise SlmLabError(f"GPU requested but absent: device='{device}', but {why}.",
                          "Use device='cpu', or device='auto' to take a GPU only when there is one "
                          "(on Colab: Runtime > Change runtime type > GPU).")
    if device == "mps" and not mps:
        raise SlmLabError("GPU requested but absent: device='mps' needs Apple Silicon with Metal.",
                          "Use device='cpu' or device='auto'.")
    if device.split(":")[0] not in DEVICES:
        raise SlmLabError(f"Unknown device '{device}'.", f"Use one of {', '.join(DEVICES)}.")
    return device


def _pick_dtype(dtype: str, device: str, torch: Any) -> Any:
    if dtype != "auto":
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU and MPS: full precision (a GGUF is dequantized, so this is its exact weights)


class HFBackend(TokenizerBackend):
    """A model in transformers: greedy when temperature is 0, streaming through a background thread."""

    engine = "hf"

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, device: str = "auto",
                 dtype: Any = "auto") -> None:
        torch, transformers = _import_stack()
        self.device = pick_device(device, torch)  # fail before a 20-second load
        start = perf_counter()
        self.resolved = model if isinstance(model, ResolvedModel) else resolve(model)
        if self.resolved.format == "gguf":
            if importlib.util.find_spec("gguf") is None:
                raise SlmLabError("transformers needs the gguf package to read a GGUF file.", "Run: pip install gguf")
            source, extra = self.resolved.path.parent, {"gguf_file": self.resolved.path.name}
        elif self.resolved.format == "hf-folder":
            source, extra = self.resolved.path, {}
        else:
            raise SlmLabError(f"{self.resolved.name} is a {self.resolved.format} model, not a language model.",
                              "Pick a GGUF file or a Hugging Face causal-LM folder.")
        self.dtype = _pick_dtype(dtype, self.device, torch)
        try:
            with transformers_progress():  # text progress bars when headless, never widget JSON in a saved notebook
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **extra)
                self.model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype, **extra)
        except ImportError as exc:
            raise SlmLabError(f"Loading {self.resolved.name} in transformers failed: {exc}", f"Run: {PIP_HF}") from None
        self.model.to(self.device).eval()
        self.load_s = perf_counter() - start
        self.model_name = self.resolved.name
        self.trained_ctx = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        self._eos = eos_ids(self.model.generation_config.eos_token_id)

    def _open(self) -> Any:
        return self._require_open(self.model)

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        self._open()
        enc = self._encode(payload, return_tensors="pt")
        n_prompt = int(enc["input_ids"].shape[1])
        if n_prompt >= self.trained_ctx:
            raise prompt_too_long(n_prompt, self.trained_ctx, self.trained_ctx, "n_ctx")
        return self._pieces(enc.to(self.device), n_prompt, opts)

    def _pieces(self, enc: Any, n_prompt: int, opts: GenerationOptions) -> Iterator[str]:
        import torch

        streamer = _streamer_class()(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = Event()  # set when the caller stops reading the stream, so generate() stops too
        kwargs = hf_kwargs(opts) | ({"tokenizer": self.tokenizer} if opts.stop else {})
        kwargs["stopping_criteria"] = [lambda ids, scores, **_: torch.full((ids.shape[0],), cancelled.is_set())]
        if not opts.greedy and opts.seed is not None:
            torch.manual_seed(opts.seed)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    result["ids"] = self.model.generate(**enc, streamer=streamer, **kwargs)
            except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread below)
                result["error"] = exc
                streamer.end()

        start = perf_counter()
        thread = Thread(target=work, daemon=True)
        thread.start()
        try:
            text, stopped = yield from cut_and_collect(iter(streamer), opts.stop)
        except GeneratorExit:
            cancelled.set()
            raise
        if stopped:  # a stop string ended the text: read the rest of the stream so generate() can finish
            for _ in streamer:
                pass
        thread.join()
        if "error" in result:
            raise result["error"]
        new = result["ids"][0, n_prompt:].tolist()
        ended = bool(new) and (new[-1] in self._eos or stopped)  # the last token ended the answer
        completion = len(new) - (1 if ended else 0)
        finish = "stop" if ended or completion < opts.max_tokens else "length"
        timings = stream_timings(self.load_s, start, perf_counter(), streamer.times, completion)
        self.last = Generation(text, n_prompt, completion, finish, timings, self.engine, self.model_name,
                               {"device": self.device, "dtype": str(self.dtype)})

    def next_token_argmax(self, token_ids: Sequence[int]) -> list[int]:
        """For each position, the model's most likely next token (one forward pass)."""
        import torch

        ids = ids_to_score(token_ids, self.trained_ctx, "n_ctx")
        with torch.inference_mode():
            logits = self._open()(input_ids=torch.tensor([ids], device=self.device)).logits[0]
        return logits.argmax(dim=-1).tolist()

    def close(self) -> None:
        """Free the model's memory (idempotent)."""
        if getattr(self, "model", None) is not None:
            self.model = None
            release_memory()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


@functools.cache
def _streamer_class() -> type:
    """TextIteratorStreamer that also records when each generated token arrived (built lazily: optional import)."""
    from transformers import TextIteratorStreamer

    class TimedStreamer(TextIteratorStreamer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.times: list[float] = []

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                self.times.append(perf_counter())
            super().put(value)

    return TimedStreamer
