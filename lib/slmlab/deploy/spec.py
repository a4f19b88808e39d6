"""One deployment spec, checked before anything is rendered.

    spec = DeploymentSpec(name="chat", engine="llamacpp-server", model="smollm2-135m-instruct",
                          quantization="Q4_K_M", hardware="laptop-8gb")
    plan = spec.plan()          # raises SpecError naming every problem, or returns sizes and images

The checks use the course's own data: the model catalog (`slmlab.models.catalog`), the hardware presets
(`slmlab.models.hardware`) and the memory calculator (`slmlab.models.footprint`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.deploy.images import SERVING_IMAGES, ServingImage
from slmlab.errors import SlmLabError, did_you_mean
from slmlab.models import catalog, footprint
from slmlab.models.hardware import Hardware, get_preset

HEADROOM = 1.2  # requests = estimate × 1.2: allocator slack, request bursts, the estimate's own error
GPU_HOST_GB = 1.0  # host RAM a GPU engine needs besides its runtime: staging buffers while weights load
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of the GPU it pre-allocates
MIB = 2**20
GIB = 2**30
SCALE_ON = ("cpu", "requests", "gpu")  # the HPA's signal: CPU utilization, requests in the engine per pod, or
# the GPU's utilization from NVIDIA's DCGM exporter (shown to teach why it misleads: notebook 3.6)
LOAD_METRIC = "slm_engine_requests"  # the per-pod custom metric prometheus-adapter offers the HPA
GPU_METRIC = "slm_engine_gpu_utilization"  # DCGM_FI_DEV_GPU_UTIL per engine pod, offered by prometheus-adapter
VPA_MODES = ("Off", "Initial", "Recreate", "InPlaceOrRecreate")  # VerticalPodAutoscaler updateMode values
AUTH = ("api-key", "none")  # API keys from a Kubernetes Secret, or none
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # a Kubernetes object name (DNS label)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # an image tag, as Docker allows it
_REGISTRY = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*")  # host[:port]/path of an image registry


@dataclass(frozen=True)
class SpecProblem:
    """One reason a spec is rejected: which field, what is wrong, what to do."""

    field: str
    reason: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


class SpecError(SlmLabError):
    """A deployment spec that cannot be rendered; `.problems` lists every reason."""

    def __init__(self, problems: list[SpecProblem], source: str = "the deployment spec") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p.field}: {p.reason}" for p in problems)
        hints = "; ".join(f"{p.field}: {p.hint}" for p in problems if p.hint)
        super().__init__(f"{source} has {len(problems)} problem(s), nothing was rendered:\n{lines}",
                         hints or "Fix the fields above and render again.")


@dataclass(frozen=True)
class DeploymentSpec:
    """What to deploy, where, and how big: the one input every artifact is rendered from."""

    name: str = "slm"
    engine: str = "llamacpp-server"
    model: str = catalog.DEFAULT_MODEL
    quantization: str = "Q4_K_M"
    hardware: str = "laptop-8gb"
    replicas: int = 2
    max_replicas: int = 4
    cpus: float | None = None  # None: 2, or all of the preset's cores when it has fewer
    gpus: int | None = None  # None: 1 on a GPU preset (for engines with a GPU image), 0 otherwise
    context: int = 4096
    parallel: int = 2  # requests served at once per replica; each needs its own KV cache
    port: int | None = None  # None: the engine's default port
    auth: str = "api-key"  # "api-key" (keys from a Kubernetes Secret) or "none"
    namespace: str = "slm"
    target_cpu_percent: int = 70  # the HorizontalPodAutoscaler's average CPU utilization target
    scale_on: str = "cpu"  # what the HPA scales on: "cpu" (utilization), "requests" (in the engine, per pod), "gpu"
    target_requests: float | None = None  # scale_on "requests": the average per pod to hold (None: `parallel`)
    target_gpu_percent: int = 70  # scale_on "gpu": the average DCGM_FI_DEV_GPU_UTIL (0-100) per pod to hold
    vpa_mode: str | None = None  # a VerticalPodAutoscaler for the engine: its updateMode ("Off": recommend only)
    registry: str = "registry.example.com/slm"  # where the built images are pushed
    image_tag: str = "0.1.0"  # the tag of the images built from the rendered Dockerfiles (never "latest")
    rate_limit: str | None = None  # the gateway's per-key rate limit, e.g. "60/minute" (None: no limit)

    def replace(self, **changes: Any) -> DeploymentSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def problems(self) -> list[SpecProblem]:
        """Every reason this spec cannot be deployed (empty when it can)."""
        return _check(self)[0]

    def plan(self) -> Plan:
        """The validated plan (images, sizes, footprint); raises SpecError listing every problem."""
        problems, plan = _check(self)
        if problems or plan is None:
            raise SpecError(problems)
        return plan

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (for YAML)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """A spec that passed every check, with everything the templates need computed once."""

    spec: DeploymentSpec
    engine: ServingImage  # the engine's container image, ports and health endpoints
    model: catalog.ModelSpec
    hardware: Hardware
    footprint: footprint.Footprint
    gpus: int
    port: int
    image: str
    kv_cache_gb: float  # for all `parallel` sequences
    memory_gb: float  # host RAM one replica needs (estimate, before headroom)
    memory_mi: int  # Kubernetes memory request = limit, MiB
    cpu_millis: int

    @property
    def gpu(self) -> bool:
        """True when the replicas use NVIDIA GPUs."""
        return self.gpus > 0

    @property
    def memory(self) -> str:
        """The memory request as a Kubernetes quantity, e.g. "1024Mi"."""
        return f"{self.memory_mi}Mi"

    @property
    def cpu(self) -> str:
        """The CPU request as a Kubernetes quantity, e.g. "1500m"."""
        return f"{self.cpu_millis}m"

    def image_ref(self, component: str) -> str:
        """The image we build for a component ("engine" or "gateway"), with its pinned tag."""
        return f"{self.spec.registry}/{self.spec.name}-{component}:{self.spec.image_tag}"

    @property
    def target_requests(self) -> float:
        """scale_on "requests": the average of requests in the engine (running + waiting) per pod the HPA holds."""
        return float(self.spec.target_requests or self.spec.parallel)

    @property
    def served_name(self) -> str:
        """The model name clients send in requests."""
        return self.model.key

    @property
    def vllm_cpu_kvcache_gib(self) -> int:
        """VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build: the KV cache for `parallel` full contexts, in GiB."""
        return max(1, math.ceil(self.kv_cache_gb * 1e9 / GIB))


def memory_request_mi(memory_gb: float, headroom: float = HEADROOM) -> int:
    """A memory request in MiB from an estimate in GB (10^9 bytes): × headroom, rounded up to 64 MiB."""
    return int(math.ceil(memory_gb * 1e9 * headroom / MIB / 64) * 64)


def _check(spec: DeploymentSpec) -> tuple[list[SpecProblem], Plan | None]:
    """Every problem of `spec`, and its plan when there is none."""
    review = _SpecReview(spec)
    plan = review.plan()
    return review.problems, plan


def _is_whole(value: Any, low: int) -> bool:
    """A whole number ≥ low (True and False are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


class _SpecReview:
    """One spec checked field by field; every problem is collected, so a learner sees them all at once."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.problems: list[SpecProblem] = []

    def bad(self, field: str, reason: str, hint: str = "") -> None:
        """Record one problem."""
        self.problems.append(SpecProblem(field, reason, hint))

    def plan(self) -> Plan | None:
        """Run every check; the plan when no check found a problem, else None."""
        spec = self.spec
        self.check_names()
        image = self.serving_image()
        model = self.model(image)
        hardware = self.hardware()
        quant = self.quantization(image)
        self.check_counts()
        self.check_scaling(image)
        self.check_vertical()
        self.check_images_and_auth()
        self.check_context(model)
        port = self.port(image)
        cpus = self.cpus(hardware)
        gpus = self.gpus(image, hardware, quant)
        if (image is None or model is None or hardware is None or gpus is None
                or not self.sizable(image, model, hardware, quant, gpus)):
            return None
        if spec.scale_on == "gpu" and gpus == 0:
            self.bad("scale_on", "scale_on: gpu needs a GPU deployment, and this one runs on CPUs",
                     "pick a GPU preset (hardware: t4, l4, a100-80gb) and an engine with a GPU image, or scale_on: "
                     "requests")
        fp = footprint.estimate(model, image.footprint_quant[quant], spec.context, hardware if gpus else None)
        memory_gb = self.memory_gb(fp, image, model, hardware, quant, gpus)
        memory_mi = self.memory_request(fp, image, hardware, memory_gb)
        if self.problems:
            return None
        return Plan(spec=spec, engine=image, model=model, hardware=hardware, footprint=fp, gpus=gpus, port=port,
                    image=image.image(gpus > 0), kv_cache_gb=fp.kv_cache_gb * spec.parallel, memory_gb=memory_gb,
                    memory_mi=memory_mi, cpu_millis=int(round(float(cpus) * 1000)))

    def check_names(self) -> None:
        """name and namespace become Kubernetes object names."""
        name, namespace = self.spec.name, self.spec.namespace
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > 40:
            self.bad("name", f"{name!r} is not a valid name", "lowercase letters, digits and '-', starting with a "
                     "letter, at most 40 characters (it becomes Kubernetes object names)")
        if not isinstance(namespace, str) or not _NAME.match(namespace) or len(namespace) > 63:
            self.bad("namespace", f"{namespace!r} is not a valid namespace", "lowercase letters, digits and '-'")

    def serving_image(self) -> ServingImage | None:
        """The engine's container image, by the spec's engine name."""
        image = SERVING_IMAGES.get(str(self.spec.engine).strip().lower())
        if image is None:
            self.bad("engine", f"unknown engine {self.spec.engine!r}",
                     f"{did_you_mean(self.spec.engine, SERVING_IMAGES, n=1)}Engines: {', '.join(SERVING_IMAGES)}")
        return image

    def model(self, image: ServingImage | None) -> catalog.ModelSpec | None:
        """The catalog entry (it sizes the deployment), with the weights the engine needs."""
        model = catalog.CATALOG.get(str(self.spec.model).strip().lower())
        if model is None:
            self.bad("model", f"model {self.spec.model!r} is not in the catalog, so it cannot be sized or fetched",
                     f"{did_you_mean(self.spec.model, catalog.CATALOG, n=2)}`slmlab models` lists the catalog")
        elif image is not None and image.weights == "gguf" and not model.gguf_hub_id:
            self.bad("model", f"{model.key} has no known GGUF repository, which {image.label} needs",
                     "pick a model with a GGUF build, or engine vllm / ort-service")
        return model

    def hardware(self) -> Hardware | None:
        """The hardware preset the replicas are sized for."""
        try:
            return get_preset(str(self.spec.hardware))
        except SlmLabError as err:
            self.bad("hardware", err.problem, err.hint)
            return None

    def quantization(self, image: ServingImage | None) -> str:
        """The quantization, upper-case; it must be one the engine serves."""
        quant = str(self.spec.quantization).strip().upper()
        if image is not None and quant not in image.quants:
            self.bad("quantization", f"{self.spec.quantization!r} is not a quantization {image.label} serves",
                     f"use one of {', '.join(image.quants)}")
        return quant

    def check_counts(self) -> None:
        """replicas, max_replicas, parallel and context: whole numbers in range."""
        spec = self.spec
        for field, value, low in (("replicas", spec.replicas, 1), ("max_replicas", spec.max_replicas, 1),
                                  ("parallel", spec.parallel, 1), ("context", spec.context, 256)):
            if not _is_whole(value, low):
                self.bad(field, f"must be a whole number ≥ {low}, got {value!r}")
        if isinstance(spec.replicas, int) and isinstance(spec.max_replicas, int) and spec.max_replicas < spec.replicas:
            self.bad("max_replicas", f"{spec.max_replicas} is fewer than replicas ({spec.replicas})",
                     "the autoscaler scales between replicas and max_replicas")

    def check_scaling(self, image: ServingImage | None) -> None:
        """What the HPA scales on, and its target."""
        spec = self.spec
        if not isinstance(spec.target_cpu_percent, int) or not 10 <= spec.target_cpu_percent <= 100:
            self.bad("target_cpu_percent", f"must be 10–100, got {spec.target_cpu_percent!r}")
        if spec.scale_on not in SCALE_ON:
            self.bad("scale_on", f"unknown {spec.scale_on!r}", f"use one of {', '.join(SCALE_ON)}")
        elif spec.scale_on == "requests" and image is not None and not image.load_gauges:
            self.bad("scale_on", f"{image.label} exports no metrics, so there is no request count to scale on",
                     "use scale_on: cpu, or an engine with metrics (llamacpp-server, vllm, ort-service)")
        gpu_target = spec.target_gpu_percent
        if isinstance(gpu_target, bool) or not isinstance(gpu_target, int) or not 1 <= gpu_target <= 100:
            self.bad("target_gpu_percent", f"must be a whole number 1-100, got {gpu_target!r}",
                     "DCGM_FI_DEV_GPU_UTIL is a percentage, e.g. 70")
        target = spec.target_requests
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0):
            self.bad("target_requests", f"must be a number > 0, got {target!r}",
                     "requests in the engine per pod, e.g. 2 (running + waiting); leave it out to use `parallel`")

    def check_vertical(self) -> None:
        """The VerticalPodAutoscaler's mode, and the one combination its docs rule out."""
        spec = self.spec
        if spec.vpa_mode is None:
            return
        if spec.vpa_mode not in VPA_MODES:
            self.bad("vpa_mode", f"unknown updateMode {spec.vpa_mode!r}",
                     f"use one of {', '.join(VPA_MODES)} (\"Off\": recommendations only), or leave it out")
        elif spec.vpa_mode != "Off" and spec.scale_on == "cpu":
            self.bad("vpa_mode", f"a VPA in mode {spec.vpa_mode} changes the CPU requests that the HPA's CPU "
                     "utilization is measured against: the two would fight (VPA docs, known limitations)",
                     "use vpa_mode: Off (recommend only), or scale_on: requests")

    def check_images_and_auth(self) -> None:
        """The built images' tag and registry, and how clients authenticate."""
        spec = self.spec
        if not isinstance(spec.image_tag, str) or not _TAG.fullmatch(spec.image_tag) or spec.image_tag == "latest":
            self.bad("image_tag", f"{spec.image_tag!r} is not a pinned image tag",
                     "use a version such as '0.1.0', not 'latest'")
        if not isinstance(spec.registry, str) or not _REGISTRY.fullmatch(spec.registry):
            self.bad("registry", f"{spec.registry!r} is not an image registry path", "e.g. 'ghcr.io/your-org'")
        if spec.auth not in AUTH:
            self.bad("auth", f"unknown auth {spec.auth!r}", "use 'api-key' (recommended) or 'none'")
        self.check_rate_limit()

    def check_rate_limit(self) -> None:
        """The gateway's rate limit, read as the gateway reads it (None: no limit)."""
        from slmlab.serve.gateway.security import RateLimiter

        try:
            RateLimiter.parse(self.spec.rate_limit)
        except SlmLabError as err:
            self.bad("rate_limit", err.problem, err.hint)

    def check_context(self, model: catalog.ModelSpec | None) -> None:
        """The context must fit the model's trained context."""
        context = self.spec.context
        if model is not None and isinstance(context, int) and context > model.context:
            self.bad("context", f"{model.key} was trained for {model.context} tokens, not {context}",
                     f"use context ≤ {model.context}")

    def port(self, image: ServingImage | None) -> int:
        """The port the engine listens on: the spec's, else the engine's own."""
        port = self.spec.port if self.spec.port is not None else (image.port if image else 8080)
        if not _is_whole(port, 1024) or port > 65535:
            self.bad("port", f"{port!r} is not a port a non-root container can listen on",
                     "use 1024–65535: ports below 1024 need the NET_BIND_SERVICE capability, which we drop")
        return port

    def cpus(self, hardware: Hardware | None) -> float:
        """CPUs per replica: the spec's, else 2 (or all the preset's cores when it has fewer)."""
        cpus = self.spec.cpus if self.spec.cpus is not None else min(2, hardware.cores if hardware else 2)
        if not isinstance(cpus, (int, float)) or isinstance(cpus, bool) or cpus <= 0:
            self.bad("cpus", f"must be a positive number, got {cpus!r}")
        elif hardware is not None and cpus > hardware.cores:
            self.bad("cpus", f"{cpus:g} CPUs requested but {hardware.key} has {hardware.cores} cores",
                     f"use cpus ≤ {hardware.cores}")
        return cpus

    def gpus(self, image: ServingImage | None, hardware: Hardware | None, quant: str) -> int | None:
        """GPUs per replica (default: 1 on a GPU preset for an engine with a GPU image); None when unknown."""
        if image is None or hardware is None:
            return None
        gpus = self.spec.gpus if self.spec.gpus is not None else (1 if hardware.vram_gb and image.gpu_image else 0)
        if not _is_whole(gpus, 0):
            self.bad("gpus", f"must be a whole number ≥ 0, got {gpus!r}")
            return None
        if gpus > 0 and hardware.unified:
            self.bad("gpus", f"{hardware.label} has an Apple GPU, which containers cannot use (Docker on macOS has "
                     "no Metal passthrough)", "set gpus: 0 to deploy on its CPU, or run the engine natively")
        elif gpus > 0 and not hardware.vram_gb:
            self.bad("gpus", f"a GPU deployment of {image.label} asked for {gpus} GPU(s) but {hardware.key} is a "
                     "CPU-only preset", "set gpus: 0 (CPU image) or pick a GPU preset such as t4, l4, a100-80gb")
        elif gpus > 0 and image.gpu_image is None:
            self.bad("engine", f"{image.label} has no GPU image here", "set gpus: 0")
        elif gpus == 0 and image.cpu_image is None:
            self.bad("engine", f"{image.label} has no CPU image", "use a GPU preset")
        elif gpus > 0 and image.key == "vllm" and quant == "BF16" and "T4" in (hardware.gpu or ""):
            self.bad("quantization", "the T4 (compute capability 7.5) has no bfloat16 support, so vLLM refuses BF16",
                     "use F16 on a T4")
        return gpus

    def sizable(self, image: ServingImage, model: catalog.ModelSpec, hardware: Hardware, quant: str,
                gpus: int) -> bool:
        """Whether every field the memory estimate needs is usable (the problems of those that are not are
        already recorded)."""
        spec = self.spec
        gpus_usable = gpus == 0 or bool(hardware.vram_gb and not hardware.unified and image.gpu_image)
        return (gpus_usable and quant in image.quants and _is_whole(spec.parallel, 1)
                and _is_whole(spec.context, 256) and spec.context <= model.context)

    def memory_gb(self, fp: footprint.Footprint, image: ServingImage, model: catalog.ModelSpec, hardware: Hardware,
                  quant: str, gpus: int) -> float:
        """Host memory one replica needs (before headroom); on a GPU, the model must fit in GPU memory."""
        spec = self.spec
        model_gb = fp.weights_gb + fp.kv_cache_gb * spec.parallel + fp.overhead_gb
        if not gpus:
            return model_gb + image.runtime_gb
        vram_gb = (hardware.vram_gb or 0) * gpus * GIB / 1e9
        usable = vram_gb * (VLLM_GPU_MEMORY_UTILIZATION if image.key == "vllm" else 1.0)
        if model_gb > usable:
            self.bad("hardware", f"{model.key} at {quant} with {spec.parallel} × {spec.context} tokens of KV cache "
                     f"needs {model_gb:.1f} GB of GPU memory but {gpus} × {hardware.key} offers {usable:.1f} GB",
                     "use a smaller quantization, a shorter context, fewer parallel requests, or a bigger GPU")
        return image.runtime_gb + GPU_HOST_GB

    def memory_request(self, fp: footprint.Footprint, image: ServingImage, hardware: Hardware,
                       memory_gb: float) -> int:
        """The memory request (= limit) in MiB; it must fit in the preset's RAM."""
        memory_mi = memory_request_mi(memory_gb)
        ram_mi = int(hardware.ram_gb * GIB / MIB)
        if memory_mi > ram_mi:
            kv_total = fp.kv_cache_gb * self.spec.parallel
            self.bad("hardware", f"one replica needs {memory_mi} MiB of memory ({memory_gb:.2f} GB estimated: "
                     f"weights {fp.weights_gb:.2f} + KV cache {kv_total:.2f} + overhead "
                     f"{fp.overhead_gb + image.runtime_gb:.2f}, × {HEADROOM} headroom) but {hardware.key} has "
                     f"{ram_mi} MiB", "use a smaller quantization, a shorter context, fewer parallel requests, or a "
                     "bigger preset")
        return memory_mi


def load_spec(path: str | Path) -> DeploymentSpec:
    """Read a spec from YAML (written anywhere: a UTF-8 byte-order mark and CRLF line ends are fine); unknown keys
    are rejected by name (a typo must not silently fall back)."""
    import yaml

    from slmlab.textfiles import read_text

    text = read_text(path, "deployment spec")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise SlmLabError(f"{path} is not valid YAML: {err}", "Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise SlmLabError(f"{path} must hold a mapping of spec fields.", "e.g. `engine: llamacpp-server`.")
    return spec_from_dict(data, source=str(path))


def spec_from_dict(data: dict[str, Any], source: str = "the deployment spec") -> DeploymentSpec:
    """A spec from plain data; unknown keys raise SpecError with suggestions."""
    fields = [f.name for f in dataclasses.fields(DeploymentSpec)]
    problems = [SpecProblem(str(key), "unknown field",
                            f"{did_you_mean(key, fields, n=1, cutoff=0.6)}Fields: {', '.join(fields)}")
                for key in data if key not in fields]
    if problems:
        raise SpecError(problems, source)
    return DeploymentSpec(**data)
