"""Measure a model: perplexity on held-out text, exact-match questions, agreement between two models.

- :func:`perplexity` — how surprised llama.cpp is by text the model never saw (sliding window, logits of
  every position); lower is better, and the same text scored by two quantizations shows what was lost.
- :func:`exact_match` — short questions with one right answer (``data/eval/*.jsonl``), answered greedily.
- :func:`next_token_agreement` — teacher-forced top-1 agreement of two backends;
  :func:`top1_agreement` — the same from two :class:`Perplexity` runs (two GGUF variants).
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from slmlab.backends.base import Backend, Scorer
from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    import pandas as pd

    from slmlab.models.resolver import ResolvedModel

DATA_DIR = Path(__file__).resolve().parents[3] / "data"
HELDOUT_DIR = DATA_DIR / "heldout"
EVAL_DIR = DATA_DIR / "eval"


def heldout_file(name: str = "weather_forecasting") -> Path:
    """The path of a held-out text shipped with the course (data/heldout/<name>.txt, CC0): for a command line."""
    path = HELDOUT_DIR / f"{name}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in HELDOUT_DIR.glob("*.txt")) if HELDOUT_DIR.is_dir() else []
        raise SlmLabError(f"No held-out text '{name}' in {HELDOUT_DIR}.",
                          f"Available: {', '.join(found) or 'none (run from a checkout of the course)'}.")
    return path


def heldout_text(name: str = "weather_forecasting") -> str:
    """A held-out text shipped with the course (data/heldout/<name>.txt, CC0)."""
    return heldout_file(name).read_text(encoding="utf-8")


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
        same = same_prefix(self.a_argmax, self.b_argmax)
        return same if same < min(len(self.a_argmax), len(self.b_argmax)) else None

    def accuracy(self, which: int) -> float:
        """How often backend 0 (a) or 1 (b) predicts the text's actual next token."""
        guesses = (self.a_argmax, self.b_argmax)[which]
        return sum(g == t for g, t in zip(guesses, self.tokens[1:], strict=False)) / max(self.positions - 1, 1)

    def __str__(self) -> str:
        a, b = self.engines
        return (f"{a} vs {b}: same next token at {self.agree}/{self.positions} positions ({self.rate:.1%}); "
                f"top-1 accuracy {a} {self.accuracy(0):.1%}, {b} {self.accuracy(1):.1%}")


def next_token_agreement(a: Backend, b: Backend, text: str, max_tokens: int = 1024, strict: bool = True) -> Agreement:
    """Teacher-forced: at each position of `text`, do `a` and `b` pick the same most likely next token?

    The text is tokenized once (by `a`); `b` must tokenize it identically, else this raises — pass
    strict=False to feed both the same ids anyway (meaningful only when the vocabularies are the same).
    """
    scorer_a, scorer_b = _scorer(a), _scorer(b)
    if not isinstance(max_tokens, int) or max_tokens < 2:
        raise SlmLabError(f"max_tokens={max_tokens!r} is too small to compare anything.", "Use e.g. max_tokens=1024.")
    ids = a.tokenize(text)[:max_tokens]
    if len(ids) < 2:
        raise SlmLabError("The text is shorter than two tokens.", "Pass a paragraph or more of held-out text.")
    other = b.tokenize(text)[:max_tokens]
    if other != ids and strict:
        i = same_prefix(ids, other)
        raise SlmLabError(f"{a.engine} and {b.engine} tokenize the text differently from token {i} on "
                          f"({len(ids)} vs {len(other)} tokens; ids {ids[i:i + 3]} vs {other[i:i + 3]}).",
                          "Both must load the same model; pass strict=False to feed both the same ids anyway.")
    return Agreement((a.engine, b.engine), ids, scorer_a.next_token_argmax(ids), scorer_b.next_token_argmax(ids))


