"""slmlab's Ollama-API-compatible server (llama.cpp underneath), and the helpers to start it or find a real one.

    with ollama_server() as server:            # python -m slmlab.serve.ollama, on 127.0.0.1
        ollama.Client(host=server.url).chat("smollm2:135m", messages=[...])

    endpoint = ensure_ollama()                 # $OLLAMA_HOST if it answers, else ours; endpoint.close()
"""

from slmlab.serve.ollama.names import BUNDLED, normalize, ollama_name
from slmlab.serve.ollama.server import OllamaEndpoint, ensure_ollama, host_url, ollama_server, parse_host

__all__ = ["BUNDLED", "OllamaEndpoint", "ensure_ollama", "host_url", "normalize", "ollama_name", "ollama_server",
           "parse_host"]
