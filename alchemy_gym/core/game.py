"""Trials, steps, rewards, the symbolic observation and matrix events (spec §3, §4).

:class:`AlchemyGame` is the whole symbolic game as a small state machine over
plain Python ints and one preallocated observation buffer. It draws from the
``numpy.random.RandomState`` it is given in dm_alchemy's order (§4.7), so a
game driven with the same seed and actions reproduces dm_alchemy exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.items import (
    DEFAULT_REWARD_WEIGHTS,
    MAX_POTIONS,
    MAX_STONES,
    NUM_LATENT_STONES,
    NUM_POTION_TYPES,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_REWARD_INDICATOR,
    stone_values,
)

#: Slot-based action constants (§4.2).
END_TRIAL = -2
NO_OP = -1
#: Actions per stone slot: cauldron + one per potion slot.
STONE_BLOCK = MAX_POTIONS + 1
#: Column of the cauldron in a matrix-event array (§7.2).
CAULDRON = MAX_POTIONS
#: Reward indicator scale of the observation (``REWARD_SCALE``) and potion colour scale.
REWARD_SCALE = 3.0
POTION_TYPE_SCALE = 3.0


@dataclass(frozen=True)
class TrialItems:
    """Latent items of one trial, in slot order."""

    stones: tuple[int, ...]
    potions: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.stones) > MAX_STONES or len(self.potions) > MAX_POTIONS:
            raise ValueError(
                f"a trial holds at most {MAX_STONES} stones and {MAX_POTIONS} potions, "
                f"got {len(self.stones)} and {len(self.potions)}"
            )
        if any(not 0 <= s < NUM_LATENT_STONES for s in self.stones):
            raise ValueError(f"latent stone indices must be 0..7, got {self.stones}")
        if any(not 0 <= p < NUM_POTION_TYPES for p in self.potions):
            raise ValueError(f"latent potion indices must be 0..5, got {self.potions}")


@dataclass(frozen=True)
class FixedEpisode:
    """A given episode: its chemistry and the items of each trial (e.g. an evaluation episode)."""

    chemistry: Chemistry
    trials: tuple[TrialItems, ...]


class EpisodeOver(RuntimeError):
    """Raised when stepping a game whose episode has ended (or never started)."""


def num_actions(end_trial_action: bool) -> int:
    """40, or 41 with the end-trial action (§4.2)."""
    return MAX_STONES * STONE_BLOCK + (2 if end_trial_action else 1)


def observation_size(observe_used: bool) -> int:
    """39, or 24 without the used flags (§4.4)."""
    return MAX_STONES * (5 if observe_used else 4) + MAX_POTIONS * (2 if observe_used else 1)


def slot_action(action: int, end_trial_action: bool) -> tuple[int, int]:
    """Decode an integer action to ``(stone, potion)``: ``(-2,-2)`` end trial, ``(-1,-1)`` no-op,
    ``(s, -1)`` stone ``s`` into the cauldron, ``(s, p)`` stone ``s`` into potion slot ``p``."""
    a = action - (2 if end_trial_action else 1)
    if a < 0:
        return a, a
    s, q = divmod(a, STONE_BLOCK)
    return s, q - 1


def encode_action(stone: int, potion: int, end_trial_action: bool) -> int:
    """Inverse of :func:`slot_action`."""
    k = 2 if end_trial_action else 1
    if stone == END_TRIAL:
        if not end_trial_action:
            raise ValueError("the end-trial action needs end_trial_action=True")
        return 0
    if stone == NO_OP:
        return k - 1
    if not 0 <= stone < MAX_STONES or not -1 <= potion < MAX_POTIONS:
        raise ValueError(f"stone slot must be 0..{MAX_STONES - 1} and potion slot -1..{MAX_POTIONS - 1}")
    return k + stone * STONE_BLOCK + potion + 1


def _stone_feature_table() -> np.ndarray:
    """(8 stone maps, 4 rotations, 8 latent stones, 4) float32: perceived coords, indicator / 3."""
    table = np.zeros((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, 4), dtype=np.float32)
    table[..., :3] = PERCEIVED_STONE
    table[..., 3] = STONE_REWARD_INDICATOR / REWARD_SCALE
    return table


_STONE_FEATURES = _stone_feature_table()
_STONE_FEATURES.setflags(write=False)
#: Row views of :data:`_STONE_FEATURES`, made once and shared by every game.
_FEATURE_ROWS = [[list(_STONE_FEATURES[sm, rot]) for rot in range(NUM_ROTATIONS)] for sm in range(NUM_STONE_MAPS)]
_POTION_FEATURES = (PERCEIVED_POTION / POTION_TYPE_SCALE - 1.0).astype(np.float32)
_STONE_DEFAULT = np.array([2, 2, 2, 2, 1], dtype=np.float32)
_POTION_DEFAULT = np.array([1, 1], dtype=np.float32)


@lru_cache(maxsize=32)
def _cached_stone_values(coefficients: tuple, offset: float, bonus: float) -> tuple[float, ...]:
    return stone_values((coefficients, offset, bonus))


class AlchemyGame:
    """The symbolic Alchemy game (one env's worth of state).

    Args:
        num_trials: trials per episode (10).
        max_steps_per_trial: a trial ends after this many steps (20).
        end_trial_action: add action 0 = end the trial (41 actions instead of 40).
        observe_used: include the per-slot used flags (39 floats instead of 24).
        reward_weights: ``(coefficients, offset, bonus)`` of a stone's value (§1.2).
        num_stones_per_trial / num_potions_per_trial: items drawn per trial (3 / 12).
        obs: optional float32 buffer the observation is written into (e.g. a row of a batch).
    """

    __slots__ = (
        "num_trials", "max_steps_per_trial", "end_trial_action", "observe_used", "num_stones_per_trial",
        "num_potions_per_trial", "values", "num_actions", "obs", "chemistry", "trial_number", "steps_this_trial",
        "stones", "potions", "trial_rewards", "matrix_events", "_k", "_s_stride", "_p_stride", "_potion_base",
        "_stone_block", "_potion_block", "_stone_default", "_items", "_event_count", "_trans", "_features",
        "_feature_rows", "_potion_features", "_rs", "_fixed_items", "_listeners", "_trials_started",
    )  # fmt: skip

    def __init__(
        self,
        *,
        num_trials: int = 10,
        max_steps_per_trial: int = 20,
        end_trial_action: bool = False,
        observe_used: bool = True,
        reward_weights=DEFAULT_REWARD_WEIGHTS,
        num_stones_per_trial: int = MAX_STONES,
        num_potions_per_trial: int = MAX_POTIONS,
        obs: np.ndarray | None = None,
    ) -> None:
        self.num_trials = num_trials
        self.max_steps_per_trial = max_steps_per_trial
        self.end_trial_action = end_trial_action
        self.observe_used = observe_used
        self.num_stones_per_trial = num_stones_per_trial
        self.num_potions_per_trial = num_potions_per_trial
        self.values = _cached_stone_values(tuple(reward_weights[0]), reward_weights[1], reward_weights[2])
        self.num_actions = num_actions(end_trial_action)
        self._k = 2 if end_trial_action else 1

        s_stride = 5 if observe_used else 4
        p_stride = 2 if observe_used else 1
        self._s_stride, self._p_stride = s_stride, p_stride
        self._potion_base = MAX_STONES * s_stride
        size = observation_size(observe_used)
        if obs is None:
            obs = np.empty(size, dtype=np.float32)
        elif obs.shape != (size,) or obs.dtype != np.float32:
            raise ValueError(f"obs buffer must be float32 of shape ({size},), got {obs.dtype} {obs.shape}")
        self.obs = obs
        self._stone_block = self.obs[: self._potion_base].reshape(MAX_STONES, s_stride)
        self._potion_block = self.obs[self._potion_base :].reshape(MAX_POTIONS, p_stride)
        self._stone_default = _STONE_DEFAULT[:s_stride]
        self._stone_block[:] = self._stone_default
        self._potion_block[:] = _POTION_DEFAULT[:p_stride]

        self.chemistry: Chemistry | None = None
        self.trial_number = -1
        self.steps_this_trial = 0
        self.stones: list[int] = [-1] * MAX_STONES
        self.potions: list[int] = [-1] * MAX_POTIONS
        self.trial_rewards = [0.0] * num_trials
        #: (num_trials, 3, 13) order of stone→potion/cauldron events, -1 if none (§7.2).
        self.matrix_events = np.full((num_trials, MAX_STONES, STONE_BLOCK), -1, dtype=np.int8)
        # latent items of each trial so far: stones then potions, -1 padded
        self._items = np.full((num_trials, MAX_STONES + MAX_POTIONS), -1, dtype=np.int8)
        self._trials_started = 0
        self._event_count = 0
        self._trans: tuple[int, ...] = ()
        self._features = _STONE_FEATURES[0, 0]
        self._feature_rows: list[np.ndarray] = _FEATURE_ROWS[0][0]
        self._potion_features = _POTION_FEATURES[0]
        self._rs: np.random.RandomState | None = None
        self._fixed_items: Sequence[TrialItems] | None = None
        #: Callables told about what the agent sees: ``listener(kind, *args)`` (see :meth:`add_listener`).
        self._listeners: list[Callable] = []

    # ------------------------------------------------------------------ episode

    def start_episode(
        self,
        chemistry: Chemistry,
        rs: np.random.RandomState | None = None,
        items: Sequence[TrialItems] | None = None,
    ) -> None:
        """Start trial 0 of a new episode: items come from ``items`` if given, else are drawn from ``rs``."""
        if items is None and rs is None:
            raise ValueError("start_episode needs a RandomState to draw items from, or fixed items")
        if items is not None and len(items) < self.num_trials:
            raise ValueError(f"fixed items cover {len(items)} trials, the game has {self.num_trials}")
        self.chemistry = chemistry
        self._rs = rs
        self._fixed_items = items
        self._trans = graphs.transition_table(chemistry.graph)
        self._features = _STONE_FEATURES[chemistry.stone_map, chemistry.rotation]
        self._feature_rows = _FEATURE_ROWS[chemistry.stone_map][chemistry.rotation]
        self._potion_features = _POTION_FEATURES[chemistry.potion_map]
        self.trial_rewards = [0.0] * self.num_trials
        self.matrix_events.fill(-1)
        self._items.fill(-1)
        for listener in self._listeners:
            listener("episode_start", chemistry)
        self.trial_number = -1
        self._start_trial(0)

    def _start_trial(self, trial: int) -> None:
        if self._fixed_items is not None:
            items = self._fixed_items[trial]
            stones, potions = list(items.stones), list(items.potions)
        else:
            rs = self._rs
            stones = rs.randint(0, NUM_LATENT_STONES, size=self.num_stones_per_trial).tolist()
            potions = rs.randint(0, NUM_POTION_TYPES, size=self.num_potions_per_trial).tolist()
        self.trial_number = trial
        self._trials_started = trial + 1
        self.steps_this_trial = 0
        self._event_count = 0
        ns, np_ = len(stones), len(potions)
        row = self._items[trial]
        row[:ns] = stones
        row[MAX_STONES : MAX_STONES + np_] = potions
        self.stones = stones + [-1] * (MAX_STONES - ns)
        self.potions = potions + [-1] * (MAX_POTIONS - np_)
        sb, pb = self._stone_block, self._potion_block
        if ns:
            sb[:ns, :4] = self._features[stones]
            if self.observe_used:
                sb[:ns, 4] = 0.0
        sb[ns:] = self._stone_default
        if np_:
            pb[:np_, 0] = self._potion_features[potions]
            if self.observe_used:
                pb[:np_, 1] = 0.0
        pb[np_:] = 1.0
        for listener in self._listeners:
            listener("trial_start", trial)

    def _end_trial(self) -> bool:
        """End the current trial; returns True if that ended the episode."""
        for listener in self._listeners:
            listener("trial_end", self.trial_number)
        if self.trial_number >= self.num_trials - 1:
            self.trial_number = -1
            return True
        self._start_trial(self.trial_number + 1)
        return False

    @property
    def items_history(self) -> list[TrialItems]:
        """Latent items of every trial started so far in this episode."""
        return [
            TrialItems(
                tuple(int(v) for v in row[:MAX_STONES] if v >= 0), tuple(int(v) for v in row[MAX_STONES:] if v >= 0)
            )
            for row in self._items[: self._trials_started]
        ]

    @property
    def episode_over(self) -> bool:
        return self.trial_number < 0

    # --------------------------------------------------------------------- step

    def step(self, action: int) -> tuple[float, bool]:
        """Apply a valid integer action; returns ``(reward, episode_over)``.

        The caller validates the range (``0 <= action < num_actions``).
        """
        trial = self.trial_number
        if trial < 0:
            raise EpisodeOver("the episode is over: start a new one (reset) before stepping")
        a = action - self._k
        self.steps_this_trial += 1
        reward = 0.0
        if a >= 0:
            s, q = divmod(a, STONE_BLOCK)
            stone = self.stones[s]
            if stone >= 0:
                if q == 0:
                    reward = self.values[stone]
                    self.stones[s] = -1
                    base = s * self._s_stride
                    self.obs[base : base + self._s_stride] = self._stone_default
                    self.trial_rewards[trial] += reward
                    self.matrix_events[trial, s, CAULDRON] = self._event_count
                    self._event_count += 1
                    if self._listeners:
                        for listener in self._listeners:
                            listener("cauldron", s, stone, reward)
                else:
                    p = q - 1
                    potion = self.potions[p]
                    if potion >= 0:
                        new = self._trans[stone * NUM_POTION_TYPES + potion]
                        self.potions[p] = -1
                        obs = self.obs
                        base = self._potion_base + p * self._p_stride
                        obs[base] = 1.0
                        if self.observe_used:
                            obs[base + 1] = 1.0
                        if new != stone:
                            self.stones[s] = new
                            base = s * self._s_stride
                            obs[base : base + 4] = self._feature_rows[new]
                        self.matrix_events[trial, s, p] = self._event_count
                        self._event_count += 1
                        if self._listeners:
                            for listener in self._listeners:
                                listener("potion", s, p, stone, potion, new)
        if a == END_TRIAL or self.steps_this_trial >= self.max_steps_per_trial:
            return reward, self._end_trial()
        return reward, False

    def end_trial(self) -> tuple[float, bool]:
        """Finish the current trial at once (what no-ops until the step limit would do)."""
        if self.trial_number < 0:
            raise EpisodeOver("the episode is over: start a new one (reset) first")
        return 0.0, self._end_trial()

    # ---------------------------------------------------------------- listeners

    def add_listener(self, listener: Callable) -> None:
        """Register ``listener(kind, *args)`` for ``episode_start(chemistry)``, ``trial_start(trial)``,
        ``potion(slot, potion_slot, old_latent, latent_potion, new_latent)``,
        ``cauldron(slot, latent, reward)`` and ``trial_end(trial)``."""
        self._listeners.append(listener)

    # ------------------------------------------------------------ perception

    def perceived_stone(self, latent: int) -> tuple[tuple[int, int, int], int]:
        """(perceived coords, reward indicator) of a latent stone under the current chemistry."""
        c = self.chemistry
        coords = PERCEIVED_STONE[c.stone_map, c.rotation, latent]
        return (int(coords[0]), int(coords[1]), int(coords[2])), int(STONE_REWARD_INDICATOR[latent])

    def perceived_potion(self, latent: int) -> int:
        """Perceived potion index (colour) of a latent potion under the current chemistry."""
        return int(PERCEIVED_POTION[self.chemistry.potion_map, latent])

    def stones_above(self, threshold: float) -> list[int]:
        """Slots of existing stones whose true value exceeds ``threshold``."""
        return [s for s, stone in enumerate(self.stones) if stone >= 0 and self.values[stone] > threshold]
