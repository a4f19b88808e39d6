"""The query language of the Azure AI Foundry model catalog: filters, and pages with continuation tokens.

The catalog's web API (``POST https://api.catalog.azureml.ms/asset-gallery/v1.0/models``, the one Foundry Local
and the Foundry portal read) takes a JSON body like::

    {"filters": [{"field": "labels", "operator": "eq", "values": ["latest"]},
                 {"field": "annotations/tags/task", "operator": "eq", "values": ["chat-completion"]},
                 {"field": "license", "operator": "contains", "values": ["apache"]}],
     "pageSize": 10, "continuationToken": null}

and answers ``{"value": [entries], "totalCount": n, "continuationToken": "..."}``; a client sends the token back,
with the same filters, until it comes back empty. A field is a path into an entry (``properties/name``,
``properties/variantInfo/variantMetadata/device``), or one of the short names clients use (``name``,
``publisher``, ``license``, ``labels``). Every filter must hold; the values of one filter are alternatives.

This module applies that language to a list of entries, the way ``slmlab.foundry.catalog`` serves it. Where the
real service's behaviour is not documented, the stand-in chooses the strict reading and says so: an unknown
field, operator or token is an error (``SlmLabError``: what is wrong, what to write instead), never an empty page.

Operators are read without regard to case; ``NotEquals`` is what Foundry Local 2.2.1 itself sends for ``ne``.

Sources: Foundry Local's catalog API reference (the request's filters, operators eq/ne/gt/lt, pageSize,
continuationToken, the entry's fields):
https://learn.microsoft.com/azure/ai-foundry/foundry-local/reference/reference-catalog-api ;
the Azure AI Foundry MCP server, which queries the public catalog (``labels eq latest``, ``publisher`` and
``license`` with ``contains``, following ``continuationToken``): https://github.com/azure-ai-foundry/mcp-foundry ;
the filters Foundry Local 2.2.1 sends were recorded from it (see ``slmlab.foundry.catalog``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slmlab.errors import SlmLabError, did_you_mean

DEFAULT_PAGE_SIZE = 50  # what Foundry Local asks for
MAX_PAGE_SIZE = 1000
# The short names clients send for a few fields, and the entry path each one reads.
SHORT_NAMES = {"name": "properties/name", "publisher": "annotations/systemCatalogData/publisher",
               "license": "annotations/tags/license", "labels": "labels"}
EXAMPLE = "{'field': 'annotations/tags/task', 'operator': 'eq', 'values': ['chat-completion']}"


def _text_match(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    lowered = {w.lower() for w in wanted}
    return lambda found: any(str(v).lower() in lowered for v in found)


def _not_equal(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    equal = _text_match(wanted)
    return lambda found: not equal(found)


def _contains(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    lowered = [w.lower() for w in wanted]
    return lambda found: any(w in str(v).lower() for v in found for w in lowered)


def _above(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    limit = float(wanted[0])
    return lambda found: any(n > limit for n in _numbers(found))


def _below(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    limit = float(wanted[0])
    return lambda found: any(n < limit for n in _numbers(found))


def _exists(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    return lambda found: bool(found)


def _missing(wanted: Sequence[str]) -> Callable[[list[Any]], bool]:
    return lambda found: not found


# operator -> (how many values it takes: "some", "one" or "none"; the test it makes of them for an entry's values)
OPERATORS: dict[str, tuple[str, Callable[[Sequence[str]], Callable[[list[Any]], bool]]]] = {
    "eq": ("some", _text_match), "ne": ("some", _not_equal), "notequals": ("some", _not_equal),
    "contains": ("some", _contains),
    "gt": ("one", _above), "lt": ("one", _below), "exists": ("none", _exists), "notexists": ("none", _missing),
}


def _numbers(values: list[Any]) -> list[float]:
    return [n for n in map(_number, values) if n is not None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_path(entry: Mapping[str, Any], path: str) -> list[Any]:
    """The values at a slash path of an entry, as a list (a list field gives its items; a missing one, nothing).

    Keys match without regard to case in this stand-in, as text values do (``eq`` of 'MIT' finds 'mit').
    """
    found: list[Any] = [entry]
    for key in path.split("/"):
        step: list[Any] = []
        for node in found:
            if isinstance(node, Mapping):
                match = next((v for k, v in node.items() if k.lower() == key.lower()), None)
                if match is not None:
                    step += match if isinstance(match, list) else [match]
        found = step
    return [v for v in found if not isinstance(v, Mapping | list)]


def known_fields(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every filterable path the entries have (leaves: text, numbers, lists of them), and the short names."""
    paths: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, list) and node and all(isinstance(v, Mapping) for v in node):
            for item in node:
                walk(item, prefix)
        elif prefix:
            paths.add(prefix)

    for entry in entries:
        walk(entry, "")
    return sorted(paths) + sorted(SHORT_NAMES)


@dataclass(frozen=True)
class Filter:
    """One checked filter: the entry path it reads, its operator and values."""

    field: str
    path: str
    operator: str
    values: tuple[str, ...]

    def test(self) -> Callable[[list[Any]], bool]:
        return OPERATORS[self.operator][1](self.values)


