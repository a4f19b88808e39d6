"""slmlab.convert.litert_cli and slmlab.setup.litert_env: the LiteRT Torch venv, its shim, the converter's command
run, recorded and cached.

A stand-in `python` in a fake venv behaves as litert-torch's SmolLM2 program did here: it writes
<prefix>_q8_ekv1024.tflite and prints its step lines, or fails with an exception. Notebook 1.6's test and
tests/integration/test_litert.py use the real conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from slmlab.convert import gguf_to_onnx as convert
from slmlab.convert import litert_cli
from slmlab.errors import SlmLabError
from slmlab.setup import doctor, litert_env

pytestmark = pytest.mark.fast

FAKE_PYTHON = r'''
import os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LITERT_CALLS"], "a") as calls:
    calls.write(" ".join(args) + "\n")
options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--"))
assert os.environ["PYTHONPATH"].endswith("slmlab-shims"), os.environ["PYTHONPATH"]
print("(00:17) [ DONE] LiteRT-Torch Convert > Torch Export: prefill_32 (+00:17)")
print("(00:20) [ DONE] LiteRT-Torch Convert > Lower to MLIR: decode > Create MLIR Module (+00:02)")
if os.environ.get("FAKE_LITERT_FAIL"):
    print("Traceback (most recent call last):")
    print("ModuleNotFoundError: No module named 'tensorflow'")
    sys.exit(1)
held = b"x" * 60_000_000  # the peak RSS the run must report
tag = {"dynamic_int8": "q8", "none": "f32"}[options["quantize"]]
os.makedirs(options["output_path"], exist_ok=True)
name = f"{options['output_name_prefix']}_{tag}_ekv{options['kv_cache_max_len']}.tflite"
open(os.path.join(options["output_path"], name), "wb").write(b"TFL3" * 100)
'''


@pytest.fixture
def machine(tool_machine):
    """A cache at tmp/cache with the model's HF folder, and a fake LiteRT Torch venv at tmp/python-venv."""
    return tool_machine(litert_env.VENV_ENV, "python", FAKE_PYTHON, "litert_torch-0.10.0.dist-info",
                        "FAKE_LITERT_CALLS")


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_the_command_is_litert_torchs_own_program_for_the_model():
    command = litert_cli.litert_command("smollm2-135m-instruct", "/hf", "/out", "dynamic_int8")
    assert command[:3] == ["python", "-m", "litert_torch.generative.examples.smollm.convert_v2_to_tflite"]
    assert "--checkpoint_path=/hf" in command and "--output_path=/out/" in command
    assert {"--prefill_seq_lens=32", "--kv_cache_max_len=1024", "--quantize=dynamic_int8"} <= set(command)
    assert litert_cli.output_name("smollm2-135m-instruct", "dynamic_int8") == "smollm2-135m-instruct_q8_ekv1024.tflite"
    with pytest.raises(SlmLabError, match="no conversion program") as other:
        litert_cli.litert_command("gemma3-270m", "/hf", "/out")
    assert "smollm2-*" in other.value.hint
    with pytest.raises(SlmLabError, match="Unknown LiteRT quantization 'int3'") as bad:
        litert_cli.litert_command("smollm2-135m-instruct", "/hf", "/out", "int3")
    assert "dynamic_int8" in bad.value.hint


def test_a_conversion_is_recorded_as_it_happened_and_its_file_kept_in_the_cache(machine):
    said: list[str] = []
    run = litert_cli.prepare(echo=said.append)
    assert run.ok and run.returncode == 0 and run.error == "" and run.peak_rss_mb >= 60
    assert Path(run.output) == (convert.converted_dir() / "smollm2-135m-instruct-litert-dynamic-int8"
                                / "smollm2-135m-instruct_q8_ekv1024.tflite")
    folder = Path(run.output).parent
    assert convert.read_marker(folder)["kind"] == "litert" and (folder / "litert-torch.log").is_file()
    assert f"--output_path={folder}/" in run.command  # the record names where the file is, not the scratch folder
    assert any("Torch Export: prefill_32 (+00:17)" in line for line in said)
    assert not any("Create MLIR Module" in line for line in said)  # only the top-level steps are echoed
    text = litert_cli.describe(run)
    assert text.startswith("$ PYTHONPATH=<venv>/slmlab-shims HF_HUB_OFFLINE=1 python -m litert_torch.")
    assert "exit 0 after" in text and "wrote smollm2-135m-instruct_q8_ekv1024.tflite" in text
    assert not [p for p in litert_cli.runs_dir().iterdir() if ".partial-" in p.name]
    assert litert_cli.read_run("smollm2-135m-instruct") == run


