"""Command-line argument handling shared by the ``alchemy-gym`` commands.

Every bad input ends the same way: one line on stderr, ``alchemy-gym CMD: error: WHAT (what is allowed)``,
and exit status 2 (argparse's usage-error status), never a traceback. Standard library only.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Sequence

#: Exit status of a usage error (argparse's) and of an interrupted command (128 + SIGINT).
USAGE_ERROR = 2
INTERRUPTED = 130


class UsageError(ValueError):
    """Bad command-line input; the message names what was wrong and what is allowed."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (no usage block) with exit status 2.

    Messages that do not say what is allowed get a pointer to ``--help``. Subparsers are of this class too.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(str(message).split())
        if not any(word in message for word in ("allowed", "choose from", "known")):
            message += f" (see {self.prog} --help)"
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``low..high`` (no upper bound if ``high`` is None)."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"got {text!r}, allowed {allowed}")
        return value

    parse.__name__ = f"integer {low}..{high if high is not None else ''}"
    return parse


#: Seeds: what ``numpy.random.RandomState`` (and so dm_alchemy's levels) accepts.
SEED_MAX = 2**32 - 1
seed = integer(0, SEED_MAX)

_DASH_VALUE = re.compile(r"-[\d:][\d:-]*")


def attach_dash_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """``["--episodes", "-3:"]`` → ``["--episodes=-3:"]`` for the given options.

    argparse takes a separate value that starts with ``-`` (other than a plain negative number) for an
    option and refuses it; slice values such as ``-10:`` or ``-5:-1`` are meant as values.
    """
    options = set(options)
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in options and i + 1 < len(argv) and _DASH_VALUE.fullmatch(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out
