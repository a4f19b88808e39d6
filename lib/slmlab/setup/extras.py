"""Which extra of the course kit installs a module, read from the installed package's own metadata."""

from __future__ import annotations

import importlib.metadata
import re

from slmlab.errors import SlmLabError

# Import names whose distribution is not the import name (with '_' read as '-', or 'py' in front).
DISTRIBUTION_OF = {"foundry_local": "foundry-local-sdk", "sklearn": "scikit-learn"}
_EXTRA = re.compile(r"""extra\s*==\s*["']([\w-]+)["']""")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_for(module: str) -> str | None:
    """The extra of ``slmlab`` that installs this top-level module, or None (core, or not ours)."""
    top = module.split(".")[0]
    candidates = {_normalized(DISTRIBUTION_OF.get(top, top)), _normalized(top), _normalized("py" + top)}
    try:
        requirements = importlib.metadata.requires("slmlab") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        name = _normalized(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
        marker = _EXTRA.search(requirement)
        if name in candidates and marker and marker.group(1) != "all":
            return marker.group(1)
    return None


def missing_extra_error(exc: ModuleNotFoundError) -> SlmLabError | None:
    """A clear error for a module that an extra installs, or None when the missing module is not one of them."""
    extra = extra_for(exc.name or "")
    if extra is None:
        return None
    return SlmLabError(f"this command needs {exc.name!r}, which the {extra!r} extra installs.",
                       f'Run: pip install -e ".[{extra}]"  (or ".[all]" for the whole course)')
