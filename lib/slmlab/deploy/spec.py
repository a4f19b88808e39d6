"""One deployment spec, checked before anything is rendered.

    spec = DeploymentSpec(name="chat", engine="llamacpp-server", model="smollm2-135m-instruct",
                          quantization="Q4_K_M", hardware="laptop-8gb")
    plan = spec.plan()          # raises SpecError naming every problem, or returns sizes and images

The checks use the course's own data: the model catalog (`slmlab.models.catalog`), the hardware presets
(`slmlab.models.hardware`) and the memory calculator (`slmlab.models.footprint`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.deploy.engines import ENGINES, Engine
from slmlab.errors import SlmLabError
from slmlab.models import catalog, footprint
from slmlab.models.hardware import Hardware, get_preset

HEADROOM = 1.2  # requests = estimate × 1.2: allocator slack, request bursts, the estimate's own error
GPU_HOST_GB = 1.0  # host RAM a GPU engine needs besides its runtime: staging buffers while weights load
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of the GPU it pre-allocates
MIB = 2**20
GIB = 2**30
SCALE_ON = ("cpu", "requests")  # the HPA's signal: CPU utilization, or requests in the engine per pod
LOAD_METRIC = "slm_engine_requests"  # the per-pod custom metric prometheus-adapter offers the HPA
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


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
    scale_on: str = "cpu"  # what the HPA scales on: "cpu" (utilization) or "requests" (in the engine, per pod)
    target_requests: float | None = None  # scale_on "requests": the average per pod to hold (None: `parallel`)
    registry: str = "registry.example.com/slm"  # where the built images are pushed
    image_tag: str = "0.1.0"  # the tag of the images built from the rendered Dockerfiles (never "latest")

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
    engine: Engine
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
    problems: list[SpecProblem] = []

    def bad(field: str, reason: str, hint: str = "") -> None:
        problems.append(SpecProblem(field, reason, hint))

    if not isinstance(spec.name, str) or not _NAME.match(spec.name) or len(spec.name) > 40:
        bad("name", f"{spec.name!r} is not a valid name", "lowercase letters, digits and '-', starting with a "
            "letter, at most 40 characters (it becomes Kubernetes object names)")
    if not isinstance(spec.namespace, str) or not _NAME.match(spec.namespace) or len(spec.namespace) > 63:
        bad("namespace", f"{spec.namespace!r} is not a valid namespace", "lowercase letters, digits and '-'")

    engine = ENGINES.get(str(spec.engine).strip().lower())
    if engine is None:
        close = difflib.get_close_matches(str(spec.engine).lower(), list(ENGINES), n=1, cutoff=0.5)
        bad("engine", f"unknown engine {spec.engine!r}",
            (f"did you mean {close[0]!r}? " if close else "") + f"engines: {', '.join(ENGINES)}")

    model = catalog.CATALOG.get(str(spec.model).strip().lower())
    if model is None:
        close = difflib.get_close_matches(str(spec.model).lower(), list(catalog.CATALOG), n=2, cutoff=0.5)
        bad("model", f"model {spec.model!r} is not in the catalog, so it cannot be sized or fetched",
            (f"did you mean {', '.join(map(repr, close))}? " if close else "")
            + "`slmlab models` lists the catalog")
    elif engine is not None and engine.weights == "gguf" and not model.gguf_hub_id:
        bad("model", f"{model.key} has no known GGUF repository, which {engine.label} needs",
            "pick a model with a GGUF build, or engine vllm / ort-service")

    hardware = None
    try:
        hardware = get_preset(str(spec.hardware))
    except SlmLabError as err:
        bad("hardware", err.problem, err.hint)

    quant = str(spec.quantization).strip().upper()
    if engine is not None and quant not in engine.quants:
        bad("quantization", f"{spec.quantization!r} is not a quantization {engine.label} serves",
            f"use one of {', '.join(engine.quants)}")

    for field, value, low in (("replicas", spec.replicas, 1), ("max_replicas", spec.max_replicas, 1),
                              ("parallel", spec.parallel, 1), ("context", spec.context, 256)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            bad(field, f"must be a whole number ≥ {low}, got {value!r}")
    if isinstance(spec.replicas, int) and isinstance(spec.max_replicas, int) and spec.max_replicas < spec.replicas:
        bad("max_replicas", f"{spec.max_replicas} is fewer than replicas ({spec.replicas})",
            "the autoscaler scales between replicas and max_replicas")
    if not isinstance(spec.target_cpu_percent, int) or not 10 <= spec.target_cpu_percent <= 100:
        bad("target_cpu_percent", f"must be 10–100, got {spec.target_cpu_percent!r}")
    if spec.scale_on not in SCALE_ON:
        bad("scale_on", f"unknown {spec.scale_on!r}", f"use one of {', '.join(SCALE_ON)}")
    elif spec.scale_on == "requests" and engine is not None and not engine.load_gauges:
        bad("scale_on", f"{engine.label} exports no metrics, so there is no request count to scale on",
            "use scale_on: cpu, or an engine with metrics (llamacpp-server, vllm, ort-service)")
    if spec.target_requests is not None and (isinstance(spec.target_requests, bool)
                                             or not isinstance(spec.target_requests, (int, float))
                                             or not spec.target_requests > 0):
        bad("target_requests", f"must be a number > 0, got {spec.target_requests!r}",
            "requests in the engine per pod, e.g. 2 (running + waiting); leave it out to use `parallel`")
    if not isinstance(spec.image_tag, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", spec.image_tag) \
            or spec.image_tag == "latest":
        bad("image_tag", f"{spec.image_tag!r} is not a pinned image tag", "use a version such as '0.1.0', not 'latest'")
    if not isinstance(spec.registry, str) or not re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*", spec.registry):
        bad("registry", f"{spec.registry!r} is not an image registry path", "e.g. 'ghcr.io/your-org'")
    if spec.auth not in ("api-key", "none"):
        bad("auth", f"unknown auth {spec.auth!r}", "use 'api-key' (recommended) or 'none'")
    if model is not None and isinstance(spec.context, int) and spec.context > model.context:
        bad("context", f"{model.key} was trained for {model.context} tokens, not {spec.context}",
            f"use context ≤ {model.context}")

    port = spec.port if spec.port is not None else (engine.port if engine else 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        bad("port", f"{port!r} is not a port a non-root container can listen on",
            "use 1024–65535: ports below 1024 need the NET_BIND_SERVICE capability, which we drop")

    cpus = spec.cpus if spec.cpus is not None else min(2, hardware.cores if hardware else 2)
    if not isinstance(cpus, (int, float)) or isinstance(cpus, bool) or cpus <= 0:
        bad("cpus", f"must be a positive number, got {cpus!r}")
    elif hardware is not None and cpus > hardware.cores:
        bad("cpus", f"{cpus:g} CPUs requested but {hardware.key} has {hardware.cores} cores",
            f"use cpus ≤ {hardware.cores}")

    gpus = spec.gpus
    if hardware is not None and engine is not None:
        if gpus is None:
            gpus = 1 if hardware.vram_gb and engine.gpu_image else 0
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            bad("gpus", f"must be a whole number ≥ 0, got {gpus!r}")
        elif gpus > 0 and hardware.unified:
            bad("gpus", f"{hardware.label} has an Apple GPU, which containers cannot use (Docker on macOS has "
                "no Metal passthrough)", "set gpus: 0 to deploy on its CPU, or run the engine natively")
        elif gpus > 0 and not hardware.vram_gb:
            bad("gpus", f"a GPU deployment of {engine.label} asked for {gpus} GPU(s) but {hardware.key} is a "
                "CPU-only preset", "set gpus: 0 (CPU image) or pick a GPU preset such as t4, l4, a100-80gb")
        elif gpus > 0 and engine.gpu_image is None:
            bad("engine", f"{engine.label} has no GPU image here", "set gpus: 0")
        elif gpus == 0 and engine.cpu_image is None:
            bad("engine", f"{engine.label} has no CPU image", "use a GPU preset")
        elif gpus > 0 and engine.key == "vllm" and quant == "BF16" and "T4" in (hardware.gpu or ""):
            bad("quantization", "the T4 (compute capability 7.5) has no bfloat16 support, so vLLM refuses BF16",
                "use F16 on a T4")

    sizable = (engine is not None and model is not None and hardware is not None and isinstance(gpus, int)
               and quant in engine.quants and isinstance(spec.parallel, int) and spec.parallel >= 1
               and isinstance(spec.context, int) and 256 <= spec.context <= model.context
               and (gpus == 0 or bool(hardware.vram_gb and not hardware.unified and engine.gpu_image)))
    if not sizable:
        return problems, None
    assert engine is not None and model is not None and hardware is not None and isinstance(gpus, int)

    fp = footprint.estimate(model, engine.footprint_quant[quant], spec.context, hardware if gpus else None)
    kv_total = fp.kv_cache_gb * spec.parallel
    model_gb = fp.weights_gb + kv_total + fp.overhead_gb
    if gpus:
        vram_gb = (hardware.vram_gb or 0) * gpus * GIB / 1e9
        usable = vram_gb * (VLLM_GPU_MEMORY_UTILIZATION if engine.key == "vllm" else 1.0)
        if model_gb > usable:
            bad("hardware", f"{model.key} at {quant} with {spec.parallel} × {spec.context} tokens of KV cache needs "
                f"{model_gb:.1f} GB of GPU memory but {gpus} × {hardware.key} offers {usable:.1f} GB",
                "use a smaller quantization, a shorter context, fewer parallel requests, or a bigger GPU")
        memory_gb = engine.runtime_gb + GPU_HOST_GB
    else:
        memory_gb = model_gb + engine.runtime_gb
    memory_mi = memory_request_mi(memory_gb)
    ram_mi = int(hardware.ram_gb * GIB / MIB)
    if memory_mi > ram_mi:
        bad("hardware", f"one replica needs {memory_mi} MiB of memory ({memory_gb:.2f} GB estimated: weights "
            f"{fp.weights_gb:.2f} + KV cache {kv_total:.2f} + overhead {fp.overhead_gb + engine.runtime_gb:.2f}, "
            f"× {HEADROOM} headroom) but {hardware.key} has {ram_mi} MiB",
            "use a smaller quantization, a shorter context, fewer parallel requests, or a bigger preset")
    if problems:
        return problems, None
    return [], Plan(spec=spec, engine=engine, model=model, hardware=hardware, footprint=fp, gpus=gpus, port=port,
                    image=engine.image(gpus > 0), kv_cache_gb=kv_total, memory_gb=memory_gb, memory_mi=memory_mi,
                    cpu_millis=int(round(float(cpus) * 1000)))


def load_spec(path: str | Path) -> DeploymentSpec:
    """Read a spec from YAML; unknown keys are rejected by name (a typo must not silently fall back)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SlmLabError(f"Deployment spec {path} does not exist.", "Pass the path of a YAML file.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SlmLabError(f"{path} is not valid YAML: {err}", "Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise SlmLabError(f"{path} must hold a mapping of spec fields.", "e.g. `engine: llamacpp-server`.")
    return spec_from_dict(data, source=str(path))


def spec_from_dict(data: dict[str, Any], source: str = "the deployment spec") -> DeploymentSpec:
    """A spec from plain data; unknown keys raise SpecError with suggestions."""
    fields = [f.name for f in dataclasses.fields(DeploymentSpec)]
    problems = []
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            suggestion = f"did you mean {close[0]!r}? " if close else ""
            problems.append(SpecProblem(str(key), "unknown field", suggestion + f"fields: {', '.join(fields)}"))
    if problems:
        raise SpecError(problems, source)
    return DeploymentSpec(**data)
