"""Registered message templates (India DLT style) and matching a message text against them.

A template is fixed text with placeholders. Placeholders and what each one matches:

| placeholder | matches |
| --- | --- |
| ``{#var#}`` | 1-30 characters of anything except a line break (DLT's variable) |
| ``{#numeric#}`` | 1-30 digits |
| ``{#alphanumeric#}`` | 1-30 letters or digits (ASCII) |
| ``{#url#}`` | 1-200 characters without whitespace |
| ``{name}`` (any identifier, e.g. ``{code}``) | like ``{#var#}`` |

The fixed text must match exactly, except that any run of whitespace counts as one space (in the template
and in the message) and whitespace at either end is ignored. A template must hold some fixed text (DLT
refuses templates made only of variables; so do we), at most 25 placeholders and 2,000 characters; a
message longer than 2,000 characters matches nothing. Templates are compiled once, when the
:class:`TemplateSet` is built (placeholders to character-class regexes, fixed text to plain strings);
matching costs at most placeholders x text length x placeholder width, whatever the text (no regex
backtracking). When several templates match, the one with the most fixed text wins (the most specific),
then the earliest given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from senderid.errors import TemplateInvalid

MAX_TEMPLATE_LENGTH = 2000
MAX_TEXT_LENGTH = 2000
MAX_PLACEHOLDERS = 25
MAX_ID_LENGTH = 64
_PLACEHOLDERS: dict[str, re.Pattern[str]] = {
    # placeholder -> greedy, bounded run of the characters it may hold
    "var": re.compile(r"[^\n]{1,30}"),
    "numeric": re.compile(r"[0-9]{1,30}"),
    "alphanumeric": re.compile(r"[A-Za-z0-9]{1,30}"),
    "url": re.compile(r"\S{1,200}"),
}
_TOKEN = re.compile(r"\{#([a-z]+)#\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Template:
    """A registered template: its id (e.g. the DLT template id) and text with placeholders."""

    id: str
    text: str


def normalize(text: str) -> str:
    """Whitespace runs become one space; no space at either end (applied to templates and messages)."""
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """``head`` literal, then (placeholder run regex, literal) per placeholder.

    Matching walks the text keeping the set of positions reachable so far; each step looks at every
    text position at most once, so a match costs O(placeholders x text length) whatever the text. (A
    regex with chained lazy wildcards backtracks exponentially on hostile text instead.)
    """

    id: str
    head: str
    steps: tuple[tuple[re.Pattern[str], str], ...]
    fixed: int

    def fullmatch(self, body: str) -> bool:
        if not body.startswith(self.head):
            return False
        positions = [len(self.head)]
        for run, literal in self.steps:
            reached: set[int] = set()
            covered = -1
            for p in positions:  # ascending
                m = run.match(body, p)
                if m is None:
                    continue
                lo, hi = max(p + 1, covered + 1), m.end()
                if lo > hi:
                    continue
                covered = hi
                if not literal:
                    reached.update(range(lo, hi + 1))
                    continue
                size = len(literal)
                i = body.find(literal, lo, hi + size)
                while i != -1:
                    reached.add(i + size)
                    i = body.find(literal, i + 1, hi + size)
            if not reached:
                return False
            positions = sorted(reached)
        return len(body) in positions


def compile_template(template: Template) -> CompiledTemplate:
    """Compile one template; ``TemplateInvalid`` says why it cannot be registered."""
    text = normalize(template.text)
    if not template.id or len(template.id) > MAX_ID_LENGTH or not template.id.isprintable():
        raise TemplateInvalid(f"template id must be 1-{MAX_ID_LENGTH} printable characters: {template.id!r}")
    if not text or len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateInvalid(f"template '{template.id}' must have 1-{MAX_TEMPLATE_LENGTH} characters")
    tokens = list(_TOKEN.finditer(text))
    if len(tokens) > MAX_PLACEHOLDERS:
        raise TemplateInvalid(f"template '{template.id}' has more than {MAX_PLACEHOLDERS} placeholders")
    literals: list[str] = []
    runs: list[re.Pattern[str]] = []
    pos = 0
    for m in tokens:
        literals.append(text[pos : m.start()])
        kind = m.group(1) or "var"
        if kind not in _PLACEHOLDERS:
            known = ", ".join(f"{{#{k}#}}" for k in _PLACEHOLDERS)
            raise TemplateInvalid(
                f"template '{template.id}' uses unknown placeholder {m.group(0)} (known: {known})"
            )
        runs.append(_PLACEHOLDERS[kind])
        pos = m.end()
    literals.append(text[pos:])
    fixed = sum(len(lit.replace(" ", "")) for lit in literals)
    if fixed == 0:
        raise TemplateInvalid(f"template '{template.id}' has no fixed text, only placeholders")
    steps = tuple(zip(runs, literals[1:], strict=True))
    return CompiledTemplate(template.id, literals[0], steps, fixed)


class TemplateSet:
    """Templates compiled once; ``match(text)`` returns the id of the template the text fits, or None."""

    __slots__ = ("_compiled", "templates")

    def __init__(self, templates: Iterable[Template]) -> None:
        self.templates: tuple[Template, ...] = tuple(templates)
        seen: set[str] = set()
        compiled: list[tuple[int, int, CompiledTemplate]] = []
        for order, t in enumerate(self.templates):
            if t.id in seen:
                raise TemplateInvalid(f"template id '{t.id}' is given twice")
            seen.add(t.id)
            c = compile_template(t)
            compiled.append((-c.fixed, order, c))
        compiled.sort(key=lambda c: (c[0], c[1]))
        self._compiled: tuple[CompiledTemplate, ...] = tuple(c for _, _, c in compiled)

    def __len__(self) -> int:
        return len(self.templates)

    def match(self, text: str) -> str | None:
        if len(text) > MAX_TEXT_LENGTH * 2:
            return None
        body = normalize(text)
        if len(body) > MAX_TEXT_LENGTH:
            return None
        for c in self._compiled:
            if c.fullmatch(body):
                return c.id
        return None


def match_template(text: str, templates: TemplateSet) -> str | None:
    """The id of the registered template ``text`` matches, or None."""
    return templates.match(text)
