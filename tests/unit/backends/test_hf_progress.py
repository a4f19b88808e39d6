"""transformers' progress bars go through slmlab.progress: plain text when headless, never ipywidgets JSON.

In a Jupyter kernel ``tqdm.auto`` is the ipywidgets bar; transformers uses it for "Loading weights" (through
``transformers.utils.logging.tqdm``) and, imported at module level, for the GGUF loader's de-quantizing loop.
These tests stand in for the kernel by making ``tqdm.auto.tqdm`` a class that records its use.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from tqdm import auto as tqdm_auto  # noqa: E402
from transformers import modeling_gguf_pytorch_utils as gguf_loader  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from slmlab.backends.hf import transformers_progress  # noqa: E402


@pytest.fixture
def kernel_bar(monkeypatch):
    """Pretend to be in a Jupyter kernel: tqdm.auto's class (what transformers would draw) records each bar."""
    made = []

    class WidgetBar(tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("desc", ""))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm_auto, "tqdm", WidgetBar)
    monkeypatch.setattr(gguf_loader, "tqdm", WidgetBar)
    return made


@pytest.mark.fast
def test_headless_bars_are_text_on_stdout(monkeypatch, kernel_bar, capsys):
    monkeypatch.setenv("SLMLAB_HEADLESS", "1")
    with transformers_progress():
        list(hf_logging.tqdm(range(3), desc="Loading weights"))  # what from_pretrained draws
        list(gguf_loader.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."))  # the GGUF loader's
    assert kernel_bar == []  # the widget class was never used
    out = capsys.readouterr().out
    assert "Loading weights" in out and "Converting and de-quantizing GGUF tensors" in out and "3/3" in out


@pytest.mark.fast
def test_everything_is_restored_afterwards(monkeypatch, kernel_bar):
    monkeypatch.setenv("SLMLAB_HEADLESS", "1")
    before = gguf_loader.tqdm
    with pytest.raises(RuntimeError), transformers_progress():
        raise RuntimeError("a failed load")
    assert gguf_loader.tqdm is before and hf_logging._tqdm_hook is None
    list(hf_logging.tqdm(range(2), desc="after"))
    assert kernel_bar == ["after"]


@pytest.mark.fast
def test_bars_turned_off_stay_off(monkeypatch, kernel_bar, capsys):
    monkeypatch.setenv("SLMLAB_HEADLESS", "1")
    hf_logging.disable_progress_bar()
    try:
        with transformers_progress():
            assert list(hf_logging.tqdm(range(3), desc="Loading weights")) == [0, 1, 2]
            assert list(gguf_loader.tqdm(range(3), desc="Converting")) == [0, 1, 2]
    finally:
        hf_logging.enable_progress_bar()
    assert kernel_bar == [] and capsys.readouterr().out == ""


@pytest.mark.fast
def test_with_a_person_looking_the_widget_bar_is_kept(monkeypatch):
    """Not headless (JupyterLab): slmlab.progress picks tqdm.notebook, the widget a person sees."""
    from tqdm.notebook import tqdm as notebook_tqdm

    import slmlab.backends.hf as hf

    monkeypatch.setenv("SLMLAB_HEADLESS", "0")
    monkeypatch.setattr(hf, "progress_class", lambda: notebook_tqdm)
    with transformers_progress():
        assert gguf_loader.tqdm is notebook_tqdm


@pytest.mark.slow
def test_real_gguf_loader_prints_text(monkeypatch, kernel_bar, capsys):
    """transformers' own GGUF loader, de-quantizing SmolLM2's 272 tensors, inside the block: a text bar."""
    import torch
    import transformers

    from slmlab.models.resolver import resolve

    monkeypatch.setenv("SLMLAB_HEADLESS", "1")
    path = resolve("smollm2-135m-instruct").path
    config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):  # only the parameter names are needed to map the GGUF tensors
        model = transformers.AutoModelForCausalLM.from_config(config)
    with transformers_progress():
        loaded = gguf_loader.load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)
    assert len(loaded["tensors"]) > 100 and kernel_bar == []
    assert "Converting and de-quantizing GGUF tensors...: 100%" in capsys.readouterr().out
