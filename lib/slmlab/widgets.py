"""Pickers for the notebooks: model, hardware preset, quantization.

A picker's ``.value`` is its only interface. Its default comes from the notebook's ``parameters``
cell, so a headless run (papermill, nbval, grading, CI) takes the default, prints what it chose and
saves no widget state; in JupyterLab the learner gets a dropdown::

    picker = widgets.model_picker(default=model)   # `model` is a notebook parameter
    picker                                          # shows the dropdown (or the chosen value)
    ...
    llm = models.load_llama(picker.value)           # in a later cell
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmlab.progress import headless

Option = tuple[str, Any]  # (label shown to the learner, value)


class Picker:
    """A labelled choice: an ipywidgets dropdown when a person is looking, its default when headless."""

    def __init__(self, label: str, options: Sequence[Option | Any], default: Any) -> None:
        pairs = [o if isinstance(o, tuple) and len(o) == 2 else (str(o), o) for o in options]
        if default not in [value for _, value in pairs]:
            pairs.insert(0, (str(default), default))
        self.label = label
        self.options: list[Option] = pairs
        self.default = default
        self.widget: Any = None
        if headless():
            print(f"{label}: {default} (default; headless run, no widget)")
        else:
            import ipywidgets

            self.widget = ipywidgets.Dropdown(
                options=pairs, value=default, description=label, style={"description_width": "initial"}
            )

    @property
    def value(self) -> Any:
        """The chosen value (the default when headless)."""
        return self.widget.value if self.widget is not None else self.default

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.widget is not None:
            return self.widget._repr_mimebundle_(**kwargs)
        return {"text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"{self.label}: {self.value!r}"


def model_options() -> list[Option]:
    """Models a learner can pick: the offline bundled GGUFs first, then catalog models from the hub."""
    from slmlab import models
    from slmlab.models import catalog

    options: list[Option] = [
        (f"{m.key} (offline; licence: {m.licence})", m.key) for m in models.BUNDLED.values() if m.format == "gguf"
    ]
    for spec in catalog.CATALOG.values():
        if spec.key not in models.BUNDLED and spec.gguf_hub_id:
            options.append((f"{spec.key} ({spec.params_b:g}B, download; licence: {spec.license})",
                            f"{spec.gguf_hub_id}:Q4_K_M"))
    return options


def hardware_options() -> list[Option]:
    """Hardware presets to plan for, plus this machine."""
    from slmlab.models import hardware

    return [("This machine", "this-machine")] + [(h.label, h.key) for h in hardware.PRESETS.values()]


def quant_options() -> list[Option]:
    """GGUF quantization types the footprint calculator knows, from most to fewest bits."""
    from slmlab.models import footprint

    return [(q, q) for q in footprint.quant_types()]


def model_picker(default: str = "smollm2-135m-instruct", options: Sequence[Option | Any] | None = None) -> Picker:
    """A model picker whose value is a reference `slmlab.models.resolver.resolve` accepts."""
    return Picker("Model", model_options() if options is None else options, default)


def hardware_picker(default: str = "binder-2gb", options: Sequence[Option | Any] | None = None) -> Picker:
    """A hardware-preset picker whose value is a key `slmlab.models.hardware.get_preset` accepts."""
    return Picker("Hardware", hardware_options() if options is None else options, default)


def quant_picker(default: str = "Q4_K_M", options: Sequence[Option | Any] | None = None) -> Picker:
    """A quantization picker whose value is a GGUF type name such as "Q4_K_M"."""
    return Picker("Quantization", quant_options() if options is None else options, default)
