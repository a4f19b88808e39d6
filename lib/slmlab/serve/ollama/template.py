"""Ollama prompt templates (Go ``text/template`` syntax) rendered with Jinja2.

Ollama's TEMPLATE is a Go template: ``{{ .System }}``, ``{{ .Prompt }}``, ``{{ .Response }}``,
``{{ range .Messages }}{{ .Role }}: {{ .Content }}{{ end }}``, ``{{ if … }}…{{ else }}…{{ end }}``, ``{{- … -}}``.
This module translates the part of that language prompt templates use (fields, ``$`` variables, if / else if /
else / range / with / end, the comparison and logic functions, len / index / slice) into a Jinja2 template,
and renders the chat the way Ollama does: templates that use ``.Messages`` get the whole conversation,
older ones are executed once per turn (System, Prompt, Response) and cut after ``.Response`` for the last.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from slmlab.errors import SlmLabError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<paren>[()])'
                    r'|(?P<var>\$\w*(?:\.\w+)*)|(?P<field>(?:\.\w+)+|\.)|(?P<ident>[A-Za-z_]\w*)|(?P<assign>:?=)'
                    r'|(?P<comma>,)|(?P<pipe>\|))')
_FUNCS = {"eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index", "slice"}
_SENTINEL = "\x00RESPONSE\x00"


class TemplateError(SlmLabError):
    """A TEMPLATE this server cannot translate or render."""


@dataclass(frozen=True)
class _Scope:
    dot: str  # the Jinja expression '.' stands for ('' = the root)
    kind: str  # 'root' | 'if' | 'range' | 'with'


class _Translator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.texts: list[str] = []
        self.out: list[str] = []
        self.stack: list[_Scope] = []
        self.vars: dict[str, str] = {"$": ""}
        self.counter = 0

    def fail(self, problem: str) -> TemplateError:
        return TemplateError(f"TEMPLATE: {problem}",
                             "Use Ollama's template syntax: {{ .System }}, {{ .Prompt }}, {{ .Response }}, "
                             "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}, "
                             "{{ if … }}…{{ else }}…{{ end }}.")

    @property
    def dot(self) -> str:
        for scope in reversed(self.stack):
            if scope.kind in ("range", "with"):
                return scope.dot
        return ""

    # ---------------------------------------------------------------- expressions
    def tokens(self, text: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise self.fail(f"cannot read {text[pos:]!r} in {{{{ {text} }}}}.")
            pos = match.end()
            kind = match.lastgroup or ""
            out.append((kind, match.group(kind)))
        return out

    def field(self, ref: str, base: str) -> str:
        names = [n for n in ref.split(".") if n]
        expr = base
        for name in names:
            expr = f"{expr}.{name}" if expr else name
        return expr or "_root"

    def operand(self, toks: list[tuple[str, str]], i: int) -> tuple[str, int]:
        kind, value = toks[i]
        if kind == "paren" and value == "(":
            expr, i = self.command(toks, i + 1, closing=True)
            return f"({expr})", i
        if kind == "str":
            return json.dumps(json.loads(value)), i + 1
        if kind == "raw":
            return json.dumps(value[1:-1]), i + 1
        if kind == "num":
            return value, i + 1
        if kind == "field":
            return self.field(value, self.dot), i + 1
        if kind == "var":
            name, _, rest = value.partition(".")
            if name not in self.vars:
                raise self.fail(f"the variable {name} is not defined.")
            return self.field(rest, self.vars[name]), i + 1
        if kind == "ident" and value in ("true", "false", "nil"):
            return {"true": "true", "false": "false", "nil": "none"}[value], i + 1
        if kind == "ident":
            raise self.fail(f"the function {value!r} must come first in a command (or is not supported).")
        raise self.fail(f"unexpected {value!r}.")

    def command(self, toks: list[tuple[str, str]], i: int, closing: bool = False) -> tuple[str, int]:
        if i >= len(toks):
            raise self.fail("an empty command.")
        kind, value = toks[i]
        args: list[str] = []
        func = None
        if kind == "ident" and value not in ("true", "false", "nil"):
            if value not in _FUNCS:
                raise self.fail(f"the function {value!r} is not supported here "
                                f"(supported: {', '.join(sorted(_FUNCS))}).")
            func, i = value, i + 1
        while i < len(toks):
            kind, value = toks[i]
            if kind == "paren" and value == ")":
                if not closing:
                    raise self.fail("an unmatched ')'.")
                return self.call(func, args), i + 1
            if kind == "pipe":
                raise self.fail("pipelines with '|' are not supported; call the function instead (e.g. len .Messages).")
            expr, i = self.operand(toks, i)
            args.append(expr)
        if closing:
            raise self.fail("a '(' that is never closed.")
        return self.call(func, args), i

    def call(self, func: str | None, args: list[str]) -> str:
        if func is None:
            if len(args) != 1:
                raise self.fail(f"{len(args)} values where one was expected (a function name missing?).")
            return args[0]
        need = {"not": 1, "len": 1}.get(func)
        if (need and len(args) != need) or len(args) < 1 or (func not in ("not", "len") and len(args) < 2):
            raise self.fail(f"{func} got {len(args)} argument(s).")
        if func == "not":
            return f"(not {args[0]})"
        if func == "len":
            return f"({args[0]}|length)"
        if func in ("and", "or"):
            return "(" + f" {func} ".join(args) + ")"
        if func == "eq":
            return "(" + " or ".join(f"{args[0]} == {other}" for other in args[1:]) + ")"
        if func == "index":
            return args[0] + "".join(f"[{a}]" for a in args[1:])
        if func == "slice":
            if len(args) > 3:
                raise self.fail("slice takes at most two indexes.")
            return f"{args[0]}[{args[1]}:{args[2] if len(args) == 3 else ''}]"
        op = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[func]
        if len(args) != 2:
            raise self.fail(f"{func} takes two arguments.")
        return f"({args[0]} {op} {args[1]})"

    def expr(self, text: str) -> str:
        toks = self.tokens(text)
        expr, i = self.command(toks, 0)
        if i != len(toks):
            raise self.fail(f"unexpected text in {{{{ {text} }}}}.")
        return expr

    # ---------------------------------------------------------------- actions
    def action(self, body: str) -> None:
        body = body.strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise self.fail("a comment {{/* … */}} that is not closed.")
            return
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word == "if":
            self.out.append(f"{{% if {self.expr(rest)} %}}")
            self.stack.append(_Scope("", "if"))
        elif word == "else":
            if not self.stack or self.stack[-1].kind == "root":
                raise self.fail("{{ else }} outside {{ if }} or {{ range }}.")
            if rest.startswith("if "):
                if self.stack[-1].kind != "if":
                    raise self.fail("{{ else if }} is only allowed inside {{ if }}.")
                self.out.append(f"{{% elif {self.expr(rest[3:])} %}}")
            elif rest:
                raise self.fail(f"unexpected {{{{ else {rest} }}}}.")
            else:
                scope = self.stack[-1]
                if scope.kind == "with":
                    self.out.append("{% else %}")
                    self.stack[-1] = _Scope(self.stack[-2].dot if len(self.stack) > 1 else "", "with-else")
                else:
                    self.out.append("{% else %}")
        elif word == "range":
            variables, _, source = rest.rpartition(":=")
            if not _:
                variables, source = "", rest
            names = [v.strip() for v in variables.split(",") if v.strip()]
            if len(names) > 2 or any(not re.fullmatch(r"\$\w+", n) for n in names):
                raise self.fail(f"cannot read the range clause {rest!r}.")
            self.counter += 1
            item = f"_it{self.counter}"
            self.out.append(f"{{% for {item} in {self.expr(source)} %}}")
            if len(names) == 2:
                self.vars[names[0]] = "loop.index0"
                self.vars[names[1]] = item
            elif len(names) == 1:
                self.vars[names[0]] = item
            self.stack.append(_Scope(item, "range"))
        elif word == "with":
            self.counter += 1
            item = f"_w{self.counter}"
            self.out.append(f"{{% with {item} = {self.expr(rest)} %}}{{% if {item} %}}")
            self.stack.append(_Scope(item, "with"))
        elif word == "end":
            if not self.stack:
                raise self.fail("an {{ end }} without {{ if }}, {{ range }} or {{ with }}.")
            scope = self.stack.pop()
            self.out.append({"if": "{% endif %}", "range": "{% endfor %}", "with": "{% endif %}{% endwith %}",
                             "with-else": "{% endif %}{% endwith %}"}[scope.kind])
        elif word in ("template", "define", "block", "break", "continue"):
            raise self.fail(f"{{{{ {word} }}}} is not supported by slmlab's server.")
        elif re.match(r"\$\w+\s*:?=", body):
            name, _, value = body.partition("=")
            name = name.rstrip(":").strip()
            self.counter += 1
            var = f"_v{self.counter}"
            self.vars[name] = var
            self.out.append(f"{{% set {var} = {self.expr(value)} %}}")
        else:
            self.out.append(f"{{{{ {self.expr(body)} }}}}")

    def translate(self) -> tuple[str, list[str]]:
        pieces: list[Any] = []
        pos = 0
        for match in _ACTION.finditer(self.source):
            pieces.append(self.source[pos:match.start()])
            pieces.append(match)
            pos = match.end()
        pieces.append(self.source[pos:])
        # Go's trim markers: "{{- " trims white space before the action, " -}}" after it.
        for k, piece in enumerate(pieces):
            if isinstance(piece, re.Match):
                if piece.group(1):
                    pieces[k - 1] = pieces[k - 1].rstrip(" \t\r\n")
                if piece.group(3):
                    pieces[k + 1] = pieces[k + 1].lstrip(" \t\r\n")
        for piece in pieces:
            if isinstance(piece, re.Match):
                self.action(piece.group(2))
            elif piece:
                self.out.append(f"{{{{ _t[{len(self.texts)}] }}}}")
                self.texts.append(piece)
        if self.stack:
            raise self.fail(f"{len(self.stack)} block(s) without their {{{{ end }}}}.")
        return "".join(self.out), self.texts


@lru_cache(maxsize=64)
def _compile(source: str) -> tuple[Any, tuple[str, ...]]:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    jinja, texts = _Translator(source).translate()
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    try:
        return env.from_string(jinja), tuple(texts)
    except TemplateSyntaxError as exc:  # pragma: no cover - the translator emits valid Jinja
        raise TemplateError(f"TEMPLATE could not be compiled: {exc}", "Simplify the template.") from None


def check_template(source: str) -> None:
    """Raise a TemplateError when `source` is not a template this server can render."""
    _compile(source)


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render an Ollama (Go) template with `variables` (System, Prompt, Response, Messages …)."""
    from jinja2 import TemplateError as JinjaError

    template, texts = _compile(source)
    try:
        return template.render(_t=texts, _root=dict(variables), **variables)
    except (JinjaError, TypeError, ValueError, LookupError, AttributeError) as exc:  # e.g. comparing str with int
        raise TemplateError(f"TEMPLATE failed to render: {exc}", "Check the template's conditions.") from None


