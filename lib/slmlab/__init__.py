"""SLM Deploy Lab: the helper package the course notebooks import."""

from slmlab.errors import SlmLabError

__version__ = "0.1.0"
__all__ = ["SlmLabError", "__version__"]
