"""`slmlab deploy build DIR`: build the images of a rendered bundle (the engine and the gateway) with the
container CLI, online or offline, from the Dockerfiles the learner reads.

Online, the Dockerfiles' build arguments keep their defaults: the upstream images (``python:3.11-slim``,
``ghcr.io/ggml-org/llama.cpp:server-…``) and the weights from the Hugging Face hub. Offline (no registry or
no hub reachable) the same files are built with other values for those arguments only: the course's local base
image, a llama-server image made from the course's own build of the pinned llama.cpp, and the weights from the
build context (the bundled GGUF, the cached ONNX folder). `effective_dockerfile` shows what that amounts to.
"""

from __future__ import annotations

import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slmlab.containers.build import BuildRequest, BuiltImage, build_image
from slmlab.containers.runtime import Runtime
from slmlab.deploy import build_context, local_images
from slmlab.deploy.docker import LICENCE_DIR
from slmlab.deploy.render import bundle_plan
from slmlab.deploy.spec import Plan
from slmlab.errors import SlmLabError

COMPONENTS = ("engine", "gateway")
HUB_HOST = "huggingface.co"
OFFLINE_ENGINES = ("llamacpp-server", "ort-service")  # engines with a local stand-in for their upstream image
_ARG = re.compile(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$")


@dataclass(frozen=True)
class ImageBuild:
    """One image of the bundle: its Dockerfile, tag, build arguments and build context."""

    component: str  # "engine" | "gateway"
    tag: str  # the image the manifests name (plan.image_ref), so `kube play` finds it in the local store
    dockerfile: Path
    build_args: dict[str, str] = field(default_factory=dict)  # empty: the Dockerfile's defaults (online)
    context: dict[str, Path] = field(default_factory=dict)  # relative path in the context -> file/folder here
    source: str = ""  # in words: where the bases and the weights come from


@dataclass(frozen=True)
class BundleBuild:
    """What `build_bundle` built, in order."""

    offline: bool
    reason: str  # why online or offline
    images: list[tuple[ImageBuild, BuiltImage]]

    def lines(self) -> list[str]:
        """One line per image: tag, size, time, sources."""
        return [f"{job.component:<8} {built.tag}  {built.size_mb:7.1f} MB  {built.seconds:6.1f} s  ({job.source})"
                for job, built in self.images]

    def require_within(self, budgets_mb: dict[str, float], runtime: Runtime | None = None) -> None:
        """A SlmLabError naming each image over its size budget (MB, by component) and its largest layers."""
        over = [(job, built) for job, built in self.images
                if job.component in budgets_mb and built.size_mb > budgets_mb[job.component]]
        if not over:
            return
        lines = []
        for job, built in over:
            lines.append(f"{built.tag} is {built.size_mb:.1f} MB, over its budget of "
                         f"{budgets_mb[job.component]:g} MB")
            if runtime is not None:
                lines += [f"    {layer}" for layer in largest_layers(runtime, built.tag)]
        raise SlmLabError("\n".join(lines), "The largest layers are listed under each image: leave out what the "
                          "server does not need at run time (build tools, caches, a second copy of the weights), "
                          "or raise the budget if the weights themselves grew.")


def largest_layers(runtime: Runtime, image: str, n: int = 3) -> list[str]:
    """The image's `n` largest layers: "91.2 MB  COPY …" (from `history`)."""
    done = runtime.run(["history", "--format", "{{.Size}}\t{{.CreatedBy}}", image], check=False, timeout=60)
    rows = [line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line]

    def size(text: str) -> float:
        value, _, unit = text.strip().replace("B", " B").partition(" ")
        factor = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}.get(unit.strip()[:1], 1)
        try:
            return float(value) * factor
        except ValueError:
            return 0.0

    rows.sort(key=lambda row: size(row[0]), reverse=True)
    return [f"{row[0].strip():>9}  {' '.join(row[1].split())[:100]}" for row in rows[:n]]


