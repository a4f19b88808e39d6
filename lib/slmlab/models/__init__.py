"""Model facts and files: resolve a reference to weights on disk, the catalog, GGUF headers, footprints, hardware.

``from slmlab import models`` gives the resolver's API (``models.resolve``, ``models.load_llama`` …), from
``resolver``; the other rooms are submodules: ``catalog``, ``gguf``, ``footprint``, ``hardware``, ``hub_standin``.
"""

from slmlab.models.gguf import GGUFInfo, check_gguf_file, inspect_gguf
from slmlab.models.resolver import (
    BUNDLED,
    DEFAULT_MODEL,
    BundledModel,
    ResolvedModel,
    cache_dir,
    hub_files,
    hub_offline,
    hub_offline_mode,
    hub_reachable,
    known_names,
    list_hub_files,
    load_llama,
    pick_gguf_file,
    quant_matches,
    resolve,
    resolve_hub,
    set_hub_offline,
    sha256_file,
    verify_hub_file,
    verify_sha256,
)

__all__ = [
    "GGUFInfo",
    "check_gguf_file",
    "inspect_gguf",
    "DEFAULT_MODEL",
    "BundledModel",
    "BUNDLED",
    "ResolvedModel",
    "cache_dir",
    "sha256_file",
    "verify_sha256",
    "hub_offline",
    "set_hub_offline",
    "hub_offline_mode",
    "hub_reachable",
    "list_hub_files",
    "hub_files",
    "quant_matches",
    "pick_gguf_file",
    "resolve_hub",
    "verify_hub_file",
    "known_names",
    "resolve",
    "load_llama",
]
