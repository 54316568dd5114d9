"""Who may use the server: its tokens, read from a file or the environment and checked in constant time.

A server started with tokens (``alchemy-gym serve --token-file PATH``, or ``ALCHEMY_GYM_TOKEN`` /
``ALCHEMY_GYM_TOKEN_FILE`` in its environment) serves only the streams whose call metadata carry
``authorization: Bearer TOKEN`` for one of them; any other stream is ended with UNAUTHENTICATED
before any session or world exists. A token is never written to a log or an error message: a
client is named by its token's *label* (``token #2``, or the name given in the file).

The token file holds one token a line, optionally after a name (``alice 4hX…``); blank lines and
lines starting with ``#`` are skipped. Each token is a client identity of its own for the
server's quotas (:mod:`alchemy_gym.server.clients`). A file that other users may write is refused
(they could put their own token in it); one they may read is accepted with a warning (a file
mounted into a container often has to be, for the container's user to read it).
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
from dataclasses import dataclass

from alchemy_gym.rpc.names import TOKEN_ENV, TOKEN_FILE_ENV, bearer
from alchemy_gym.rpc.names import TOKEN_METADATA_KEY as METADATA_KEY

#: Shortest token accepted (characters): anything shorter is too easy to guess.
MIN_TOKEN_LENGTH = 16
#: Longest token accepted (characters).
MAX_TOKEN_LENGTH = 512

log = logging.getLogger("alchemy_gym.server.service")


class TokenError(ValueError):
    """A token or token file that cannot be used (the message says why, never the token itself)."""


@dataclass(frozen=True)
class Token:
    """One accepted token: the metadata value that carries it (``Bearer …``) and the label that names it."""

    label: str
    header: bytes


def check_token(token: str, where: str) -> str:
    """``token`` if it can be a bearer token: printable ASCII without spaces, 16..512 characters.

    ``where`` says where it came from, for the error (which never contains the token).
    """
    if not isinstance(token, str):
        raise TokenError(f"{where}: a token must be a str, got {type(token).__name__}")
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise TokenError(
            f"{where}: a token has {MIN_TOKEN_LENGTH}..{MAX_TOKEN_LENGTH} characters, this one {len(token)} "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not all(33 <= ord(c) <= 126 for c in token):
        raise TokenError(f"{where}: a token may hold only printable ASCII characters without spaces")
    return token


class TokenSet:
    """The tokens a server accepts; :meth:`match` finds the one a stream presents, in constant time.

    Args:
        tokens: ``(label, token)`` pairs; labels name the clients in logs and messages.
    """

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        if not tokens:
            raise TokenError("no token given: a token file needs at least one token")
        seen: set[str] = set()
        self._tokens: list[Token] = []
        for label, token in tokens:
            if token in seen:
                raise TokenError(f"{label}: the same token appears twice")
            seen.add(token)
            self._tokens.append(Token(label, bearer(token).encode("ascii")))

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self._tokens]

    def match(self, metadata) -> str | None:
        """The label of the token that ``metadata`` (a call's ``(key, value)`` pairs) presents, else ``None``.

        Every accepted token is compared, each with ``hmac.compare_digest``, so the time taken does not
        depend on how much of a token a guess got right.
        """
        presented = None
        for key, value in metadata or ():
            if key == METADATA_KEY:
                presented = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
                break
        if presented is None:
            return None
        found = None
        for token in self._tokens:
            if hmac.compare_digest(presented, token.header):
                found = token.label
        return found


def read_token_file(path: str | os.PathLike) -> TokenSet:
    """The tokens of a token file (see the module docstring); :class:`TokenError` saying what is wrong."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 20)
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TokenError(f"the token file {path} is not UTF-8 text") from None
    if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TokenError(
            f"the token file {path} may be written by other users (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"they could add their own token; chmod go-w {path}"
        )
    if stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH:
        log.warning(
            "the token file %s may be read by every user (mode %04o): chmod 600 it, unless only this "
            "server's user can reach it (a file mounted into a container)",
            path,
            stat.S_IMODE(info.st_mode),
        )
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 2:
            raise TokenError(f"{path} line {number}: expected 'TOKEN' or 'NAME TOKEN', got {len(words)} words")
        label = words[0] if len(words) == 2 else f"token #{len(tokens) + 1}"
        tokens.append((label, check_token(words[-1], f"{path} line {number}")))
    if not tokens:
        raise TokenError(f"the token file {path} holds no token (one a line, optionally after a name)")
    return TokenSet(tokens)


def tokens_from(token_file: str | None, environ=None) -> tuple[TokenSet | None, str]:
    """The server's tokens and where they came from: ``token_file`` if given, else ``ALCHEMY_GYM_TOKEN_FILE``,
    else ``ALCHEMY_GYM_TOKEN``; ``(None, "")`` if none is set (the server is open)."""
    environ = os.environ if environ is None else environ
    if token_file:
        return read_token_file(token_file), f"token file {token_file}"
    if environ.get(TOKEN_FILE_ENV):
        path = environ[TOKEN_FILE_ENV]
        return read_token_file(path), f"token file {path} (${TOKEN_FILE_ENV})"
    if environ.get(TOKEN_ENV):
        token = check_token(environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
        return TokenSet([("token #1", token)]), f"${TOKEN_ENV}"
    return None, ""


__all__ = [
    "MAX_TOKEN_LENGTH",
    "METADATA_KEY",
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "TokenError",
    "TokenSet",
    "bearer",
    "check_token",
    "read_token_file",
    "tokens_from",
]
