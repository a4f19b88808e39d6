"""slmlab.convert.llamacpp_cli: running llama.cpp's programs. A missing build names `slmlab setup llamacpp`, a missing
input file is named before anything runs, and a program that fails gives a SlmLabError with its last lines. The
programs here are small shell scripts in a stand-in build folder (the real ones: tests/integration)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from slmlab.convert import llamacpp_cli
from slmlab.convert.llamacpp_cli import existing_file, make_imatrix, quantize_file, run_program, split_text, tail
from slmlab.errors import SlmLabError
from slmlab.setup.llamacpp import MARKER, SETUP_COMMAND, install_dir

pytestmark = pytest.mark.fast


@pytest.fixture
def build(tmp_path, monkeypatch):
    """An slmlab cache whose llama.cpp build folder holds stand-in programs: build(name, script) writes one."""
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    folder = install_dir()
    (folder / "bin").mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"programs": []}))

    def program(name: str, script: str) -> Path:
        path = folder / "bin" / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    return program


def test_a_missing_build_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(SlmLabError) as err:
        run_program("llama-bench", ["--version"], what="Asking llama-bench its version")
    assert SETUP_COMMAND in str(err.value)


def test_a_failing_program_shows_its_last_lines_and_the_command(build):
    build("llama-bench", "i=1; while [ $i -le 30 ]; do echo \"log line $i\" >&2; i=$((i+1)); done\n"
                         "echo 'error: the model file is not a GGUF' >&2; exit 3\n")
    with pytest.raises(SlmLabError) as err:
        run_program("llama-bench", ["-m", "x.gguf"], what="Benchmarking x.gguf")
    said = str(err.value)
    assert said.startswith("Benchmarking x.gguf failed: llama-bench ended with exit code 3")
    assert "error: the model file is not a GGUF" in said and "log line 30" in said and "log line 5\n" not in said
    assert "llama-bench -m x.gguf" in said and "Traceback" not in said


def test_a_program_that_succeeds_returns_both_streams(build):
    build("llama-perplexity", "echo '[1]12.5,'; echo 'Final estimate: PPL = 12.5 +/- 1.0' >&2\n")
    run = run_program("llama-perplexity", ["-m", Path("m.gguf"), "-c", 128], what="Scoring")
    assert run.returncode == 0 and run.stdout == "[1]12.5,\n" and "Final estimate" in run.stderr
    assert run.command[1:] == ["-m", "m.gguf", "-c", "128"] and run.output.startswith("[1]")


def test_a_program_past_its_timeout_is_stopped_and_named(build):
    build("llama-imatrix", "echo 'computing over 4 chunks' >&2; sleep 30\n")
    with pytest.raises(SlmLabError) as err:
        run_program("llama-imatrix", [], what="Calibrating", timeout=1)
    assert "did not finish within 1 s" in str(err.value)


def test_a_missing_model_is_named_before_anything_runs(build, tmp_path):
    build("llama-quantize", "echo ran > \"$(dirname \"$0\")/ran.txt\"\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(SlmLabError) as err:
        quantize_file(tmp_path / "models" / "smal.F16.gguf", tmp_path / "out.gguf", "Q4_K_M")
    said = str(err.value)
    assert "smal.F16.gguf does not exist" in said and "small.Q8_0.gguf" in said
    assert not (install_dir() / "bin" / "ran.txt").exists()


def test_quantize_file_passes_the_flags_and_keeps_the_log(build, tmp_path):
    build("llama-quantize", 'echo "$@" > "$(dirname "$0")/args.txt"\n'
                            "echo '[   1/ 272]   output_norm.weight - [   576,      1,      1,      1], type =    f32, "
                            "size =    0.002 MiB' >&2\n")
    source, matrix = tmp_path / "m.F16.gguf", tmp_path / "imatrix.gguf"
    source.write_bytes(b"GGUF")
    matrix.write_bytes(b"GGUF")
    result = quantize_file(source, tmp_path / "out" / "m.Q2_K.gguf", "q2_k", pure=True, imatrix=matrix)
    args = (install_dir() / "bin" / "args.txt").read_text().split()
    assert args == ["--pure", "--imatrix", str(matrix), str(source), str(tmp_path / "out" / "m.Q2_K.gguf"), "Q2_K"]
    assert result.qtype == "Q2_K" and result.source == source
    assert list(result.tensors()["tensor"]) == ["output_norm.weight"]


def test_a_refused_requantization_says_what_the_flag_costs(build, tmp_path):
    build("llama-quantize", "echo 'llama_model_quantize: failed to quantize: requantizing from type q4_0 is "
                            "disabled' >&2; exit 1\n")
    source = tmp_path / "m.Q2_K.gguf"
    source.write_bytes(b"GGUF")
    with pytest.raises(SlmLabError) as err:
        quantize_file(source, tmp_path / "m.Q8_0.gguf", "Q8_0")
    assert "requantizing from type q4_0 is disabled" in err.value.problem
    assert "allow_requantize=True" in err.value.hint and "never better than the source" in err.value.hint


def test_an_imatrix_run_that_writes_nothing_asks_for_a_longer_text(build, tmp_path):
    build("llama-imatrix", "exit 0\n")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "calibration.txt").write_text("short")
    with pytest.raises(SlmLabError) as err:
        make_imatrix(tmp_path / "m.gguf", tmp_path / "calibration.txt", tmp_path / "imatrix.gguf", n_ctx=64)
    assert "at least 64 tokens" in str(err.value)


def test_split_text_gives_each_half_of_the_paragraphs(tmp_path):
    calibration, evaluation = split_text("one.\n\ntwo.\n\n\nthree.\n\nfour.\n\nfive.\n", tmp_path / "halves")
    assert calibration.read_text() == "one.\n\ntwo.\n" and evaluation.read_text() == "three.\n\nfour.\n\nfive.\n"
    with pytest.raises(SlmLabError, match="fewer than two paragraphs"):
        split_text("just one paragraph", tmp_path)


def test_tail_and_existing_file(tmp_path):
    assert tail("a\n\n b \nc\n", 2) == "   b\n  c" and tail("") == "  (no output)"
    assert existing_file(__file__, "test") == Path(__file__)
    with pytest.raises(SlmLabError, match="calibration text .* does not exist"):
        existing_file(tmp_path / "nothing.txt", "calibration text")
    assert llamacpp_cli.TAIL_LINES >= 8
