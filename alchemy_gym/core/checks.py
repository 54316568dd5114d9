"""The checks of the game's settings and actions, one per thing.

Each setting of the game has one check here, with its bounds as named constants; the envs' settings
(:mod:`alchemy_gym.envs.symbolic_settings`, which every symbolic env, the vector env, the JAX env and
the server parse their arguments with) and the core's own :class:`~alchemy_gym.core.batch.GameConfig`
call these same functions, so a bound is stated once and every entry point refuses the same values
with the same message. Errors name the setting, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS

#: Trials per episode (a trial's index is stored in an int8 matrix-event row).
MAX_TRIALS = 127
#: Steps per trial (a trial's step counter is an int32).
MAX_STEPS_PER_TRIAL = 2**31 - 1
#: Largest magnitude of a reward weight: every stone value, trial reward and episode return stays finite and
#: exact enough in float32 (the JAX env's rewards).
MAX_REWARD_WEIGHT = 1e6
#: The game backends: the compiled kernel when built (``"auto"``), the compiled kernel, numpy.
BACKENDS = ("auto", "c", "numpy")


def check_bool(name: str, value: Any) -> bool:
    """A bool (or numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
    return bool(value)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An int (not a bool) in ``low..high`` (``high`` None: no upper bound)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{_bound(high)}" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value} out of range: allowed {allowed}")
    return int(value)


def check_count(name: str, value: Any) -> int:
    """A positive int: how many envs or games (``ValueError`` for anything else)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_backend(name: str, backend: Any) -> str:
    """The game backend: ``"auto"`` (the compiled kernel when built), ``"c"`` or ``"numpy"``."""
    if backend not in BACKENDS:
        raise ValueError(f"{name} must be one of {list(BACKENDS)}, got {backend!r}")
    return backend


def _bound(high: int) -> str:
    return "2**31-1" if high == 2**31 - 1 else str(high)


def check_reward_weights(name: str, weights: Any) -> tuple[tuple[float, float, float], float, float]:
    """``(coefficients, offset, bonus)``: 3 coefficients, an offset and a bonus, each a finite number in
    ``-MAX_REWARD_WEIGHT..MAX_REWARD_WEIGHT`` (``None``: the defaults, §1.2)."""
    if weights is None:
        return DEFAULT_REWARD_WEIGHTS
    message = (
        f"{name} must be (coefficients, offset, bonus) with 3 numeric coefficients, e.g. ((1, 1, 1), 0, 12); "
        f"got {weights!r}"
    )
    try:
        coefficients, offset, bonus = weights
        coefficients = tuple(float(c) for c in coefficients)
        offset, bonus = float(offset), float(bonus)
    except (TypeError, ValueError):
        raise TypeError(message) from None
    if len(coefficients) != 3:
        raise TypeError(message)
    for value in (*coefficients, offset, bonus):
        if not math.isfinite(value) or abs(value) > MAX_REWARD_WEIGHT:
            raise ValueError(
                f"{name}={weights!r}: {value} out of range: every coefficient, the offset and the bonus must be a "
                f"finite number in -{MAX_REWARD_WEIGHT:g}..{MAX_REWARD_WEIGHT:g}"
            )
    return coefficients, offset, bonus


def check_actions(
    actions: Any,
    shape: tuple[int, ...],
    num_actions: int,
    what: str = "actions",
    first_bad: Callable[[np.ndarray, int], int] | None = None,
) -> np.ndarray:
    """``actions`` as an int64 array of ``shape``, each in ``0..num_actions-1``; else a ``ValueError`` naming
    the first bad one as given (an unsigned value of 2**63 or more is reported as itself, not wrapped). A masked
    array is taken when nothing is masked and refused otherwise (a masked entry holds no action).

    ``first_bad(flat int64 actions, num_actions)`` finds the first bad index (or -1) comparing the values as
    unsigned (a compiled kernel's fast loop); by default numpy does.
    """
    given = actions
    if type(given) is not np.ndarray:  # the common case skips these
        if np.ma.isMaskedArray(given):
            masked = np.flatnonzero(np.ma.getmaskarray(given))
            if len(masked):
                raise ValueError(
                    f"{what} is a masked array with {len(masked)} masked entries (the first at index "
                    f"{int(masked[0])}): a masked entry holds no action; fill it (actions.filled(...)) or pass a "
                    "plain array"
                )
            given = np.ma.getdata(given)
        given = np.asarray(given)
    if given.shape != shape or given.dtype.kind not in "iu":
        if len(shape) == 1:
            wanted = f"{shape[0]} integers (an int array of shape {shape}, each in 0..{num_actions - 1})"
        else:
            wanted = f"integers in 0..{num_actions - 1} of shape {shape}"
        raise ValueError(f"{what} must be {wanted}, got {given.dtype} array of shape {given.shape}")
    a = given.astype(np.int64, copy=False)
    flat = a if a.ndim == 1 else a.reshape(-1)
    if first_bad is not None:
        bad = first_bad(flat, num_actions)
    else:
        wrong = np.flatnonzero(flat.view(np.uint64) >= np.uint64(num_actions))
        bad = int(wrong[0]) if len(wrong) else -1
    if bad >= 0:
        value = int(given.reshape(-1)[bad])
        if not shape:
            raise ValueError(f"action {value} out of range: the action space is Discrete({num_actions})")
        where = f" of sub-env {bad}" if len(shape) == 1 else f" at flat index {bad}"
        raise ValueError(
            f"action {value}{where} out of range: each action must be in 0..{num_actions - 1} (Discrete({num_actions}))"
        )
    return a
