"""Held-out reviews for a sentiment model (notebook 2.2's design exercise): load them, ask a model, score its labels.

The reviews (``data/sentiment/reviews.jsonl``) are never shown to the model as examples: a Modelfile that copies one
into a ``MESSAGE`` is refused by :func:`copied_reviews`, so the score measures what the design generalizes to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.measure.evaluate import DATA_DIR
from slmlab.textfiles import bad_record, json_records

REVIEWS_FILE = DATA_DIR / "sentiment" / "reviews.jsonl"
LABELS = ("positive", "negative")
REVIEW_SHAPE = '{"id": "r01", "text": "...", "label": "positive|negative"}'
ANSWER_TOKENS = 8  # the most a one-word answer needs; longer answers are cut here, never waited for


@dataclass(frozen=True)
class Review:
    """One short text and its sentiment."""

    id: str
    text: str
    label: str


def load_reviews(path: str | Path = REVIEWS_FILE) -> list[Review]:
    """The labelled reviews of a JSON-lines file (id, text, label: positive or negative)."""
    reviews = []
    for number, row in json_records(path, "labelled review", REVIEW_SHAPE):
        try:
            review = Review(str(row["id"]), str(row["text"]), str(row["label"]))
        except (KeyError, TypeError) as err:
            raise bad_record(path, number, "labelled review", REVIEW_SHAPE, err) from None
        if review.label not in LABELS:
            raise SlmLabError(f"{Path(path).name} line {number}: label '{review.label}' is not one of "
                              f"{', '.join(LABELS)}.", "Label each review positive or negative.")
        reviews.append(review)
    if not reviews:
        raise SlmLabError(f"{Path(path).name} holds no reviews.", "Add one JSON object per line.")
    return reviews


def label_of(answer: str) -> str | None:
    """The label an answer gives: its first word, lower case, when that is one of LABELS; else None."""
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if words and words[0] in LABELS else None


def copied_reviews(messages: Sequence[dict[str, Any]], reviews: Sequence[Review]) -> list[str]:
    """The ids of held-out reviews that appear in example messages (a score on them would measure memory)."""
    shown = " ".join(" ".join(str(m.get("content", "")).lower().split()) for m in messages)
    return [r.id for r in reviews if " ".join(r.text.lower().split()) in shown]


@dataclass(frozen=True)
class LabelScore:
    """A model's answers to the reviews, and how many carry the right label."""

    model: str
    rows: list[dict[str, Any]]

    @property
    def right(self) -> int:
        """Reviews labelled correctly."""
        return sum(r["right"] for r in self.rows)

    @property
    def unlabelled(self) -> int:
        """Answers that did not start with a label."""
        return sum(r["label"] is None for r in self.rows)

    @property
    def accuracy(self) -> float:
        """The share labelled correctly."""
        return self.right / len(self.rows)

    def line(self) -> str:
        """One line: the model, right of total, answers without a label."""
        return (f"{self.model}: {self.right} of {len(self.rows)} right ({self.accuracy:.0%}), "
                f"{self.unlabelled} answer(s) without a label")

    def table(self) -> Any:
        """One row per review: text, expected label, the answer, the label read from it, right or not."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def score_labels(client: Any, model: str, reviews: Sequence[Review]) -> LabelScore:
    """Ask `model` (through an ollama.Client) for each review's label: its own settings, each answer cut at
    ANSWER_TOKENS tokens."""
    rows = []
    for review in reviews:
        answer = client.generate(model, review.text, options={"num_predict": ANSWER_TOKENS}).response
        label = label_of(answer)
        rows.append({"text": review.text, "expected": review.label, "answer": " ".join(answer.split()),
                     "label": label, "right": label == review.label})
    return LabelScore(model, rows)
