"""Serve models: start real servers as child processes on 127.0.0.1, wait for them, always stop them."""

from slmlab.process import HOST, ServerProcess, free_port, group_members, port_in_use
from slmlab.serve.gateway.server import app_command, app_server
from slmlab.serve.llama_server import LlamaServer, llama_server, llama_server_command
from slmlab.serve.llamacpp_server import llamacpp_command, llamacpp_server
from slmlab.serve.vllm_server import VllmServer, vllm_command, vllm_server

__all__ = ["HOST", "LlamaServer", "ServerProcess", "VllmServer", "app_command", "app_server", "free_port",
           "group_members", "llama_server", "llama_server_command", "llamacpp_command", "llamacpp_server",
           "port_in_use", "vllm_command", "vllm_server"]
