"""slmlab.convert.hf_to_gguf: the command it runs, its errors, and comparing two GGUF files tensor by tensor (small
files written here with the gguf package). The real conversion of the course's folder: tests/integration."""

from __future__ import annotations

import json
import stat
import sys

import numpy as np
import pytest

from slmlab.convert import hf_to_gguf
from slmlab.convert.hf_to_gguf import compare_gguf, convert_command, convert_hf_to_gguf
from slmlab.errors import SlmLabError
from slmlab.setup.llamacpp import MARKER, SETUP_COMMAND, install_dir

pytestmark = pytest.mark.fast


def write_gguf(path, tensors: dict[str, np.ndarray], **keys: str) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "llama")
    for key, value in keys.items():
        writer.add_string(key, value)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def script(tmp_path, monkeypatch):
    """A stand-in llama.cpp build whose convert_hf_to_gguf.py is `script(body)`."""
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))
    folder = install_dir()
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("{}")

    def write(body: str):
        path = folder / "convert_hf_to_gguf.py"
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    return write


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return folder


def test_compare_gguf_finds_the_same_bytes_a_different_tensor_and_lost_metadata(tmp_path):
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    write_gguf(tmp_path / "a.gguf", {"w": a, "b": np.ones(4, np.float32)}, **{"general.license": "apache-2.0"})
    write_gguf(tmp_path / "b.gguf", {"w": a.copy(), "b": np.ones(4, np.float32)})
    same = compare_gguf(tmp_path / "b.gguf", tmp_path / "a.gguf")
    assert same.same_tensors and same.keys_only_second == ["general.license"] and same.keys_only_first == []
    assert str(same) == "2 of 2 shared tensors identical"
    changed = a.copy()
    changed[1, 2] += 1
    write_gguf(tmp_path / "c.gguf", {"w": changed, "extra": np.zeros(2, np.float32)})
    differs = compare_gguf(tmp_path / "a.gguf", tmp_path / "c.gguf")
    assert (differs.different, differs.only_first, differs.only_second) == (["w"], ["b"], ["extra"])
    assert not differs.same_tensors and "different: w" in str(differs)


def test_the_command_is_this_python_and_the_builds_script(script, hf_folder, tmp_path):
    path = script("")
    assert convert_command(hf_folder, tmp_path / "out.gguf", "F16") == [
        sys.executable, str(path), str(hf_folder), "--outfile", str(tmp_path / "out.gguf"), "--outtype", "f16"]
    with pytest.raises(SlmLabError, match="(?s)--outtype 'q4_k_m'.*llama-quantize"):
        convert_command(hf_folder, tmp_path / "out.gguf", "q4_k_m")
    with pytest.raises(SlmLabError, match="no config.json"):
        convert_command(tmp_path, tmp_path / "out.gguf")


def test_without_the_build_the_error_names_the_setup_command(tmp_path, monkeypatch, hf_folder):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(SlmLabError) as err:
        convert_hf_to_gguf(hf_folder, tmp_path / "out.gguf")
    assert SETUP_COMMAND in str(err.value)


def test_a_failed_conversion_shows_its_last_lines_and_leaves_no_file(script, hf_folder, tmp_path):
    script("import sys\nopen(sys.argv[sys.argv.index('--outfile') + 1], 'w').write('half')\n"
           "print('INFO:hf-to-gguf:Loading model: x')\n"
           "raise NotImplementedError('Architecture \"MambaForCausalLM\" not supported!')\n")
    with pytest.raises(SlmLabError) as err:
        convert_hf_to_gguf(hf_folder, tmp_path / "out" / "model.gguf")
    assert 'Architecture "MambaForCausalLM" not supported!' in err.value.problem and "exit code 1" in err.value.problem
    assert list((tmp_path / "out").iterdir()) == []


def test_a_finished_conversion_is_renamed_into_place(script, hf_folder, tmp_path, capsys):
    script("import sys\nopen(sys.argv[sys.argv.index('--outfile') + 1], 'w').write('GGUF')\n")
    out = convert_hf_to_gguf(hf_folder, tmp_path / "model.gguf", "f32")
    assert out == tmp_path / "model.gguf" and out.read_text() == "GGUF" and list(tmp_path.glob("*.partial")) == []
    assert f"wrote {out}" in capsys.readouterr().out
    assert "f32" in hf_to_gguf.OUTTYPES