def test_a_second_call_reads_the_record_and_a_changed_source_or_deleted_file_converts_again(machine):
    first = litert_cli.prepare(echo=lambda _: None)
    assert litert_cli.prepare(echo=lambda _: None) == first and len(calls(machine)) == 1
    Path(first.output).unlink()
    assert litert_cli.prepare(echo=lambda _: None).ok and len(calls(machine)) == 2
    hf = convert.converted_dir() / "smollm2-135m-instruct-hf"
    (hf / convert.MARKER).write_text(json.dumps({"source_sha256": "another GGUF", "created": "now"}))
    litert_cli.prepare(echo=lambda _: None)
    assert len(calls(machine)) == 3
    litert_cli.prepare(force=True, echo=lambda _: None)
    assert len(calls(machine)) == 4


def test_a_failed_conversion_keeps_its_error_and_no_file(machine, monkeypatch):
    monkeypatch.setenv("FAKE_LITERT_FAIL", "1")
    run = litert_cli.prepare(echo=lambda _: None)
    assert not run.ok and run.returncode == 1 and run.output is None
    assert run.error == "ModuleNotFoundError: No module named 'tensorflow'"
    assert "no model. litert-torch's error: ModuleNotFoundError" in litert_cli.describe(run)
    assert "--output_path=<output>/" in run.command  # not the scratch folder, which is gone
    assert not (convert.converted_dir() / "smollm2-135m-instruct-litert-dynamic-int8").exists()


def test_without_the_venv_prepare_and_doctor_name_the_set_up_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(litert_env.VENV_ENV, raising=False)
    with pytest.raises(SlmLabError) as missing:
        litert_cli.prepare(echo=lambda _: None)
    assert "not set up" in missing.value.problem and "slmlab setup litert" in missing.value.hint
    row = doctor.check_litert()
    assert not row.ok and not row.required and "1.6" in row.detail and "slmlab setup litert" in row.fix


def fake_install(ran: list[list[str]], fail_at: int = 0):
    """A stand-in for the three commands: the venv, torch, then litert-torch (its metadata)."""
    def run(cmd: Sequence[str]) -> int:
        ran.append(list(cmd))
        if len(ran) == fail_at:
            return 1
        if cmd[1:3] == ["-m", "venv"]:
            folder = Path(cmd[3])
            (folder / "bin").mkdir(parents=True)
            (folder / "bin" / "python").write_text("")
            (folder / "pyvenv.cfg").write_text("home = /usr/bin\n")
        elif litert_env.LITERT_TORCH_PIN in cmd:
            venv = Path(cmd[0]).parents[1]
            (venv / "lib" / "python3.11" / "site-packages" / "litert_torch-0.10.0.dist-info").mkdir(parents=True)
        return 0
    return run


def test_the_venv_is_named_by_its_pins_gets_the_cpu_torch_first_and_its_shim(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(litert_env.VENV_ENV, raising=False)
    assert litert_env.litert_venv().name == "litert-torch-0.10.0-ai-edge-litert-2.3.0-py3.11"
    ran: list[list[str]] = []
    with pytest.raises(SlmLabError, match="exit code 1"):
        litert_env.setup_litert_venv(echo=lambda _: None, run=fake_install(ran, fail_at=3))
    assert not litert_env.litert_venv().exists()  # never half of it
    ran.clear()
    python = litert_env.setup_litert_venv(echo=lambda _: None, run=fake_install(ran))
    assert python == litert_env.litert_venv() / "bin" / "python" and litert_env.litert_available()
    assert "--no-deps" in ran[1] and ran[1][-1] == "torch==2.13.0" and litert_env.LITERT_PIN in ran[2]
    assert litert_env.litert_torch_version() == "0.10.0" and doctor.check_litert().ok
    env = litert_env.converter_env()
    assert env["PYTHONPATH"] == str(litert_env.litert_venv() / "slmlab-shims") and env["HF_HUB_OFFLINE"] == "1"


def test_the_shim_makes_tensorflows_schema_module_ai_edge_litert_s(tmp_path):
    pytest.importorskip("ai_edge_litert")
    shims = litert_env.write_shims(tmp_path)
    code = ("from tensorflow.lite.python import schema_py_generated as schema; "
            "import ai_edge_litert.schema_py_generated as real; print(schema is real, hasattr(schema, 'ModelT'))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(shims)},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
