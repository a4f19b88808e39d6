"""Pickers and progress bars: widgets for people, defaults and plain text for headless runs."""

from __future__ import annotations

import io

import pytest

from slmlab import models, progress, widgets
from slmlab.models import footprint, hardware

pytestmark = pytest.mark.fast


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.setenv("SLMLAB_HEADLESS", "1")


@pytest.fixture
def interactive(monkeypatch):
    """Pretend a person is looking at JupyterLab."""
    monkeypatch.setattr(widgets, "headless", lambda: False)
    monkeypatch.setattr(progress, "headless", lambda: False)


def test_headless_picker_takes_the_default_and_says_so(headless, capsys):
    picker = widgets.model_picker(default="smollm2-135m-instruct")
    assert picker.value == "smollm2-135m-instruct" and picker.widget is None
    assert capsys.readouterr().out == "Model: smollm2-135m-instruct (default; headless run, no widget)\n"
    bundle = picker._repr_mimebundle_()
    assert bundle == {"text/plain": "Model: 'smollm2-135m-instruct'"}  # no widget JSON to save


def test_interactive_picker_is_a_dropdown_whose_value_is_the_interface(interactive):
    import ipywidgets

    picker = widgets.hardware_picker(default="binder-2gb")
    assert isinstance(picker.widget, ipywidgets.Dropdown)
    assert picker.value == "binder-2gb"
    picker.widget.value = "t4"  # what a click does
    assert picker.value == "t4"
    assert "application/vnd.jupyter.widget-view+json" in picker._repr_mimebundle_()


def test_a_default_outside_the_options_is_offered_first(headless):
    picker = widgets.model_picker(default="/data/my-model.gguf", options=["a", ("B", "b")])
    assert picker.options == [("/data/my-model.gguf", "/data/my-model.gguf"), ("a", "a"), ("B", "b")]
    assert picker.value == "/data/my-model.gguf"


def test_model_options_start_with_the_offline_default_and_are_references():
    options = widgets.model_options()
    assert options[0] == ("smollm2-135m-instruct (offline; licence: Apache-2.0)", "smollm2-135m-instruct")
    assert all("licence: " in label for label, _ in options)  # every model says its own licence where it is picked
    values = [value for _, value in options]
    assert len(values) == len(set(values))
    for value in values:
        assert value in models.BUNDLED or value.endswith(":Q4_K_M"), value


def test_hardware_and_quant_options_match_the_library():
    keys = [value for _, value in widgets.hardware_options()]
    assert keys == ["this-machine", *hardware.PRESETS]
    assert [value for _, value in widgets.quant_options()] == footprint.quant_types()
    assert widgets.quant_picker().value == "Q4_K_M"


def test_headless_detection(monkeypatch):
    monkeypatch.delenv("SLMLAB_HEADLESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert progress.headless()  # plain Python, no Jupyter kernel
    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    assert not progress.headless()  # a kernel with a person at it
    monkeypatch.setenv("CI", "true")
    assert progress.headless()
    monkeypatch.setenv("SLMLAB_HEADLESS", "0")
    assert not progress.headless()  # an explicit 0 wins over CI inside a kernel
    monkeypatch.setenv("SLMLAB_HEADLESS", "1")
    assert progress.headless()


def test_headless_progress_is_plain_text(headless):
    from tqdm.notebook import tqdm_notebook

    out = io.StringIO()
    bar = progress.progress(range(3), desc="quantizing", file=out, mininterval=0)
    assert not isinstance(bar, tqdm_notebook)
    assert list(bar) == [0, 1, 2]
    text = out.getvalue()
    assert "quantizing" in text and "3/3" in text and "widget" not in text


def test_interactive_progress_is_a_notebook_bar(interactive):
    from tqdm.notebook import tqdm_notebook

    bar = progress.progress(total=2, desc="loading")
    assert isinstance(bar, tqdm_notebook)
    bar.close()
