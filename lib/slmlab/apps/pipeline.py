"""Answer a file of prompts in batch: CSV or JSONL in, append-only JSONL out, resumable after any interruption.

    report = run_pipeline("data/prompts/questions.csv", "answers.jsonl", base_url=server.url, concurrency=4)

- **Input**: a CSV with a ``prompt`` column, or JSONL objects with ``prompt`` (or chat ``messages``); optional
  ``id`` (default ``row-<line>``), ``system`` and ``max_tokens``.
- **Output**: one JSON line per answered row, appended and fsync'ed as soon as it is answered — a crash or a kill
  loses at most the rows being answered at that moment, never a finished one. A run first reads what the output
  already holds (repairing a line torn by a kill) and skips those ids: re-running resumes.
- **Bad rows** (no prompt, bad JSON, duplicate id, a prompt over the context …) are reported in
  ``<output>.errors.jsonl`` and skipped; they never stop the batch. Rows that still fail after the retries are
  reported there too, and are tried again by the next run.
- **Concurrency and retries**: at most `concurrency` requests in flight; HTTP 429/5xx and connection errors are
  retried with exponential backoff (or the server's Retry-After).

Answers come from an OpenAI-compatible server (``base_url``: ``slmlab.serve.gateway.app``, llama-cpp-python's server,
vLLM …) or from an in-process slmlab Backend (one request at a time). ``python -m slmlab.apps.pipeline --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

API_KEY_ENV = "SLMLAB_API_KEY"  # the key for base_url's server (never a command-line argument)
MAX_RETRY_WAIT_S = 30.0


@dataclass(frozen=True)
class PromptRow:
    """One row to answer: its id, chat messages, and optional max_tokens."""

    id: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    line: int = 0


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be answered, and why."""

    line: int
    id: str | None
    problem: str


class BadRequest(Exception):
    """The answerer refused the row for good (retrying cannot help)."""


class Retryable(Exception):
    """A failure worth retrying; `retry_after` is the server's advice in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class PipelineReport:
    """What a run did. `bad_rows` and `failed` are also in the errors file."""

    output: Path
    errors: Path
    total: int = 0  # rows in the input
    already_done: int = 0  # skipped: the output held them before this run
    answered: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # ids that failed after all retries (retried next run)
    retries: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The figures as a flat dict."""
        return {"total": self.total, "already_done": self.already_done, "answered": self.answered,
                "bad_rows": len(self.bad_rows), "failed": len(self.failed), "retries": self.retries,
                "seconds": round(self.seconds, 2), "output": str(self.output), "errors": str(self.errors)}


# ---------------------------------------------------------------------------------------------- reading


def read_prompts(path: str | os.PathLike) -> Iterator[PromptRow | BadRow]:
    """The rows of a CSV or JSONL prompt file, each a PromptRow or a BadRow saying what is wrong with it."""
    file = Path(path)
    if not file.is_file():
        raise SlmLabError(f"The prompt file {file} does not exist.", "Check the path (e.g. data/prompts/).")
    kind = file.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise SlmLabError(f"{file} is neither .csv nor .jsonl.", "Give a CSV with a 'prompt' column, or JSON lines.")
    seen: set[str] = set()
    for line, record in (_csv_records(file) if kind == ".csv" else _jsonl_records(file)):
        row = record if isinstance(record, BadRow) else _to_row(line, record)
        if isinstance(row, PromptRow):
            if row.id in seen:
                row = BadRow(line, row.id, f"duplicate id '{row.id}': ids must be unique for resuming to work")
            else:
                seen.add(row.id)
        yield row


