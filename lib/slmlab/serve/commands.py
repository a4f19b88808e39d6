"""``slmlab serve …`` subcommands (registered by slmlab.cli): ``slmlab serve ollama``."""

from __future__ import annotations

import argparse


def cmd_serve_ollama(args: argparse.Namespace) -> int:
    """Run the Ollama-compatible server in the foreground (Ctrl-C stops it)."""
    from slmlab.serve.ollama.cli import run

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
