"""Measure a model: next-token agreement between two backends on held-out text (more evals to come)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmlab.backends.base import Backend, Scorer
from slmlab.errors import SlmLabError

HELDOUT_DIR = Path(__file__).resolve().parents[2] / "data" / "heldout"


def heldout_text(name: str = "weather_forecasting") -> str:
    """A held-out text shipped with the course (data/heldout/<name>.txt, CC0)."""
    path = HELDOUT_DIR / f"{name}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in HELDOUT_DIR.glob("*.txt")) if HELDOUT_DIR.is_dir() else []
        raise SlmLabError(f"No held-out text '{name}' in {HELDOUT_DIR}.",
                          f"Available: {', '.join(found) or 'none (run from a checkout of the course)'}.")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Agreement:
    """Teacher-forced next-token agreement of two backends over the same token ids."""

    engines: tuple[str, str]
    tokens: list[int]
    a_argmax: list[int]
    b_argmax: list[int]

    @property
    def positions(self) -> int:
        """Positions compared (one per token)."""
        return len(self.tokens)

    @property
    def agree(self) -> int:
        """Positions where both backends pick the same next token."""
        return sum(x == y for x, y in zip(self.a_argmax, self.b_argmax, strict=True))

    @property
    def rate(self) -> float:
        """Fraction of positions where both pick the same next token."""
        return self.agree / self.positions

    @property
    def first_disagreement(self) -> int | None:
        """Index of the first position where they differ, or None."""
        return next((i for i, (x, y) in enumerate(zip(self.a_argmax, self.b_argmax)) if x != y), None)

    def accuracy(self, which: int) -> float:
        """How often backend 0 (a) or 1 (b) predicts the text's actual next token."""
        guesses = (self.a_argmax, self.b_argmax)[which]
        return sum(g == t for g, t in zip(guesses, self.tokens[1:])) / max(self.positions - 1, 1)

    def __str__(self) -> str:
        a, b = self.engines
        return (f"{a} vs {b}: same next token at {self.agree}/{self.positions} positions ({self.rate:.1%}); "
                f"top-1 accuracy {a} {self.accuracy(0):.1%}, {b} {self.accuracy(1):.1%}")


def next_token_agreement(a: Backend, b: Backend, text: str, max_tokens: int = 1024, strict: bool = True) -> Agreement:
    """Teacher-forced: at each position of `text`, do `a` and `b` pick the same most likely next token?

    The text is tokenized once (by `a`); `b` must tokenize it identically, else this raises — pass
    strict=False to feed both the same ids anyway (meaningful only when the vocabularies are the same).
    """
    for backend in (a, b):
        if not isinstance(backend, Scorer):
            raise SlmLabError(f"The {getattr(backend, 'engine', type(backend).__name__)} backend cannot score tokens.",
                              "Compare backends that run the model locally: 'llamacpp', 'hf', 'onnx' or 'ort-greedy'.")
    if not isinstance(max_tokens, int) or max_tokens < 2:
        raise SlmLabError(f"max_tokens={max_tokens!r} is too small to compare anything.", "Use e.g. max_tokens=1024.")
    ids = a.tokenize(text)[:max_tokens]
    if len(ids) < 2:
        raise SlmLabError("The text is shorter than two tokens.", "Pass a paragraph or more of held-out text.")
    other = b.tokenize(text)[:max_tokens]
    if other != ids and strict:
        i = next((k for k, (x, y) in enumerate(zip(ids, other)) if x != y), min(len(ids), len(other)))
        raise SlmLabError(f"{a.engine} and {b.engine} tokenize the text differently from token {i} on "
                          f"({len(ids)} vs {len(other)} tokens; ids {ids[i:i + 3]} vs {other[i:i + 3]}).",
                          "Both must load the same model; pass strict=False to feed both the same ids anyway.")
    return Agreement((a.engine, b.engine), ids, a.next_token_argmax(ids), b.next_token_argmax(ids))
