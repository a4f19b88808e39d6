"""Fake upstream servers for the gateway's and the openai backend's fast tests (httpx2 MockTransport handlers)."""

from __future__ import annotations

import json


def sse_body(model: str, text: str) -> bytes:
    """A streamed chat answer of one piece, with the usage chunk, in OpenAI's server-sent-events shape."""
    head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model}
    events = [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}]
    return ("".join(f"data: {json.dumps(head | e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


class FakeOllama:
    """Ollama's OpenAI-compatible face in a MockTransport: /v1/models lists every model in its store (sorted,
    so a pulled embedding model comes first), /api/show tells each one's capabilities, and chat with a model
    that cannot chat is Ollama's 400."""

    CAPABILITIES = {"all-minilm:latest": ["embedding"], "gemma3:270m": ["completion"],
                    "smollm2:135m": ["completion", "tools"]}

    def __init__(self, models=("all-minilm:latest", "smollm2:135m")):
        self.models = sorted(models)

    def __call__(self, request):
        import httpx2

        body = json.loads(request.content or b"{}")
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "library"} for m in self.models]})
        if request.url.path == "/api/show":
            return httpx2.Response(200, json={"template": "", "capabilities": self.CAPABILITIES[body["model"]]})
        if request.url.path == "/v1/chat/completions" and "completion" not in self.CAPABILITIES[body["model"]]:
            return httpx2.Response(400, json={"error": {"message": f'"{body["model"]}" does not support chat',
                                                        "type": "api_error"}})
        if request.url.path == "/v1/chat/completions":  # the answer is the model's name: the test sees who answered
            return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                   content=sse_body(body["model"], body["model"]))
        return httpx2.Response(404, json={"error": "not found"})