def _scorer(backend: Backend) -> Scorer:
    """`backend` as a Scorer, or a clear error for one that cannot score tokens (a server over HTTP)."""
    if not isinstance(backend, Scorer):
        raise SlmLabError(f"The {getattr(backend, 'engine', type(backend).__name__)} backend cannot score tokens.",
                          "Compare backends that run the model locally: 'llamacpp', 'hf', 'onnx' or 'ort-greedy'.")
    return backend


def same_prefix(reference: Sequence[int], other: Sequence[int]) -> int:
    """How many tokens two sequences share before they first differ (all of the shorter one when none does)."""
    return next((i for i, (a, b) in enumerate(zip(reference, other, strict=False)) if a != b),
                min(len(reference), len(other)))


# ----------------------------------------------------------------------------- perplexity


def _model_ref(model: Any) -> Any:
    """Accept what the course passes around: a name, a path, a ResolvedModel or a QuantizedModel."""
    return getattr(model, "resolved", model) if not isinstance(model, str | os.PathLike) else model


@dataclass(frozen=True)
class Perplexity:
    """Perplexity of one model on one text, with what it predicted at every scored position."""

    model: str
    n_ctx: int
    stride: int
    targets: list[int] = field(repr=False)  # the text's tokens that were scored (each predicted from its past)
    nll: list[float] = field(repr=False)  # -log p(target), natural log, one per target
    argmax: list[int] = field(repr=False)  # the model's most likely token at each scored position
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        """How many tokens were scored."""
        return len(self.targets)

    @property
    def mean_nll(self) -> float:
        """Average negative log-likelihood per token (nats): the cross-entropy."""
        return sum(self.nll) / len(self.nll)

    @property
    def value(self) -> float:
        """Perplexity: exp(mean NLL); as if the model hesitated between this many tokens at each step."""
        return math.exp(self.mean_nll)

    @property
    def top1_accuracy(self) -> float:
        """How often the most likely token was the text's actual next token."""
        return sum(a == t for a, t in zip(self.argmax, self.targets, strict=True)) / len(self.targets)

    def __str__(self) -> str:
        return (f"{self.model}: perplexity {self.value:.3f} over {self.tokens} tokens "
                f"(window {self.n_ctx}, stride {self.stride}; top-1 {self.top1_accuracy:.1%})")


def window_spans(n_tokens: int, n_ctx: int, stride: int) -> list[tuple[int, int, int]]:
    """The sliding windows as (begin, end, first_scored): every token from 1 on is scored exactly once.

    Each window feeds tokens [begin, end) and scores targets [first_scored, end); windows after the first
    start `stride` tokens later, so each scored token sees at least n_ctx - stride tokens of context.
    """
    if not (type(n_ctx) is int and type(stride) is int and 1 <= stride < n_ctx):
        raise SlmLabError(f"Window n_ctx={n_ctx!r}, stride={stride!r} is not usable.",
                          "Use whole numbers with 1 <= stride < n_ctx (windows must overlap), "
                          "e.g. n_ctx=512, stride=256.")
    spans, prev_end, begin = [], 1, 0
    while prev_end < n_tokens:
        end = min(begin + n_ctx, n_tokens)
        spans.append((begin, end, prev_end))
        prev_end = end
        begin += stride
    return spans


def _log_softmax_at(rows: Any, picks: Sequence[int]) -> tuple[list[float], list[int]]:
    """-log softmax(row)[pick] and argmax(row) for each row, in float64, a chunk at a time."""
    import numpy as np

    nll, best = [], []
    for start in range(0, len(picks), 64):
        chunk = np.asarray(rows[start:start + 64], dtype=np.float64)
        top = chunk.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(chunk - top).sum(axis=1, keepdims=True)))[:, 0]
        idx = np.asarray(picks[start:start + 64])
        nll.extend((lse - chunk[np.arange(len(idx)), idx]).tolist())
        best.extend(chunk.argmax(axis=1).tolist())
    return nll, best


Window = tuple[list[int], int, list[int]]  # tokens to evaluate, the logits row of the first scored token, the targets
Scored = tuple[str, list[int], list[float], list[int], float]  # model name, targets, -log p, argmax, seconds


