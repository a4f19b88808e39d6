"""Microsoft Foundry Local (``foundry-local-sdk``) in this process, offline: its manager, local models, web service.

Foundry Local runs ONNX Runtime GenAI models. Its Python SDK (v2) loads the native runtime in-process; one
``FoundryLocalManager`` per process owns the model cache, the logs, two catalogs and an optional OpenAI-compatible
web service. slmlab keeps it offline and inside ``<cache_dir()>/foundry``:

- ``manager()`` creates that manager with its model cache, logs and app data under ``foundry_dir()``, non-essential
  telemetry off, and its *public* catalog pointed at a URL on 127.0.0.1 instead of Microsoft's online catalog.
  Nothing ever goes online: with no catalog server running there, the public catalog is simply empty.
- ``register_local(folder)`` puts an ONNX Runtime GenAI folder (``slmlab.convert.gguf_to_onnx``) in the LOCAL
  catalog (the SDK's "bring your own model"): nothing is copied; the registration is kept in the cache for the
  next process.
- ``web_service(folder)`` is the air-gapped case: the web service serves only *public-catalog* models, so the
  folder is staged in Foundry's model cache, a catalog listing it is served on 127.0.0.1 (``slmlab.foundry.catalog``
  in a ``ServerProcess``) and the service is started on 127.0.0.1; everything is stopped afterwards.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import cache_dir

APP_NAME = "slmlab"
PIP_FOUNDRY = "pip install -e '.[foundry]'"
TASK = "chat-completion"
_STATE: dict[str, Any] = {}  # the catalog port this process's manager was configured with
_LOADS: dict[str, int] = {}  # model id -> how many slmlab backends hold it loaded


def sdk() -> Any:
    """The foundry_local_sdk module, or a clear error saying how to install it."""
    try:
        import foundry_local_sdk
    except ImportError:
        raise SlmLabError("The foundry backend needs Foundry Local's Python SDK (foundry-local-sdk), which is "
                          "not installed.", f"Run: {PIP_FOUNDRY}") from None
    return foundry_local_sdk


def foundry_dir() -> Path:
    """Where Foundry Local writes for slmlab: <cache_dir()>/foundry (models/, logs/, app/, views/, catalog/)."""
    folder = cache_dir() / "foundry"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def catalog_url() -> str:
    """The public-catalog URL this process's manager uses: on 127.0.0.1, served only inside web_service()."""
    from slmlab.foundry.catalog import CATALOG_PATH
    from slmlab.process import HOST, free_port

    if "catalog_port" not in _STATE:
        _STATE["catalog_port"] = free_port()
    return f"http://{HOST}:{_STATE['catalog_port']}{CATALOG_PATH}"


def manager() -> Any:
    """This process's FoundryLocalManager, created on first use with slmlab's offline configuration.

    A manager created before by other code is used as it is (the SDK allows one per process); then its public
    catalog may be Microsoft's online one, and web_service() refuses to run.
    """
    fl = sdk()
    if fl.FoundryLocalManager.instance is not None:
        return fl.FoundryLocalManager.instance
    root = foundry_dir()
    config = fl.Configuration(
        app_name=APP_NAME, app_data_dir=str(root / "app"), model_cache_dir=str(root / "models"),
        logs_dir=str(root / "logs"), log_level=fl.LogLevel.WARNING, disable_nonessential_telemetry=True,
        catalog_urls=[(catalog_url(), None)])
    try:
        fl.FoundryLocalManager.initialize(config)
    except fl.FoundryLocalException as exc:
        raise SlmLabError(f"Foundry Local could not start: {_native_message(exc)}",
                          f"Its log is in {root / 'logs'}. Check that foundry-local-sdk, onnxruntime and "
                          f"onnxruntime-genai-core are installed together ({PIP_FOUNDRY}).") from None
    _STATE["owner"] = fl.FoundryLocalManager.instance
    return fl.FoundryLocalManager.instance


def _owned(manager_: Any) -> bool:
    """True when slmlab created this manager (with its offline catalog), not other code in this process."""
    return _STATE.get("owner") is manager_


def shutdown() -> None:
    """Close this process's manager (unloads every model, stops the web service). The next use starts a new one."""
    fl = sys.modules.get("foundry_local_sdk")
    if fl is not None and fl.FoundryLocalManager.instance is not None:
        fl.FoundryLocalManager.instance.close()
    _LOADS.clear()
    _STATE.pop("owner", None)


def model_id_for(folder: str | os.PathLike) -> str:
    """A Foundry model id ("name:version") for a model folder: its name, lower-cased, version 1."""
    name = re.sub(r"[^a-z0-9._-]+", "-", Path(folder).name.lower()).strip("-.") or "model"
    return f"{name}:1"


