"""Action wrappers for the 3D env's ``Dict`` of float controls (interface spec §4), for SB3 / CleanRL.

The Unity server's actions are float64 scalars (``MOVE_BACK_FORWARD`` in [-1, 1],
``HAND_PUSH_PULL`` in [-10, 10], ``HAND_GRIP`` in [0, 1] …) and *sticky*: a
value holds until a new one is sent.

* :class:`FlatRpcActions` — one flat ``Box``: element ``i`` is key ``keys[i]``
  (every key sent every step, so nothing is sticky).
* :class:`DiscreteRpcActions` — ``Discrete(n)`` over a small table of named
  actions (:data:`DEFAULT_DISCRETE_ACTIONS`): each step sends every *momentary*
  control (movement, looking, hand rotation, push/pull) — 0 except the chosen
  one — and leaves ``HAND_GRIP`` alone unless the action is ``GRIP`` or ``RELEASE``,
  so a grip holds across steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: Controls that :class:`DiscreteRpcActions` sets to 0 unless the chosen action moves them.
MOMENTARY_KEYS = (
    "MOVE_BACK_FORWARD",
    "STRAFE_LEFT_RIGHT",
    "LOOK_DOWN_UP",
    "LOOK_LEFT_RIGHT",
    "HAND_ROTATE_AROUND_FORWARD",
    "HAND_ROTATE_AROUND_RIGHT",
    "HAND_ROTATE_AROUND_UP",
    "HAND_PUSH_PULL",
    "USE_HELD_OBJECT",
)

#: ``(name, {key: value})`` — after dm_alchemy's human key map (W/S ±0.5 move, arrows ±1 look,
#: B/V ±5 push-pull, space = grip), with full-speed moves. Entries whose keys the env lacks are dropped.
DEFAULT_DISCRETE_ACTIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("NOOP", {}),
    ("MOVE_FORWARD", {"MOVE_BACK_FORWARD": 1.0}),
    ("MOVE_BACK", {"MOVE_BACK_FORWARD": -1.0}),
    ("STRAFE_LEFT", {"STRAFE_LEFT_RIGHT": -1.0}),
    ("STRAFE_RIGHT", {"STRAFE_LEFT_RIGHT": 1.0}),
    ("LOOK_LEFT", {"LOOK_LEFT_RIGHT": -1.0}),
    ("LOOK_RIGHT", {"LOOK_LEFT_RIGHT": 1.0}),
    ("LOOK_UP", {"LOOK_DOWN_UP": 1.0}),
    ("LOOK_DOWN", {"LOOK_DOWN_UP": -1.0}),
    ("GRIP", {"HAND_GRIP": 1.0}),
    ("RELEASE", {"HAND_GRIP": 0.0}),
    ("PUSH", {"HAND_PUSH_PULL": 5.0}),
    ("PULL", {"HAND_PUSH_PULL": -5.0}),
    ("USE", {"USE_HELD_OBJECT": 1.0}),
)


def _box_entries(env: gym.Env, wrapper: str) -> dict[str, spaces.Box]:
    space = env.action_space
    if not isinstance(space, spaces.Dict) or not all(isinstance(s, spaces.Box) for s in space.spaces.values()):
        raise TypeError(
            f"{wrapper} needs a Dict action space of Box entries (the Unity controls); this env's action space "
            f"is {space}"
        )
    return dict(space.spaces)


class FlatRpcActions(gym.ActionWrapper):
    """A flat ``Box`` action: the ``Dict`` entries (scalars or arrays) concatenated in ``keys`` order.

    Args:
        env: an env with a ``Dict`` of ``Box`` actions.
        keys: the entries to expose, in order (default: all, sorted by name); entries left out are never sent.
        dtype: dtype of the flat box (float32 by default, as SB3 expects).
    """

    def __init__(self, env: gym.Env, keys: Sequence[str] | None = None, dtype=np.float32) -> None:
        super().__init__(env)
        entries = _box_entries(env, "FlatRpcActions")
        keys = list(entries) if keys is None else list(keys)
        unknown = [k for k in keys if k not in entries]
        if unknown or not keys:
            raise ValueError(f"keys {unknown or keys} are not actions of this env: allowed {sorted(entries)}")
        self.keys = keys
        self._slices: list[tuple[str, slice, tuple[int, ...]]] = []
        lows, highs, start = [], [], 0
        for key in keys:
            box = entries[key]
            size = int(np.prod(box.shape))
            self._slices.append((key, slice(start, start + size), box.shape))
            lows.append(box.low.reshape(-1).astype(np.float64))
            highs.append(box.high.reshape(-1).astype(np.float64))
            start += size
        self._entries = entries
        self.action_space = spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=dtype)

    def action(self, action) -> dict[str, np.ndarray]:
        flat = np.asarray(action, dtype=np.float64)
        if flat.shape != self.action_space.shape:
            raise ValueError(f"action has shape {flat.shape}: allowed {self.action_space.shape} (keys {self.keys})")
        out = {}
        for key, where, shape in self._slices:
            box = self._entries[key]
            out[key] = flat[where].reshape(shape).astype(box.dtype)
        return out


class DiscreteRpcActions(gym.ActionWrapper):
    """``Discrete(n)`` over named control settings (see the module docstring).

    Args:
        env: an env with a ``Dict`` of ``Box`` actions.
        actions: ``(name, {key: value})`` pairs (default :data:`DEFAULT_DISCRETE_ACTIONS`, keeping those
            whose keys exist). Values are checked against the action space.
        momentary: keys reset to 0 on every step unless set by the action (default :data:`MOMENTARY_KEYS`).

    Attributes:
        names: the action names, by index.
    """

    def __init__(
        self,
        env: gym.Env,
        actions: Sequence[tuple[str, Mapping[str, float]]] | None = None,
        momentary: Sequence[str] = MOMENTARY_KEYS,
    ) -> None:
        super().__init__(env)
        entries = _box_entries(env, "DiscreteRpcActions")
        table = DEFAULT_DISCRETE_ACTIONS if actions is None else actions
        if actions is None:
            table = [(name, dict(values)) for name, values in table if all(k in entries for k in values)]
        self._momentary = {k: np.zeros(entries[k].shape, dtype=entries[k].dtype) for k in momentary if k in entries}
        self.names: list[str] = []
        self._table: list[dict[str, np.ndarray]] = []
        for name, values in table:
            unknown = [k for k in values if k not in entries]
            if unknown:
                raise ValueError(f"action {name!r} sets {unknown}, which are not actions: allowed {sorted(entries)}")
            full = dict(self._momentary)
            for key, value in values.items():
                box = entries[key]
                arr = np.full(box.shape, value, dtype=box.dtype)
                if not box.contains(arr):
                    raise ValueError(
                        f"action {name!r}: {key}={value} out of range [{box.low.min():g}, {box.high.max():g}]"
                    )
                full[key] = arr
            self.names.append(str(name))
            self._table.append(full)
        if not self._table:
            raise ValueError("no discrete actions: give at least one (name, {key: value}) pair")
        self.action_space = spaces.Discrete(len(self._table))

    def action(self, action) -> dict[str, np.ndarray]:
        if isinstance(action, np.ndarray) and action.shape in ((), (1,)):
            action = action.reshape(())[()]
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"action must be an int in 0..{len(self._table) - 1} ({self.names}), got {action!r}")
        if not 0 <= int(action) < len(self._table):
            raise ValueError(f"action {action} out of range: allowed 0..{len(self._table) - 1} ({self.names})")
        return dict(self._table[int(action)])
