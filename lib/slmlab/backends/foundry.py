"""Microsoft Foundry Local as a backend: a local ONNX Runtime GenAI folder, registered, loaded and chatted in-process.

``FoundryBackend`` puts the folder (slmlab.convert.gguf_to_onnx builds it from the bundled GGUF) in Foundry Local's
LOCAL catalog, loads it, and answers through one ``ChatSession`` whose turns are undone after every call, so each call
sees only its own messages and the session's KV cache is allocated once. Answers always stream; TTFT and decode
speed are timed on the streamed pieces, token counts come from Foundry's usage. Foundry's sessions only chat:
they apply the model's chat template and accept nothing but messages, so plain completion (generate) and
tokenize are not available here — the same folder in the 'onnx' engine does both. Nothing goes online
(see slmlab.foundry.local).
"""

from __future__ import annotations

import gc
import json
import os
import random
from collections.abc import Generator, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.backends.base import (
    BackendBase,
    Generation,
    GenerationOptions,
    cut_and_collect,
    prompt_too_long,
    stream_timings,
)
from slmlab.errors import SlmLabError
from slmlab.foundry import local as foundry_local
from slmlab.models.resolver import BUNDLED, DEFAULT_MODEL, ResolvedModel


def foundry_search_options(opts: GenerationOptions, max_output_tokens: int | None = None) -> dict[str, Any]:
    """The options as Foundry Local's SearchOptions fields (stop strings are applied by slmlab on the stream)."""
    search: dict[str, Any] = {"max_output_tokens": max_output_tokens or opts.max_tokens}
    if opts.greedy:
        search["do_sample"] = False  # Foundry samples unless told otherwise
    else:  # top_k=0 is "off" in ONNX Runtime GenAI too; passing it overrides the folder's default (50)
        search |= {"do_sample": True, "temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k,
                   "seed": opts.seed if opts.seed is not None else random.randrange(2**31)}
    return search


