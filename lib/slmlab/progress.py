"""Progress bars that are widgets in JupyterLab and plain text under papermill, nbval, CI or a terminal.

``tqdm.auto`` would draw an ipywidgets bar whenever it runs in a kernel, and a headless run then
saves widget JSON into the notebook. :func:`progress` draws the widget bar only when a person is
looking (see :func:`headless`), and plain text otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

HEADLESS_ENV = "SLMLAB_HEADLESS"


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (not a plain Python or IPython terminal)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and ip.__class__.__name__ == "ZMQInteractiveShell"


def headless() -> bool:
    """True when no one can click a widget: $SLMLAB_HEADLESS=1, $CI, or no Jupyter kernel at all."""
    # `slmlab run`, `slmlab grade` and the test suite set SLMLAB_HEADLESS=1 for the kernels they start.
    flag = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return not _in_kernel()
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return True
    return not _in_kernel()


def progress_class() -> type:
    """The tqdm class for this session: the notebook widget bar, or plain text when headless.

    Libraries that take a ``tqdm_class`` (huggingface_hub's ``snapshot_download``) get it from here.
    """
    if not headless():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
        except ImportError:  # ipywidgets missing or too old: fall back to text
            pass
    return _text_tqdm()


def _text_tqdm() -> type:
    from tqdm.std import tqdm

    class TextTqdm(tqdm):
        """tqdm writing to stdout in ASCII, updating at most every 2 s: readable in saved outputs and logs."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("file", sys.stdout)
            kwargs.setdefault("mininterval", 2.0)
            kwargs.setdefault("ascii", True)
            super().__init__(*args, **kwargs)

    return TextTqdm


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", **kwargs: Any) -> Any:
    """A tqdm progress bar: a widget in JupyterLab, plain text (to stdout, few updates) when headless."""
    return progress_class()(iterable, total=total, desc=desc, **kwargs)