def _csv_records(file: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """The CSV's rows as dicts, with their line numbers (a BOM skipped, CRLF read like LF, as Excel writes them)."""
    reader = csv.DictReader(io.StringIO(read_text(file, "prompt file"), newline=""))
    if not reader.fieldnames or "prompt" not in reader.fieldnames:
        raise SlmLabError(f"{file} has no 'prompt' column (its columns: {reader.fieldnames}).",
                          "Name the column with the prompts 'prompt' (optional: id, system, max_tokens).")
    for record in reader:
        yield reader.line_num, record


def _jsonl_records(file: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """The JSONL's objects with their line numbers (a BOM skipped, CRLF read like LF); a bad line is a BadRow."""
    for line, text in enumerate(read_text(file, "prompt file").split("\n"), 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, BadRow(line, None, f"not valid JSON: {exc.msg} (at character {exc.pos})")
            continue
        yield line, record if isinstance(record, dict) else BadRow(line, None, "not a JSON object")


def _to_row(line: int, record: dict[str, Any]) -> PromptRow | BadRow:
    ident = str(record.get("id") or "").strip() or f"row-{line}"
    max_tokens = record.get("max_tokens")
    if max_tokens not in (None, ""):
        try:
            max_tokens = int(max_tokens)
        except (TypeError, ValueError):
            return BadRow(line, ident, f"max_tokens={max_tokens!r} is not a whole number")
        if max_tokens < 1:
            return BadRow(line, ident, f"max_tokens={max_tokens} must be at least 1")
    else:
        max_tokens = None
    messages = record.get("messages")
    if messages is not None:
        if (not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str) for m in messages)):
            return BadRow(line, ident, "'messages' must be a list of {role, content} with role system/user/assistant")
        return PromptRow(ident, [{"role": m["role"], "content": m["content"]} for m in messages], max_tokens, line)
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return BadRow(line, ident, "no prompt: the 'prompt' field is missing or empty")
    system = record.get("system")
    messages = ([{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else [])
    return PromptRow(ident, [*messages, {"role": "user", "content": prompt}], max_tokens, line)


# ---------------------------------------------------------------------------------------------- the output


def completed_ids(output: str | os.PathLike) -> set[str]:
    """Ids already answered in `output`. A last line torn by a kill is cut off, so appending can go on."""
    file = Path(output)
    if not file.exists():
        return set()
    data = file.read_bytes()
    done, good_end = set(), 0
    for raw in data.splitlines(keepends=True):
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not raw.endswith(b"\n") or not isinstance(record, dict) or "id" not in record:
            break  # torn or foreign: everything from here on is dropped
        done.add(str(record["id"]))
        good_end += len(raw)
    if good_end < len(data):
        with open(file, "r+b") as fh:
            fh.truncate(good_end)
            os.fsync(fh.fileno())
    return done


def logged_bad_rows(errors: str | os.PathLike) -> set[tuple[Any, ...]]:
    """The input rows an errors file already reports as bad (line, id, problem); unreadable lines are ignored."""
    file = Path(errors)
    if not file.exists():
        return set()
    keys = set()
    for raw in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind") == "bad_row":
            keys.add(_bad_row_key(record))
    return keys


def _bad_row_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return record.get("line"), record.get("id"), record.get("problem")


class JsonlAppender:
    """Append JSON lines durably: each write is flushed and fsync'ed before it returns."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


# ---------------------------------------------------------------------------------------------- answerers

Answerer = Callable[[PromptRow, int], Awaitable[dict[str, Any]]]


def http_answerer(base_url: str, api_key: str | None = None, model: str | None = None,
                  timeout: float = 120) -> tuple[Answerer, Callable[[], Awaitable[None]]]:
    """(answer, close) for an OpenAI-compatible server's /v1/chat/completions."""
    import httpx

    root = str(getattr(base_url, "url", base_url)).rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    api_key = api_key or os.environ.get(API_KEY_ENV)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.AsyncClient(base_url=root, headers=headers, timeout=timeout, trust_env=False)

    async def answer(row: PromptRow, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": row.messages, "max_tokens": max_tokens, "temperature": 0}
        if model:
            body["model"] = model
        try:
            reply = await client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        if reply.status_code == 429 or reply.status_code >= 500:
            after = reply.headers.get("retry-after")
            raise Retryable(f"HTTP {reply.status_code}: {_error_text(reply)}",
                            float(after) if after and after.replace(".", "", 1).isdigit() else None)
        if reply.status_code != 200:
            raise BadRequest(f"HTTP {reply.status_code}: {_error_text(reply)}")
        data = reply.json()
        choice, usage = data["choices"][0], data.get("usage") or {}
        return {"answer": choice["message"]["content"], "finish_reason": choice.get("finish_reason"),
                "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                "model": data.get("model")}

    return answer, client.aclose


def backend_answerer(backend: Any) -> tuple[Answerer, Callable[[], Awaitable[None]]]:
    """(answer, close) for an in-process slmlab Backend: one request at a time, in a worker thread."""
    lock = asyncio.Lock()

    async def answer(row: PromptRow, max_tokens: int) -> dict[str, Any]:
        async with lock:
            try:
                result = await asyncio.to_thread(backend.chat, row.messages, max_tokens=max_tokens)
            except SlmLabError as exc:  # the row's fault (too long, bad options): retrying cannot help
                raise BadRequest(exc.problem) from None
            except Exception as exc:  # noqa: BLE001 - the engine's trouble: worth another try
                raise Retryable(f"{type(exc).__name__}: {exc}") from None
        return {"answer": result.text, "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens, "model": result.model}

    async def close() -> None:
        return None

    return answer, close


def _error_text(reply: Any) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except Exception:  # noqa: BLE001 - not an OpenAI error body
        return reply.text[:200]


# ---------------------------------------------------------------------------------------------- running


async def run_pipeline_async(input: str | os.PathLike, output: str | os.PathLike, *, base_url: str | None = None,
                             api_key: str | None = None, model: str | None = None, backend: Any = None,
                             concurrency: int = 4, retries: int = 3, max_tokens: int = 64, backoff_s: float = 0.5,
                             errors: str | os.PathLike | None = None, show_progress: bool = True) -> PipelineReport:
    """run_pipeline() for code that already runs an event loop (``await`` it in a notebook)."""
    if (base_url is None) == (backend is None):
        raise SlmLabError("Give exactly one of base_url= (an OpenAI-compatible server) and backend= (in-process).",
                          "E.g. run_pipeline(..., base_url=server.url) or run_pipeline(..., backend=llm).")
    for name, value, low in (("concurrency", concurrency, 1), ("retries", retries, 0), ("max_tokens", max_tokens, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SlmLabError(f"{name}={value!r} is not usable.", f"Use a whole number, at least {low}.")
    started = time.perf_counter()
    output = Path(output)
    report = PipelineReport(output, Path(errors) if errors else output.with_name(output.name + ".errors.jsonl"))
    done = completed_ids(output)
    todo: list[PromptRow] = []
    for row in read_prompts(input):
        report.total += 1
        if isinstance(row, BadRow):
            report.bad_rows.append(row)
        elif row.id in done:
            report.already_done += 1
        else:
            todo.append(row)
    answer, close = http_answerer(base_url, api_key, model) if base_url is not None else backend_answerer(backend)
    already_logged = logged_bad_rows(report.errors)  # a rerun reports them again, but logs each only once
    results, problems = JsonlAppender(output), JsonlAppender(report.errors)
    for bad in report.bad_rows:
        if _bad_row_key(asdict(bad)) not in already_logged:
            problems.write({"kind": "bad_row", **asdict(bad)})
    bar = _bar(len(todo), show_progress)
    queue: asyncio.Queue[PromptRow] = asyncio.Queue()
    for row in todo:
        queue.put_nowait(row)

    async def worker() -> None:
        while not queue.empty():
            row = queue.get_nowait()
            record = await _answer_with_retries(row, answer, max_tokens, retries, backoff_s, report)
            if record.get("kind") == "answer":
                results.write(record["result"])
                report.answered += 1
            else:
                problems.write(record)
                if record["kind"] == "failed":
                    report.failed.append(row.id)
                else:
                    report.bad_rows.append(BadRow(row.line, row.id, record["problem"]))
            if bar is not None:
                bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(todo))))))
    finally:
        if bar is not None:
            bar.close()
        results.close()
        problems.close()
        await close()
    report.seconds = time.perf_counter() - started
    return report


async def _answer_with_retries(row: PromptRow, answer: Answerer, max_tokens: int, retries: int, backoff_s: float,
                               report: PipelineReport) -> dict[str, Any]:
    last = ""
    for attempt in range(retries + 1):
        begin = time.perf_counter()
        try:
            result = await answer(row, row.max_tokens or max_tokens)
        except BadRequest as exc:
            return {"kind": "bad_row", "line": row.line, "id": row.id, "problem": str(exc)}
        except Retryable as exc:
            last = str(exc)
            if attempt < retries:
                report.retries += 1
                wait = exc.retry_after if exc.retry_after is not None else backoff_s * 2 ** attempt
                await asyncio.sleep(min(MAX_RETRY_WAIT_S, wait) * random.uniform(1.0, 1.25))  # jitter: no stampede
            continue
        return {"kind": "answer", "result": {"id": row.id, **result, "latency_s": round(time.perf_counter() - begin, 3),
                                             "attempts": attempt + 1}}
    return {"kind": "failed", "line": row.line, "id": row.id, "problem": f"failed after {retries + 1} attempts: {last}"}


def _bar(total: int, show: bool) -> Any:
    if not show:
        return None
    from slmlab.progress import progress

    return progress(total=total, desc="answering")


def run_pipeline(input: str | os.PathLike, output: str | os.PathLike, **options: Any) -> PipelineReport:
    """Answer every row of `input` not yet in `output` (see the module docstring); returns a PipelineReport.

    Options: base_url / api_key / model (a server) or backend (in-process); concurrency=4, retries=3,
    max_tokens=64, backoff_s=0.5, errors (default <output>.errors.jsonl), show_progress=True.
    """
    coroutine = run_pipeline_async(input, output, **options)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Inside a running loop (a Jupyter kernel): run on a loop of its own in a helper thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ---------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """python -m slmlab.apps.pipeline INPUT --output OUT (--base-url URL | --engine llamacpp [--model M])."""
    parser = argparse.ArgumentParser(prog="python -m slmlab.apps.pipeline", description=__doc__.split("\n\n")[0],
                                     epilog=f"The server's API key is read from ${API_KEY_ENV}.")
    parser.add_argument("input", help="a .csv (with a 'prompt' column) or .jsonl prompt file")
    parser.add_argument("--output", required=True, help="the JSONL file answers are appended to")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--engine", default=None, help="answer in-process with this slmlab engine instead")
    parser.add_argument("--model", default=None)
    parser.add_argument("--n-ctx", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    backend = None
    try:
        if args.engine:
            from slmlab.backends import open_backend

            options = {"n_ctx": args.n_ctx} if args.n_ctx else {}
            backend = open_backend(args.engine, *([args.model] if args.model else []), **options)
        report = run_pipeline(args.input, args.output, base_url=args.base_url, backend=backend,
                              model=args.model if args.base_url else None, concurrency=args.concurrency,
                              retries=args.retries, max_tokens=args.max_tokens, show_progress=not args.quiet)
    except SlmLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if backend is not None:
            backend.close()
    for bad in report.bad_rows:
        print(f"skipped line {bad.line} ({bad.id or 'no id'}): {bad.problem}", file=sys.stderr)
    print(json.dumps(report.summary()))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
