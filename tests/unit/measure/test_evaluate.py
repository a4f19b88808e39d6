"""slmlab.measure.evaluate: perplexity (sliding window over llama.cpp's logits), exact-match tasks, variant agreement.

Next-token agreement between backends is tested in test_backends.py.
"""

from __future__ import annotations

import json
import math

import pytest

from slmlab.backends.base import BackendBase, Generation, Timings
from slmlab.errors import SlmLabError
from slmlab.measure import evaluate as ev


@pytest.mark.fast
@pytest.mark.parametrize("n_tokens,n_ctx,stride", [(956, 512, 256), (10, 512, 256), (100, 32, 31), (101, 32, 7),
                                                   (2, 2, 1), (513, 512, 511), (3, 2, 1)])
def test_windows_score_every_token_once_with_enough_context(n_tokens, n_ctx, stride):
    spans = ev.window_spans(n_tokens, n_ctx, stride)
    scored = [t for _, end, first in spans for t in range(first, end)]
    assert scored == list(range(1, n_tokens))
    for begin, end, first in spans:
        assert end - begin <= n_ctx and begin < first <= end
        assert first - begin >= min(n_ctx - stride, first)  # context before the first scored token


@pytest.mark.fast
@pytest.mark.parametrize("n_ctx,stride", [(512, 0), (512, 600), (512, 512), (1, 1), (512.0, 256), (True, 1)])
def test_unusable_windows_are_clear_errors(n_ctx, stride):
    with pytest.raises(SlmLabError, match="1 <= stride < n_ctx"):
        ev.window_spans(100, n_ctx, stride)


@pytest.mark.fast
def test_perplexity_arithmetic_and_agreement():
    a = ev.Perplexity("a", 8, 4, targets=[5, 6, 7, 8], nll=[math.log(2)] * 4, argmax=[5, 6, 0, 0])
    b = ev.Perplexity("b", 8, 4, targets=[5, 6, 7, 8], nll=[math.log(4)] * 4, argmax=[5, 1, 0, 8])
    assert a.value == pytest.approx(2.0) and b.value == pytest.approx(4.0)
    assert a.top1_accuracy == 0.5 and b.top1_accuracy == 0.5
    assert ev.top1_agreement(a, b) == 0.5
    table = ev.perplexity_table({"a": a, "b": b})
    assert table["delta_pct"].tolist() == [0.0, 100.0] and table["agreement_with_a"].tolist() == [1.0, 0.5]
    with pytest.raises(SlmLabError, match="different tokens"):
        ev.top1_agreement(a, ev.Perplexity("c", 8, 4, [1, 2, 3, 4], [0.1] * 4, [1, 2, 3, 4]))
    with pytest.raises(SlmLabError, match="Use one of: a, b"):
        ev.perplexity_table({"a": a, "b": b}, baseline="c")


@pytest.mark.fast
def test_shipped_tasks_load_with_unique_ids_and_a_licence():
    tasks = ev.load_tasks()
    assert 25 <= len(tasks) <= 40 and len({t.id for t in tasks}) == len(tasks)
    assert {p.stem for p in ev.task_files()} == {"arithmetic", "capitals", "facts"}
    assert len(ev.load_tasks("capitals")) == 10
    assert "CC0" in (ev.EVAL_DIR / "README.md").read_text()
    prompt = ev.task_prompt(tasks[0])
    assert prompt.endswith(f"Q: {tasks[0].question}\nA:") and prompt.count("Q: ") == len(ev.FEW_SHOT) + 1
    few_shot_questions = {q for q, _ in ev.FEW_SHOT}
    assert not few_shot_questions & {t.question for t in tasks}  # the examples never give an answer away


@pytest.mark.fast
@pytest.mark.parametrize("line,message", [
    ("{not json", "line 2 is not valid JSON"),
    ('["a"]', "line 2 is a list"),
    ('{"id": "x", "question": "q"}', "field 'answer' is missing"),
    ('{"id": "x", "question": "q", "answer": "a", "aliases": "b"}', "'aliases' must be a list"),
    ('{"id": "x", "question": "q", "answer": "a", "anwser": "b"}', "unknown field"),
    ('{"id": "ok", "question": "q", "answer": "a"}', "appears twice"),
])
def test_bad_task_files_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "ok", "question": "q", "answer": "a"}) + "\n" + line + "\n")
    with pytest.raises(SlmLabError, match=message) as info:
        ev.load_tasks(path)
    assert "mine.jsonl" in str(info.value)
    with pytest.raises(SlmLabError, match="Shipped task sets: arithmetic, capitals, facts"):
        ev.load_tasks("nope")


