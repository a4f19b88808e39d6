"""slmlab.convert.gguf_to_onnx and slmlab.backends.onnx: GGUF -> HF folder -> ONNX Runtime GenAI, and the parity of
each step.

Measured on SmolLM2-135M-Instruct Q4_1 (2 cores): the HF folder is the GGUF's weights dequantized to fp32, so
transformers gives the same greedy tokens from either; ORT GenAI fp32 reproduces transformers' greedy 64 tokens
exactly (and agrees on 100 % of the held-out next tokens); the plain-onnxruntime loop reproduces ORT GenAI fp32.
int8 and int4 re-quantize weights that were already 4-bit (Q4_1) and quantize the matmuls' activations to 8 bits
(the builder's CPU default, accuracy_level=4): they agree with transformers at ~94 % (int8) and ~62 % (int4) of the
held-out positions (int8 with fp32 activations, extra_options={"accuracy_level": 0}: ~97 %). Those figures are
printed; only a sanity floor is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmlab.backends import Backend, Scorer
from slmlab.convert import gguf_to_onnx as convert
from slmlab.errors import SlmLabError
from slmlab.measure.evaluate import Agreement, heldout_text

PARITY_PROMPT = [{"role": "user", "content": "Explain what a barometer measures."}]
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def show(capsys: pytest.CaptureFixture, line: str) -> None:
    """Print a measured figure even under pytest -q."""
    with capsys.disabled():
        print(f"\n  [measured] {line}")


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


# ---------------------------------------------------------------- fast: nothing loaded or converted

@pytest.mark.fast
@pytest.mark.parametrize("precision", ["int3", "fp16", "bf16", ""])
def test_bad_precision_lists_the_valid_ones(tmp_path, precision):
    with pytest.raises(SlmLabError, match=f"Unknown precision '{precision}'") as err:
        convert.hf_to_ort_genai(tmp_path, precision)
    assert "int4, int8, fp32" in err.value.hint


@pytest.mark.fast
def test_hf_dir_without_config_json(tmp_path):
    with pytest.raises(SlmLabError, match="not a Hugging Face model folder") as err:
        convert.hf_to_ort_genai(tmp_path / "nowhere", "int4")
    assert "gguf_to_hf" in err.value.hint


@pytest.mark.fast
@pytest.mark.parametrize("module, package", [("onnx_ir", "onnx-ir"), ("onnxruntime_genai", "onnxruntime-genai")])
def test_missing_builder_package_names_the_pip_command(tmp_path, monkeypatch, module, package):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, module, None)  # makes the module look uninstalled
    with pytest.raises(SlmLabError, match=f"needs the package {package}") as err:
        convert.hf_to_ort_genai(tmp_path, "int4", out_dir=tmp_path / "out")
    assert err.value.hint == "Run: pip install -e '.[onnx]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.fast
def test_missing_onnxruntime_genai_backend(monkeypatch):
    from slmlab.backends.onnx import OrtGenAIBackend

    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    with pytest.raises(SlmLabError, match="need onnxruntime-genai") as err:
        OrtGenAIBackend("anything")
    assert "pip install -e '.[onnx]'" in err.value.hint


@pytest.mark.fast
def test_folder_with_model_onnx_but_no_genai_config(tmp_path):
    from slmlab.backends.onnx import model_folder

    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(SlmLabError, match="no genai_config.json"):
        model_folder(tmp_path, "fp32")


def _partials(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.*"))


@pytest.mark.fast
@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_build_leaves_nothing_that_looks_done(tmp_path, interrupt):
    out = tmp_path / "m-hf"

    def build(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_bytes(b"half of a model")
        raise interrupt

    with pytest.raises(type(interrupt)):
        convert._build(out, tmp_path, {"source_sha256": "a" * 64}, "hf", build, force=False)
    assert not out.exists() and _partials(out) == []


@pytest.mark.fast
def test_builds_are_reused_rebuilt_or_refused(tmp_path):
    out, calls = tmp_path / "m-hf", []

    def build(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "weights").write_text(str(len(calls)))
        return {"dtype": "float32"}

    assert convert._build(out, tmp_path, {"source_sha256": "a"}, "hf", build, False) == out
    marker = convert.read_marker(out)
    assert marker["source_sha256"] == "a" and marker["dtype"] == "float32" and marker["kind"] == "hf"
    convert._build(out, tmp_path, {"source_sha256": "a"}, "hf", build, False)
    assert len(calls) == 1  # same source: reused
    convert._build(out, tmp_path, {"source_sha256": "b"}, "hf", build, False)
    assert len(calls) == 2 and (out / "weights").read_text() == "2"  # new source: rebuilt, swapped in
    convert._build(out, tmp_path, {"source_sha256": "b"}, "hf", build, True)
    assert len(calls) == 3 and _partials(out) == []  # force=True
    foreign = tmp_path / "someone-elses"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    with pytest.raises(SlmLabError, match="was not made by slmlab"):
        convert._build(foreign, tmp_path, {"source_sha256": "a"}, "hf", build, False)


@pytest.mark.fast
def test_partials_of_killed_conversions_are_cleaned(tmp_path):
    out = tmp_path / "m-hf"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m-hf.partial-{dead.pid}-deadbeef"
    live = tmp_path / f".m-hf.partial-{os.getpid()}-cafecafe"  # this process: still running
    stale.mkdir()
    live.mkdir()
    convert._build(out, tmp_path, {"source_sha256": "a"}, "hf", lambda tmp: {}, False)
    assert not stale.exists() and live.exists()


@pytest.mark.fast
def test_gguf_to_hf_interrupted_while_saving(tmp_path, monkeypatch):
    """gguf_to_hf itself, with transformers stood in by objects that fail halfway through writing."""

    class Model:
        def save_pretrained(self, folder):
            (Path(folder) / "model.safetensors").write_bytes(b"\0" * 1000)

    class Tokenizer:
        def save_pretrained(self, folder):
            raise KeyboardInterrupt  # the learner pressed stop

    monkeypatch.setattr(convert, "_load_gguf", lambda path: (Model(), Tokenizer()))
    out = tmp_path / "smollm2-hf"
    with pytest.raises(KeyboardInterrupt):
        convert.gguf_to_hf(out_dir=out)
    assert not out.exists() and _partials(out) == []


@pytest.mark.fast
def test_builder_options_get_their_own_folder(tmp_path, monkeypatch):
    calls = []

    def fake_builder(hf, out, precision, options, steps, failed_log=None):
        calls.append((precision, options, steps))
        (out / "genai_config.json").write_text("{}")

    monkeypatch.setattr(convert, "_run_builder", fake_builder)
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    hf = tmp_path / "tiny-hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"num_hidden_layers": 2}')
    plain = convert.hf_to_ort_genai(hf, "INT8")
    tuned = convert.hf_to_ort_genai(hf, "int8", extra_options={"accuracy_level": 0, "is_symmetric": True})
    assert plain.name == "tiny-ort-int8" and tuned.name.startswith("tiny-ort-int8-") and tuned != plain
    assert calls == [("int8", {}, 6), ("int8", {"accuracy_level": "0", "is_symmetric": "true"}, 6)]
    assert convert.read_marker(tuned)["options"] == {"accuracy_level": "0", "is_symmetric": "true"}
    convert.hf_to_ort_genai(hf, "int8", extra_options={"is_symmetric": True, "accuracy_level": 0})
    assert len(calls) == 2  # same options (any order): cached
    (hf / "config.json").write_text('{"num_hidden_layers": 3}')
    convert.hf_to_ort_genai(hf, "int8")
    assert len(calls) == 3  # the source changed: rebuilt


@pytest.mark.fast
def test_builder_failure_shows_the_log(tmp_path, monkeypatch):
    """A builder process that fails (as the real one does on an unknown architecture): a clear error, no folder."""
    real_popen = subprocess.Popen
    failing = "print('Reading embedding layer', flush=True); raise ValueError('Unrecognized model: no model_type')"
    monkeypatch.setattr(convert.subprocess, "Popen",
                        lambda cmd, **kw: real_popen([sys.executable, "-c", failing], **kw))
    hf = tmp_path / "broken-hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    with pytest.raises(SlmLabError, match=r"model builder failed \(exit code 1\)(.|\n)*no model_type") as err:
        convert.hf_to_ort_genai(hf, "int4", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and _partials(tmp_path / "out") == []
    kept = tmp_path / "out.builder-failed.log"
    assert str(kept) in err.value.hint and "Traceback" in kept.read_text()


# ---------------------------------------------------------------- conversions (once per module)

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh $SLMLAB_CACHE for this module, so the default output folders are exercised."""
    root = tmp_path_factory.mktemp("slmlab-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLMLAB_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def converted(cache):
    """gguf_to_hf, run once; the model and tokenizer it loaded from the GGUF are kept to compare with the folder."""
    pytest.importorskip("transformers")
    real, loaded = convert._load_gguf, {}

    def keep(path):
        loaded["model"], loaded["tokenizer"] = real(path)
        return loaded["model"], loaded["tokenizer"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convert, "_load_gguf", keep)
        folder = convert.gguf_to_hf("smollm2-135m-instruct")
    return folder, loaded


@pytest.fixture(scope="module")
def hf_dir(converted):
    return converted[0]


@pytest.fixture(scope="module")
def ort_dirs(hf_dir):
    pytest.importorskip("onnxruntime_genai")  # the [onnx] extra; a missing onnx-ir fails with its pip command
    return {p: convert.hf_to_ort_genai(hf_dir, p) for p in ("fp32", "int8", "int4")}


@pytest.mark.slow
def test_conversions_land_in_the_cache_with_a_marker(hf_dir, ort_dirs, cache, capsys):
    from slmlab.models.resolver import resolve

    assert hf_dir == cache / "converted" / "smollm2-135m-instruct-hf"
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            convert.MARKER} <= {p.name for p in hf_dir.iterdir()}
    config = json.loads((hf_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert convert.read_marker(hf_dir)["source_sha256"] == resolve("smollm2-135m-instruct").sha256
    figures = [f"hf {folder_mb(hf_dir):.0f} MB in {convert.read_marker(hf_dir)['built_s']} s"]
    for precision, folder in ort_dirs.items():
        assert folder == cache / "converted" / f"smollm2-135m-instruct-ort-{precision}"
        files = {p.name for p in folder.iterdir()}
        assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "chat_template.jinja"} <= files
        marker = convert.read_marker(folder)
        assert marker["precision"] == precision and marker["options"] == {}
        figures.append(f"ort-{precision} {folder_mb(folder):.0f} MB in {marker['built_s']} s")
    show(capsys, "conversions: " + "; ".join(figures))
    assert list(cache.glob("converted/.*")) == []  # no temporary folders left


@pytest.mark.slow
def test_second_conversion_is_served_from_the_cache(hf_dir, ort_dirs):
    before = {p: p.stat().st_mtime_ns for p in [hf_dir / "model.safetensors", ort_dirs["int4"] / "model.onnx.data"]}
    start = time.perf_counter()
    assert convert.gguf_to_hf("smollm2-135m-instruct") == hf_dir
    assert convert.hf_to_ort_genai(hf_dir, "int4") == ort_dirs["int4"]
    assert convert.ort_genai_folder("smollm2-135m-instruct", "int4") == ort_dirs["int4"]
    from slmlab.backends.onnx import model_folder

    assert model_folder("smollm2-135m-instruct", "int8") == ort_dirs["int8"]  # what OrtGenAIBackend() opens
    assert model_folder(ort_dirs["fp32"], "int4") == ort_dirs["fp32"]  # an ORT GenAI folder is used as is
    assert time.perf_counter() - start < 5
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rewritten


@pytest.mark.slow
def test_builder_interrupted_midway_leaves_no_folder(hf_dir, tmp_path, monkeypatch):
    """The real model builder, stopped (as by a keyboard interrupt) when it starts writing the model."""
    procs = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        procs.append(real_popen(*args, **kwargs))
        return procs[-1]

    class StopWhenSaving:
        def __init__(self, total, desc=""):
            self.n, self.total = 0, total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            self.n += k
            if self.n >= self.total:  # the builder has printed "Saving ONNX model"
                raise KeyboardInterrupt

    monkeypatch.setattr(convert.subprocess, "Popen", popen)
    monkeypatch.setattr(convert, "progress", StopWhenSaving)
    out = tmp_path / "interrupted-ort-fp32"
    with pytest.raises(KeyboardInterrupt):
        convert.hf_to_ort_genai(hf_dir, "fp32", out_dir=out)
    assert not out.exists() and _partials(out) == []
    assert procs and procs[0].poll() is not None  # the builder was stopped too


# ---------------------------------------------------------------- the backends

@pytest.fixture(scope="module")
def hf(hf_dir):
    from slmlab.backends.hf import HFBackend

    with HFBackend(hf_dir, device="cpu") as backend:
        yield backend


@pytest.fixture(scope="module")
def reference(hf):
    """transformers' greedy 64 tokens for the parity prompt (token ids, and the text)."""
    import torch

    enc = hf.tokenizer.apply_chat_template(PARITY_PROMPT, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    with torch.inference_mode():
        out = hf.model.generate(**enc, do_sample=False, max_new_tokens=64, temperature=None, top_p=None, top_k=None)
    ids = out[0, enc["input_ids"].shape[1]:].tolist()
    assert len(ids) == 64 and hf.model.generation_config.eos_token_id not in ids  # 64 real tokens to compare
    return ids


@pytest.fixture(scope="module")
def heldout(hf):
    """The held-out text's ids and transformers' argmax next token at each position (computed once)."""
    ids = hf.tokenize(heldout_text())
    return ids, hf.next_token_argmax(ids)


@pytest.fixture(scope="module")
def onnx(ort_dirs):
    from slmlab.backends import open_backend

    backends = {p: open_backend("onnx", folder) for p, folder in ort_dirs.items()}
    yield backends
    for backend in backends.values():
        backend.close()


@pytest.fixture(scope="module")
def greedy(ort_dirs):
    from slmlab.backends import open_backend

    with open_backend("ort-greedy", ort_dirs["fp32"]) as backend:
        yield backend


@pytest.mark.slow
def test_hf_folder_matches_the_gguf_loaded_model(converted, hf, reference):
    """The model transformers loaded from the GGUF, and the saved folder reloaded: same tensors, same greedy tokens."""
    import torch

    loaded = converted[1]
    gguf_model, gguf_tokenizer = loaded.pop("model"), loaded.pop("tokenizer")  # freed at the end of this test
    theirs, ours = gguf_model.state_dict(), hf.model.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert gguf_model.generation_config.eos_token_id == hf.model.generation_config.eos_token_id == 2
    text = heldout_text()
    assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == hf.tokenize(text)
    enc = gguf_tokenizer.apply_chat_template(PARITY_PROMPT, add_generation_prompt=True, return_dict=True,
                                             return_tensors="pt")
    with torch.inference_mode():
        out = gguf_model.eval().generate(**enc, do_sample=False, max_new_tokens=64, temperature=None, top_p=None,
                                         top_k=None)
    assert out[0, enc["input_ids"].shape[1]:].tolist() == reference


@pytest.mark.slow
def test_ort_genai_fp32_reproduces_transformers_greedy_exactly(hf, onnx, reference, heldout, capsys):
    fp32 = onnx["fp32"]
    gen = fp32.chat(PARITY_PROMPT, max_tokens=64)
    assert gen.extra["token_ids"] == reference  # all 64 greedy tokens, exactly
    assert gen.text == hf.tokenizer.decode(reference, skip_special_tokens=True)
    assert (gen.completion_tokens, gen.finish_reason) == (64, "length")
    ids, hf_argmax = heldout
    assert fp32.tokenize(heldout_text()) == ids
    result = Agreement(("hf", "onnx-fp32"), ids, hf_argmax, fp32.next_token_argmax(ids))
    show(capsys, f"ORT GenAI fp32: greedy 64 tokens identical to transformers; held-out: {result}")
    assert result.rate >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("precision, floor", [("int8", 0.85), ("int4", 0.5)])
def test_quantized_agreement_is_reported(onnx, ort_dirs, reference, heldout, capsys, precision, floor):
    backend = onnx[precision]
    gen = backend.chat(PARITY_PROMPT, max_tokens=64)
    pairs = zip(gen.extra["token_ids"], reference, strict=False)
    same_prefix = next((i for i, (a, b) in enumerate(pairs) if a != b), 64)
    ids, hf_argmax = heldout
    result = Agreement(("hf", f"onnx-{precision}"), ids, hf_argmax, backend.next_token_argmax(ids))
    show(capsys, f"ORT GenAI {precision} ({folder_mb(ort_dirs[precision]):.0f} MB): greedy answer equals "
                 f"transformers' for its first {same_prefix}/64 tokens, {gen.decode_tok_s:.0f} tok/s; "
                 f"held-out: {result}")
    assert result.rate >= floor and "pressure" in gen.text.lower()


@pytest.mark.slow
def test_plain_onnxruntime_loop_matches_ort_genai_fp32(onnx, greedy, reference, capsys):
    ours, theirs = greedy.chat(PARITY_PROMPT, max_tokens=64), onnx["fp32"].chat(PARITY_PROMPT, max_tokens=64)
    assert ours.extra["token_ids"] == theirs.extra["token_ids"] == reference and ours.text == theirs.text
    emoji = "Écris une phrase sur la météo avec des emoji 🌧️:"  # tokens that end inside a UTF-8 character
    a, b = greedy.generate(emoji, max_tokens=24), onnx["fp32"].generate(emoji, max_tokens=24)
    assert a.extra["token_ids"] == b.extra["token_ids"] and a.text == b.text and "🌧" in a.text
    show(capsys, f"decode tok/s, fp32: plain onnxruntime loop {ours.decode_tok_s:.0f}, "
                 f"ORT GenAI {theirs.decode_tok_s:.0f}")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["onnx", "ort-greedy"])
def test_backend_interface(onnx, greedy, which):
    backend = onnx["fp32"] if which == "onnx" else greedy  # int4 answers "2 + 2" without a 4: see above
    assert isinstance(backend, Backend) and isinstance(backend, Scorer) and backend.engine == which
    assert backend.load_s > 0
    gen = backend.chat(QUESTION, max_tokens=24)
    assert "4" in gen.text and gen.finish_reason == "stop" and gen.prompt_tokens == 38
    assert 0 < gen.completion_tokens < 24 and gen.decode_tok_s > 0 and gen.timings.ttft_s > 0
    assert 0 < gen.timings.prompt_eval_s <= gen.timings.ttft_s
    cut = backend.generate("The history of weather forecasting", max_tokens=4)
    assert (cut.completion_tokens, cut.finish_reason, cut.prompt_tokens) == (4, "length", 5) and cut.text
    pieces = list(backend.stream("The barometer", max_tokens=6))
    assert len(pieces) > 1 and "".join(pieces) == backend.last.text and backend.last.completion_tokens == 6
    assert "".join(backend.stream(QUESTION, max_tokens=24)) == gen.text
    assert backend.tokenize("Hello world") == [19556, 905] and backend.tokenize("<|im_start|>") == [1]
    stopped = backend.chat("List three colours, one per line.", max_tokens=40, stop=["\n"])
    assert stopped.text and "\n" not in stopped.text and stopped.finish_reason == "stop"


@pytest.mark.slow
def test_sampling_is_seeded_and_greedy_only_loop_says_so(onnx, greedy):
    int4 = onnx["int4"]
    sampled = [int4.chat("Write a poem.", temperature=0.9, seed=s, max_tokens=16).text for s in (7, 7, 8)]
    assert sampled[0] == sampled[1] != sampled[2]
    assert int4.chat("Write a poem.", temperature=0.9, top_k=1, max_tokens=8).text == \
        int4.chat("Write a poem.", max_tokens=8).text  # top_k=1 is greedy
    with pytest.raises(SlmLabError, match="only decodes greedily"):
        greedy.chat("Write a poem.", temperature=0.7)
    with pytest.raises(SlmLabError, match="'max_new_tokens' is not a generation option"):
        int4.chat("Hi", max_new_tokens=5)


@pytest.mark.slow
def test_errors_once_loaded(ort_dirs, onnx, greedy, monkeypatch):
    from slmlab.backends.onnx import OrtGenAIBackend, OrtGreedyBackend

    for backend in (onnx["int4"], greedy):
        with pytest.raises(SlmLabError, match=r"prompt has \d+ tokens, the context is 8192"):
            backend.stream("weather " * 9000)  # raises at the call, before the first piece
        with pytest.raises(SlmLabError, match="No tokens to score"):
            backend.next_token_argmax([])
    for cls in (OrtGenAIBackend, OrtGreedyBackend):
        with cls(ort_dirs["int4"]) as backend:
            monkeypatch.setattr(backend, "_has_template", False, raising=False)  # as for a base model
            if cls is OrtGreedyBackend:
                monkeypatch.setattr(backend.tokenizer, "chat_template", None)
            with pytest.raises(SlmLabError, match="no chat template"):
                backend.chat("Hi")
        with pytest.raises(SlmLabError, match="closed"):
            backend.generate("Hi")