def context_view(folder: str | os.PathLike, context_length: int) -> Path:
    """`folder` with a shorter context: links to its files and a genai_config.json whose max length is smaller.

    ONNX Runtime GenAI sizes the KV cache of a chat session for the whole context (search.max_length), so
    30 layers x 3 KV heads x 64 x 8192 positions x 2 (K, V) x 4 bytes = 377 MB for SmolLM2's 8192 tokens;
    2048 tokens need a quarter of that.
    """
    source = Path(folder)
    config = json.loads((source / "genai_config.json").read_text())
    trained = int(config["model"].get("context_length") or config["search"]["max_length"])
    if not isinstance(context_length, int) or isinstance(context_length, bool) or not 16 <= context_length <= trained:
        raise SlmLabError(f"context_length={context_length!r} does not fit {source.name}.",
                          f"Use a whole number from 16 to {trained} (the context it was trained with).")
    if context_length == trained:
        return source
    view = foundry_dir() / "views" / f"{source.name}-ctx{context_length}"
    view.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != "genai_config.json" and not item.name.startswith("."):
            _link(view / item.name, item)
    config["model"]["context_length"] = context_length
    config["search"]["max_length"] = context_length
    _write_atomic(view / "genai_config.json", json.dumps(config, indent=4) + "\n")
    return view


def local_catalog() -> Any:
    """The manager's LOCAL catalog (models registered from folders on this machine)."""
    fl = sdk()
    return manager().get_catalog(fl.CatalogType.LOCAL)


def find_local(name: str) -> Any | None:
    """A model of the local catalog by id ("name:version") or alias, or None."""
    catalog = local_catalog()
    return catalog.get_model_variant(name) if ":" in name else catalog.get_model(name)


def register_local(folder: str | os.PathLike, model_id: str | None = None, display_name: str | None = None) -> Any:
    """`folder` (an ONNX Runtime GenAI folder) in the LOCAL catalog as `model_id`; reused when already there.

    A registration of the same id for another folder is replaced. Returns the SDK's model (an IModel).
    """
    fl = sdk()
    path = Path(folder).expanduser().resolve()
    if not (path / "genai_config.json").is_file():
        raise SlmLabError(f"{path} is not an ONNX Runtime GenAI folder (no genai_config.json).",
                          "Build one with slmlab.convert.gguf_to_onnx.ort_genai_folder('smollm2-135m-instruct').")
    model_id = model_id or model_id_for(path)
    catalog = local_catalog()
    try:
        existing = catalog.get_model_variant(model_id)
        if existing is not None and Path(existing.get_path()).resolve() == path:
            return existing
        if existing is not None:
            catalog.unregister_model(model_id)
        with fl.ModelInfoBuilder() as metadata:
            metadata.set_string_property("task", TASK)
            metadata.set_string_property("display_name", display_name or path.name)
            return catalog.register_model(model_path=str(path), model_id=model_id, metadata=metadata)
    except fl.FoundryLocalException as exc:
        raced = catalog.get_model_variant(model_id)  # another process registered the same folder meanwhile
        if raced is not None and Path(raced.get_path()).resolve() == path:
            return raced
        raise SlmLabError(f"Foundry Local could not register {path.name} as '{model_id}': {_native_message(exc)}",
                          "The model id must look like 'name:version' (lower case, digits, '-', '.'); the folder "
                          "must hold genai_config.json and the model files.") from None


def load(model: Any) -> None:
    """Load a catalog model into memory (counted, so two backends on one model share it)."""
    fl = sdk()
    if _LOADS.get(model.id, 0) == 0 or not model.is_loaded:
        try:
            model.load()
        except fl.FoundryLocalException as exc:
            raise SlmLabError(f"Foundry Local could not load '{model.id}': {_native_message(exc)}",
                              f"Rebuild the folder {model.get_path()} with slmlab.convert.gguf_to_onnx (force=True); "
                              f"Foundry's log is in {foundry_dir() / 'logs'}.") from None
    _LOADS[model.id] = _LOADS.get(model.id, 0) + 1


def unload(model: Any) -> None:
    """Release one hold on a loaded model; the last one unloads it (nothing to do once its manager is closed)."""
    try:
        model_id = model.id
    except RuntimeError:  # "FoundryLocalManager is closed": closing it unloaded every model
        return
    left = _LOADS.get(model_id, 1) - 1
    _LOADS[model_id] = max(left, 0)
    if left <= 0 and model.is_loaded:
        model.unload()


