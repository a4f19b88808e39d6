"""``slmlab serve …`` subcommands (registered by slmlab.cli): ``slmlab serve ollama``, ``slmlab serve app``."""

from __future__ import annotations

import argparse


def cmd_serve_ollama(args: argparse.Namespace) -> int:
    """Run the Ollama-compatible server in the foreground (Ctrl-C stops it)."""
    from slmlab.serve.ollama.cli import run

    return run(args)


def cmd_serve_app(args: argparse.Namespace) -> int:
    """Run the course's FastAPI service (OpenAI-compatible, metrics, chat page) in the foreground."""
    from slmlab.serve.gateway.app import run

    return run(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` with its servers to the slmlab command."""
    from slmlab.serve.ollama.cli import add_arguments

    serve = subparsers.add_parser("serve", help="run a server in the foreground")
    servers = serve.add_subparsers(dest="server", required=True)
    ollama = servers.add_parser("ollama", help="Ollama-API-compatible server backed by llama.cpp (127.0.0.1:11434)",
                                description="Serve the Ollama REST API (/api/generate, /api/chat, /api/embed, "
                                            "model management, /v1 OpenAI-compatible, /metrics) on 127.0.0.1.")
    add_arguments(ollama)
    ollama.set_defaults(func=cmd_serve_ollama)

    from slmlab.serve.gateway.app import KEYS_EPILOG
    from slmlab.serve.gateway.app import add_arguments as add_app_arguments

    app = servers.add_parser("app", help="the course's FastAPI service over any engine (127.0.0.1:8000)",
                             description="Serve /v1/chat/completions (SSE streaming), /healthz, /readyz, /metrics "
                                         "and a chat page at / over an slmlab engine, on 127.0.0.1.",
                             epilog=KEYS_EPILOG)
    add_app_arguments(app)
    app.set_defaults(func=cmd_serve_app)
