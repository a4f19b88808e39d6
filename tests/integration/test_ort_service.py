"""The ONNX Runtime GenAI engine as a service: metrics read back from Python, the container's settings, and the
real service (uvicorn + ORT GenAI) started, called and stopped."""

from __future__ import annotations

import math
import re

import httpx
import pytest

from slmlab import deploy
from slmlab.errors import SlmLabError
from slmlab.serve import scrape
from slmlab.serve.gateway.metrics import TTFT_BUCKETS, ServiceMetrics

MODEL = "smollm2-135m-instruct"


# ----------------------------------------------------------------------------- reading /metrics


def rendered(observations: list[float], tokens: int = 40, busy_s: float = 2.0, wait_s: float = 0.5) -> str:
    metrics = ServiceMetrics()
    for value in observations:
        metrics.ttft.labels(MODEL).observe(value)
    metrics.observe_generation(MODEL, "length", 30, tokens)
    metrics.latency.labels("/v1/chat/completions").observe(busy_s)
    metrics.latency.labels("/readyz").observe(100.0)  # another route: must not count
    metrics.queue_wait.labels(MODEL).observe(wait_s)
    return metrics.render().decode()


@pytest.mark.fast
def test_parse_reads_counters_and_histograms_of_the_service():
    samples = scrape.parse(rendered([0.03, 0.07, 0.3, 0.4]))
    assert samples.value("slmlab_completion_tokens_total", model=MODEL) == 40
    assert samples.value("slmlab_generations_total", outcome="length") == 1
    assert samples.value("slmlab_time_to_first_token_seconds_count", model=MODEL) == 4
    buckets = samples.buckets("slmlab_time_to_first_token_seconds", model=MODEL)
    assert [b for b, _ in buckets] == [*TTFT_BUCKETS, math.inf]
    assert buckets[-1][1] == 4 and dict(buckets)[0.05] == 1
    assert scrape.histogram_mean(samples, "slmlab_time_to_first_token_seconds", model=MODEL) == pytest.approx(0.2)


@pytest.mark.fast
def test_histogram_quantile_interpolates_like_promql():
    buckets = [(0.1, 2.0), (0.5, 6.0), (1.0, 8.0), (math.inf, 8.0)]
    assert scrape.histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (4 - 2) / (6 - 2))  # 0.3
    assert scrape.histogram_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 2: the first bucket's top
    assert scrape.histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # rank 0.8 of 2, from 0 to 0.1
    assert scrape.histogram_quantile(1.0, buckets) == pytest.approx(1.0)
    assert scrape.histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0  # in +Inf: the top bound
    assert math.isnan(scrape.histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))
    with pytest.raises(SlmLabError, match="outside 0..1"):
        scrape.histogram_quantile(50, buckets)
    with pytest.raises(SlmLabError, match=r"\+Inf"):
        scrape.histogram_quantile(0.5, [(1.0, 3.0)])


@pytest.mark.fast
def test_generation_rate_counts_model_time_only():
    samples = scrape.parse(rendered([0.1], tokens=40, busy_s=2.5, wait_s=0.5))
    assert scrape.generation_tok_s(samples, MODEL) == pytest.approx(40 / 2.0)  # the /readyz time is not counted


@pytest.mark.fast
def test_bad_input_gets_a_clear_error():
    samples = scrape.parse(rendered([0.1]))
    with pytest.raises(SlmLabError, match="No sample slmlab_completion_tokens") as err:
        samples.value("slmlab_completion_tokens")  # the counter's sample ends in _total
    assert "slmlab_completion_tokens_total" in err.value.hint
    assert samples.value("slmlab_completion_tokens_total", default=0.0, model="other") == 0.0
    with pytest.raises(SlmLabError, match="No histogram"):
        samples.buckets("slmlab_time_to_first_token_seconds_bucket")
    with pytest.raises(SlmLabError, match="text format"):
        scrape.parse("this is { not metrics")


# ----------------------------------------------------------------------------- the container runs the same app


@pytest.mark.fast
def test_the_ort_image_starts_the_onnx_backend_on_its_model_folder():
    from slmlab.serve.gateway.app import backend_factory_from_env

    files = deploy.render_all(deploy.DeploymentSpec(engine="ort-service", quantization="INT8", hardware="binder-2gb",
                                                    parallel=1))
    dockerfile = files["docker/engine.Dockerfile"]
    assert "-p int8 -e cpu" in dockerfile
    env = dict(re.findall(r"^\s+(SLMLAB_[A-Z_]+)=(\S+)", dockerfile, flags=re.M))
    assert env["SLMLAB_BACKEND"] == "onnx" and env["SLMLAB_MODEL"] == "/models/model"
    assert backend_factory_from_env(env).__qualname__ == "open_backend('onnx', '/models/model')"


# ----------------------------------------------------------------------------- the real service


@pytest.fixture(scope="module")
def ort_server():
    from slmlab.convert import onnx_quantize
    from slmlab.serve.gateway.server import app_server

    folder = onnx_quantize.prepare(["int4"], MODEL)["int4"]  # cached after the first build
    with app_server(engine="onnx", model=folder, served_model_name=MODEL, max_tokens=64) as server:
        yield server


@pytest.mark.slow
def test_the_ort_service_answers_streams_and_counts(ort_server):
    import openai

    client = openai.OpenAI(base_url=f"{ort_server.url}/v1", api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat.completions.create(model=MODEL, messages=question, max_tokens=12, temperature=0)
    assert whole.model == MODEL and whole.usage.completion_tokens <= 12 and whole.choices[0].message.content
    with client.chat.completions.create(model=MODEL, messages=question, max_tokens=12, temperature=0,
                                        stream=True) as stream:
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole.choices[0].message.content  # greedy: the same answer
    client.close()
    samples = scrape.fetch(ort_server)
    assert samples.value("slmlab_generations_total", model=MODEL) == 2
    assert samples.value("slmlab_completion_tokens_total", model=MODEL) == 2 * whole.usage.completion_tokens
    assert samples.value("slmlab_time_to_first_token_seconds_count", model=MODEL) == 2
    assert scrape.generation_tok_s(samples, MODEL) > 1
    assert httpx.get(f"{ort_server.url}/readyz", trust_env=False).json()["status"] == "ready"


@pytest.mark.slow
def test_the_service_context_from_the_environment_caps_the_onnx_backend():
    from slmlab.convert.gguf_to_onnx import ort_genai_folder
    from slmlab.serve.gateway.app import backend_factory_from_env

    folder = ort_genai_folder("smollm2-135m-instruct", "int4")  # cached by `slmlab setup onnx`
    factory = backend_factory_from_env({"SLMLAB_BACKEND": "onnx", "SLMLAB_MODEL": str(folder), "SLMLAB_CONTEXT": "64"})
    with factory() as backend:
        assert (backend.n_ctx, backend.trained_ctx) == (64, 8192)
        with pytest.raises(SlmLabError, match="the context is 64") as err:
            backend.chat("Tell me about the weather. " * 20)
        assert "n_ctx=" in err.value.hint
        assert backend.chat("Hi", max_tokens=4).completion_tokens >= 1