def declared_args(text: str) -> dict[str, str | None]:
    """The ARG lines of a Dockerfile: name -> default (None when it has none)."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        match = _ARG.match(line.strip())
        if match:
            found[match[1]] = match[2]
    return found


def effective_dockerfile(text: str, build_args: dict[str, str]) -> str:
    """The Dockerfile as a build with these arguments sees it: each ARG's default replaced, nothing else.
    An argument the file does not declare is an error (a builder would only warn, and build something else)."""
    unknown = sorted(set(build_args) - set(declared_args(text)))
    if unknown:
        raise SlmLabError(f"The Dockerfile declares no ARG {', '.join(unknown)}.",
                          f"It declares: {', '.join(declared_args(text)) or 'none'}. Render the bundle again.")
    out = []
    for line in text.splitlines(keepends=True):
        match = _ARG.match(line.strip())
        if match and match[1] in build_args:
            line = f"ARG {match[1]}={build_args[match[1]]}\n"
        out.append(line)
    return "".join(out)


def registry_host(image: str) -> str:
    """Where an image reference is pulled from (Docker Hub for names without a registry)."""
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first) else "registry-1.docker.io"


def unreachable(hosts: Sequence[str], timeout: float = 5) -> list[str]:
    """The hosts that do not answer HTTPS (any HTTP status counts as an answer: registries say 401)."""
    down = []
    for host in dict.fromkeys(hosts):
        try:
            urllib.request.urlopen(f"https://{host}/v2/", timeout=timeout).close()
        except urllib.error.HTTPError:
            continue
        except (urllib.error.URLError, OSError, ValueError):
            down.append(host)
    return down


def online_hosts(plan: Plan) -> list[str]:
    """The registries and the hub an online build of this plan needs."""
    from slmlab.deploy.images import PYTHON_IMAGE

    return [registry_host(PYTHON_IMAGE), registry_host(plan.image), HUB_HOST]


def choose_mode(plan: Plan, offline: bool | None) -> tuple[bool, str]:
    """(offline?, why): as asked, else offline when a registry or the hub does not answer."""
    if offline is not None:
        return offline, "asked for"
    down = unreachable(online_hosts(plan))
    return (True, f"{', '.join(down)} not reachable") if down else (False, "registries and hub reachable")


def image_builds(plan: Plan, folder: Path, offline: bool, weights: Path | None = None) -> list[ImageBuild]:
    """The engine's and the gateway's builds; offline, their stand-in images and weights."""
    docker = folder / "docker"
    source = build_context.source_files()
    gateway = ImageBuild("gateway", plan.image_ref("gateway"), docker / "gateway.Dockerfile", context=source,
                         source="upstream python image")
    # the ONNX service builds the app from the source tree (and writes its licence files itself); the others copy
    # the weights' licence files from the rendered folder
    engine_context = {**source} if plan.engine.key == "ort-service" else {LICENCE_DIR: folder / LICENCE_DIR}
    engine = ImageBuild("engine", plan.image_ref("engine"), docker / "engine.Dockerfile", context=engine_context,
                        source=f"upstream {plan.image}, weights from the hub")
    if not offline:
        return [engine, gateway]
    base = local_images.local_python_image()
    gateway = ImageBuild("gateway", gateway.tag, gateway.dockerfile, {"PYTHON_IMAGE": base}, source,
                         f"local {base}")
    return [_offline_engine(plan, engine, base, weights), gateway]


def _offline_engine(plan: Plan, engine: ImageBuild, base: str, weights: Path | None) -> ImageBuild:
    """The engine's offline build: local images, weights from the build context."""
    if plan.engine.key not in OFFLINE_ENGINES or plan.gpu:
        raise SlmLabError(f"{plan.engine.label}{' (GPU)' if plan.gpu else ''} has no local stand-in for its image "
                          f"{plan.image}, so it cannot be built without a registry.",
                          f"Build it where the registry answers, or deploy engine {' or '.join(OFFLINE_ENGINES)} "
                          "on CPU (gpus: 0).")
    args = {"PYTHON_IMAGE": base, "WEIGHTS": "context"}
    if plan.engine.key == "llamacpp-server":
        path = local_images.offline_gguf(plan, weights)
        args["SERVER_IMAGE"] = local_images.local_server_image()
        return ImageBuild("engine", engine.tag, engine.dockerfile, args, {**engine.context, "models/model.gguf": path},
                          f"local {args['SERVER_IMAGE']}, weights {path.name}")
    path = local_images.offline_onnx(plan, weights)
    return ImageBuild("engine", engine.tag, engine.dockerfile, args, {**engine.context, "models/model": path},
                      f"local {base}, weights {path}")


def build_bundle(folder: str | Path, runtime: Runtime, offline: bool | None = None, weights: Path | None = None,
                 components: Sequence[str] = COMPONENTS, show_progress: bool = True,
                 echo: Callable[[str], None] = print) -> BundleBuild:
    """Build the bundle's images (the engine first); offline=None decides by asking the registries and the hub."""
    root = Path(folder)
    plan = bundle_plan(root)
    wrong = sorted(set(components) - set(COMPONENTS))
    if wrong:
        raise SlmLabError(f"Unknown image {', '.join(wrong)}.", f"Build {' and/or '.join(COMPONENTS)}.")
    offline, reason = choose_mode(plan, offline)
    echo(f"building {'offline' if offline else 'online'} ({reason}) with {runtime.name}")
    jobs = [job for job in image_builds(plan, root, offline, weights) if job.component in components]
    if offline and any(job.build_args.get("SERVER_IMAGE") for job in jobs):
        local_images.ensure_local_server_image(runtime, show_progress=show_progress, echo=echo)
    done = []
    for job in jobs:
        effective_dockerfile(job.dockerfile.read_text(encoding="utf-8"), job.build_args)  # every arg declared
        with tempfile.TemporaryDirectory(prefix=f"slmlab-{job.component}-context-") as scratch:
            context = build_context.stage(job.context, Path(scratch))
            built = build_image(runtime, BuildRequest(job.tag, job.dockerfile, context, job.build_args),
                                show_progress=show_progress)
        echo(f"built {built.tag}: {built.size_mb:.1f} MB in {built.seconds:.1f} s ({job.source})")
        done.append((job, built))
    return BundleBuild(offline, reason, done)
