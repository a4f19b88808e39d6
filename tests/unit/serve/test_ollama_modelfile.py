"""The Modelfile parser: Ollama's syntax in, the /api/create JSON body out, line-numbered errors for mistakes."""

from __future__ import annotations

import pytest

from slmlab.errors import SlmLabError
from slmlab.serve.ollama.modelfile import Modelfile, check_parameter, parse_modelfile, read_modelfile

pytestmark = pytest.mark.fast

FULL = '''# A Modelfile with every instruction
FROM smollm2:135m
parameter temperature 0.2
PARAMETER num_ctx 4096
PARAMETER stop "<|im_end|>"
PARAMETER stop <|im_start|>
PARAMETER seed 7
PARAMETER penalize_newline false
TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
System """You are a terse assistant.
Answer in one line."""
MESSAGE user Is Paris in France?
MESSAGE assistant "Yes."
LICENSE """Apache License 2.0"""
LICENSE MIT
ADAPTER ./lora.gguf
'''


def test_every_instruction_parses_into_the_create_body():
    mf = parse_modelfile(FULL)
    assert mf.from_ == "smollm2:135m"
    assert mf.parameters == {"temperature": 0.2, "num_ctx": 4096, "stop": ["<|im_end|>", "<|im_start|>"], "seed": 7,
                             "penalize_newline": False}
    assert mf.template.startswith("{{- range .Messages }}<|im_start|>{{ .Role }}\n") and mf.template.endswith(
        "assistant\n")
    assert mf.system == "You are a terse assistant.\nAnswer in one line."
    assert mf.messages == [{"role": "user", "content": "Is Paris in France?"}, {"role": "assistant", "content": "Yes."}]
    assert mf.license == ["Apache License 2.0", "MIT"]
    assert mf.adapters == ["./lora.gguf"]
    body = mf.create_request("terse", adapters={"lora.gguf": "sha256:" + "0" * 64})
    assert body["model"] == "terse" and body["from"] == "smollm2:135m"
    assert body["parameters"]["num_ctx"] == 4096 and body["license"] == ["Apache License 2.0", "MIT"]
    assert body["adapters"] == {"lora.gguf": "sha256:" + "0" * 64}
    assert "files" not in body


def test_create_kwargs_match_the_official_client_signature():
    import inspect

    import ollama

    mf = parse_modelfile("FROM smollm2:135m\nSYSTEM Be brief.\nPARAMETER top_k 20\n")
    kwargs = mf.create_kwargs("brief")
    assert kwargs == {"model": "brief", "from_": "smollm2:135m", "system": "Be brief.", "parameters": {"top_k": 20}}
    inspect.signature(ollama.Client.create).bind(None, **kwargs)  # every key is a parameter of Client.create
    from ollama._types import CreateRequest  # the client turns from_ back into Ollama's "from"

    assert CreateRequest(**kwargs).model_dump(exclude_none=True)["from"] == "smollm2:135m"


def test_round_trip_through_to_text():
    mf = parse_modelfile(FULL)
    again = parse_modelfile(mf.to_text())
    assert again == mf


def test_comments_blank_lines_tabs_and_case():
    mf = parse_modelfile("\n  # comment\nfrom\tgemma3:270m\n\n  PaRaMeTeR\ttop_p\t0.5  \n# SYSTEM not this\n")
    assert mf == Modelfile("gemma3:270m", {"top_p": 0.5})
    assert mf.create_request("g") == {"model": "g", "from": "gemma3:270m", "parameters": {"top_p": 0.5}}


def test_from_a_local_gguf_needs_a_blob():
    mf = parse_modelfile("FROM ./models/my-q4.gguf\n")
    assert mf.from_is_file
    with pytest.raises(SlmLabError, match="uploaded as a blob"):
        mf.create_request("mine")
    assert mf.create_request("mine", files={"my-q4.gguf": "sha256:" + "a" * 64})["files"] == {
        "my-q4.gguf": "sha256:" + "a" * 64}


