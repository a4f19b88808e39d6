"""slmlab.convert.olive_cli: Olive's commands built, run from Olive's venv, recorded and cached.

A stand-in `olive` (a small Python program in a fake venv) behaves as Olive 0.13.0 did here: auto-opt int4 writes an
ORT GenAI folder; int8 logs a KeyError and exits 0 without a model; quantize --algorithm rtn fails with exit 1.
Notebook 1.4's test runs the real Olive.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from slmlab.convert import gguf_to_onnx as convert
from slmlab.convert import olive_cli
from slmlab.errors import SlmLabError
from slmlab.setup import olive_env

pytestmark = pytest.mark.fast

FAKE_OLIVE = r'''
import os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_OLIVE_CALLS"], "a") as calls:
    calls.write(" ".join(args) + "\n")
time.sleep(float(os.environ.get("FAKE_OLIVE_SLEEP", "0")))
out = args[args.index("-o") + 1]
print("[2026-01-01 00:00:00,000] [INFO] [engine.py:665:_run_pass] Running pass model_builder:modelbuilder")
if args[0] == "auto-opt" and "int4" in args:
    held = b"x" * 80_000_000  # the peak RSS the run must report
    print("Saving layers:  10%|#         | 1/10\rSaving layers: 100%|##########| 10/10\x1b[0m")
    os.makedirs(out)
    for name in ("genai_config.json", "model.onnx", "model.onnx.data"):
        open(os.path.join(out, name), "w").write("{}")
    print("[2026-01-01 00:00:01,000] [INFO] [engine.py:733:_run_pass] "
          "Pass model_builder:modelbuilder finished in 1.5 seconds")
    sys.exit(0)
print("Traceback (most recent call last):")
if args[0] == "quantize":
    print('  File "utils.py", line 46, in get_num_groups')
    print("AssertionError: in_features 576 must be divisible by group_size 128")
    sys.exit(1)
print('  File "builder.py", line 171, in set_onnx_dtype')
print("KeyError: <Precision.INT8: 'int8'>")
print("[2026-01-01 00:00:02,000] [WARNING] [engine.py:237:run] No output model produced. "
      "Please check the log for details.")
print("No output model produced. Please check the log for details.")
'''


@pytest.fixture
def machine(tool_machine):
    """A cache at tmp/cache with the model's HF folder in it, and a fake Olive venv at tmp/olive-venv."""
    return tool_machine(olive_env.VENV_ENV, "olive", FAKE_OLIVE, "olive_ai-0.13.0.dist-info", "FAKE_OLIVE_CALLS")


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


JOBS = ("auto-opt-int4", "auto-opt-int8", "quantize-rtn-int4")


def test_each_run_is_recorded_as_it_happened_and_a_model_lands_in_the_cache(machine):
    said: list[str] = []
    runs = olive_cli.prepare(jobs=JOBS, echo=said.append)
    good, int8, rtn = (runs[name] for name in JOBS)
    assert good.ok and good.returncode == 0 and good.error == ""
    assert Path(good.output) == convert.converted_dir() / "smollm2-135m-instruct-olive-auto-opt-int4"
    assert convert.read_marker(good.output)["kind"] == "olive" and (Path(good.output) / "olive.log").is_file()
    assert good.peak_rss_mb >= 80 and good.seconds > 0  # the child's own peak, from wait4
    assert "Saving layers: 100%|##########| 10/10" in good.log_lines() and not any("10%|#" in line for line in
                                                                                     good.log_lines())
    assert good.command[5] == good.output and good.excerpt() == [
        "Running pass model_builder:modelbuilder", "Pass model_builder:modelbuilder finished in 1.5 seconds"]
    # exit 0 without a model: not a success, and Olive's own exception is what is reported
    assert not int8.ok and int8.returncode == 0 and int8.output is None
    assert int8.error == "KeyError: <Precision.INT8: 'int8'>" and int8.excerpt()[-1] == int8.error
    assert rtn.returncode == 1 and rtn.error.startswith("AssertionError: in_features 576")
    text = olive_cli.describe(int8)
    assert text.startswith("$ olive auto-opt -m ") and "exit 0 after" in text and "no model" in text
    assert "--precision int8 --use_model_builder" in text and text.endswith("| KeyError: <Precision.INT8: 'int8'>")
    assert any("Running pass" in line for line in said)
    assert not [p for p in olive_cli.runs_dir().iterdir() if ".partial-" in p.name]  # Olive's scratch folders gone
    assert olive_cli.read_run("smollm2-135m-instruct", "auto-opt-int8") == int8


