"""Any Ollama server (a real one, or ``slmlab serve ollama``) through the official ``ollama`` client.

Chat goes to ``/api/chat`` (the model's template on the server), plain completion to ``/api/generate`` with
``raw=True`` (no template). Timings come from the server's own nanosecond fields (load, prompt eval, eval);
the time to first token is measured here.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from time import perf_counter
from typing import Any

from slmlab.backends.base import BackendBase, Generation, GenerationOptions, PieceStream, Timings
from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel

START_HINT = ("Start one: `slmlab serve ollama` (slmlab's Ollama-compatible server, or "
              "slmlab.serve.ollama.ollama_server() from Python), or `ollama serve` for a real Ollama; "
              "point OLLAMA_HOST (or host=...) at it.")


def ollama_options(opts: GenerationOptions) -> dict[str, Any]:
    """The options as Ollama's ``options`` object (repeat_penalty and min_p off, as on the other engines)."""
    out: dict[str, Any] = {"num_predict": opts.max_tokens, "temperature": opts.temperature, "top_p": opts.top_p,
                           "top_k": opts.top_k, "repeat_penalty": 1.0, "min_p": 0.0}
    if opts.seed is not None:
        out["seed"] = opts.seed
    if opts.stop:
        out["stop"] = list(opts.stop)
    return out


