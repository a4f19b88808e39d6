"""slmlab.measure.llama_bench and llama_perplexity: reading what llama-bench (-o json) and llama-perplexity print,
the side-by-side table, and the errors for output without results. Real runs: tests/integration."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slmlab.errors import SlmLabError
from slmlab.measure.llama_bench import bench_args, parse_bench_json, side_by_side, speeds
from slmlab.measure.llama_perplexity import parse_perplexity, perplexity_table

pytestmark = pytest.mark.fast


def record(n_prompt: int, n_gen: int, avg_ts: float, stddev_ts: float = 0.5) -> dict:
    """One llama-bench -o json record, the fields the course reads (the real ones carry ~40 more)."""
    return {"build_commit": "0c1e57098", "build_number": 11312, "model_filename": "q4km.gguf", "n_threads": 2,
            "n_prompt": n_prompt, "n_gen": n_gen, "avg_ns": 61836265, "stddev_ns": 0, "avg_ts": avg_ts,
            "stddev_ts": stddev_ts, "samples_ts": [avg_ts]}


# llama-bench's stdout (the JSON) with its stderr merged around it, as a shell's 2>&1 gives it
BENCH_OUTPUT = ("load_backend: loaded CPU backend\n" + json.dumps([record(32, 0, 517.49568), record(0, 8, 90.898668)],
                                                                  indent=2) + "\nllama_perf: done [0]\n")
# llama-perplexity -c 256: stdout has the running estimates, stderr the log with the final one
PERPLEXITY_OUTPUT = """0.22 minutes
[1]22.3561,[2]19.1082,[3]24.3688,
0.00.764.801 I perplexity: tokenizing the input ..
0.00.773.101 I perplexity: calculating perplexity over 3 chunks, n_ctx=256, batch_size=256, n_seq=1
0.05.368.129 I perplexity: 4.59 seconds per pass - ETA 0.13.827.156 I Final estimate: PPL = 24.3688 +/- 3.50334
"""


def test_bench_json_is_found_between_log_lines():
    records = parse_bench_json(BENCH_OUTPUT)
    assert [r["n_prompt"] for r in records] == [32, 0]
    assert speeds(records) == {"prefill_tokens": 32, "prefill_tok_s": 517.5, "prefill_sd": 0.5, "threads": 2,
                               "build": "b11312", "decode_tokens": 8, "decode_tok_s": 90.9, "decode_sd": 0.5}


def test_bench_output_without_results_shows_its_last_lines():
    with pytest.raises(SlmLabError) as err:
        parse_bench_json("main: error: failed to load model 'nope.gguf'\n[\n")
    assert "failed to load model 'nope.gguf'" in str(err.value) and "-o json" in err.value.hint
    with pytest.raises(SlmLabError, match="lack a prompt"):
        speeds([record(32, 0, 500.0)])


def test_bench_args_check_the_counts_and_the_model(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert bench_args(model, prompt_tokens=32, gen_tokens=8, repetitions=1, threads=2) == [
        "-m", str(model), "-p", "32", "-n", "8", "-r", "1", "-t", "2", "-o", "json"]
    with pytest.raises(SlmLabError, match="repetitions=0"):
        bench_args(model, repetitions=0)
    with pytest.raises(SlmLabError, match="model to benchmark .*missing.gguf does not exist"):
        bench_args(tmp_path / "missing.gguf")


def test_side_by_side_divides_the_binding_by_llama_bench():
    slmlab = pd.DataFrame([{"variant": "Q8_0", "prefill_tok_s": 400.0, "decode_tok_s": 60.0, "load_s": 0.2},
                           {"variant": "Q2_K", "prefill_tok_s": 300.0, "decode_tok_s": 50.0, "load_s": 0.2}])
    cli = pd.DataFrame([{"variant": "Q8_0", "prefill_tok_s": 500.0, "decode_tok_s": 80.0}])
    both = side_by_side(slmlab, cli)
    assert both.to_dict("records") == [{"variant": "Q8_0", "prefill_tok_s_slmlab": 400.0,
                                        "prefill_tok_s_llama_bench": 500.0, "prefill_ratio": 0.8,
                                        "decode_tok_s_slmlab": 60.0, "decode_tok_s_llama_bench": 80.0,
                                        "decode_ratio": 0.75}]
    with pytest.raises(SlmLabError, match="share no variant"):
        side_by_side(slmlab, cli.assign(variant="F16"))


def test_perplexity_output_is_read():
    result = parse_perplexity(PERPLEXITY_OUTPUT, "q4km.gguf")
    assert (result.value, result.error, result.chunks, result.n_ctx) == (24.3688, 3.50334, 3, 256)
    assert result.running == [22.3561, 19.1082, 24.3688] and result.tokens == 3 * 127
    assert str(result) == "q4km.gguf: llama-perplexity 24.369 ± 3.503 over 381 tokens (3 chunks of 256)"


def test_a_text_too_short_for_the_context_says_so():
    said = ("0.00.2 E perplexity: you need at least 1024 tokens to evaluate perplexity with a context of 512\n"
            "0.00.2 E perplexity: the data file you provided tokenizes to only 956 tokens\n")
    with pytest.raises(SlmLabError) as err:
        parse_perplexity(said)
    assert "tokenizes to only 956 tokens" in err.value.problem and "at least 1024 tokens" in err.value.hint


def test_perplexity_table_checks_its_inputs(tmp_path):
    with pytest.raises(SlmLabError, match="model 'Q8_0' .*q8.gguf does not exist"):
        perplexity_table({"Q8_0": tmp_path / "q8.gguf"}, tmp_path / "text.txt")
