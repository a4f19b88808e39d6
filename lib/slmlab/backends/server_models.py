"""Which of an OpenAI-compatible server's models to call: always a named or unambiguous one, never "the first listed".

A server's ``/v1/models`` gives ids only, in an order of its own; Ollama lists every model in its store, embedding
models included (``all-minilm:latest`` sorts before ``smollm2:135m``), and answers a chat request for one of
those with "400: does not support chat". So the model is chosen by this rule:

1. the ``model`` asked for (it must be listed, and able to chat when the server says what its models can do);
2. else the ``preferred`` name (a gateway's served model name) when the server lists it;
3. else the server's only model that can chat;
4. else a ``SlmLabError`` that lists the candidates and says how to name one.

Ollama says what a model can do (``POST /api/show`` → ``capabilities``: ``completion`` for text and chat,
``embedding`` for vectors); other servers list ids only, so there a model is taken unnamed only when it is the
only one the server serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from slmlab.errors import SlmLabError, did_you_mean

CHAT_CAPABILITY = "completion"  # Ollama's word for "generates text" (chat and plain completion)
Capabilities = Callable[[str], Sequence[str] | None]  # a model id -> what the server says it can do, or None
NAME_HINT = "Name the model to call: model='...' (a gateway: --model, or a --served-model-name the server lists)."


def can_chat(capabilities: Sequence[str] | None) -> bool | None:
    """True / False when the server says whether the model can chat; None when it cannot tell."""
    return None if capabilities is None else CHAT_CAPABILITY in capabilities


def choose_model(listed: Sequence[str], model: str | None, preferred: str | None, capabilities: Capabilities,
                 server: str) -> str:
    """The model id to call on `server` (see the module's rule); `capabilities` is asked only when needed."""
    if not listed:
        raise SlmLabError(f"The server at {server} lists no models.", "Start it with a model loaded.")
    if model is not None and model not in listed:
        raise unknown_model(model, listed, server)
    named = model if model is not None else preferred if preferred in listed else None
    if named is not None:
        said = capabilities(named)
        if can_chat(said) is False:
            raise _cannot_chat(named, said or (), _survey(listed, capabilities), server)
        return named
    survey = _survey(listed, capabilities)
    chat = [name for name, said in survey.items() if can_chat(said) is not False]
    if len(chat) == 1:
        return chat[0]
    raise _no_single_choice(survey, chat, preferred, server)


def unknown_model(model: str, listed: Sequence[str], server: str) -> SlmLabError:
    """The error for a model id the server does not list (with the closest ids it does)."""
    listing = ", ".join(repr(m) for m in listed) or "none"
    return SlmLabError(f"The server at {server} has no model '{model}'. It serves: {listing}.",
                       f"{did_you_mean(model, listed)}Pass model= one of the ids it serves."
                       if listed else "Start the server with a model loaded.")


def _survey(listed: Sequence[str], capabilities: Capabilities) -> dict[str, Sequence[str] | None]:
    return {name: capabilities(name) for name in listed}


def _describe(survey: Mapping[str, Sequence[str] | None]) -> str:
    """'a' (completion), 'b' (embedding), or just the ids when the server does not say."""
    return ", ".join(repr(name) if said is None else f"{name!r} ({', '.join(said) or 'nothing'})"
                     for name, said in survey.items())


def _cannot_chat(name: str, said: Sequence[str], survey: Mapping[str, Sequence[str] | None],
                 server: str) -> SlmLabError:
    others = [other for other, can in survey.items() if can_chat(can)]
    return SlmLabError(f"The model '{name}' on the server at {server} cannot chat: the server says it does "
                       f"{', '.join(said) or 'nothing'}. Models there that can chat: "
                       f"{', '.join(repr(o) for o in others) or 'none'}.",
                       f"Pass model={others[0]!r}." if len(others) == 1 else
                       NAME_HINT if others else "Load or pull a chat model on that server (e.g. smollm2:135m).")


def _no_single_choice(survey: Mapping[str, Sequence[str] | None], chat: Sequence[str], preferred: str | None,
                      server: str) -> SlmLabError:
    missing = f"has no model '{preferred}' and " if preferred else ""
    if not chat:
        return SlmLabError(f"The server at {server} {missing}has no model that can chat: it serves "
                           f"{_describe(survey)}.",
                           "Load or pull a chat model on that server (e.g. `ollama pull smollm2:135m`), then name it "
                           "with model='...'.")
    told = any(said is not None for said in survey.values())
    which = (f"{len(chat)} models that can chat: {', '.join(repr(c) for c in chat)} (all it serves: "
             f"{_describe(survey)})" if told else
             f"{len(chat)} models ({', '.join(repr(c) for c in chat)}) and does not say which can chat")
    return SlmLabError(f"The server at {server} {missing}serves {which}; the one to call must be named, not guessed.",
                       f"{did_you_mean(preferred, chat) if preferred else ''}{NAME_HINT}")
