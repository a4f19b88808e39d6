"""slmlab.apps.pipeline: batch answers over data/prompts, with bad rows skipped, retries, and resume after a kill.

The slow tests run the course's FastAPI service (SmolLM2) with a tight rate limit, so the pipeline meets real
429s and must retry them; then a pipeline subprocess is killed (SIGKILL) halfway and a second run must finish
the batch without redoing or losing a row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmlab.apps.pipeline import BadRow, JsonlAppender, PromptRow, completed_ids, read_prompts, run_pipeline
from slmlab.errors import SlmLabError
from slmlab.serve.gateway.server import app_server

DATA = Path(__file__).resolve().parents[3] / "data" / "prompts"
CSV_GOOD = ["q01", "q02", "q03", "q04", "q05", "q06", "q08", "q09", "q10", "q11", "q13", "q14"]
JSONL_GOOD = ["j01", "j02", "j03", "j04", "j06", "j07", "j08"]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- fast

@pytest.mark.fast
def test_the_shipped_prompt_files_have_good_and_deliberately_bad_rows():
    rows = list(read_prompts(DATA / "questions.csv"))
    assert [r.id for r in rows if isinstance(r, PromptRow)] == CSV_GOOD
    bad = {r.id: r.problem for r in rows if isinstance(r, BadRow)}
    assert set(bad) == {"q07", "q12"} and "no prompt" in bad["q07"] and "'many' is not a whole number" in bad["q12"]
    q10 = next(r for r in rows if r.id == "q10")
    assert q10.messages[0] == {"role": "system", "content": "Answer in one word."}
    rows = list(read_prompts(DATA / "questions.jsonl"))
    assert [r.id for r in rows if isinstance(r, PromptRow)] == JSONL_GOOD
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert [(b.line, b.id) for b in bad] == [(5, None), (8, "j07")]
    assert "not valid JSON" in bad[0].problem and "duplicate id 'j07'" in bad[1].problem


@pytest.mark.fast
def test_unreadable_inputs_are_clear_errors(tmp_path):
    with pytest.raises(SlmLabError, match="does not exist"):
        list(read_prompts(tmp_path / "nope.csv"))
    (tmp_path / "p.txt").write_text("hello\n")
    with pytest.raises(SlmLabError, match="neither .csv nor .jsonl"):
        list(read_prompts(tmp_path / "p.txt"))
    (tmp_path / "p.csv").write_text("question\nhi\n")
    with pytest.raises(SlmLabError, match=r"no 'prompt' column \(its columns: \['question'\]\)"):
        list(read_prompts(tmp_path / "p.csv"))
    with pytest.raises(SlmLabError, match="exactly one of base_url"):
        run_pipeline(DATA / "questions.csv", tmp_path / "out.jsonl")
    with pytest.raises(SlmLabError, match="concurrency=0"):
        run_pipeline(DATA / "questions.csv", tmp_path / "out.jsonl", base_url="http://127.0.0.1:9", concurrency=0)


def _as_notepad_writes_it(source: Path, target: Path) -> Path:
    """`source` re-saved as Windows Notepad or Excel ("CSV UTF-8") does: a UTF-8 BOM first, CRLF line ends."""
    target.write_bytes(b"\xef\xbb\xbf" + source.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return target


@pytest.mark.fast
@pytest.mark.parametrize("name", ["questions.csv", "questions.jsonl"])
def test_a_bom_and_crlf_read_like_the_plain_file(name, tmp_path):
    windows = _as_notepad_writes_it(DATA / name, tmp_path / name)
    assert windows.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in windows.read_bytes()
    assert list(read_prompts(windows)) == list(read_prompts(DATA / name))  # same ids, texts, lines, bad rows


@pytest.mark.fast
def test_a_bom_before_the_prompt_column_still_names_it(tmp_path):
    # With a BOM left in, the first header would read '\ufeffprompt' and the file would have "no 'prompt' column".
    path = tmp_path / "p.csv"
    path.write_bytes(b'\xef\xbb\xbfprompt,id\r\n"Two\r\nlines",a\r\nHi,b\r\n')
    rows = list(read_prompts(path))
    assert [(r.id, r.messages[-1]["content"], r.line) for r in rows] == [("a", "Two\nlines", 3), ("b", "Hi", 4)]


@pytest.mark.fast
def test_a_prompt_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    for name, data, line in (("p.csv", b"prompt\ncaf\xe9\n", 2), ("p.jsonl", b'{"prompt": "caf\xe9"}\n', 1)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SlmLabError, match=rf"prompt file .*{name} is not UTF-8 text \(line {line},"):
            list(read_prompts(tmp_path / name))


@pytest.mark.fast
def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    out = tmp_path / "answers.jsonl"
    writer = JsonlAppender(out)
    writer.write({"id": "a", "answer": "x"})
    writer.write({"id": "b", "answer": "y"})
    writer.close()
    whole = out.read_bytes()
    with open(out, "ab") as fh:
        fh.write(b'{"id": "c", "ans')  # a kill in the middle of a write
    assert completed_ids(out) == {"a", "b"}
    assert out.read_bytes() == whole  # repaired: appending goes on from a clean line
    assert completed_ids(tmp_path / "missing.jsonl") == set()


# ---------------------------------------------------------------- slow: a real server with a rate limit

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        with app_server(n_ctx=512, max_tokens=16, rate_limit="4/second", rate_burst=1) as running:
            yield running


@pytest.mark.slow
def test_bad_rows_are_skipped_429s_retried_and_a_rerun_redoes_nothing(server, tmp_path):
    out = tmp_path / "answers.jsonl"
    report = run_pipeline(DATA / "questions.jsonl", out, base_url=server.url, concurrency=3, max_tokens=4,
                          retries=8, backoff_s=0.2, show_progress=False)
    assert report.total == 9 and report.answered == len(JSONL_GOOD) and report.failed == []
    assert sorted(_ids(out)) == sorted(JSONL_GOOD)
    assert report.retries >= 1  # three at once against a burst of one: the server said 429, the pipeline waited
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["answer"] and r["completion_tokens"] >= 1 and r["model"] == "smollm2-135m-instruct" for r in records)
    assert max(r["attempts"] for r in records) >= 2
    problems = [json.loads(line) for line in report.errors.read_text().splitlines()]
    assert [(p["kind"], p["line"]) for p in problems] == [("bad_row", 5), ("bad_row", 8)]

    before, errors_before = out.read_bytes(), report.errors.read_bytes()
    again = run_pipeline(DATA / "questions.jsonl", out, base_url=server.url, show_progress=False)
    assert (again.already_done, again.answered) == (len(JSONL_GOOD), 0)
    assert out.read_bytes() == before
    assert len(again.bad_rows) == 2  # still reported by the rerun, but not logged a second time
    assert report.errors.read_bytes() == errors_before


@pytest.mark.slow
def test_killed_halfway_a_rerun_finishes_without_redoing_or_losing_rows(server, tmp_path):
    out = tmp_path / "answers.jsonl"
    cmd = [sys.executable, "-m", "slmlab.apps.pipeline", str(DATA / "questions.csv"), "--output", str(out),
           "--base-url", server.url, "--concurrency", "2", "--max-tokens", "6", "--retries", "8", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "SLMLAB_API_KEY"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not out.exists() or len(out.read_text().splitlines()) < 4:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the pipeline wrote too few rows"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # no chance to clean up
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    finished = completed_ids(out)
    kept = out.read_bytes()
    assert 4 <= len(finished) < len(CSV_GOOD)

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr  # the summary names the failed rows
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["already_done"] == len(finished)  # nothing redone
    assert summary["answered"] == len(CSV_GOOD) - len(finished) and summary["failed"] == 0
    assert out.read_bytes().startswith(kept)  # the rows written before the kill are untouched
    ids = _ids(out)
    assert sorted(ids) == sorted(CSV_GOOD) and len(ids) == len(set(ids))  # every row once: none lost, none twice
    assert "skipped line 8 (q07): no prompt" in second.stderr and "(q12)" in second.stderr
