"""Griffe extension for the API reference: the docstrings as Markdown, the settings' signatures as users see them.

* reStructuredText literal blocks (a paragraph ending ``::`` and an indented block) become a paragraph
  ending ``:`` and a fenced Python block: without it the page shows the stray ``::``.
* Doctest blocks (lines from ``>>>`` to the next blank line) become fenced ``pycon`` blocks: Markdown
  reads ``>>>`` as three nested quotes and runs the lines together.
* A settings dataclass field declared ``name: T = setting(default, doc, check, ...)``
  (:func:`alchemy_gym.envs.settings.setting`) shows as ``name: T = default``: the signature and the
  attribute list show the default, not the declaration's doc line and check function.

Loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``); it runs before griffe's dataclass extension,
which builds the ``__init__`` signatures from the fields' values.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

DOCTEST = re.compile(r"^\s*>>>")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def markdown_docstring(text: str) -> str:
    """``text`` with its literal blocks and doctest blocks as fenced code blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if DOCTEST.match(line):
            pad = line[: _indent(line)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(pad) :] if lines[i].startswith(pad) else lines[i].strip())
                i += 1
            out += [pad + "```pycon", *(pad + b for b in block), pad + "```"]
            continue
        if line.rstrip().endswith("::"):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = _indent(line)
            if j > i + 1 and j < len(lines) and _indent(lines[j]) > base:
                pad = line[:base]
                block = []
                while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                    block.append(lines[j])
                    j += 1
                while block and not block[-1].strip():
                    block.pop()
                    j -= 1
                inner = min(_indent(b) for b in block if b.strip())
                paragraph = line.rstrip()[:-2].rstrip()
                if paragraph.strip():
                    out.append(paragraph + ":")
                out += ["", pad + "```python", *(pad + b[inner:] if b.strip() else "" for b in block), pad + "```"]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _setting_default(value: Any) -> Any:
    """The default of a ``setting(default, ...)`` call expression, else ``None``."""
    if isinstance(value, griffe.ExprCall) and str(value.function) == "setting" and value.arguments:
        first = value.arguments[0]
        if not isinstance(first, griffe.ExprKeyword):
            return first
    return None


class AlchemyDocstrings(griffe.Extension):
    """Rewrites the docstrings and the settings fields of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg, set())

    def _visit(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
        if obj.is_attribute:
            default = _setting_default(obj.value)
            if default is not None:
                obj.value = default
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, seen)
