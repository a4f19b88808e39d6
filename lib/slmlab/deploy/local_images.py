"""The local stand-ins for the upstream images a bundle's Dockerfiles start from, for builds with no registry:
the course's Debian base (for ``python:3.11-slim``) and a llama-server image made from the course's own build of
the same pinned llama.cpp (for ``ghcr.io/ggml-org/llama.cpp:server-…``). The Dockerfiles are the same; only
their build arguments change (`slmlab.deploy.build`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from slmlab.containers.base_image import base_image_ref
from slmlab.containers.build import BuildRequest, build_image
from slmlab.containers.runtime import Runtime
from slmlab.deploy.build_context import stage
from slmlab.deploy.images import LLAMACPP_BUILD
from slmlab.deploy.spec import Plan
from slmlab.errors import SlmLabError

LOCAL_SERVER_REPOSITORY = "localhost/slmlab-llama-server"
LOCAL_DOCKERFILE = Path(__file__).with_name("templates") / "local" / "llama-server.Dockerfile"
LOCAL_PROMETHEUS_REPOSITORY = "localhost/slmlab-prometheus"
PROMETHEUS_DOCKERFILE = LOCAL_DOCKERFILE.with_name("prometheus.Dockerfile")
DEBIAN_PROMETHEUS = {"prometheus": Path("/usr/bin/prometheus"),
                     "copyright": Path("/usr/share/doc/prometheus/copyright")}


def local_python_image() -> str:
    """The course's base image (Debian 12, Python 3.11), made by `slmlab setup containers`."""
    return base_image_ref()


def local_server_image() -> str:
    """llama-server from the pinned llama.cpp build, on the course's base image."""
    return f"{LOCAL_SERVER_REPOSITORY}:{LLAMACPP_BUILD}"


def _gguf_type(path: Path) -> str:
    from slmlab.models.gguf import inspect_gguf

    return inspect_gguf(path).file_type.upper()


def offline_gguf(plan: Plan, weights: Path | None = None) -> Path:
    """The GGUF an offline engine build puts in its context: `weights`, else the model's bundled file; its
    quantization must be the one the bundle was rendered (and sized) for."""
    from slmlab.models.resolver import BUNDLED, resolve

    wanted = plan.spec.quantization.upper()
    if weights is None:
        if plan.model.key not in BUNDLED:
            raise SlmLabError(f"{plan.model.key} has no bundled GGUF to build from offline.",
                              f"Pass --weights FILE (a {wanted} GGUF of {plan.model.key}).")
        weights = resolve(plan.model.key).path
    if not Path(weights).is_file() or Path(weights).suffix.lower() != ".gguf":
        raise SlmLabError(f"--weights {weights} is not a GGUF file.", "Pass the path of a .gguf file.")
    found = _gguf_type(Path(weights))
    if found != wanted:
        raise SlmLabError(f"{Path(weights).name} is {found}, but the bundle was rendered and sized for {wanted}.",
                          f"Render with quantization: {found}, or pass --weights FILE with a {wanted} GGUF "
                          f"(e.g. from `slmlab quantize {plan.model.key} {wanted}`).")
    return Path(weights)


def offline_onnx(plan: Plan, weights: Path | None = None) -> Path:
    """The ONNX Runtime GenAI folder an offline ORT service build puts in its context: `weights`, else the one
    `slmlab setup onnx` cached for the bundle's precision."""
    variant = plan.spec.quantization.lower()
    if weights is None:
        from slmlab.convert.onnx_quantize import expected_folder

        weights = expected_folder(variant, plan.model.key)
        hint = f"Run: slmlab setup onnx {variant}  (it builds the folder into the cache)"
    else:
        hint = "Pass the folder written by the GenAI model builder (it holds genai_config.json)."
    if not (Path(weights) / "genai_config.json").is_file():
        raise SlmLabError(f"{weights} is not an ONNX Runtime GenAI folder (no genai_config.json).", hint)
    return Path(weights)


def ensure_local_server_image(runtime: Runtime, show_progress: bool = True,
                              echo: Callable[[str], None] = print) -> str:
    """The local llama-server image: reused from the store, else built from the course's llama.cpp build."""
    ref = local_server_image()
    if runtime.image_exists(ref):
        return ref
    # setup/ is below deploy/ in the rooms' order; this one lazy import reads the course's llama.cpp build
    from slmlab.setup.llamacpp import llamacpp_program, read_marker

    program = llamacpp_program("llama-server")  # a clear error naming `slmlab setup llamacpp` when not built
    marker = read_marker(program.parent.parent) or {}
    build = marker.get("llama_cpp_build")
    if build and f"b{build}" != LLAMACPP_BUILD:
        echo(f"note: the course's llama.cpp is build b{build}, the upstream image pin is {LLAMACPP_BUILD}")
    files = {"llama-server": program, "Dockerfile": LOCAL_DOCKERFILE}
    if (program.parent.parent / "LICENSE").is_file():
        files["LICENSE"] = program.parent.parent / "LICENSE"
    with tempfile.TemporaryDirectory(prefix="slmlab-llama-server-") as scratch:
        context = stage(files, Path(scratch))
        if "LICENSE" not in files:
            (context / "LICENSE").write_text("llama.cpp: MIT License, https://github.com/ggml-org/llama.cpp\n")
        built = build_image(runtime, BuildRequest(ref, context / "Dockerfile", context,
                                                  {"BASE_IMAGE": local_python_image()}), show_progress=show_progress)
    echo(f"built {ref} from {program} (llama.cpp {marker.get('llama_cpp_commit') or '?'}): {built.size_mb:.1f} MB")
    return ref


def local_prometheus_image(version: str) -> str:
    """The stand-in for prom/prometheus made from this machine's Debian Prometheus `version`."""
    return f"{LOCAL_PROMETHEUS_REPOSITORY}:{version}"


def debian_prometheus_version() -> str:
    """The version of the Debian package's /usr/bin/prometheus ("2.42.0"); a SlmLabError when it is missing."""
    import re
    import subprocess

    missing = [str(path) for path in DEBIAN_PROMETHEUS.values() if not path.exists()]
    if missing:
        raise SlmLabError(f"Debian's Prometheus package is not installed ({', '.join(missing)} missing), so there "
                          "is no local stand-in for the compose file's Prometheus image.",
                          "apt-get install prometheus, or set PROMETHEUS_IMAGE to an image a registry serves.")
    done = subprocess.run([str(DEBIAN_PROMETHEUS["prometheus"]), "--version"], capture_output=True, text=True,
                          timeout=30)
    match = re.search(r"version (\d+\.\d+\.\d+)", done.stdout + done.stderr)
    return match[1] if match else "unknown"


def ensure_local_prometheus_image(runtime: Runtime, show_progress: bool = True,
                                  echo: Callable[[str], None] = print) -> str:
    """The local Prometheus image: reused from the store, else built from the Debian package's files."""
    ref = local_prometheus_image(debian_prometheus_version())
    if runtime.image_exists(ref):
        return ref
    with tempfile.TemporaryDirectory(prefix="slmlab-prometheus-") as scratch:
        context = stage({**DEBIAN_PROMETHEUS, "Dockerfile": PROMETHEUS_DOCKERFILE}, Path(scratch))
        built = build_image(runtime, BuildRequest(ref, context / "Dockerfile", context,
                                                  {"BASE_IMAGE": local_python_image()}), show_progress=show_progress)
    echo(f"built {ref} from {DEBIAN_PROMETHEUS['prometheus']}: {built.size_mb:.1f} MB")
    return ref
