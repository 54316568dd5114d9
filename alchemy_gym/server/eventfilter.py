"""Event subscription patterns that cannot backtrack: a linear-time subset of Python regular expressions.

The server's ``EventSubscriptionRegex`` setting selects events by name (``re.search`` semantics).
Python's ``re`` backtracks, so a short valid pattern (``^(.|.){0,25}Z``) can take seconds or
minutes, and a deeply nested one (``"(" * 1000``) recurses in its parser. The server therefore
never gives a client's pattern to ``re``: :func:`compile_filter` parses it into a Thompson NFA,
accepting only the subset below, and :meth:`EventFilter.select` runs that NFA over the server's
fixed, small set of event names once, at ``CreateWorld``. Per step the server only looks names
up in the resulting set.

Allowed (:data:`ALLOWED`): literal characters; escaped punctuation (``\\.``, ``\\/``, ``\\*`` …);
``\\d \\w \\s \\D \\W \\S``; ``.``; character classes ``[a-z_]`` and ``[^…]`` (ranges, escapes,
no nesting or set operations); groups ``(…)`` and ``(?:…)`` nested at most
:data:`MAX_GROUP_DEPTH` deep; alternation ``|``; the quantifiers ``*``, ``+``, ``?`` and their lazy
forms; the anchors ``^`` and ``$``. Patterns are at most :data:`MAX_PATTERN_LENGTH` characters.
Everything else (counted repetition ``{m,n}``, back-references, look-around, flags, possessive
quantifiers, ``\\b``, ``\\A`` …) is refused with :class:`FilterError` naming what is allowed. On
the accepted subset the result is that of ``re.search`` (checked against ``re`` in the tests).

Cost: a pattern of length ``L`` gives at most ``L + 1`` NFA states; matching a text of ``n``
characters visits each state at most once per position, so one name costs ``O(n · L)`` steps
whatever the pattern (no backtracking), and :meth:`EventFilter.select` shares the work of common
prefixes (``DeepMind/Alchemy/…``). :attr:`EventFilter.steps` counts the work done.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Longest pattern accepted (every event name of the server joined with ``|`` is 236 characters).
MAX_PATTERN_LENGTH = 256
#: Deepest nesting of groups accepted.
MAX_GROUP_DEPTH = 16

ALLOWED = (
    "literal characters, escaped punctuation (\\. \\/ \\* ...), \\d \\w \\s \\D \\W \\S, '.', "
    "character classes such as [A-Za-z_] or [^/] (no nesting), groups (...) and (?:...), alternation |, "
    "the quantifiers * + ? (and *? +? ??) and the anchors ^ $"
)


class FilterError(ValueError):
    """The pattern is outside the accepted subset (the message says where, and what is allowed)."""


# NFA node kinds
_CHAR, _SPLIT, _BEGIN, _END, _MATCH = range(5)

# a character test: ("lit", c) | ("any",) | ("category", test) | ("class", negated, chars, ranges, categories)
_CATEGORIES = {
    "d": lambda c: c.isdecimal(),
    "w": lambda c: c.isalnum() or c == "_",
    "s": lambda c: c.isspace(),
}


def _category_test(letter: str):
    test = _CATEGORIES[letter.lower()]
    return test if letter.islower() else (lambda c: not test(c))


class _Parser:
    """Recursive descent over the pattern into a small AST; recursion is bounded by the group depth."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.depth = 0

    def error(self, what: str, at: int | None = None) -> FilterError:
        at = self.i if at is None else at
        return FilterError(f"{what} at position {at}; allowed: {ALLOWED}")

    def parse(self):
        node = self.alternation()
        if self.i < len(self.p):  # only a stray ')' stops an alternation early
            raise self.error("unbalanced parenthesis ')'")
        return node

    def alternation(self):
        branches = [self.concatenation()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.concatenation())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def concatenation(self):
        items = []
        p = self.p
        while self.i < len(p) and p[self.i] not in "|)":
            atom, repeatable = self.atom()
            if self.i < len(p) and p[self.i] in "*+?":
                if not repeatable:
                    raise self.error("nothing to repeat", self.i)
                quantifier = p[self.i]
                self.i += 1
                if self.i < len(p) and p[self.i] == "?":
                    self.i += 1  # lazy: the same set of matches, so the same answer for a search
                if self.i < len(p) and p[self.i] in "*+?{":
                    raise self.error("multiple or possessive repeat", self.i)
                atom = ("repeat", quantifier, atom)
            elif self.i < len(p) and p[self.i] == "{":
                raise self.error("counted repetition {m,n} is not allowed", self.i)
            items.append(atom)
        return items[0] if len(items) == 1 else ("cat", items)

    def atom(self):
        """The next atom and whether a quantifier may follow it."""
        p = self.p
        c = p[self.i]
        if c in "*+?":
            raise self.error("nothing to repeat")
        if c in "{}":
            raise self.error("counted repetition {m,n} (and a bare '{' or '}') is not allowed")
        if c == "(":
            return self.group(), True
        if c == "[":
            return self.char_class(), True
        self.i += 1
        if c == ".":
            return ("char", ("any",)), True
        if c == "^":
            return ("begin",), False
        if c == "$":
            return ("end",), False
        if c == "\\":
            return ("char", self.escape()), True
        return ("char", ("lit", c)), True

    def group(self):
        p = self.p
        start = self.i
        self.i += 1
        if p.startswith("?", self.i):
            if not p.startswith("?:", self.i):
                raise self.error("group extensions other than (?:...) are not allowed", start)
            self.i += 2
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            raise self.error(f"groups nested more than {MAX_GROUP_DEPTH} deep", start)
        node = self.alternation()
        self.depth -= 1
        if self.i >= len(p) or p[self.i] != ")":
            raise self.error("missing ')', unterminated group", start)
        self.i += 1
        return ("group", node)

    def escape(self):
        """After a backslash outside a class: a character test."""
        p = self.p
        if self.i >= len(p):
            raise self.error("bad escape (end of pattern)", self.i - 1)
        c = p[self.i]
        self.i += 1
        if c in "dwsDWS":
            return ("category", _category_test(c))
        if c.isascii() and c.isalnum():
            raise self.error(f"the escape \\{c} is not allowed", self.i - 2)
        return ("lit", c)

    def char_class(self):
        p = self.p
        start = self.i
        self.i += 1
        negated = p.startswith("^", self.i)
        if negated:
            self.i += 1
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        categories: list = []
        first = True
        while True:
            if self.i >= len(p):
                raise self.error("unterminated character class", start)
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[":
                raise self.error("nested character classes are not allowed", self.i)
            if p.startswith(("--", "&&", "~~", "||"), self.i):
                raise self.error("set operations in character classes are not allowed", self.i)
            low = self.class_item()
            if p.startswith("--", self.i):
                raise self.error("set operations in character classes are not allowed", self.i)
            if p.startswith("-", self.i) and self.i + 1 < len(p) and p[self.i + 1] != "]":
                dash = self.i
                self.i += 1
                high = self.class_item()
                if not (isinstance(low, str) and isinstance(high, str)) or low > high:
                    raise self.error("bad character range", dash)
                ranges.append((low, high))
            elif isinstance(low, str):
                chars.add(low)
            else:
                categories.append(low)
        return ("char", ("class", negated, frozenset(chars), tuple(ranges), tuple(categories)))

    def class_item(self):
        """One character (a str) or a category test (a callable) inside a class."""
        p = self.p
        c = p[self.i]
        self.i += 1
        if c != "\\":
            return c
        if self.i >= len(p):
            raise self.error("bad escape (end of pattern)", self.i - 1)
        c = p[self.i]
        self.i += 1
        if c in "dwsDWS":
            return _category_test(c)
        if c.isascii() and c.isalnum():
            raise self.error(f"the escape \\{c} is not allowed", self.i - 2)
        return c


def _char_matches(test, c: str) -> bool:
    kind = test[0]
    if kind == "lit":
        return c == test[1]
    if kind == "any":
        return c != "\n"
    if kind == "category":
        return test[1](c)
    _, negated, chars, ranges, categories = test
    found = c in chars or any(low <= c <= high for low, high in ranges) or any(t(c) for t in categories)
    return found != negated


class _NFA:
    """Thompson's construction: nodes ``(kind, test, out1, out2)`` in lists."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.test: list = []
        self.out1: list[int] = []
        self.out2: list[int] = []

    def add(self, kind: int, test=None) -> int:
        self.kind.append(kind)
        self.test.append(test)
        self.out1.append(-1)
        self.out2.append(-1)
        return len(self.kind) - 1

    def build(self, node, follow: int) -> int:
        """Nodes matching ``node`` then continuing at ``follow``; returns the entry node."""
        kind = node[0]
        if kind == "char":
            entry = self.add(_CHAR, node[1])
            self.out1[entry] = follow
            return entry
        if kind == "begin" or kind == "end":
            entry = self.add(_BEGIN if kind == "begin" else _END)
            self.out1[entry] = follow
            return entry
        if kind == "group":
            return self.build(node[1], follow)
        if kind == "cat":
            for item in reversed(node[1]):
                follow = self.build(item, follow)
            return follow
        if kind == "alt":
            entries = [self.build(branch, follow) for branch in node[1]]
            entry = entries[-1]
            for other in reversed(entries[:-1]):
                split = self.add(_SPLIT)
                self.out1[split], self.out2[split] = other, entry
                entry = split
            return entry
        if kind == "repeat":
            _, quantifier, body = node
            split = self.add(_SPLIT)
            if quantifier == "?":
                self.out1[split], self.out2[split] = self.build(body, follow), follow
                return split
            body_entry = self.build(body, split)  # the loop: after the body, try it again or go on
            self.out1[split], self.out2[split] = body_entry, follow
            return split if quantifier == "*" else body_entry
        raise AssertionError(kind)


class EventFilter:
    """A compiled subscription pattern (see :func:`compile_filter`)."""

    def __init__(self, pattern: str, nfa: _NFA, start: int) -> None:
        self.pattern = pattern
        self._nfa = nfa
        self._start = start
        #: NFA states visited so far (the work done: at most twice the number of states per character).
        self.steps = 0

    @property
    def num_states(self) -> int:
        return len(self._nfa.kind)

    def _closure(self, states: Iterable[int], at: int, text: str, into: set[int]) -> bool:
        """Add the states reachable from ``states`` without reading a character; True if one matches."""
        nfa = self._nfa
        kind, out1, out2 = nfa.kind, nfa.out1, nfa.out2
        stack = list(states)
        n = len(text)
        matched = False
        steps = 0
        while stack:
            s = stack.pop()
            if s in into:
                continue
            into.add(s)
            steps += 1
            k = kind[s]
            if k == _CHAR:
                continue
            if k == _MATCH:
                matched = True
            elif k == _SPLIT:
                stack.append(out2[s])
                stack.append(out1[s])
            elif k == _BEGIN:
                if at == 0:
                    stack.append(out1[s])
            elif k == _END:
                if at == n or (at == n - 1 and text[at] == "\n"):
                    stack.append(out1[s])
        self.steps += steps
        return matched

    def _advance(self, current: set[int], at: int, text: str) -> tuple[set[int], bool]:
        """The states after reading ``text[at]`` (and a new start there, as ``re.search`` tries every start)."""
        nfa = self._nfa
        kind, test, out1 = nfa.kind, nfa.test, nfa.out1
        c = text[at]
        moved = [out1[s] for s in current if kind[s] == _CHAR and _char_matches(test[s], c)]
        moved.append(self._start)
        self.steps += len(current)
        following: set[int] = set()
        matched = self._closure(moved, at + 1, text, following)
        return following, matched

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in ``text`` (``re.search(pattern, text) is not None``)."""
        current: set[int] = set()
        if self._closure([self._start], 0, text, current):
            return True
        for at in range(len(text)):
            current, matched = self._advance(current, at, text)
            if matched:
                return True
        return False

    def select(self, names: Iterable[str]) -> frozenset[str]:
        """The names the pattern matches (a search in each; work on common prefixes is shared).

        ``$`` depends on what follows, so states are shared only for positions before the last
        two characters of a name; the rest is recomputed.
        """
        selected = set()
        previous = ""
        states: list[tuple[set[int], bool]] = []  # states[k]: after k characters of ``previous``
        for name in sorted(set(names)):
            # states[k] is shared if the first k characters are equal and k <= len - 2 for both
            # names (closures there cannot see the end of the text, which ``$`` looks at)
            limit = min(len(previous), len(name)) - 2
            common = 0
            while common < limit and previous[common] == name[common]:
                common += 1
            del states[common + 1 if limit >= 0 else 0 :]
            if not states:
                current: set[int] = set()
                states.append((current, self._closure([self._start], 0, name, current)))
            matched = any(m for _s, m in states)
            at = len(states) - 1
            while not matched and at < len(name):
                current, matched = self._advance(states[at][0], at, name)
                states.append((current, matched))
                at += 1
            if matched:
                selected.add(name)
            previous = name
        return frozenset(selected)


def compile_filter(pattern: str) -> EventFilter:
    """Parse ``pattern`` (see the module docstring for the subset); :class:`FilterError` if it is outside."""
    if not isinstance(pattern, str):
        raise FilterError(f"the pattern must be a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterError(f"the pattern has {len(pattern)} characters: at most {MAX_PATTERN_LENGTH} are allowed")
    ast = _Parser(pattern).parse() if pattern else ("cat", [])
    nfa = _NFA()
    match = nfa.add(_MATCH)
    start = nfa.build(ast, match)
    return EventFilter(pattern, nfa, start)


__all__ = ["ALLOWED", "MAX_GROUP_DEPTH", "MAX_PATTERN_LENGTH", "EventFilter", "FilterError", "compile_filter"]
