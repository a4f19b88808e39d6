"""Any OpenAI-compatible server (llama-cpp-python's, llama.cpp's llama-server, vLLM, Foundry Local) as a backend.

Requests go through the official ``openai`` client. chat() uses ``/v1/chat/completions`` (the server applies
the model's chat template); generate() uses the legacy ``/v1/completions`` endpoint, which llama.cpp's servers
and vLLM both keep for plain-text continuation. Every call streams, so TTFT is measured on the first content
delta; token counts come from the server's ``usage`` (asked for with ``stream_options.include_usage``).
llama-cpp-python's server sends no usage in streams: there the answer's tokens are counted from the stream
(one piece per token), a plain prompt's through its ``/extras/tokenize``, and a chat prompt's stay unknown
(0, with ``extra["usage"] == "estimated"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from slmlab.backends.base import BackendBase, Generation, GenerationOptions, PieceStream, Timings, prompt_too_long
from slmlab.backends.server_models import choose_model, unknown_model
from slmlab.errors import SlmLabError, UpstreamError

API_KEY_ENV = "SLMLAB_API_KEY"  # read when api_key is not passed
START_HINT = ("Start one first, e.g. llama.cpp's: `with slmlab.serve.llama_server() as server: "
              "backend = OpenAIBackend(server.url)`, or in a terminal: `llama-server --model <file.gguf> "
              "--host 127.0.0.1 --port 8000` (the program: slmlab setup llamacpp --where; the model: "
              "slmlab.models.resolver.resolve('smollm2-135m-instruct').path). Then check the host and port in the URL.")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def openai_kwargs(opts: GenerationOptions) -> dict[str, Any]:
    """The options as openai-client arguments; knobs outside the OpenAI API go in extra_body."""
    import random

    # The OpenAI API has no top_k, min_p or repetition penalty, but llama.cpp's and vLLM's servers take them
    # in the body. Sent explicitly because llama-cpp-python's server defaults differ from the course's "off"
    # (top_k=40, min_p=0.05, repeat_penalty=1.1), and a repeat penalty changes even greedy answers.
    # repeat_penalty is llama-cpp-python's name, repetition_penalty vLLM's; each server ignores the other.
    kwargs: dict[str, Any] = {
        "max_tokens": opts.max_tokens, "temperature": opts.temperature, "top_p": opts.top_p,
        "seed": opts.seed if opts.seed is not None else random.randrange(2**31),
        "extra_body": {"top_k": opts.top_k, "min_p": 0.0, "repeat_penalty": 1.0, "repetition_penalty": 1.0}}
    if opts.stop:
        kwargs["stop"] = list(opts.stop)
    return kwargs


def _split_url(base_url: Any) -> tuple[str, str]:
    """(root, api base) from a URL with or without /v1, or from anything with a `.url` (a ServerProcess)."""
    url = str(getattr(base_url, "url", base_url) or "").strip().rstrip("/")
    if not url:
        raise SlmLabError("No server URL given.", "Pass base_url='http://127.0.0.1:8000/v1' (or a ServerProcess).")
    if "://" not in url:
        url = f"http://{url}"
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    return root, f"{root}/v1"


class OpenAIBackend(BackendBase):
    """A model behind an OpenAI-compatible HTTP server; the constructor checks the server and the model.

    `base_url` is the server's URL with or without /v1, or a ServerProcess. `model` is the server's model id;
    without it, `preferred_model` when the server lists it, else the server's only model that can chat (never
    just the first one listed: see slmlab.backends.server_models). `api_key` defaults to $SLMLAB_API_KEY;
    `max_retries` is the openai client's (0: errors show at once); `http_client` is an optional httpx2.Client for
    the openai client (proxies, certificates, tests).
    """

    engine = "openai"
    concurrent = True  # the server has slots (llama-server --parallel, vLLM's batch); the client is thread-safe

    def __init__(self, base_url: Any = "http://127.0.0.1:8000/v1", model: str | None = None,
                 api_key: str | None = None, timeout: float = 60, max_retries: int = 0,
                 http_client: Any = None, preferred_model: str | None = None) -> None:
        try:
            import openai
        except ImportError:
            raise SlmLabError("The openai backend needs the openai package, which is not installed.",
                              "Run: pip install -e '.[serve]'") from None
        start = perf_counter()
        self.root, self.base_url = _split_url(base_url)
        self.timeout = timeout
        self._key_given = bool(api_key or os.environ.get(API_KEY_ENV))
        key = api_key or os.environ.get(API_KEY_ENV) or "no-key"  # servers without keys accept any bearer
        local = urlsplit(self.root).hostname in _LOOPBACK
        # No proxy for 127.0.0.1: an HTTP_PROXY in the environment would otherwise swallow local requests.
        http = http_client or (openai.DefaultHttpxClient(trust_env=False) if local else None)
        self.client: openai.OpenAI | None = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries, http_client=http)
        self._bos: list[int] | None = None
        self._tokenize_path: str | None = None
        self._shows_capabilities: bool | None = None  # whether the server answers Ollama's /api/show
        try:
            self.server_models = self.models()
            # Checked for every server: llama-cpp-python's would silently answer an unknown model with its own.
            self.model_name = choose_model(self.server_models, model, preferred_model, self.capabilities,
                                           self.base_url)
        except BaseException:
            self.close()
            raise
        self.load_s = perf_counter() - start  # connecting and listing the models: the model is already loaded

    def __repr__(self) -> str:
        return f"<OpenAIBackend {self.model_name!r} at {self.base_url}>"

    # ------------------------------------------------------------------ errors

    def _unknown_model(self, model: str) -> SlmLabError:
        return unknown_model(model, self.server_models, self.base_url)

    def _error(self, exc: BaseException) -> SlmLabError:
        """An openai-client exception as an SlmLabError that says what to do."""
        import openai

        if isinstance(exc, SlmLabError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamError(f"The server at {self.base_url} did not answer within {self.timeout:g} s.",
                               "It may be busy or stuck: look at its log (server.log_tail() for a ServerProcess), "
                               "or pass a larger timeout=.")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            why = f" ({cause})" if cause else ""
            return UpstreamError(f"Cannot reach an OpenAI-compatible server at {self.base_url}{why}.", START_HINT)
        if isinstance(exc, openai.APIStatusError):
            message = _message(exc)
            status = exc.status_code
            if status == 401:
                if self._key_given:
                    return SlmLabError(f"The server at {self.base_url} rejected the API key (401: {message}).",
                                       f"Use the key the server was started with (--api_key), as api_key=... "
                                       f"or in the environment variable {API_KEY_ENV}.")
                return SlmLabError(f"The server at {self.base_url} needs an API key (it answered 401: {message}).",
                                   f"Pass api_key='...' or set the environment variable {API_KEY_ENV}.")
            if status == 404:
                if "model" in message.lower() and getattr(self, "model_name", None):
                    try:  # the server may have been restarted with other models: list what it has now
                        self.server_models = self.models()
                    except SlmLabError:
                        pass
                    return self._unknown_model(self.model_name)
                return SlmLabError(f"The server at {self.root} has no endpoint {exc.request.url.path} (404).",
                                   "Check the URL: an OpenAI-compatible API lives under /v1 "
                                   "(e.g. http://127.0.0.1:8000/v1).")
            if "Invalid chat handler: chat_template.default" in message:
                return SlmLabError(f"{getattr(self, 'model_name', 'This model')} has no chat template "
                                   "(it is a base model).", "Use generate('some text to continue') instead of chat().")
            too_long = _context_error(message)
            if too_long:
                return too_long
            if status >= 500:
                return UpstreamError(f"The server at {self.base_url} answered {status}: {message}",
                                     "Look at the server's log (server.log_tail() for a ServerProcess).")
            return SlmLabError(f"The server at {self.base_url} answered {status}: {message}",
                               "Check the request's options against what this server accepts.")
        if isinstance(exc, openai.APIError):  # an error event inside a stream (vLLM sends these)
            too_long = _context_error(str(exc.message))
            return too_long or SlmLabError(f"The server at {self.base_url} reported an error: {exc.message}",
                                           "Look at the server's log (server.log_tail() for a ServerProcess).")
        return UpstreamError(f"The connection to {self.base_url} broke: {type(exc).__name__}: {exc}",
                           "Look at the server's log; it may have crashed or been stopped.")

    # ------------------------------------------------------------------ the interface

    def models(self) -> list[str]:
        """The model ids the server serves (GET /v1/models)."""
        import openai

        try:
            return [m.id for m in self._open().models.list().data]
        except openai.OpenAIError as exc:
            raise self._error(exc) from None

    def capabilities(self, model: str) -> list[str] | None:
        """What the server says `model` can do (Ollama's ``/api/show``: "completion", "embedding", ...), or None
        when the server does not say (vLLM, llama.cpp's servers, Foundry Local: they list ids only)."""
        import openai

        if self._shows_capabilities is False:
            return None
        try:
            shown = self._open().post(f"{self.root}/api/show", body={"model": model}, cast_to=object)
        except openai.OpenAIError:  # 404, 405...: not an Ollama server. Or it failed: chat will say so, clearer.
            self._shows_capabilities = False
            return None
        said = shown.get("capabilities") if isinstance(shown, dict) else None
        self._shows_capabilities = True
        return [str(c) for c in said] if isinstance(said, list) else None

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed, no BOS), by llama-cpp-python's or vLLM's tokenize endpoint."""
        tokens = self._server_tokenize(text)
        if self._bos is None:
            self._bos = self._server_tokenize("")  # what the server puts in front of every text (a BOS, or nothing)
        return tokens[len(self._bos):] if self._bos and tokens[: len(self._bos)] == self._bos else tokens

    def _server_tokenize(self, text: str) -> list[int]:
        import openai

        # llama-cpp-python: POST /extras/tokenize {input} (adds a BOS where the model wants one);
        # vLLM: POST /tokenize {prompt, add_special_tokens}.
        paths = [self._tokenize_path] if self._tokenize_path else ["/extras/tokenize", "/tokenize"]
        for path in paths:
            body = ({"input": text, "model": self.model_name} if path == "/extras/tokenize"
                    else {"prompt": text, "model": self.model_name, "add_special_tokens": False})
            try:
                answer: Any = self._open().post(f"{self.root}{path}", body=body, cast_to=object)
            except openai.NotFoundError:
                continue
            except openai.OpenAIError as exc:
                raise self._error(exc) from None
            self._tokenize_path = path
            return [int(t) for t in answer["tokens"]]
        raise SlmLabError(f"The server at {self.root} cannot tokenize: it has neither llama-cpp-python's "
                          "/extras/tokenize nor vLLM's /tokenize endpoint.",
                          "Tokenize in-process with the same model instead: "
                          "open_backend('llamacpp', model).tokenize(text) (the same GGUF gives the same ids).")

    def _open(self) -> Any:
        return self._require_open(self.client)

    def _request(self, payload: str | list[dict[str, str]], kwargs: dict[str, Any], stream: bool,
                 client: Any = None) -> Any:
        from slmlab.monitoring.structured_log import upstream_headers

        client = client or self._open()
        headers = upstream_headers()  # X-Request-ID of the request being served: the upstream logs the same id
        if headers:
            kwargs = {**kwargs, "extra_headers": headers}
        if stream:
            kwargs = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
        if isinstance(payload, str):
            return client.completions.create(model=self.model_name, prompt=payload, **kwargs)
        return client.chat.completions.create(model=self.model_name, messages=payload, **kwargs)

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        kwargs = openai_kwargs(opts)
        start = perf_counter()
        try:
            stream = self._request(payload, kwargs, stream=True)
            chunks = iter(stream)
            head = next(chunks, None)  # the first event: errors surface here, at the call, not mid-iteration
        except _stream_errors() as exc:  # httpx errors are not wrapped while streaming
            raise self._error(exc) from None
        if head is None:
            stream.close()
            # llama-cpp-python's server fails inside an already-started stream (HTTP 200, no events): the same
            # request without streaming returns the error text.
            raise self._diagnose(payload, kwargs)
        return PieceStream(self._pieces(stream, head, chunks, payload, start))

    def _diagnose(self, payload: str | list[dict[str, str]], kwargs: dict[str, Any]) -> SlmLabError:
        import openai

        try:  # one retry: the connection the server dropped may be the one taken from the pool
            self._request(payload, kwargs, stream=False, client=self._open().with_options(max_retries=1))
        except openai.OpenAIError as exc:
            return self._error(exc)
        return SlmLabError(f"The server at {self.base_url} sent an empty stream, but answers the same request "
                           "without streaming.", "Look at the server's log (server.log_tail() for a ServerProcess).")

    def _pieces(self, stream: Any, head: Any, chunks: Iterator[Any], payload: str | list[dict[str, str]],
                start: float) -> Generator[str, None, Generation]:
        import itertools

        chat = not isinstance(payload, str)
        parts: list[str] = []
        finish, usage, served_by, first, last = None, None, "", None, None
        try:
            for chunk in itertools.chain([head], chunks):
                usage = getattr(chunk, "usage", None) or usage
                served_by = getattr(chunk, "model", "") or served_by
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = (choice.delta.content if choice.delta else None) if chat else choice.text
                if piece:
                    last = perf_counter()
                    first = first or last
                    parts.append(piece)
                    yield piece
                finish = choice.finish_reason or finish
        except _stream_errors() as exc:
            raise self._error(exc) from None
        finally:
            stream.close()  # also when the caller stops early: the server then stops generating
        end = perf_counter()
        if finish is None:
            raise SlmLabError(f"The server at {self.base_url} ended the stream before the answer was complete "
                              f"({len(parts)} pieces received).",
                              "Look at the server's log (server.log_tail() for a ServerProcess): it may have "
                              "crashed, been stopped, or cut this request off for another one.")
        if usage is not None:
            prompt_tokens, completion_tokens, source = usage.prompt_tokens, usage.completion_tokens, "server"
        else:  # llama-cpp-python's server: one stream piece per generated token
            completion_tokens, source = len(parts), "estimated"
            prompt_tokens = self._count_prompt(payload) if isinstance(payload, str) else 0
        ttft = (first or end) - start
        self.last = generation = Generation("".join(parts), prompt_tokens, completion_tokens, finish,
                                            Timings(self.load_s, ttft, (last or end) - (first or end), ttft),
                                            self.engine, self.model_name, {"usage": source, "served_by": served_by})
        return generation

    def _count_prompt(self, prompt: str) -> int:
        """A plain prompt's tokens as the server counts them (its tokenizer, BOS included), 0 if it cannot say."""
        try:
            return len(self._server_tokenize(prompt))
        except SlmLabError:
            return 0

    def close(self) -> None:
        """Close the HTTP connections (the server keeps running; idempotent)."""
        if self.client is not None:
            self.client.close()
            self.client = None


def _stream_errors() -> tuple[type[BaseException], ...]:
    """The errors reading a stream may raise: the openai client's, and the HTTP libraries' own, unwrapped there."""
    import openai

    errors: list[type[BaseException]] = [openai.OpenAIError]
    for name in ("httpx2", "httpx"):  # openai 3.x runs on httpx2; older releases on httpx
        try:
            errors.append(__import__(name).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


def _message(exc: Any) -> str:
    """The human text of an OpenAI-style error body ({"error": {"message"}}, {"detail"}, or plain)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or inner)
        return str(inner or body.get("detail") or body)
    return str(body or getattr(exc, "message", exc))


def _context_error(message: str) -> SlmLabError | None:
    """The server's context-length error (llama-server's, llama-cpp-python's or vLLM's wording) as slmlab's
    prompt_too_long message."""
    ctx = re.search(r"maximum context length is (\d+)|exceeds the available context size \((\d+)", message)
    if not ctx:
        return None
    prompt = re.search(r"\((\d+) in (?:the messages|your prompt)|has (\d+) input tokens|request \((\d+) tokens\)",
                       message)
    where = ("when you start the server (llama_server(n_ctx=...) or --ctx-size for llama-server, per slot: the "
             "size / --parallel; llamacpp_server(n_ctx=...) or --n_ctx for python -m llama_cpp.server; "
             "--max-model-len for vLLM).")
    n_ctx = int(ctx.group(1) or ctx.group(2))
    if not prompt:
        return SlmLabError(f"The request does not fit the server's context of {n_ctx} tokens: {message}",
                           f"Shorten the prompt, lower max_tokens, or use a larger context {where}")
    n_prompt = int(next(group for group in prompt.groups() if group))
    if n_prompt >= n_ctx:
        err = prompt_too_long(n_prompt, n_ctx, 1 << 30, "n_ctx")  # the server does not say the trained context
        return SlmLabError(err.problem, f"{err.hint.rstrip('.')} {where}")
    return SlmLabError(f"The prompt has {n_prompt} tokens and max_tokens asks for more than the "
                       f"{n_ctx - n_prompt} left in the server's context of {n_ctx}.",
                       f"Ask for max_tokens={n_ctx - n_prompt} or fewer, or use a larger context {where}")
