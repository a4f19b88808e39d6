"""Test helpers: tiny real GGUF files, and a local stand-in laid out exactly like the Hugging Face hub cache.

The logic lives in `slmlab.models.hub_standin` (the acquisition notebook uses it too); this module re-exports it.
"""

from slmlab.models.hub_standin import make_hub_cache, write_tiny_gguf

__all__ = ["make_hub_cache", "write_tiny_gguf"]
