"""Command-line options of the Ollama-compatible server (``slmlab serve ollama``, ``python -m slmlab.serve.ollama``)."""

from __future__ import annotations

import argparse
import os
import sys

from slmlab.errors import SlmLabError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options; defaults follow Ollama's environment variables."""
    parser.add_argument("--host", default=None,
                        help="address[:port] to listen on (default: $OLLAMA_HOST, else 127.0.0.1:11434)")
    parser.add_argument("--port", type=int, default=None, help="port (overrides the one in --host/$OLLAMA_HOST)")
    parser.add_argument("--models", default="smollm2:135m",
                        help="bundled models to install at start, comma-separated "
                             "(smollm2:135m, gemma3:270m, all-minilm); others can be pulled later")
    parser.add_argument("--context", type=int, default=int(os.environ.get("OLLAMA_CONTEXT_LENGTH") or 2048),
                        help="default num_ctx (default: $OLLAMA_CONTEXT_LENGTH or 2048)")
    parser.add_argument("--keep-alive", default=os.environ.get("OLLAMA_KEEP_ALIVE") or "5m",
                        help="how long models stay loaded after a request (default: $OLLAMA_KEEP_ALIVE or 5m)")
    parser.add_argument("--max-loaded", type=int, default=int(os.environ.get("OLLAMA_MAX_LOADED_MODELS") or 3),
                        help="models kept in memory at once (default: $OLLAMA_MAX_LOADED_MODELS or 3)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="stderr log lines: text, or one JSON object per line")
    parser.add_argument("--log-syslog", default=None,
                        help="also ship JSON logs to this syslog aggregator, e.g. tcp://127.0.0.1:5514")


def run(args: argparse.Namespace) -> int:
    """Start the server in this process until interrupted."""
    import uvicorn

    from slmlab.monitoring.structured_log import configure_logging, uvicorn_log_options
    from slmlab.serve.ollama.app import create_app
    from slmlab.serve.ollama.registry import Registry
    from slmlab.serve.ollama.runner import Runner, parse_keep_alive
    from slmlab.serve.ollama.server import parse_host

    host, port = parse_host(args.host or os.environ.get("OLLAMA_HOST"))
    port = args.port or port
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    keep_alive = parse_keep_alive(args.keep_alive)
    registry = Registry()
    unknown = [m for m in models if registry.bundled(m) is None]
    if unknown:
        from slmlab.serve.ollama.names import BUNDLED

        raise SlmLabError(f"--models: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not bundled.",
                          f"Bundled models: {', '.join(BUNDLED)}.")
    configure_logging("ollama", args.log_level, args.log_format, args.log_syslog,
                      text_format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = Runner(registry, default_ctx=args.context, max_loaded=args.max_loaded, default_keep_alive=keep_alive,
                    n_threads=args.threads)
    app = create_app(registry, runner, preload=models)
    print(f"slmlab Ollama-compatible server on http://{host}:{port} (models in {registry.root})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level,
                **uvicorn_log_options(args.log_format, args.log_syslog))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmlab.serve.ollama",
                                     description="Ollama-API-compatible server backed by llama.cpp.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SlmLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
