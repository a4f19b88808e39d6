"""slmlab.measure.sentiment: the held-out reviews of notebook 2.2's design exercise, read, guarded and scored."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from slmlab.errors import SlmLabError
from slmlab.measure import sentiment


@pytest.mark.fast
def test_the_shipped_reviews_are_balanced_and_unique():
    reviews = sentiment.load_reviews()
    assert len(reviews) == 12 and len({r.id for r in reviews}) == 12 and len({r.text for r in reviews}) == 12
    assert sorted(r.label for r in reviews) == ["negative"] * 6 + ["positive"] * 6


@pytest.mark.fast
def test_a_file_written_on_windows_reads_like_the_original(tmp_path: Path):
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "Great.", "label": "positive"}\r\n\r\n')
    assert sentiment.load_reviews(path) == [sentiment.Review("a", "Great.", "positive")]


@pytest.mark.fast
@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "text": "Great."}', "line 2 is not a labelled review"),
    ("not json", "line 2 is not a labelled review"),
    ('{"id": "a", "text": "Great.", "label": "neutral"}', "line 2: label 'neutral' is not one of positive, negative"),
])
def test_a_bad_line_names_the_file_the_line_and_the_shape(tmp_path: Path, line: str, message: str):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "x", "text": "Fine.", "label": "positive"}\n' + line + "\n")
    with pytest.raises(SlmLabError, match=f"mine.jsonl {message}") as err:
        sentiment.load_reviews(path)
    assert "positive" in err.value.hint


@pytest.mark.fast
def test_missing_and_empty_files_say_what_to_do(tmp_path: Path):
    with pytest.raises(SlmLabError, match="No labelled reviews"):
        sentiment.load_reviews(tmp_path / "nowhere.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SlmLabError, match="holds no reviews"):
        sentiment.load_reviews(tmp_path / "empty.jsonl")


@pytest.mark.fast
@pytest.mark.parametrize("answer, label", [
    ("positive", "positive"), (" Negative.", "negative"), ("POSITIVE!\nmore", "positive"),
    ("The sentiment is positive", None), ("", None), ("neg", None),
])
def test_the_label_is_the_first_word_or_nothing(answer: str, label: str | None):
    assert sentiment.label_of(answer) == label


@pytest.mark.fast
def test_a_held_out_review_copied_into_the_examples_is_found_whatever_its_spacing_or_case():
    reviews = sentiment.load_reviews()
    copied = [{"role": "user", "content": "  " + reviews[3].text.upper().replace(" ", "  ")},
              {"role": "assistant", "content": "negative"}, {"role": "user", "content": "Nice shoes."}]
    assert sentiment.copied_reviews(copied, reviews) == [reviews[3].id]
    assert sentiment.copied_reviews(copied[1:], reviews) == []


class ScriptedClient:
    """Answers like ollama.Client.generate, from a table; records the options it was given."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.options = answers, []

    def generate(self, model: str, prompt: str, options: dict | None = None):
        self.options.append(options)
        return SimpleNamespace(response=self.answers[prompt])


@pytest.mark.fast
def test_a_score_counts_right_labels_and_answers_without_one():
    reviews = [sentiment.Review("a", "Great.", "positive"), sentiment.Review("b", "Awful.", "negative"),
               sentiment.Review("c", "Meh, broken.", "negative")]
    client = ScriptedClient({"Great.": "Positive", "Awful.": "positive", "Meh, broken.": "I think it is negative"})
    score = sentiment.score_labels(client, "mine", reviews)
    assert (score.right, score.unlabelled, round(score.accuracy, 3)) == (1, 1, 0.333)
    assert score.line() == "mine: 1 of 3 right (33%), 1 answer(s) without a label"
    assert [row["label"] for row in score.rows] == ["positive", "positive", None]
    assert score.table()["right"].tolist() == [True, False, False]
    assert client.options == [{"num_predict": sentiment.ANSWER_TOKENS}] * 3  # a long answer is cut, not waited for
