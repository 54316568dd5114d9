"""dm_alchemy's random stream for many games at once: MT19937 as arrays (spec §4.7).

dm_alchemy draws everything of a level from one ``numpy.random.RandomState``. To step
thousands of games in one call, each game's Mersenne Twister state lives in a row of a
``(n, 624)`` ``uint32`` array with a read position per row, and the draws dm_alchemy makes
are reimplemented over rows, bit for bit:

* :func:`seed_rows` is ``RandomState(seed)`` (``init_genrand``), :func:`load_random_state`
  copies any ``RandomState`` (whatever its seeding);
* :func:`randint` is the legacy ``RandomState.randint(0, high)``: the next 32-bit output
  masked to the smallest covering bit mask, redrawn while it exceeds ``high - 1``;
* :func:`random_sample` is ``RandomState.random_sample()``: two outputs, 53 bits.

Each function works on a set of distinct rows at once and draws exactly one value per
row, so every row follows its own stream in its own order. The compiled kernel
(:mod:`alchemy_gym.core._kernel`) implements the same functions in C.
"""

from __future__ import annotations

import numpy as np

#: Words of MT19937 state.
STATE_WORDS = 624
_M = 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER = np.uint32(0x80000000)
_LOWER = np.uint32(0x7FFFFFFF)


def new_state(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty state of ``n`` streams: ``(key (n, 624) uint32, pos (n,) int32)``; seed it before use."""
    return np.zeros((n, STATE_WORDS), dtype=np.uint32), np.full(n, STATE_WORDS, dtype=np.int32)


def seed_rows(key: np.ndarray, pos: np.ndarray, rows: np.ndarray, seeds: np.ndarray) -> None:
    """Seed ``rows`` as ``numpy.random.RandomState(seed)`` does for integer seeds 0..2**32-1."""
    x = np.asarray(seeds, dtype=np.uint64)
    out = np.empty((len(x), STATE_WORDS), dtype=np.uint32)
    out[:, 0] = x
    for j in range(1, STATE_WORDS):
        x = (np.uint64(1812433253) * (x ^ (x >> np.uint64(30))) + np.uint64(j)) & np.uint64(0xFFFFFFFF)
        out[:, j] = x
    key[rows] = out
    pos[rows] = STATE_WORDS


def load_random_state(key: np.ndarray, pos: np.ndarray, row: int, rs: np.random.RandomState) -> None:
    """Continue ``rs``'s stream in ``row`` (``rs`` itself is left as it is)."""
    name, words, position, *_ = rs.get_state(legacy=True)
    if name != "MT19937":
        raise ValueError(f"only MT19937 RandomStates can be loaded, got {name}")
    key[row] = words
    pos[row] = position


def to_random_state(key: np.ndarray, pos: np.ndarray, row: int) -> np.random.RandomState:
    """A ``RandomState`` continuing ``row``'s stream (for checks and interop)."""
    rs = np.random.RandomState()
    rs.set_state(("MT19937", key[row].copy(), int(pos[row]), 0, 0.0))
    return rs


def _twist(words: np.ndarray) -> None:
    """Regenerate the 624 words of each row of ``words`` (m, 624) in place (MT19937's recurrence)."""

    def mix(hi: np.ndarray, lo: np.ndarray, far: np.ndarray) -> np.ndarray:
        y = (hi & _UPPER) | (lo & _LOWER)
        return far ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * _MATRIX_A)

    n, m = STATE_WORDS, _M
    # word i depends on words i, i+1 and i+397 (mod 624), the last ones already regenerated;
    # the spans below never read a word regenerated in the same span.
    words[:, : n - m] = mix(words[:, : n - m], words[:, 1 : n - m + 1], words[:, m:n])
    for start, stop in ((n - m, 2 * (n - m)), (2 * (n - m), n - 1)):
        words[:, start:stop] = mix(
            words[:, start:stop], words[:, start + 1 : stop + 1], words[:, start + m - n : stop + m - n]
        )
    words[:, n - 1] = mix(words[:, n - 1], words[:, 0], words[:, m - 1])


def next_uint32(key: np.ndarray, pos: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The next 32-bit output of each of ``rows`` (distinct row indices), as uint32."""
    p = pos[rows]
    spent = p >= STATE_WORDS
    if spent.any():
        fresh = rows[spent]
        words = key[fresh]
        _twist(words)
        key[fresh] = words
        p[spent] = 0
    y = key[rows, p]
    pos[rows] = p + 1
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


def randint(key: np.ndarray, pos: np.ndarray, rows: np.ndarray, high: int) -> np.ndarray:
    """``RandomState.randint(0, high)`` for each of ``rows`` (legacy masked rejection), as int64."""
    limit = high - 1
    if limit == 0:
        return np.zeros(len(rows), dtype=np.int64)
    mask = np.uint32((1 << limit.bit_length()) - 1)
    value = next_uint32(key, pos, rows) & mask
    again = np.flatnonzero(value > limit)
    while len(again):
        value[again] = next_uint32(key, pos, rows[again]) & mask
        again = again[value[again] > limit]
    return value.astype(np.int64)


def random_sample(key: np.ndarray, pos: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``RandomState.random_sample()`` for each of ``rows``, as float64."""
    a = (next_uint32(key, pos, rows) >> np.uint32(5)).astype(np.float64)
    b = (next_uint32(key, pos, rows) >> np.uint32(6)).astype(np.float64)
    return (a * 67108864.0 + b) / 9007199254740992.0