def _score_windows(model: Any, text: str | None, n_ctx: int, n_threads: int | None,
                   windows: Callable[[Any, list[int]], Iterable[Window]], **load: Any) -> Scored:
    """Load `model`, tokenize `text` as llama.cpp does, and score the targets of each window from an empty cache.

    Returns (model name, targets, -log p of each, argmax at each, seconds); row i of a window predicts token i + 1.
    """
    from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, load_llama, resolve

    ref = _model_ref(model if model is not None else DEFAULT_MODEL)
    resolved = ref if isinstance(ref, ResolvedModel) else resolve(ref)
    text = heldout_text() if text is None else text
    if not isinstance(text, str) or not text.strip():
        raise SlmLabError("There is no text to score.",
                          "Pass a paragraph or more, or leave text=None for the held-out text.")
    start = perf_counter()
    llm = load_llama(resolved, n_ctx=-(-n_ctx // 256) * 256, n_batch=n_ctx, logits_all=True, n_threads=n_threads,
                     **load)
    targets: list[int] = []
    nll: list[float] = []
    argmax: list[int] = []
    try:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)  # a BOS only if the model wants one
        for tokens, first_row, picks in windows(llm, ids):
            llm.reset()
            llm.eval(tokens)
            window_nll, window_best = _log_softmax_at(llm.scores[first_row:first_row + len(picks)], picks)
            targets += picks
            nll += window_nll
            argmax += window_best
    finally:
        llm.close()
    return resolved.name, targets, nll, argmax, perf_counter() - start


def perplexity(model: ResolvedModel | str | os.PathLike | Any = None, text: str | None = None, *, n_ctx: int = 512,
               stride: int | None = None, max_tokens: int | None = None, n_threads: int | None = None) -> Perplexity:
    """Perplexity of a GGUF model on `text` (default: the held-out text), with llama.cpp's logits.

    The text is tokenized as llama.cpp does (a BOS only if the model asks for one) and scored with a
    sliding window of `n_ctx` tokens moved by `stride` (default n_ctx // 2): the method of Hugging Face's
    perplexity guide. llama.cpp's `llama-perplexity` tool instead cuts the text into separate chunks and
    scores their second halves (:func:`chunked_perplexity`), so its figures differ; compare numbers from one method.
    """
    stride = stride if stride is not None else n_ctx // 2
    window_spans(2, n_ctx, stride)  # validates the window before loading anything

    def windows(llm: Any, ids: list[int]) -> Iterator[Window]:
        ids = ids[:max_tokens] if max_tokens is not None else ids
        if len(ids) < 2:
            raise SlmLabError("The text is shorter than two tokens.", "Pass a paragraph or more of text.")
        for begin, end, first in window_spans(len(ids), n_ctx, stride):
            yield ids[begin:end], first - 1 - begin, ids[first:end]

    name, targets, nll, argmax, seconds = _score_windows(model, text, n_ctx, n_threads, windows)
    return Perplexity(name, n_ctx, stride, targets, nll, argmax, seconds)