@pytest.mark.fast
@pytest.mark.parametrize("answer,expected,right", [
    (" Paris.", "Paris", True), ("The Pacific Ocean", "Pacific Ocean", True), (" 42\nQ: more", "42", True),
    ("Toronto", "Ottawa", False), ("4 2", "42", False), ("", "x", False), ("  Mice!", "mice", True),
])
def test_answers_are_normalized_before_comparing(answer, expected, right):
    assert (ev.normalize_answer(answer) == ev.normalize_answer(expected)) is right


class _Parrot(BackendBase):
    """A backend that answers from a dict: exact_match's bookkeeping without a model."""

    engine, model_name = "parrot", "parrot"

    def __init__(self, answers):
        self.answers, self.prompts = answers, []

    def tokenize(self, text):
        return list(text.encode())

    def generate(self, prompt, **gen):
        self.prompts.append((prompt, gen))
        question = prompt.rsplit("Q: ", 1)[1].split("\n")[0]
        return Generation(self.answers.get(question, "no idea"), 1, 1, "stop", Timings(0, 0, 0, 0), "parrot", "parrot")

    def close(self):
        pass


@pytest.mark.fast
def test_exact_match_scores_aliases_and_reports_every_answer():
    tasks = ev.load_tasks("facts")
    parrot = _Parrot({"How many days are in a week?": " seven.", "What is the plural of mouse?": " mouses"})
    result = ev.exact_match(parrot, tasks)
    assert result.correct == 1 and result.accuracy == pytest.approx(1 / len(tasks))
    table = result.table().set_index("id")
    assert table.loc["days-week", "correct"] and not table.loc["plural-mouse", "correct"]
    assert table.loc["plural-mouse", "answer"] == "mouses"
    assert all(g["temperature"] == 0.0 and g["stop"] == ["\n"] for _, g in parrot.prompts)
    assert "1/12 exact matches" in str(result)
    with pytest.raises(SlmLabError, match="No tasks"):
        ev.exact_match(parrot, [])


# ----------------------------------------------------------------------------- with the model (~20 s)


@pytest.mark.slow
def test_windowed_perplexity_equals_scoring_each_prefix_on_its_own():
    """Each scored token's NLL must equal evaluating just its window's prefix and reading the last logits."""
    import numpy as np

    from slmlab.models.resolver import load_llama

    text = ev.heldout_text()[:500]
    result = ev.perplexity(text=text, n_ctx=48, stride=24)
    llm = load_llama(n_ctx=256, logits_all=True)
    try:
        ids = llm.tokenize(text.encode(), add_bos=True)
        spans = ev.window_spans(len(ids), 48, 24)
        assert len(spans) >= 3 and result.tokens == len(ids) - 1 and result.targets == ids[1:]
        for t in (1, 2, 47, 48, 60, len(ids) - 1):  # the first window, across a boundary, the last token
            begin = next(b for b, end, first in spans if first <= t < end)
            llm.reset()
            llm.eval(ids[begin:t])
            row = np.asarray(llm.scores[t - begin - 1], dtype=np.float64)
            nll = row.max() + np.log(np.exp(row - row.max()).sum()) - row[ids[t]]
            assert result.nll[t - 1] == pytest.approx(nll, rel=1e-6)
            assert result.argmax[t - 1] == int(row.argmax())
    finally:
        llm.close()


@pytest.mark.slow
def test_perplexity_of_heldout_text_vs_repeated_text():
    heldout = ev.perplexity(max_tokens=256, n_ctx=256)
    assert heldout.tokens == 255 and 5 < heldout.value < 200
    sentence = "The cat sat on the mat and looked at the door. "
    repeated = ev.perplexity(text=sentence * 20, n_ctx=256)  # a model copies what it has just read
    assert repeated.value < heldout.value / 3
    assert repeated.top1_accuracy > 0.8
    with pytest.raises(SlmLabError, match="no text"):
        ev.perplexity(text="  ")


@pytest.mark.slow
def test_exact_match_on_smollm2_is_partly_right():
    result = ev.exact_match("smollm2-135m-instruct", ev.load_tasks("capitals"))
    table = result.table().set_index("id")
    assert 4 <= result.correct <= 9, table
    assert table.loc["capital-france", "correct"] and table.loc["capital-france", "answer"] == "Paris"