class OllamaBackend(BackendBase):
    """A model on an Ollama server. `model` is an Ollama name ("smollm2:135m"); slmlab names are mapped."""

    engine = "ollama"
    concurrent = True  # Ollama answers OLLAMA_NUM_PARALLEL requests at once; the client is thread-safe

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, host: str | None = None,
                 timeout: float = 300, keep_alive: str | float | None = None, pull: bool = False) -> None:
        try:
            import ollama
        except ImportError:
            raise SlmLabError("The ollama client is not installed.", "Run: pip install -e '.[ollama]'") from None
        from slmlab.serve.ollama.names import ollama_name
        from slmlab.serve.ollama.server import host_url

        start = perf_counter()
        name = model.name if isinstance(model, ResolvedModel) else os.fspath(model)
        self.model_name = ollama_name(name)
        self.host = host_url(host or os.environ.get("OLLAMA_HOST"))
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.client: ollama.Client | None = ollama.Client(host=self.host, timeout=timeout, trust_env=False)
        try:
            self.server_models = self.models()
            if self.model_name not in self.server_models and f"{self.model_name}:latest" not in self.server_models:
                if not pull:
                    raise self._unknown_model()
                self._pull()
            self._warm_up()
        except BaseException:
            self.close()
            raise
        self.load_s = perf_counter() - start

    def __repr__(self) -> str:
        return f"<OllamaBackend {self.model_name!r} at {self.host}>"

    # ------------------------------------------------------------------ errors
    def _unknown_model(self) -> SlmLabError:
        listing = ", ".join(repr(m) for m in self.server_models) or "none"
        return SlmLabError(f"The Ollama server at {self.host} has no model '{self.model_name}'. It has: {listing}.",
                           f"Pull it first (ollama pull {self.model_name}, client.pull('{self.model_name}'), or "
                           f"pull=True here), or pick one of those.")

    def _error(self, exc: BaseException) -> SlmLabError:
        import httpx
        import ollama

        if isinstance(exc, SlmLabError):
            return exc
        if isinstance(exc, ConnectionError | httpx.ConnectError):
            return SlmLabError(f"Cannot reach an Ollama server at {self.host}.", START_HINT)
        if isinstance(exc, httpx.TimeoutException):
            return SlmLabError(f"The Ollama server at {self.host} did not answer within {self.timeout:g} s.",
                               "It may be loading a large model or busy: pass a larger timeout=.")
        if isinstance(exc, ollama.ResponseError):
            message = str(exc.error)
            if exc.status_code == 404 and "not found" in message:
                return self._unknown_model()
            if "does not support chat" in message or "does not support generate" in message:
                return SlmLabError(f"{self.model_name} cannot generate text: {message}.",
                                   "Use a text model here; embedding models are used with client.embed().")
            return SlmLabError(f"The Ollama server at {self.host} answered "
                               f"{exc.status_code if exc.status_code > 0 else 'mid-stream'}: {message}",
                               "Check the request's options; for a 500 look at the server's log.")
        if isinstance(exc, httpx.HTTPError):
            return SlmLabError(f"The connection to {self.host} broke: {type(exc).__name__}: {exc}",
                               "Look at the server's log; it may have crashed or been stopped.")
        return SlmLabError(f"Ollama request failed: {type(exc).__name__}: {exc}", "Look at the server's log.")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (the client's and httpx's errors, turned into what to do)
            raise self._error(exc) from None

    # ------------------------------------------------------------------ the server
    def models(self) -> list[str]:
        """The model names the server has (GET /api/tags)."""
        return [m.model for m in self._call(self._open().list).models]

    def _pull(self) -> None:
        self._call(self._open().pull, self.model_name)
        self.server_models = self.models()

    def _warm_up(self) -> None:
        """Load the model on the server now (an empty generate), so load time is not counted in the first answer."""
        self._call(self._open().generate, self.model_name, keep_alive=self.keep_alive)

    def _open(self) -> Any:
        return self._require_open(self.client)

    def tokenize(self, text: str) -> list[int]:
        """Not available: Ollama's API has no tokenize endpoint."""
        raise SlmLabError("Ollama's REST API has no tokenize endpoint.",
                          "Tokenize in-process with the same weights: open_backend('llamacpp', model).tokenize(text).")

    # ------------------------------------------------------------------ generation
    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        client = self._open()
        options = ollama_options(opts)
        start = perf_counter()
        if isinstance(payload, str):
            stream = self._call(client.generate, self.model_name, payload, raw=True, stream=True, options=options,
                                keep_alive=self.keep_alive)
        else:
            stream = self._call(client.chat, self.model_name, messages=payload, stream=True, options=options,
                                keep_alive=self.keep_alive)
        chunks = iter(stream)
        head = self._call(next, chunks, None)  # errors (unknown model, bad options) surface here, at the call
        if head is None:
            raise SlmLabError(f"The Ollama server at {self.host} sent an empty stream.", "Look at the server's log.")
        return PieceStream(self._pieces(head, chunks, chat=not isinstance(payload, str), start=start))

    def _pieces(self, head: Any, chunks: Iterator[Any], chat: bool, start: float) -> Generator[str, None, Generation]:
        import itertools

        parts: list[str] = []
        first = last = None
        final = None
        try:
            for chunk in itertools.chain([head], chunks):
                piece = (chunk.message.content if chunk.message else "") if chat else chunk.response
                if piece:
                    last = perf_counter()
                    first = first or last
                    parts.append(piece)
                    yield piece
                if chunk.done:
                    final = chunk
        except Exception as exc:  # noqa: BLE001  (as in _call: every error turned into what to do)
            raise self._error(exc) from None
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()  # also when the caller stops early: the server then stops generating
        end = perf_counter()
        if final is None:
            raise SlmLabError(f"The Ollama server at {self.host} ended the stream before the answer was complete.",
                              "Look at the server's log: it may have crashed or been stopped.")
        ns = 1e-9
        ttft = (first or end) - start
        prompt_eval = (final.prompt_eval_duration or 0) * ns or ttft
        timings = Timings(self.load_s + (final.load_duration or 0) * ns, prompt_eval,
                          (last or end) - (first or end), ttft)
        reason = "length" if final.done_reason == "length" else "stop"
        self.last = generation = Generation("".join(parts), final.prompt_eval_count or 0, final.eval_count or 0,
                                            reason, timings, self.engine, self.model_name,
                                            {"server_load_s": (final.load_duration or 0) * ns,
                                             "server_eval_s": (final.eval_duration or 0) * ns,
                                             "server_total_s": (final.total_duration or 0) * ns})
        return generation

    def close(self) -> None:
        """Close the HTTP connections (the server and its loaded model keep running; idempotent)."""
        if self.client is not None:
            self.client.close()
            self.client = None