def chunked_perplexity(model: ResolvedModel | str | os.PathLike | Any = None, text: str | None = None, *,
                       n_ctx: int = 512, chunks: int | None = None, n_threads: int | None = None,
                       flash_attn: bool = True) -> Perplexity:
    """Perplexity the way llama.cpp's ``llama-perplexity`` computes it, with the Python binding.

    The tokens are cut into separate chunks of `n_ctx` (at most `chunks` of them); each chunk is evaluated on its
    own with its first token replaced by BOS when the model uses one, and only its second half is scored (every
    scored token sees n_ctx/2 to n_ctx-1 tokens of its own chunk, none of the chunks before). Same text and `n_ctx`:
    the same number as ``llama-perplexity -c n_ctx``, up to floating-point rounding. `flash_attn` as that tool's
    default (``-fa auto``: on for a CPU); the binding's own default, off, rounds differently (~0.3% here).
    """
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 8:
        raise SlmLabError(f"n_ctx={n_ctx!r} is not usable.", "Use a whole number of tokens such as 128 or 512.")

    def windows(llm: Any, ids: list[int]) -> Iterator[Window]:
        import llama_cpp

        if len(ids) < 2 * n_ctx:
            raise SlmLabError(f"The text has {len(ids)} tokens; chunks of {n_ctx} need at least {2 * n_ctx}.",
                              "Use a smaller n_ctx or a longer text (llama-perplexity asks the same).")
        count = len(ids) // n_ctx if chunks is None else min(chunks, len(ids) // n_ctx)
        add_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model))
        for i in range(count):
            chunk = ids[i * n_ctx:(i + 1) * n_ctx]
            yield [llm.token_bos() if add_bos else chunk[0], *chunk[1:]], n_ctx // 2, chunk[n_ctx // 2 + 1:]

    name, targets, nll, argmax, seconds = _score_windows(model, text, n_ctx, n_threads, windows, flash_attn=flash_attn)
    return Perplexity(name, n_ctx, n_ctx, targets, nll, argmax, seconds)


def top1_agreement(a: Perplexity, b: Perplexity) -> float:
    """Fraction of scored positions where two models (e.g. two quantizations) pick the same next token."""
    if a.targets != b.targets:
        raise SlmLabError(f"{a.model} and {b.model} were scored on different tokens.",
                          "Score the same text with the same tokenizer, n_ctx and stride.")
    return sum(x == y for x, y in zip(a.argmax, b.argmax, strict=True)) / a.tokens


def perplexity_table(results: Mapping[str, Perplexity], baseline: str | None = None) -> pd.DataFrame:
    """One row per variant: perplexity, its change vs. `baseline`, top-1 accuracy and agreement with it."""
    import pandas as pd

    if not results:
        raise SlmLabError("No perplexity results to tabulate.", "Pass {'Q8_0': perplexity(...), ...}.")
    base_key = baseline if baseline is not None else next(iter(results))
    if base_key not in results:
        raise SlmLabError(f"No result named '{base_key}' to compare with.", f"Use one of: {', '.join(results)}.")
    base = results[base_key]
    rows = [{"variant": key, "perplexity": round(r.value, 3),
             "delta_pct": round(100 * (r.value / base.value - 1), 2),
             "top1_accuracy": round(r.top1_accuracy, 4),
             f"agreement_with_{base_key}": round(top1_agreement(r, base), 4)} for key, r in results.items()]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- exact match

# Two worked examples put in front of every question, so that a small model answers in the same short form.
FEW_SHOT: tuple[tuple[str, str], ...] = (("What is the capital of Peru?", "Lima"), ("What is 3 + 4?", "7"))
_ARTICLES = re.compile(r"^(the|a|an)\s+")


@dataclass(frozen=True)
class Task:
    """One question with its right answer and accepted alternatives."""

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    source: str = ""  # the file it came from

    @property
    def accepted(self) -> set[str]:
        """Normalized answers that count as right."""
        return {normalize_answer(a) for a in (self.answer, *self.aliases)}


