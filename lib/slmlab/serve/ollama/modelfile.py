r"""Ollama Modelfiles: parse one into the JSON body of ``POST /api/create``, with line-numbered errors.

Ollama's Python client has no Modelfile support (since Ollama 0.5.5 ``/api/create`` takes JSON: ``from``,
``system``, ``template``, ``parameters``, ``messages``, ``license``; the ``ollama`` CLI does the parsing).
This module is that parser::

    mf = parse_modelfile("FROM smollm2:135m\nPARAMETER temperature 0.2\nSYSTEM You answer in one sentence.")
    client.create(**mf.create_kwargs("terse"))        # ollama.Client
    create_model(client, "terse", mf)                 # the same, uploading FROM ./file.gguf as a blob first

Instructions (case-insensitive): FROM, PARAMETER, TEMPLATE, SYSTEM, MESSAGE, LICENSE, ADAPTER. A value is
the rest of the line, a ``"quoted"`` string, or a triple-quoted block over several lines.
Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError, did_you_mean
from slmlab.textfiles import normalize_text, read_text

INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "MESSAGE", "LICENSE", "ADAPTER")
MESSAGE_ROLES = ("system", "user", "assistant")

# Every option Ollama accepts as a PARAMETER (its api.Options), by type.
_INT = ("num_ctx", "num_predict", "top_k", "seed", "repeat_last_n", "mirostat", "num_keep", "num_batch",
        "num_gpu", "main_gpu", "num_thread")
_FLOAT = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
          "mirostat_tau", "mirostat_eta", "tfs_z")
_BOOL = ("penalize_newline", "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
         "embedding_only")
PARAMETERS: dict[str, type] = {**{k: int for k in _INT}, **{k: float for k in _FLOAT}, **{k: bool for k in _BOOL},
                               "stop": list}

# Names people write from other tools' habits (and the seed chapter's), with the Ollama name to use.
_WRONG_NAMES = {
    "context_length": "num_ctx", "context_size": "num_ctx", "context_window": "num_ctx", "ctx_size": "num_ctx",
    "n_ctx": "num_ctx", "max_tokens": "num_predict", "max_new_tokens": "num_predict", "n_predict": "num_predict",
    "gpu_layers": "num_gpu", "n_gpu_layers": "num_gpu", "num_gpu_layers": "num_gpu", "temp": "temperature",
    "threads": "num_thread", "n_threads": "num_thread", "num_threads": "num_thread",
    "repetition_penalty": "repeat_penalty", "stop_sequences": "stop", "random_seed": "seed",
}


def _error(source: str, line: int | None, problem: str, hint: str) -> SlmLabError:
    where = f"{source}, line {line}: " if line else f"{source}: "
    return SlmLabError(where + problem, hint)


def check_parameter(name: str, value: Any, *, source: str = "parameters", line: int | None = None) -> Any:
    """A PARAMETER value converted to its type (strings are parsed); unknown names and bad values raise."""
    key = str(name).strip().lower()
    kind = PARAMETERS.get(key)
    if kind is None:
        if key in _WRONG_NAMES:
            right = _WRONG_NAMES[key]
            extra = (" (the seed chapter's 'context_length' is not Ollama syntax)" if key == "context_length" else "")
            raise _error(source, line, f"'{name}' is not an Ollama parameter{extra}.",
                         f"Use PARAMETER {right} …: Ollama calls it {right}.")
        raise _error(source, line, f"'{name}' is not an Ollama parameter.",
                     f"{did_you_mean(key, PARAMETERS, n=1)}Parameters: {', '.join(PARAMETERS)}.")
    try:
        if kind is list:
            items = value if isinstance(value, list | tuple) else [value]
            if not all(isinstance(s, str) and s for s in items):
                raise ValueError
            return list(items)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        if isinstance(value, bool):
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        return float(value)
    except (TypeError, ValueError):
        expected = {int: "a whole number", float: "a number", bool: "true or false", list: "a non-empty string"}[kind]
        raise _error(source, line, f"PARAMETER {key} {value!r} is not valid: it must be {expected}.",
                     f"Example: PARAMETER {key} {_EXAMPLES.get(key, {int: 1, float: 0.5, bool: 'true'}.get(kind))}."
                     ) from None


_EXAMPLES = {"num_ctx": 4096, "num_predict": 128, "top_k": 40, "seed": 42, "temperature": 0.7, "top_p": 0.9,
             "stop": '"<|im_end|>"', "repeat_penalty": 1.1}


@dataclass
class Modelfile:
    """A parsed Modelfile: what ``/api/create`` needs, in Ollama's field names."""

    from_: str
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)

    @property
    def from_is_file(self) -> bool:
        """True when FROM names a local GGUF file (it must be uploaded as a blob), not a model name."""
        return _looks_like_path(self.from_)

    def create_request(self, model: str, *, files: Mapping[str, str] | None = None,
                       adapters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The JSON body of POST /api/create (``files``/``adapters``: file name -> blob digest, for local files)."""
        body: dict[str, Any] = {"model": model}
        if self.from_is_file:
            if not files:
                raise SlmLabError(f"FROM {self.from_} is a local file: /api/create needs it uploaded as a blob.",
                                  "Use create_model(client, name, modelfile), which uploads it "
                                  "(client.create_blob) and passes files={name: digest}.")
            body["files"] = dict(files)
        else:
            body["from"] = self.from_
        if self.adapters:
            if not adapters:
                raise SlmLabError("ADAPTER files must be uploaded as blobs first.",
                                  "Use create_model(client, name, modelfile), which uploads them.")
            body["adapters"] = dict(adapters)
        if self.template is not None:
            body["template"] = self.template
        if self.system is not None:
            body["system"] = self.system
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        if self.messages:
            body["messages"] = [dict(m) for m in self.messages]
        if self.license:
            body["license"] = self.license[0] if len(self.license) == 1 else list(self.license)
        return body

    def create_kwargs(self, model: str, **blobs: Mapping[str, str]) -> dict[str, Any]:
        """Keyword arguments for ``ollama.Client.create`` (which spells ``from`` as ``from_``)."""
        body = self.create_request(model, **blobs)
        if "from" in body:
            body["from_"] = body.pop("from")
        return body

    def to_text(self) -> str:
        """The Modelfile written back out (canonical form: upper-case instructions, blocks in triple quotes)."""
        lines = [f"FROM {self.from_}"]
        lines += [f"ADAPTER {a}" for a in self.adapters]
        if self.template is not None:
            lines.append(f'TEMPLATE {_quote(self.template)}')
        if self.system is not None:
            lines.append(f'SYSTEM {_quote(self.system)}')
        for key, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                text = (json.dumps(item) if isinstance(item, str) else str(item).lower() if isinstance(item, bool)
                        else item)
                lines.append(f"PARAMETER {key} {text}")
        lines += [f"MESSAGE {m['role']} {_quote(m['content'])}" for m in self.messages]
        lines += [f"LICENSE {_quote(text)}" for text in self.license]
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return f'"""{text}"""' if ("\n" in text or '"' in text or text != text.strip()) else text


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or ref.lower().endswith((".gguf", ".bin", ".safetensors"))


def _read_value(lines: list[str], index: int, rest: str, source: str) -> tuple[str, int]:
    """The value starting at `rest` on line `index` (0-based): a triple-quoted block, a quoted string or the
    rest of the line. Returns it and the index of the line it ended on."""
    if rest.startswith('"""'):
        body = rest[3:]
        end = body.find('"""')
        if end >= 0:
            tail = body[end + 3:].strip()
            if tail:
                raise _error(source, index + 1, f'unexpected text after the closing """: {tail!r}.',
                             'End the line at the closing """.')
            return body[:end], index
        parts, start = [body], index
        while True:
            index += 1
            if index >= len(lines):
                raise _error(source, start + 1, 'this """ block is never closed.', 'Close it with """.')
            end = lines[index].find('"""')
            if end >= 0:
                parts.append(lines[index][:end])
                tail = lines[index][end + 3:].strip()
                if tail:
                    raise _error(source, index + 1, f'unexpected text after the closing """: {tail!r}.',
                                 'End the line at the closing """.')
                return "\n".join(parts), index
            parts.append(lines[index])
    if rest.startswith('"'):
        try:
            value, end = json.JSONDecoder().raw_decode(rest)
        except json.JSONDecodeError:
            raise _error(source, index + 1, f"the quoted value {rest!r} is not closed.",
                         'Close it with ", or use """…""" for text over several lines.') from None
        if rest[end:].strip():
            raise _error(source, index + 1, f"unexpected text after the quoted value: {rest[end:].strip()!r}.",
                         "Put the whole value inside the quotes.")
        return value, index
    return rest.strip(), index


def parse_modelfile(text: str, source: str = "Modelfile") -> Modelfile:
    """Parse Modelfile text; `source` names it in errors (e.g. the file's path)."""
    if not isinstance(text, str):
        raise SlmLabError(f"A Modelfile must be text, not {type(text).__name__}.", "Pass the file's contents as a str.")
    lines = normalize_text(text).split("\n")  # as Ollama's parser: a byte-order mark skipped, CRLF read as LF
    found: dict[str, Any] = {"from": None, "parameters": {}, "template": None, "system": None, "messages": [],
                             "license": [], "adapters": []}
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        number = index + 1
        if not line or line.startswith("#"):
            index += 1
            continue
        word, rest = (line.split(None, 1) + [""])[:2]
        rest = rest.strip()
        command = word.upper()
        if command not in INSTRUCTIONS:
            if command == "FILE":
                raise _error(source, number, "FILE is not a Modelfile instruction (the seed chapter's "
                             "'FILE ./doc.txt' is not Ollama syntax).",
                             "A Modelfile cannot attach documents: put short text in SYSTEM or a MESSAGE, or "
                             "retrieve passages at request time (embeddings + similarity search). "
                             f"Instructions: {', '.join(INSTRUCTIONS)}.")
            raise _error(source, number, f"'{word}' is not a Modelfile instruction.",
                         f"{did_you_mean(word, INSTRUCTIONS, n=1)}"
                         f"Instructions: {', '.join(INSTRUCTIONS)}.")
        if not rest:
            raise _error(source, number, f"{command} needs a value.", _USAGE[command])
        if command == "PARAMETER":
            name, raw = (rest.split(None, 1) + [""])[:2]
            raw = raw.strip()
            if not raw:
                raise _error(source, number, f"PARAMETER {name} has no value.", _USAGE[command])
            value, index = _read_value(lines, index, raw, source)
            checked = check_parameter(name, value, source=source, line=number)
            key = name.strip().lower()
            if key == "stop":
                found["parameters"].setdefault("stop", []).extend(checked)
            else:
                found["parameters"][key] = checked
        elif command == "MESSAGE":
            role, raw = (rest.split(None, 1) + [""])[:2]
            if role.lower() not in MESSAGE_ROLES:
                raise _error(source, number, f"MESSAGE role '{role}' is not one of {', '.join(MESSAGE_ROLES)}.",
                             _USAGE[command])
            if not raw.strip():
                raise _error(source, number, f"MESSAGE {role} has no content.", _USAGE[command])
            value, index = _read_value(lines, index, raw.strip(), source)
            found["messages"].append({"role": role.lower(), "content": value})
        else:
            value, index = _read_value(lines, index, rest, source)
            if command == "FROM":
                if found["from"] is not None:
                    raise _error(source, number, "a second FROM.", "A Modelfile has exactly one FROM.")
                found["from"] = value
            elif command in ("TEMPLATE", "SYSTEM"):
                found[command.lower()] = value
            elif command == "LICENSE":
                found["license"].append(value)
            else:  # ADAPTER
                found["adapters"].append(value)
        index += 1
    if not found["from"]:
        raise _error(source, None, "no FROM instruction.",
                     "Start the Modelfile with FROM <model> (e.g. FROM smollm2:135m) or FROM ./model.gguf.")
    return Modelfile(found["from"], found["parameters"], found["template"], found["system"], found["messages"],
                     found["license"], found["adapters"])


_USAGE = {
    "FROM": "Write FROM <model name> (e.g. FROM smollm2:135m) or FROM ./path/to/model.gguf.",
    "PARAMETER": "Write PARAMETER <name> <value>, e.g. PARAMETER temperature 0.7 or PARAMETER num_ctx 4096.",
    "TEMPLATE": 'Write TEMPLATE """{{ .System }} … {{ .Prompt }}""" (a Go template).',
    "SYSTEM": 'Write SYSTEM """You are …""".',
    "MESSAGE": 'Write MESSAGE <system|user|assistant> "text", e.g. MESSAGE user "Is Paris in France?".',
    "LICENSE": 'Write LICENSE """<licence text>""".',
    "ADAPTER": "Write ADAPTER ./path/to/adapter.gguf (a LoRA adapter for the FROM model).",
}


def read_modelfile(path: str | os.PathLike) -> Modelfile:
    """Parse a Modelfile on disk (errors name the file and line)."""
    return parse_modelfile(read_text(path, what="Modelfile"), source=os.fspath(path))


def create_model(client: Any, model: str, modelfile: Modelfile | str, base_dir: str | os.PathLike = ".",
                 stream: bool = False) -> Any:
    """``ollama create MODEL -f Modelfile`` through an ``ollama.Client``: parse, upload local files as blobs,
    then POST /api/create. Returns the client's answer (a ProgressResponse, or an iterator when streaming)."""
    mf = modelfile if isinstance(modelfile, Modelfile) else parse_modelfile(modelfile)
    blobs: dict[str, dict[str, str]] = {}

    def upload(ref: str) -> dict[str, str]:
        path = Path(os.path.expanduser(ref))
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise SlmLabError(f"The Modelfile refers to {ref}, but {path} does not exist.",
                              "Fix the path (relative paths are taken from base_dir) or use a model name.")
        return {path.name: client.create_blob(path)}

    if mf.from_is_file:
        blobs["files"] = upload(mf.from_)
    if mf.adapters:
        blobs["adapters"] = {k: v for ref in mf.adapters for k, v in upload(ref).items()}
    return client.create(**mf.create_kwargs(model, **blobs), stream=stream)
