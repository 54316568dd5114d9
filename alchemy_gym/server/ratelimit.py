"""Log lines that a flood of bad requests cannot multiply: at most N per interval, then a count.

The server logs one short line per malformed message or internal error; a hostile client can send
thousands a second, so each kind of line goes through a :class:`RateLimitedLog`: the first
``burst`` lines of an ``interval`` are written, the rest are counted, and the next line after the
interval (or :meth:`RateLimitedLog.flush`) first writes ``suppressed K similar message(s) in the
last T s``. The log then stays small and its own lines (the start-up line, real errors) findable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis if it was longer."""
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a huge string is never echoed back whole).

    Strings are cut before ``repr`` is taken, so the cost does not grow with their length.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]
    return shorten(repr(value), limit)


class RateLimitedLog:
    """One kind of log line, written at most ``burst`` times per ``interval`` seconds.

    Args:
        logger: where the lines go.
        burst: lines written per interval.
        interval: seconds.
        clock: a monotonic clock (for tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 5,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or not interval > 0:
            raise ValueError(f"burst must be >= 1 and interval > 0, got {burst}, {interval}")
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._written = 0
        #: lines not written in the current interval
        self.suppressed = 0

    def log(self, level: int, message: str, *args, exc_info=None) -> bool:
        """Write the line unless this interval's ``burst`` is used up; returns whether it was written."""
        with self._lock:
            now = self._clock()
            report = 0
            if self._window_start is None or now - self._window_start >= self.interval:
                report, elapsed = self.suppressed, (0.0 if self._window_start is None else now - self._window_start)
                self._window_start, self._written, self.suppressed = now, 0, 0
            if self._written >= self.burst:
                self.suppressed += 1
                return False
            self._written += 1
        if report:
            self.logger.log(level, "suppressed %d similar message(s) in the last %.0f s", report, elapsed)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args, exc_info=None) -> bool:
        return self.log(logging.WARNING, message, *args, exc_info=exc_info)

    def error(self, message: str, *args, exc_info=None) -> bool:
        return self.log(logging.ERROR, message, *args, exc_info=exc_info)

    def flush(self, level: int = logging.WARNING) -> None:
        """Write the count of lines suppressed so far (if any), e.g. when the server stops."""
        with self._lock:
            report, self.suppressed = self.suppressed, 0
            elapsed = 0.0 if self._window_start is None else self._clock() - self._window_start
        if report:
            self.logger.log(level, "suppressed %d similar message(s) in the last %.0f s", report, elapsed)


__all__ = ["RateLimitedLog", "short_repr", "shorten"]