def test_a_second_call_reads_the_records_and_a_changed_source_runs_again(machine):
    olive_cli.prepare(jobs=JOBS, echo=lambda _: None)
    assert len(calls(machine)) == 3
    again = olive_cli.prepare(jobs=JOBS, echo=lambda _: None)
    assert len(calls(machine)) == 3 and again["auto-opt-int4"].ok
    hf = convert.converted_dir() / "smollm2-135m-instruct-hf"
    (hf / convert.MARKER).write_text(json.dumps({"source_sha256": "another GGUF", "created": "now"}))
    olive_cli.prepare(jobs=["auto-opt-int4"], echo=lambda _: None)
    assert len(calls(machine)) == 4
    olive_cli.prepare(jobs=["auto-opt-int4"], force=True, echo=lambda _: None)
    assert len(calls(machine)) == 5


def test_a_deleted_model_folder_is_built_again(machine):
    first = olive_cli.prepare(jobs=["auto-opt-int4"], echo=lambda _: None)["auto-opt-int4"]
    (Path(first.output) / "genai_config.json").unlink()
    assert olive_cli.prepare(jobs=["auto-opt-int4"], echo=lambda _: None)["auto-opt-int4"].ok
    assert len(calls(machine)) == 2


def test_a_run_past_its_time_is_stopped_with_a_clear_error(machine, monkeypatch):
    monkeypatch.setenv("FAKE_OLIVE_SLEEP", "30")
    hf = convert.converted_dir() / "smollm2-135m-instruct-hf"
    begin = time.perf_counter()
    with pytest.raises(SlmLabError) as stopped:
        olive_cli.run_job("auto-opt-int8", hf, olive_env.olive_program(), "smollm2-135m-instruct", {},
                          echo=lambda _: None, timeout=1.0)
    assert time.perf_counter() - begin < 10 and "longer than 1 s" in stopped.value.problem
    assert "log" in stopped.value.hint


def test_without_olives_venv_prepare_names_the_set_up_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(olive_env.VENV_ENV, raising=False)
    with pytest.raises(SlmLabError) as missing:
        olive_cli.prepare(echo=lambda _: None)
    assert "slmlab setup olive" in missing.value.hint


def test_commands_are_olives_own_options(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    job = olive_cli.JOBS["auto-opt-int4"]
    command = olive_cli.olive_command(job, "/m/hf", "/m/out", "/venv/bin/olive")
    assert command[:6] == ["/venv/bin/olive", "auto-opt", "-m", "/m/hf", "-o", "/m/out"]
    assert command[6:] == ["--device", "cpu", "--provider", "CPUExecutionProvider", "--precision", "int4",
                           "--use_model_builder", "--use_ort_genai", "--log_level", "1"]
    assert olive_cli.shown(command).startswith("olive auto-opt -m /m/hf -o /m/out --device cpu")
    assert olive_cli.olive_command(olive_cli.JOBS["quantize-rtn-int4"], "h", "o")[1:2] == ["quantize"]
    with pytest.raises(SlmLabError, match="Unknown Olive job"):
        olive_cli.prepare(jobs=["auto-opt-int2"])


def test_logs_are_read_as_their_final_lines_and_the_last_exception_found():
    text = ("a\r\x1b[32mprogress  50%\rprogress 100%\x1b[0m\n\n  File \"x\"\nValueError: first\n"
            "KeyError: 'last'\nNo output\n")
    lines = olive_cli.clean_log(text)
    assert lines == ["progress 100%", '  File "x"', "ValueError: first", "KeyError: 'last'", "No output"]
    assert olive_cli.last_exception(lines) == "KeyError: 'last'"
    assert olive_cli.last_exception(["datasets.exceptions.DatasetNotFoundError: gone", "done"]).startswith("datasets.")
    assert olive_cli.last_exception(["No output model produced.", "Error rate 3%"]) == ""
    assert os.path.basename(olive_cli.runs_dir()) == "olive-runs"
