"""Settings declared once: each a dataclass field with its default, its check and its doc line.

An env family's settings are one frozen dataclass of :func:`setting` fields. The envs build it
from their keyword arguments (:meth:`Settings.parse`: every value checked, unknown names named),
their signatures are derived from it, and the tables of their docstrings and of the README are
generated from it (:meth:`Settings.table`; a test checks them).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Settings")


def setting(default: Any, doc: str, check: Callable[[str, Any], Any] | None = None, *, shown: str | None = None):
    """A settings field: ``check(name, value)`` returns the normalised value or raises a clear error;
    ``shown`` is how the default reads in tables (default: ``repr(default)``)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "shown": shown})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of a family's settings: checks every field on construction (subclasses add cross-field checks
    in ``_check_together``)."""

    #: What the settings configure, for error messages ("symbolic env", "3D env").
    what: ClassVar[str] = "env"
    #: The callable that takes them, for Python's wording of an unexpected keyword argument.
    owner: ClassVar[str] = "__init__"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self._check_together()

    def _check_together(self) -> None:
        """Checks that need several fields (none by default)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def parse(cls: type[S], **kwargs: Any) -> S:
        """The settings of these keyword arguments. An unknown name gets a ``TypeError`` in Python's own wording
        ("... got an unexpected keyword argument 'x'", which libraries such as TorchRL look for), then the
        list of the known ones."""
        known = cls.names()
        unknown = [name for name in kwargs if name not in known]
        if unknown:
            raise TypeError(
                f"{cls.owner}() got an unexpected keyword argument {unknown[0]!r}: unknown {cls.what} setting(s) "
                f"{sorted(unknown)}; the settings are {', '.join(known)}"
            )
        return cls(**kwargs)

    @classmethod
    def table(cls, exclude: tuple[str, ...] = ()) -> str:
        """The markdown table (argument, default, meaning) of the settings."""
        rows = ["| argument | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            shown = f.metadata["shown"] if f.metadata.get("shown") is not None else repr(f.default)
            rows.append(f"| {f.name} | {shown} | {f.metadata['doc']} |")
        return "\n".join(rows)

    @classmethod
    def signature(cls, *leading: inspect.Parameter, positional: tuple[str, ...] = ()) -> inspect.Signature:
        """The signature of an ``__init__`` taking ``leading`` parameters, then the ``positional`` settings,
        then every other setting by keyword (for ``__init__.__signature__``)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *leading]
        params += [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=fields[n].default) for n in positional
        ]
        taken = {p.name for p in leading} | set(positional)
        params += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in fields.values()
            if f.name not in taken
        ]
        return inspect.Signature(params)

    @classmethod
    def fill_table(cls, text: str, indent: str = "", exclude: tuple[str, ...] = ()) -> str:
        """``text`` with its settings table (the one starting ``| argument | default | meaning |``) replaced
        by :meth:`table`; used to write docstrings and the README, and by the test that checks them."""
        header = indent + "| argument | default | meaning |"
        start = text.index(header)
        end = start
        lines = text[start:].splitlines(keepends=True)
        for line in lines:
            if not line.strip().startswith("|"):
                break
            end += len(line)
        table = "".join(indent + row + "\n" for row in cls.table(exclude).splitlines())
        return text[:start] + table + text[end:]

    def replace(self: S, **changes: Any) -> S:
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)


def render_mode_check(*allowed: str) -> Callable[[str, Any], str | None]:
    """The check of a ``render_mode`` setting: ``None`` or one of ``allowed`` (the same check and message for
    every env family)."""
    choices = ["None", *(repr(a) for a in allowed)]
    choices = ", ".join(choices[:-1]) + " or " + choices[-1]

    def check(name: str, value: Any) -> str | None:
        if value is not None and value not in allowed:
            raise ValueError(f"{name} {value!r} is not supported: allowed {choices}")
        return value

    return check