def uses_messages(source: str) -> bool:
    """True when the template reads .Messages (the whole chat at once)."""
    return bool(re.search(r"\.Messages\b", source))


def _collate(messages: Sequence[Mapping[str, str]]) -> tuple[str, list[dict[str, Any]]]:
    """Merge consecutive messages of one role (joined by a blank line) and collect the system text."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        role, content = msg["role"], msg.get("content") or ""
        if role == "system":
            system.append(content)
        if out and out[-1]["Role"] == role:
            out[-1]["Content"] += "\n\n" + content
        else:
            out.append({"Role": role, "Content": content, "ToolCalls": [], "Images": []})
    return "\n\n".join(system), out


def render_chat(source: str, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt for a chat, the way Ollama builds it from its template."""
    if uses_messages(source):
        system, collated = _collate(messages)
        return render(source, {"System": system, "Messages": collated, "Prompt": "", "Response": "", "Tools": []})
    out: list[str] = []
    system = prompt = response = ""
    for msg in messages:
        role, content = msg["role"], msg.get("content") or ""
        if role == "system":
            if prompt or response:
                out.append(render(source, {"System": system, "Prompt": prompt, "Response": response}))
                system = prompt = response = ""
            system = content
        elif role == "user":
            if response:
                out.append(render(source, {"System": system, "Prompt": prompt, "Response": response}))
                system = prompt = response = ""
            prompt = content
        elif role == "assistant":
            response = content
    last = render(source, {"System": system, "Prompt": prompt, "Response": response + _SENTINEL})
    cut = last.find(_SENTINEL)
    out.append(last if cut < 0 else last[:cut])
    return "".join(out)