def check_filters(filters: Any, fields: Sequence[str]) -> list[Filter]:
    """`filters` (the request's list) checked against the known `fields`; a SlmLabError names the first bad one."""
    if filters is None:
        return []
    if not isinstance(filters, list):
        raise SlmLabError(f"'filters' must be a list of filters, not {type(filters).__name__}.",
                          f"Send a list of objects like {EXAMPLE}.")
    lowered = {f.lower(): f for f in fields}
    return [_check_one(position, flt, lowered) for position, flt in enumerate(filters)]


def _check_one(position: int, flt: Any, fields: Mapping[str, str]) -> Filter:
    where = f"Filter #{position + 1}"
    if not isinstance(flt, Mapping) or not isinstance(flt.get("field"), str):
        raise SlmLabError(f"{where} ({flt!r}) has no 'field'.", f"Write each filter like {EXAMPLE}.")
    field = flt["field"]
    path = SHORT_NAMES.get(field.lower()) or field
    if field.lower() not in fields:
        raise SlmLabError(f"{where}: this catalog's entries have no field {field!r}.",
                          f"{did_you_mean(field, fields.values())}The fields are paths into an entry, e.g. "
                          "'annotations/tags/task', 'annotations/tags/license', "
                          "'properties/variantInfo/variantMetadata/fileSizeBytes'.")
    operator = str(flt.get("operator", "")).lower()
    if operator not in OPERATORS:
        raise SlmLabError(f"{where} ({field}): unknown operator {flt.get('operator')!r}.",
                          f"{did_you_mean(operator, OPERATORS)}Use one of: {', '.join(OPERATORS)}.")
    arity, _ = OPERATORS[operator]
    values = flt.get("values")
    if arity == "none":
        return Filter(field, path, operator, ())
    if not isinstance(values, list) or not values or not all(isinstance(v, str | int | float) for v in values):
        raise SlmLabError(f"{where} ({field} {operator}) needs 'values': a non-empty list, not {values!r}.",
                          "Write the values as a list, even for one: 'values': ['mit'].")
    if arity == "one" and (len(values) != 1 or _number(values[0]) is None):
        raise SlmLabError(f"{where} ({field} {operator}) compares with one number, not {values!r}.",
                          "Give one number, e.g. 'values': [200000000] for 200 MB in bytes.")
    return Filter(field, path, operator, tuple(str(v) for v in values))


def matching(entries: Sequence[Mapping[str, Any]], filters: Sequence[Filter]) -> list[Mapping[str, Any]]:
    """The entries that pass every filter, in their order."""
    tests = [(flt.path, flt.test()) for flt in filters]
    return [entry for entry in entries if all(test(read_path(entry, path)) for path, test in tests)]


def _fingerprint(filters: Sequence[Filter]) -> str:
    text = json.dumps([[f.path.lower(), f.operator, sorted(v.lower() for v in f.values)] for f in filters])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def make_token(skip: int, filters: Sequence[Filter]) -> str:
    """An opaque continuation token: where the next page starts, for these filters only."""
    return base64.urlsafe_b64encode(json.dumps({"skip": skip, "q": _fingerprint(filters)}).encode()).decode()


def read_token(token: Any, filters: Sequence[Filter]) -> int:
    """Where the page of `token` starts; a SlmLabError when the token is not one this catalog gave for `filters`."""
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        skip, query = int(data["skip"]), data["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise SlmLabError(f"continuationToken {str(token)[:40]!r} is not a token this catalog gave.",
                          "Send back the continuationToken of the previous answer unchanged, or none for the "
                          "first page.") from None
    if query != _fingerprint(filters) or skip < 0:
        raise SlmLabError("This continuationToken belongs to a query with other filters.",
                          "Send the same filters with the token as with the request that returned it.")
    return skip


def page_size(request: Mapping[str, Any]) -> int:
    """The request's pageSize (default DEFAULT_PAGE_SIZE), checked."""
    size = request.get("pageSize", DEFAULT_PAGE_SIZE)
    size = DEFAULT_PAGE_SIZE if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        raise SlmLabError(f"pageSize={size!r} is not usable.", f"Use a whole number from 1 to {MAX_PAGE_SIZE}.")
    return size


def answer(entries: Sequence[Mapping[str, Any]], request: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog's answer to one request body: a page of the matching entries, their count, the next token."""
    if not isinstance(request, Mapping):
        raise SlmLabError("The request body must be a JSON object.", "Send {'filters': [...], 'pageSize': 10}.")
    filters = check_filters(request.get("filters"), known_fields(entries))
    size = page_size(request)
    token = request.get("continuationToken")
    skip = read_token(token, filters) if token else 0
    found = matching(entries, filters)
    end = skip + size
    return {"value": list(found[skip:end]), "totalCount": len(found),
            "continuationToken": make_token(end, filters) if end < len(found) else ""}


def pages(ask: Callable[[dict[str, Any]], Mapping[str, Any]], filters: Sequence[Mapping[str, Any]],
          size: int = DEFAULT_PAGE_SIZE) -> Iterator[list[Any]]:
    """Every page of a query: `ask` sends one request body and returns the answer; the token is followed."""
    body: dict[str, Any] = {"filters": list(filters), "pageSize": size}
    while True:
        reply = ask(body)
        yield list(reply.get("value") or [])
        token = reply.get("continuationToken")
        if not token:
            return
        body = {**body, "continuationToken": token}