def normalize_answer(text: str) -> str:
    """Lower case, first line only, no punctuation, no leading article, single spaces."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.lower().translate(str.maketrans("", "", string.punctuation))
    return _ARTICLES.sub("", " ".join(line.split()))


def task_files() -> list[Path]:
    """The task sets shipped in data/eval/."""
    return sorted(EVAL_DIR.glob("*.jsonl"))


def load_tasks(*names: str | os.PathLike) -> list[Task]:
    """Tasks from data/eval/<name>.jsonl (or from .jsonl paths); all shipped sets when no name is given."""
    paths = [Path(n) if str(n).endswith(".jsonl") else EVAL_DIR / f"{n}.jsonl" for n in names] or task_files()
    tasks: list[Task] = []
    for path in paths:
        if not path.is_file():
            known = ", ".join(p.stem for p in task_files()) or "none"
            raise SlmLabError(f"No task file {path}.", f"Shipped task sets: {known}; or pass a path to a .jsonl file.")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                tasks.append(_parse_task(line, path, number))
    seen: dict[str, str] = {}
    for task in tasks:
        if task.id in seen:
            raise SlmLabError(f"Task id '{task.id}' appears twice ({seen[task.id]} and {task.source}).",
                              "Give every task a unique id.")
        seen[task.id] = task.source
    if not tasks:
        raise SlmLabError(f"No tasks in {', '.join(str(p) for p in paths)}.", "Add one JSON object per line.")
    return tasks


def _parse_task(line: str, path: Path, number: int) -> Task:
    where = f"{path.name}, line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SlmLabError(f"{where} is not valid JSON: {exc.msg}.",
                          'Write one object per line, e.g. {"id": "q1", "question": "...", "answer": "..."}.') from None
    if not isinstance(record, dict):
        raise SlmLabError(f"{where} is a {type(record).__name__}, not a JSON object.", "Write one object per line.")
    for key in ("id", "question", "answer"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise SlmLabError(f"{where}: field '{key}' is missing or empty.",
                              "Every task needs non-empty string fields id, question and answer.")
    aliases = record.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise SlmLabError(f"{where}: field 'aliases' must be a list of non-empty strings.", 'e.g. "aliases": ["seven"]')
    unknown = set(record) - {"id", "question", "answer", "aliases"}
    if unknown:
        raise SlmLabError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.",
                          "Fields are id, question, answer and (optional) aliases.")
    return Task(record["id"], record["question"], record["answer"], tuple(aliases), path.name)


def task_prompt(task: Task) -> str:
    """The few-shot prompt for one task: the FEW_SHOT examples, then `Q: <question>\\nA:`."""
    shots = "".join(f"Q: {q}\nA: {a}\n" for q, a in FEW_SHOT)
    return f"{shots}Q: {task.question}\nA:"


@dataclass(frozen=True)
class ExactMatch:
    """Answers to a task set and how many were right."""

    model: str
    rows: list[dict[str, Any]] = field(repr=False)

    @property
    def correct(self) -> int:
        """Questions answered right."""
        return sum(r["correct"] for r in self.rows)

    @property
    def accuracy(self) -> float:
        """Fraction answered right."""
        return self.correct / len(self.rows)

    def table(self) -> pd.DataFrame:
        """One row per question: id, question, expected, answer, correct."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def __str__(self) -> str:
        return f"{self.model}: {self.correct}/{len(self.rows)} exact matches ({self.accuracy:.0%})"


def exact_match(model: Backend | ResolvedModel | str | os.PathLike | Any = None, tasks: Iterable[Task] | None = None,
                max_tokens: int = 10) -> ExactMatch:
    """Ask every task greedily (plain completion, few-shot) and compare the first line with the answer.

    `model` is an open Backend (any engine) or a GGUF model reference, opened here with llama.cpp.
    """
    from slmlab.models.resolver import DEFAULT_MODEL

    tasks = list(tasks) if tasks is not None else load_tasks()
    if not tasks:
        raise SlmLabError("No tasks to ask.", "Pass tasks=load_tasks() or leave tasks=None.")
    if isinstance(model, Backend):
        return _ask(model, tasks, max_tokens)
    from slmlab.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend(_model_ref(model if model is not None else DEFAULT_MODEL), n_ctx=512) as backend:
        return _ask(backend, tasks, max_tokens)


def _ask(backend: Backend, tasks: list[Task], max_tokens: int) -> ExactMatch:
    rows = []
    for task in tasks:
        answer = backend.generate(task_prompt(task), max_tokens=max_tokens, temperature=0.0, stop=["\n"]).text
        rows.append({"id": task.id, "question": task.question, "expected": task.answer, "answer": answer.strip(),
                     "correct": normalize_answer(answer) in task.accepted})
    return ExactMatch(backend.model_name, rows)
