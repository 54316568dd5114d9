"""MkDocs hook: links in the rendered docstrings (the API reference).

* The docstrings are Google style with Sphinx cross-reference roles, which mkdocstrings renders as
  the text ``:class:`` followed by the code. Each such role becomes an optional autorefs reference
  (a link where the object is documented on the site, plain code otherwise). A short name
  (``step``, ``AlchemyGame``) is looked up from the object whose documentation it is in outwards
  (``…GameBatch.step``, ``…batch.step``, …), then among the page's objects by its last component.
* Section references ("§4.7", "spec §2.4", "interface spec §6") link to the reference pages'
  anchors (``task.md#s4.7``, ``interface.md#i6``).
"""

from __future__ import annotations

import html
import re

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(?P<text>[^<]*)</code>")
OBJECT_ID = re.compile(r'id="(?P<id>alchemy_gym(?:\.[A-Za-z_]\w*)*)"')
SECTION = re.compile(r"(?P<interface>interface spec )?§ ?(?P<number>\d+(?:\.\d+)?)")
TAG = re.compile(r"(<[^>]+>)")
#: Text inside these elements is left alone by the section links.
NO_LINKS = ("a", "code", "pre", "autoref")


def _target(text: str) -> tuple[str, str]:
    """``(shown text, identifier)`` of a role's content (``~a.b.C``, ``title <a.b.C>``, ``C()``)."""
    text = html.unescape(text).strip()
    match = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", text)
    if match:
        return match["title"], match["target"]
    if text.startswith("~"):
        target = text[1:]
        return target.rsplit(".", 1)[-1], target
    return text, text


def on_page_content(html_text: str, page, config, files) -> str:
    anchors = [(m.start(), m["id"]) for m in OBJECT_ID.finditer(html_text)]
    if not anchors:
        return html_text
    known = {identifier for _, identifier in anchors}
    by_last: dict[str, set[str]] = {}
    for identifier in known:
        by_last.setdefault(identifier.rsplit(".", 1)[-1], set()).add(identifier)

    def resolve(name: str, position: int) -> str:
        bare = name.removesuffix("()")
        if bare in known:
            return bare
        before = [identifier for start, identifier in anchors if start < position]
        if before:
            scope = before[-1].split(".")
            while scope:
                candidate = ".".join(scope + [bare])
                if candidate in known:
                    return candidate
                scope.pop()
        last = bare.rsplit(".", 1)[-1]
        matches = {i for i in by_last.get(last, ()) if i.endswith("." + bare) or i == bare}
        return matches.pop() if len(matches) == 1 else bare

    def replace(match: re.Match) -> str:
        shown, target = _target(match["text"])
        identifier = resolve(target, match.start())
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'

    return _link_sections(ROLE.sub(replace, html_text))


def _link_sections(html_text: str) -> str:
    """Section references in text (not in code, links or tags) as references to the reference pages."""
    out, depth = [], 0
    for part in TAG.split(html_text):
        if part.startswith("<"):
            name = re.match(r"</?\s*([A-Za-z]+)", part)
            if name and name[1].lower() in NO_LINKS and not part.endswith("/>"):
                depth += -1 if part.startswith("</") else 1
            out.append(part)
        elif depth > 0 or "§" not in part:
            out.append(part)
        else:
            out.append(SECTION.sub(_section_ref, part))
    return "".join(out)


def _section_ref(match: re.Match) -> str:
    anchor = ("i" if match["interface"] else "s") + match["number"]
    return f'<autoref identifier="{anchor}" optional>{match[0]}</autoref>'