class FoundryBackend(BackendBase):
    """A model in Foundry Local's runtime (ONNX Runtime GenAI, CPU execution provider here), in this process.

    `model` is an ONNX Runtime GenAI folder, a model reference converted once at `precision` (cached), or the id
    or alias of a model already in Foundry's local catalog. `context_length` shrinks the context (and the KV
    cache the session allocates for all of it); `model_id` names the registration (default: the folder's name).
    """

    engine = "foundry"

    def __init__(self, model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, precision: str = "int8",
                 context_length: int | None = None, model_id: str | None = None) -> None:
        fl = foundry_local.sdk()
        start = perf_counter()
        self._fl = fl
        self.model = self._find_model(model, precision, context_length, model_id)
        self.folder = Path(self.model.get_path())
        foundry_local.load(self.model)
        try:
            self.session = fl.ChatSession(self.model)
            self.session.set_streaming(True)
        except (fl.FoundryLocalException, ValueError) as exc:
            foundry_local.unload(self.model)
            raise SlmLabError(f"Foundry Local cannot chat with '{self.model.id}': {exc}",
                              "Register a chat model (task 'chat-completion'), e.g. an instruct model's "
                              "folder.") from None
        self.load_s = perf_counter() - start
        self.model_name = self.model.id
        # model.onnx links back to the converted folder when context_length made a shorter view of it
        original = (self.folder / "model.onnx").resolve().parent / "genai_config.json"
        self.trained_ctx = int(json.loads(original.read_text())["model"].get("context_length") or 1 << 30)
        self.execution_provider = self.model.info.runtime.execution_provider or "CPUExecutionProvider"

    def _find_model(self, model: Any, precision: str, context_length: int | None, model_id: str | None) -> Any:
        """The catalog model for `model`: a registered id/alias as is, else its ORT GenAI folder registered."""
        from slmlab.backends.onnx import model_folder

        name = model if isinstance(model, str) else None
        if name and not Path(name).expanduser().exists() and name.lower() not in BUNDLED:
            found = foundry_local.find_local(name)
            if found is not None:
                return found
            if "/" not in name:  # not a path or a hub id: say what the local catalog has
                known = ", ".join(m.id for m in foundry_local.local_catalog().list_models()) or "none yet"
                raise SlmLabError(
                    f"'{name}' is neither a model slmlab knows nor one in Foundry Local's local catalog "
                    f"(registered: {known}).",
                    "Pass an ONNX Runtime GenAI folder or a bundled model name (e.g. 'smollm2-135m-instruct'). slmlab "
                    f"never downloads from Foundry's online catalog; with internet, the foundry CLI does: "
                    f"`foundry model download {name}`.")
        folder = model_folder(model, precision)  # converts (once, cached) unless given an ORT GenAI folder
        if context_length is not None:
            folder = foundry_local.context_view(folder, context_length)
        return foundry_local.register_local(folder, model_id)

    def _open(self) -> Any:
        session = self._require_open(getattr(self, "session", None))
        if session._closed:  # the manager was closed under it (slmlab.foundry.local.shutdown())
            raise SlmLabError("Foundry Local was shut down, which ended this backend's session.",
                              "Open a new one with FoundryBackend(...) (or open_backend('foundry', ...)).")
        return session

    def tokenize(self, text: str) -> list[int]:
        """Not available: Foundry Local's SDK exposes no tokenizer (it counts tokens only inside a request)."""
        self._open()
        raise SlmLabError("Foundry Local's SDK has no tokenizer API: it tokenizes inside a request and reports "
                          "only counts (usage, preflight).",
                          f"Tokenize with the same folder in ONNX Runtime GenAI: "
                          f"open_backend('onnx', '{self.folder}').tokenize(text).")

    def _start(self, payload: str | list[dict[str, str]], opts: GenerationOptions) -> Iterator[str]:
        session = self._open()
        fl = self._fl
        if isinstance(payload, str):
            raise SlmLabError("Foundry Local only chats: its ChatSession applies the model's chat template and "
                              "accepts nothing but messages, so plain-text completion is not available.",
                              "Use chat('...') or stream([{'role': 'user', 'content': '...'}]); for plain "
                              f"completion use open_backend('onnx', '{self.folder}').generate(prompt).")
        request = fl.Request()
        try:
            for message in payload:
                # as_messages() allowed only system/user/assistant: MessageItem.system/.user/.assistant
                request.add_item(getattr(fl.MessageItem, message["role"])(message["content"]))
            budget = session.preflight_request(request)
            context = int(budget.context_limit_tokens) or self.trained_ctx
            if budget.prompt_tokens >= context:
                raise prompt_too_long(int(budget.prompt_tokens), context, self.trained_ctx, "context_length")
            room = min(opts.max_tokens, context - int(budget.prompt_tokens))
            request.set_options(fl.RequestOptions(search=fl.SearchOptions(**foundry_search_options(opts, room))))
        except fl.FoundryLocalException as exc:
            request._close()
            raise SlmLabError(f"Foundry Local rejected the request: {foundry_local._native_message(exc)}",
                              "Check the messages (roles system/user/assistant, text content).") from None
        except BaseException:
            request._close()
            raise
        return self._pieces(request, int(budget.prompt_tokens), opts)

    def _pieces(self, request: Any, prompt_tokens: int, opts: GenerationOptions) -> Iterator[str]:
        fl, session = self._fl, self.session
        times: list[float] = []
        usage = finish = None
        start = perf_counter()
        try:
            stream = session.process_streaming_request(request)
        except fl.FoundryLocalException as exc:
            request._close()
            raise SlmLabError(f"Foundry Local could not start the answer: {foundry_local._native_message(exc)}",
                              "Read (or close) the previous stream of this backend before starting another.") from None
        items = iter(stream)

        def texts() -> Generator[str, None, None]:
            for item in items:
                if isinstance(item, fl.TextItem) and item.type != fl.TextItemType.REASONING:
                    times.append(perf_counter())
                    yield item.text

        pieces = texts()
        try:
            text, stopped = yield from cut_and_collect(pieces, opts.stop)
            if not stopped:
                with stream.final_response as final:
                    usage, finish = final.get_usage(), final.finish_reason
        except fl.FoundryLocalException as exc:
            raise SlmLabError(f"Foundry Local failed while answering: {foundry_local._native_message(exc)}",
                              f"Foundry's log is in {foundry_local.foundry_dir() / 'logs'}.") from None
        finally:
            pieces.close()
            items.close()  # an unfinished stream (a stop string, or the caller stopped reading) is cancelled here
            stream.__exit__(None, None, None)
            request._close()
            if session.turn_count:
                session.undo_turns(session.turn_count)  # the next call starts from an empty conversation
        end = perf_counter()
        if stopped:  # the token that completed the stop string is not counted, as on every engine
            completion, reason = max(len(times) - 1, 0), "stop"
        else:
            completion = int(usage.completion_tokens) if usage is not None else len(times)
            reason = "length" if finish == fl.FinishReason.LENGTH else "stop"
        self.last = Generation(text, int(usage.prompt_tokens) if usage is not None else prompt_tokens,
                               completion, reason, stream_timings(self.load_s, start, end, times, completion),
                               self.engine, self.model_name,
                               {"folder": str(self.folder), "model_id": self.model.id,
                                "provider": self.execution_provider, "foundry_finish": getattr(finish, "name", None)})

    def close(self) -> None:
        """End the session and unload the model (idempotent); the registration stays for next time."""
        session = getattr(self, "session", None)
        if session is not None:
            self.session = None
            session.__exit__(None, None, None)
            foundry_local.unload(self.model)
            gc.collect()
