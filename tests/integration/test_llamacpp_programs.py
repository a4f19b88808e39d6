"""llama.cpp's own programs built by `slmlab setup llamacpp` (slow; skipped, saying so, without the build): they are
the llama.cpp commit the Python binding vendors, so `llama-quantize` and `llama_cpp.llama_model_quantize` write the
same bytes; they report the release they were built from; and the conversion script copied beside them runs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from slmlab.convert.quantize import quantize, reference_f16
from slmlab.models import resolve, sha256_file
from slmlab.models.hardware import physical_cores
from slmlab.setup.llamacpp import (
    PROGRAMS,
    SETUP_COMMAND,
    convert_script,
    install_dir,
    llamacpp_available,
    llamacpp_dir,
    llamacpp_program,
    read_marker,
)

MODEL = "smollm2-135m-instruct"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llamacpp_available(),
                                 reason=f"llama.cpp is not built at {install_dir()} (run `{SETUP_COMMAND}`)")]


def _cli_quantize(source, target, qtype: str, *flags: str) -> subprocess.CompletedProcess:
    cmd = [str(llamacpp_program("llama-quantize")), *flags, str(source), str(target), qtype, str(physical_cores())]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_cli_and_python_api_quantize_the_f16_reference_to_identical_bytes(tmp_path):
    reference = reference_f16(MODEL, show_progress=False)  # the dequantized F16 copy every course quantization uses
    api = quantize(reference, "Q4_K_M", out_dir=tmp_path / "api", show_progress=False)
    assert not api.cached
    cli = tmp_path / "cli.Q4_K_M.gguf"
    _cli_quantize(reference.path, cli, "Q4_K_M")
    assert sha256_file(cli) == sha256_file(api.path) and cli.stat().st_size == api.size_bytes


def test_cli_and_python_api_requantize_the_bundled_q4_1_to_identical_bytes(tmp_path):
    bundled = resolve(MODEL)  # Q4_1: quantizing it again needs --allow-requantize (allow_requantize in the API)
    api = quantize(bundled, "Q8_0", out_dir=tmp_path / "api", from_reference=False, show_progress=False)
    cli = tmp_path / "cli.Q8_0.gguf"
    refused = subprocess.run([str(llamacpp_program("llama-quantize")), str(bundled.path), str(cli), "Q8_0"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "requantizing from type q4_1 is disabled" in refused.stdout + refused.stderr
    _cli_quantize(bundled.path, cli, "Q8_0", "--allow-requantize")
    assert sha256_file(cli) == sha256_file(api.path)


def test_every_program_runs_and_reports_the_pinned_release():
    marker = read_marker()
    assert marker is not None and marker["programs"] == list(PROGRAMS)
    compiled = dict(option[2:].split("=", 1) for option in marker["cmake_options"])
    commit, build = compiled.get("LLAMA_BUILD_COMMIT", "unknown"), marker["llama_cpp_build"]
    assert marker["llama_cpp_commit"].startswith(commit) and compiled.get("LLAMA_BUILD_NUMBER") == str(build)
    bundled = str(resolve(MODEL).path)
    for name in PROGRAMS:  # llama-quantize has no --version: a dry run prints the same line first
        args = ["--dry-run", "--allow-requantize", bundled, "Q8_0"] if name == "llama-quantize" else ["--version"]
        done = subprocess.run([str(llamacpp_program(name)), *args], capture_output=True, text=True, timeout=60)
        said = done.stdout + done.stderr
        assert done.returncode == 0, (name, said[-500:])
        assert f"(build {build}, commit {commit})" in said, (name, said)  # as the b<build> container image says


def test_the_programs_need_no_shared_llama_or_ggml_library():
    linked = subprocess.run(["ldd", str(llamacpp_program("llama-server"))], capture_output=True, text=True).stdout
    assert "libllama" not in linked and "libggml" not in linked and "libssl" not in linked, linked


def test_the_conversion_script_from_the_same_tree_runs():
    done = subprocess.run([sys.executable, str(convert_script()), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=convert_script().parent)
    assert done.returncode == 0 and "--outtype" in done.stdout, done.stderr[-2000:]


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_a_cpp_program_links_the_static_libraries_and_loads_the_model(tmp_path):
    source = tmp_path / "vocab.cpp"
    source.write_text("""#include "llama.h"
#include <cstdio>
int main(int argc, char ** argv) {
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 1;
    printf("%d %d\\n", llama_vocab_n_tokens(llama_model_get_vocab(model)), llama_model_n_layer(model));
    llama_model_free(model);
    llama_backend_free();
}
""")
    program = tmp_path / "vocab"
    flags = shlex.split(read_marker()["link"])  # -Iinclude -Llib -lllama ... relative to the build's folder
    built = subprocess.run(["c++", "-std=c++17", str(source), *flags, "-o", str(program)], cwd=llamacpp_dir(),
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    ran = subprocess.run([str(program), str(resolve(MODEL).path)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.split() == ["49152", "30"], ran.stdout + ran.stderr[-1000:]