@pytest.mark.parametrize(("text", "line", "words"), [
    ("FROM x\nPARAMETER context_length 4096\n", 2, ["context_length", "num_ctx", "not Ollama syntax"]),
    ("FROM x\n\nFILE ./doc.txt\n", 3, ["FILE is not a Modelfile instruction", "SYSTEM"]),
    ("FROM x\nPARAMETR temperature 1\n", 2, ["PARAMETR", "Did you mean 'PARAMETER'"]),
    ("FROM x\nPARAMETER temprature 0.5\n", 2, ["temprature", "Did you mean 'temperature'"]),
    ("FROM x\nPARAMETER n_gpu_layers 10\n", 2, ["num_gpu"]),
    ("FROM x\nPARAMETER num_ctx big\n", 2, ["num_ctx", "whole number"]),
    ("FROM x\nPARAMETER temperature\n", 2, ["has no value"]),
    ("FROM x\nPARAMETER penalize_newline maybe\n", 2, ["true or false"]),
    ("FROM x\nMESSAGE robot hi\n", 2, ["robot", "system, user, assistant"]),
    ("FROM x\nMESSAGE user\n", 2, ["has no content"]),
    ("FROM x\nSYSTEM \"\"\"never\nclosed\n", 2, ["never closed"]),
    ("FROM x\nSYSTEM \"open\n", 2, ["not closed"]),
    ("FROM x\nFROM y\n", 2, ["second FROM"]),
    ("FROM x\nSYSTEM \"\"\"a\"\"\" trailing\n", 2, ["after the closing"]),
])
def test_errors_name_the_line_and_the_fix(text, line, words):
    with pytest.raises(SlmLabError) as info:
        parse_modelfile(text, source="Modelfile.bad")
    message = str(info.value)
    assert f"Modelfile.bad, line {line}:" in message
    for word in words:
        assert word in message
    assert "What to do:" in message


def test_missing_from_and_non_text():
    with pytest.raises(SlmLabError, match="no FROM instruction"):
        parse_modelfile("SYSTEM hi\n")
    with pytest.raises(SlmLabError, match="must be text"):
        parse_modelfile(b"FROM x")  # type: ignore[arg-type]


def test_check_parameter_converts_types():
    assert check_parameter("TEMPERATURE", "0.7") == 0.7
    assert check_parameter("num_predict", 12.0) == 12
    assert check_parameter("stop", "END") == ["END"]
    assert check_parameter("use_mmap", "True") is True
    for name, value in [("num_ctx", 1.5), ("top_k", True), ("stop", ""), ("temperature", "hot")]:
        with pytest.raises(SlmLabError):
            check_parameter(name, value)


def test_read_modelfile_names_the_file(tmp_path):
    path = tmp_path / "Modelfile"
    path.write_text("FROM smollm2:135m\nPARAMETER context_length 2048\n")
    with pytest.raises(SlmLabError, match=rf"{path}, line 2"):
        read_modelfile(path)
    with pytest.raises(SlmLabError, match="Modelfile .*missing does not exist"):
        read_modelfile(tmp_path / "missing")


@pytest.mark.parametrize(("bom", "newline"), [("\ufeff", "\n"), ("", "\r\n"), ("\ufeff", "\r\n")],
                         ids=["bom", "crlf", "bom+crlf"])
def test_windows_modelfiles_parse_like_the_plain_file(tmp_path, bom, newline):
    """Notepad writes a byte-order mark and CRLF line ends; Ollama's parser reads such a file like any other."""
    text = bom + FULL.replace("\n", newline)
    assert parse_modelfile(text) == parse_modelfile(FULL)
    path = tmp_path / "Modelfile"
    path.write_bytes(text.encode("utf-8"))
    assert read_modelfile(path) == parse_modelfile(FULL)
    system = read_modelfile(path).system
    assert system == "You are a terse assistant.\nAnswer in one line." and "\r" not in system
