"""Find key-like strings in notebooks before they are committed: in cell sources and in saved outputs.

    findings = scan_paths(["solutions", "labs"])
    print(report(findings))          # path, cell, source/output, rule and a redacted preview: never the secret

Two kinds of rule: **known patterns** (OpenAI, Hugging Face, GitHub, AWS, Google, Slack tokens, private-key
blocks, bearer headers, ``key = "..."`` assignments) and **entropy**: a long token mixing upper case, lower case
and digits whose Shannon entropy is high, as random keys are (``secrets.token_urlsafe(32)`` gives ≈ 5 bits per
character; English words and hex digests stay under 4.2). A line that says ``secrets-scan: ignore`` is skipped.
Outputs matter as much as sources: a key printed once stays in the .ipynb file after the cell is deleted.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError

IGNORE_PRAGMA = "secrets-scan: ignore"
ENTROPY_MIN_LENGTH = 24
ENTROPY_THRESHOLD = 4.2  # bits per character

# (rule, pattern): well-known credential formats. The first group, when there is one, is the secret itself.
KNOWN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(rx)) for name, rx in (
    ("private-key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    ("openai-key", r"\b(sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,})"),
    ("huggingface-token", r"\b(hf_[A-Za-z0-9]{30,})\b"),
    ("github-token", r"\b((?:gh[pousr]_[A-Za-z0-9]{36,})|github_pat_[A-Za-z0-9_]{40,})\b"),
    ("aws-access-key", r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    ("google-api-key", r"\b(AIza[0-9A-Za-z_-]{35})"),
    ("slack-token", r"\b(xox[abprs]-[A-Za-z0-9-]{10,})"),
    ("bearer-header", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{20,})"),
    ("key-assignment",
     r"(?i)\b(?:api[_-]?key|secret|token|password|passwd)\w*\s*[:=]\s*[\"']([^\"'\s{}$<>]{12,})[\"']"),
))
# '/' and '.' end a token, so paths, Hub repo ids and dotted names are judged piece by piece (a standard-base64
# key split by '/' into short pieces is missed: the known patterns still catch prefixed keys).
_TOKEN = re.compile(rf"[A-Za-z0-9_+=-]{{{ENTROPY_MIN_LENGTH},}}")


@dataclass(frozen=True)
class Finding:
    """One suspicious string: where it is and which rule found it. `preview` is redacted."""

    path: str
    cell: int  # index of the cell in the notebook (-1: not in a cell)
    where: str  # "source" or "output"
    line: int  # 1-based line in that cell's source or output text
    rule: str
    preview: str

    def __str__(self) -> str:
        return f"{self.path} cell {self.cell} {self.where} line {self.line}: {self.rule} {self.preview}"


def entropy(text: str) -> float:
    """Shannon entropy of `text` in bits per character (0 for an empty text)."""
    if not text:
        return 0.0
    counts, total = Counter(text), len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def redact(secret: str) -> str:
    """A preview that identifies a finding without giving it away: its first 4 characters and its length."""
    return f"{secret[:4]}… ({len(secret)} chars)"


def name_like(token: str) -> bool:
    """Dash/underscore-separated short words, like 'SmolLM2-360M-Instruct-Q4_K_M': a name, not a key."""
    pieces = [p for p in re.split(r"[-_]+", token) if p]
    return len(pieces) >= 3 and max(len(p) for p in pieces) <= 10


def looks_random(token: str, threshold: float = ENTROPY_THRESHOLD) -> bool:
    """A token long enough, mixing upper case, lower case and digits, with entropy over `threshold`, that is
    not a name made of short dash-separated words."""
    core = token.strip("=")
    mixed = any(c.isupper() for c in core) and any(c.islower() for c in core) and any(c.isdigit() for c in core)
    return (not name_like(core) and len(core) >= ENTROPY_MIN_LENGTH and mixed and entropy(core) >= threshold)


def scan_text(text: str, threshold: float = ENTROPY_THRESHOLD) -> list[tuple[int, str, str]]:
    """(line, rule, secret) for each suspicious string in `text`; a span found by a known pattern is not
    reported again by the entropy rule."""
    hits: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if IGNORE_PRAGMA in line:
            continue
        covered: list[tuple[int, int]] = []
        for rule, pattern in KNOWN_PATTERNS:
            for match in pattern.finditer(line):
                group = 1 if pattern.groups else 0
                hits.append((number, rule, match.group(group)))
                covered.append(match.span())
        for match in _TOKEN.finditer(line):
            start, end = match.span()
            if any(s <= start < e or s < end <= e for s, e in covered):
                continue
            if looks_random(match.group(0), threshold):
                hits.append((number, "high-entropy", match.group(0)))
    return hits


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else ""


def notebook_texts(notebook: dict) -> Iterator[tuple[int, str, str]]:
    """(cell index, 'source' | 'output', text) for every source and every text-like output of a notebook."""
    for index, cell in enumerate(notebook.get("cells", [])):
        yield index, "source", _text(cell.get("source"))
        for output in cell.get("outputs", []) or []:
            if "text" in output:
                yield index, "output", _text(output["text"])
            for mime, data in (output.get("data") or {}).items():
                if mime.startswith("text/"):  # images (base64) are skipped: they look random by design
                    yield index, "output", _text(data)
                elif mime.endswith("json"):
                    yield index, "output", json.dumps(data)
            if output.get("traceback"):
                yield index, "output", "\n".join(output["traceback"])
            if output.get("evalue"):
                yield index, "output", str(output["evalue"])


def scan_notebook(path: str | Path, threshold: float = ENTROPY_THRESHOLD) -> list[Finding]:
    """Findings in one .ipynb file (sources and outputs)."""
    file = Path(path)
    try:
        notebook = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SlmLabError(f"The notebook {file} does not exist.", "Pass an existing .ipynb file or folder.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SlmLabError(f"{file} is not a readable notebook ({type(exc).__name__}).",
                          "Open it in Jupyter and save it again, or skip it.") from None
    return [Finding(str(file), cell, where, line, rule, redact(secret))
            for cell, where, text in notebook_texts(notebook)
            for line, rule, secret in scan_text(text, threshold)]


def notebook_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .ipynb files in `paths` (files, or folders searched recursively; checkpoints skipped), sorted."""
    found: set[Path] = set()
    for item in paths:
        path = Path(item)
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            raise SlmLabError(f"{path} does not exist.", "Pass notebooks or folders that hold them.")
    return sorted(found)


def scan_paths(paths: Iterable[str | Path], threshold: float = ENTROPY_THRESHOLD) -> list[Finding]:
    """Findings in every notebook under `paths`."""
    return [finding for file in notebook_files(paths) for finding in scan_notebook(file, threshold)]


def report(findings: list[Finding]) -> str:
    """One line per finding (redacted), or a line saying there is none."""
    if not findings:
        return "no secrets found"
    return "\n".join(str(f) for f in findings)
