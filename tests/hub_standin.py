"""Test helpers: tiny real GGUF files, and a local stand-in laid out exactly like the Hugging Face hub cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def write_tiny_gguf(path: Path, arch: str = "llama", ctx: int = 256) -> Path:
    """A small but valid GGUF (metadata + two F32 tensors) written with the gguf package."""
    from gguf import GGUFWriter, LlamaFileType

    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny-test-model")
    writer.add_context_length(ctx)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40) -> Path:
    """Lay files out as huggingface_hub does: blobs/<sha256>, refs/main, snapshots/<commit>/name -> blob."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot
