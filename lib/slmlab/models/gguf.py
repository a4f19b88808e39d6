"""Read a GGUF file's header with the `gguf` package, and reject files that are not whole GGUFs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from slmlab.errors import SlmLabError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    """What a learner (and the footprint calculator) wants to know about a GGUF file."""

    path: Path
    size_bytes: int
    architecture: str
    name: str
    file_type: str  # e.g. "Q4_1", "Q4_K_M" (llama.cpp's LLAMA_FTYPE, "unknown" if absent)
    context_length: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    vocab_size: int
    chat_template: str | None
    tensor_count: int
    parameter_count: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # quant type -> tensor count
    license: str | None = None  # general.license, as the converter wrote it
    metadata: dict[str, object] = field(default_factory=dict)  # every key; long arrays summarized
    tensors: tuple[tuple[str, str, tuple[int, ...]], ...] = ()  # (name, GGML type, shape) per tensor

    @property
    def bits_per_weight(self) -> float:
        """Average bits per parameter over the whole file (header included)."""
        return self.size_bytes * 8 / max(self.parameter_count, 1)

    def summary(self) -> dict[str, object]:
        """The fields as a flat dict, for a table."""
        return {
            "file": self.path.name,
            "size_mb": round(self.size_bytes / 1e6, 1),
            "architecture": self.architecture,
            "file_type": self.file_type,
            "parameters": self.parameter_count,
            "bits_per_weight": round(self.bits_per_weight, 2),
            "context_length": self.context_length,
            "layers": self.block_count,
            "hidden": self.embedding_length,
            "heads": self.head_count,
            "kv_heads": self.head_count_kv,
            "vocab": self.vocab_size,
            "tensors": self.tensor_count,
            "tensor_types": ", ".join(f"{k}×{v}" for k, v in self.tensor_types.items()),
            "chat_template": "yes" if self.chat_template else "no (base model: use plain completion)",
            "license": self.license or "not stated",
        }

    def metadata_rows(self, skip_prefixes: tuple[str, ...] = (), width: int = 70) -> list[dict[str, object]]:
        """One row per metadata key (key, type, value shortened to `width` characters), for a table."""
        rows: list[dict[str, object]] = []
        for key, value in self.metadata.items():
            if key.startswith(skip_prefixes):
                continue
            text = value if isinstance(value, str) else repr(value)
            text = text.replace("\n", "\\n")
            summarized = isinstance(value, str) and value.startswith("<array of ")
            rows.append({"key": key, "type": "array" if summarized else type(value).__name__,
                         "value": text if len(text) <= width else text[: width - 1] + "…"})
        return rows

    def tensor_rows(self) -> list[dict[str, object]]:
        """One row per tensor: name, GGML type, shape and parameters, for a table."""
        return [{"name": n, "type": t, "shape": "×".join(map(str, shape)), "parameters": _prod(shape)}
                for n, t, shape in self.tensors]


def _prod(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


MAX_ARRAY = 16  # arrays longer than this (the vocabulary, merges, scores) are summarized in GGUFInfo.metadata


def _metadata_value(fld) -> object:
    """A field's value; long arrays become "<array of N type>" so the dict stays small."""
    from gguf import GGUFValueType

    if fld.types and fld.types[0] == GGUFValueType.ARRAY and len(fld.data) > MAX_ARRAY:
        inner = fld.types[-1].name.lower() if len(fld.types) > 1 else "value"
        return f"<array of {len(fld.data)} {inner}>"
    return fld.contents()


def _bad_file(path: Path, problem: str) -> SlmLabError:
    return SlmLabError(
        f"{path} is not a usable GGUF file: {problem}.",
        "Delete the file and fetch it again (slmlab.models.resolver.resolve(...) re-downloads or "
        "re-assembles it); if you converted it yourself, re-run the conversion.",
    )


def check_gguf_file(path: str | Path) -> Path:
    """Raise a clear error unless `path` exists and starts with the GGUF magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise SlmLabError(
            f"Model file not found: {path}",
            "Check the path, or resolve a bundled model by name: "
            "slmlab.models.resolver.resolve('smollm2-135m-instruct').",
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise _bad_file(path, f"it starts with {magic!r}, not {GGUF_MAGIC!r} (size {path.stat().st_size} bytes)")
    return path


# GGUF value types: 0-7 fixed-size scalars (u8 i8 u16 i16 u32 i32 f32 bool), 8 string, 9 array, 10-12 u64 i64 f64.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_file_type(path: str | Path) -> str:
    """The file type (e.g. "Q4_1") from a GGUF header, reading only the metadata before ``general.file_type``.

    ``inspect_gguf`` parses the whole file (seconds for a large vocabulary); this stops at the key, which
    converters write among the first ``general.*`` keys. "unknown" when the file has none.
    """
    import struct

    from gguf import LlamaFileType

    with check_gguf_file(path).open("rb") as f:
        def number(fmt: str) -> int:
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def skip(kind: int) -> None:
            if kind == 8:
                f.seek(number("Q"), 1)
            elif kind == 9:
                item, count = number("I"), number("Q")
                if item in _SCALAR_SIZES:
                    f.seek(_SCALAR_SIZES[item] * count, 1)
                else:
                    for _ in range(count):
                        skip(item)
            elif kind in _SCALAR_SIZES:
                f.seek(_SCALAR_SIZES[kind], 1)
            else:
                raise _bad_file(Path(path), f"its metadata has a value of unknown type {kind}")

        f.seek(8)  # magic and version
        number("Q")  # tensor count
        for _ in range(number("Q")):  # metadata entries
            key = f.read(number("Q")).decode("utf-8", errors="replace")
            kind = number("I")
            if key == "general.file_type" and kind in (4, 5):
                value = number("I" if kind == 4 else "i")
                try:
                    return LlamaFileType(value).name.removeprefix("MOSTLY_")
                except ValueError:
                    return f"unknown ({value})"
            skip(kind)
    return "unknown"


def _field(reader, key: str, default=None):
    fld = reader.fields.get(key)
    if fld is None:
        return default
    return fld.contents()


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read the metadata and tensor table of a GGUF file; clear errors for bad or truncated files."""
    path = check_gguf_file(path).resolve()
    stat = path.stat()
    return _inspect(path, stat.st_size, stat.st_mtime)


@lru_cache(maxsize=16)
def _inspect(path: Path, size: int, mtime: float) -> GGUFInfo:
    """Parse once per file version: the reader walks every token string, seconds for a big vocabulary."""
    from gguf import GGUFReader, LlamaFileType
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001  (the gguf reader raises ValueError/IndexError/... on damaged headers)
        raise _bad_file(path, f"it is truncated or damaged ({size} bytes; the gguf reader says "
                              f"{type(exc).__name__}: {exc})") from None
    end_of_data = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end_of_data > size:
        raise _bad_file(path, f"it is truncated: tensors need {end_of_data} bytes but the file has {size}")

    arch = str(_field(reader, "general.architecture", "unknown"))
    ftype_value = _field(reader, "general.file_type")
    try:
        file_type = "unknown" if ftype_value is None else LlamaFileType(int(ftype_value)).name.removeprefix("MOSTLY_")
    except ValueError:
        file_type = f"unknown ({ftype_value})"
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = int(_field(reader, f"{arch}.vocab_size", 0) or (len(tokens.data) if tokens else 0))
    return GGUFInfo(
        path=path,
        size_bytes=size,
        architecture=arch,
        name=str(_field(reader, "general.name", path.stem)),
        file_type=file_type,
        context_length=int(_field(reader, f"{arch}.context_length", 0)),
        block_count=int(_field(reader, f"{arch}.block_count", 0)),
        embedding_length=int(_field(reader, f"{arch}.embedding_length", 0)),
        head_count=int(_field(reader, f"{arch}.attention.head_count", 0)),
        head_count_kv=int(_field(reader, f"{arch}.attention.head_count_kv", 0)
                          or _field(reader, f"{arch}.attention.head_count", 0)),
        vocab_size=vocab,
        chat_template=_field(reader, "tokenizer.chat_template"),
        tensor_count=len(reader.tensors),
        parameter_count=int(sum(int(t.n_elements) for t in reader.tensors)),
        tensor_types=dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
        license=_field(reader, "general.license"),
        metadata={key: _metadata_value(fld) for key, fld in reader.fields.items()},
        tensors=tuple((t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape))) for t in reader.tensors),
    )