def stage_in_cache(folder: str | os.PathLike, model_id: str) -> Path:
    """`folder` laid out as a model Foundry downloaded: <models>/slmlab/<name>-<version>/, links + inference_model.json.

    Foundry's public catalog counts a model as cached when its cache holds a folder with genai_config.json and an
    inference_model.json naming the model id; the files themselves are symbolic links, not copies.
    """
    source = Path(folder).resolve()
    target = foundry_dir() / "models" / "slmlab" / model_id.replace(":", "-")  # Foundry's own layout
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if not item.name.startswith(".") and item.name != "inference_model.json":
            _link(target / item.name, item)
    _write_atomic(target / "inference_model.json", json.dumps({"Name": model_id}) + "\n")
    return target


@dataclass
class WebService:
    """Foundry Local's OpenAI-compatible web service, as web_service() started it."""

    url: str  # e.g. http://127.0.0.1:41234
    model_id: str  # the id to put in requests' "model" field
    catalog_url: str  # the local catalog it was given
    startup_s: float  # staging + catalog + load + service start, in seconds

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (…/v1), for openai.OpenAI(base_url=…) or open_backend('openai', base_url=…)."""
        return f"{self.url}/v1"


@contextmanager
def web_service(model: Any = "smollm2-135m-instruct", precision: str = "int8", model_id: str | None = None,
                display_name: str | None = None) -> Iterator[WebService]:
    """Serve a local model through Foundry Local's web service, offline; everything is stopped on exit.

    `model` is an ONNX Runtime GenAI folder or any model reference (converted once, cached). The web service
    resolves models in the public catalog only, so this stages the folder in Foundry's cache, serves a catalog
    listing it on 127.0.0.1 (the air-gapped setup: ``Configuration(catalog_urls=[(url, None)])``), loads it
    and starts the service on 127.0.0.1 with an ephemeral port. The served id is the folder's with "-web"
    (e.g. "smollm2-135m-instruct-ort-int8-web:1"): a FoundryBackend may hold the plain id from the folder itself.
    """
    from slmlab.backends.onnx import model_folder
    from slmlab.foundry.catalog import HEALTH_PATH, catalog_entry
    from slmlab.process import ServerProcess

    start = perf_counter()
    folder = model_folder(model, precision)
    # Its own id: Foundry loads a model id from one path only, and the in-process backend holds the folder's id.
    model_id = model_id or model_id_for(folder).replace(":", "-web:")
    url = catalog_url()
    manager_ = manager()
    if not _owned(manager_):
        raise SlmLabError("Foundry Local's manager in this process was not created by slmlab, so its catalog may "
                          "be Microsoft's online one.", "Call slmlab.foundry.local.shutdown() first, or restart "
                          "the kernel, and let slmlab create it.")
    staged = stage_in_cache(folder, model_id)
    entries = foundry_dir() / "catalog" / f"entries-{os.getpid()}.json"  # this process's catalog
    entries.parent.mkdir(parents=True, exist_ok=True)
    entries.write_text(json.dumps([catalog_entry(model_id, folder, display_name=display_name)], indent=2))
    catalog_server = ServerProcess([sys.executable, "-m", "slmlab.foundry.catalog", "--port", "{port}",
                                    "--entries", str(entries)], port=_STATE["catalog_port"], ready_url=HEALTH_PATH,
                                   name="foundry-catalog", startup_timeout=30, stop_timeout=5)
    with _removed_after(staged, entries), catalog_server:
        served = manager_.catalog.get_model_variant(model_id)
        if served is None:
            raise SlmLabError(f"Foundry Local's catalog at {url} does not list '{model_id}'.",
                              f"Read the catalog server's log ({catalog_server.log_path}) and Foundry's log in "
                              f"{foundry_dir() / 'logs'}.")
        load(served)
        try:
            manager_.start_web_service()
            try:
                yield WebService(manager_.urls[0].rstrip("/"), model_id, url, perf_counter() - start)
            finally:
                manager_.stop_web_service()
        finally:
            unload(served)


def _link(link: Path, target: Path) -> None:
    """Make `link` a symbolic link to `target` (kept if it already is one; safe when two processes race)."""
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.resolve())
    os.replace(tmp, link)


def _write_atomic(path: Path, text: str) -> None:
    """Write a file so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def _removed_after(staged: Path, entries: Path) -> Iterator[None]:
    """Remove a staged model folder (links and inference_model.json only) and a catalog file when the block ends."""
    try:
        yield
    finally:
        entries.unlink(missing_ok=True)
        for item in staged.iterdir():
            item.unlink(missing_ok=True)
        staged.rmdir()


def _native_message(exc: BaseException) -> str:
    """The native error without its C++ source location and signature (the part after the last ') ')."""
    text = str(exc).strip()
    match = re.match(r"^[\w./-]+\.(?:cc|h|cpp):\d+ .*?\) (.+)$", text, flags=re.S)
    return match.group(1) if match else text
