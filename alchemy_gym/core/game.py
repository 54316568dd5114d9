"""One symbolic Alchemy game: a row of a :class:`~alchemy_gym.core.batch.GameBatch` (spec §3, §4).

:class:`AlchemyGame` is what an agent, the single env and the server hold: the game's state
read as plain Python values (``stones``, ``potions``, ``trial_number``, …), its steps and its
listeners. Every rule is the batch's; a game built on its own owns a batch of one, and
``AlchemyGame.view(batch, row)`` reads and steps one row of a larger batch.

Seeded games draw from their own copy of dm_alchemy's ``RandomState`` stream (§4.7), so a
game driven with the same seed and actions reproduces dm_alchemy exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.batch import (
    CAULDRON,
    END_TRIAL,
    NO_OP,
    NOTHING,
    POTION_TYPE_SCALE,
    REWARD_SCALE,
    STONE_BLOCK,
    STONE_CASHED,
    GameBatch,
    GameConfig,
    num_actions,
    observation_size,
)
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import EpisodeSource, FixedEpisode, TrialItems
from alchemy_gym.core.items import (
    DEFAULT_REWARD_WEIGHTS,
    MAX_POTIONS,
    MAX_STONES,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_REWARD_INDICATOR,
)
from alchemy_gym.core.spec import CHEM_GRAPH, SPEC

__all__ = [
    "CAULDRON",
    "END_TRIAL",
    "NO_OP",
    "POTION_TYPE_SCALE",
    "REWARD_SCALE",
    "STONE_BLOCK",
    "AlchemyGame",
    "EpisodeOver",
    "FixedEpisode",
    "TrialItems",
    "encode_action",
    "num_actions",
    "observation_size",
    "slot_action",
]


class EpisodeOver(RuntimeError):
    """Raised when stepping a game whose episode has ended (or never started)."""


def slot_action(action: int, end_trial_action: bool) -> tuple[int, int]:
    """Decode an integer action to ``(stone, potion)``: ``(-2,-2)`` end trial, ``(-1,-1)`` no-op,
    ``(s, -1)`` stone ``s`` into the cauldron, ``(s, p)`` stone ``s`` into potion slot ``p``
    (the description's :meth:`~alchemy_gym.core.spec.GameSpec.action_table`)."""
    table = SPEC.action_table(end_trial_action)
    if not 0 <= action < len(table.column):
        raise ValueError(f"action {action} out of range: the action space is Discrete({len(table.column)})")
    column = int(table.column[action])
    if column < 0:
        return column, column
    return int(table.stone[action]), -1 if column == CAULDRON else column


def encode_action(stone: int, potion: int, end_trial_action: bool) -> int:
    """Inverse of :func:`slot_action`."""
    k = SPEC.action_offset(end_trial_action)
    if stone == END_TRIAL:
        if not end_trial_action:
            raise ValueError("the end-trial action needs end_trial_action=True")
        return k + END_TRIAL
    if stone == NO_OP:
        return k + NO_OP
    if not 0 <= stone < MAX_STONES or not -1 <= potion < MAX_POTIONS:
        raise ValueError(f"stone slot must be 0..{MAX_STONES - 1} and potion slot -1..{MAX_POTIONS - 1}")
    return k + stone * STONE_BLOCK + potion + 1  # the cauldron first in a stone's block, then each potion slot


class AlchemyGame:
    """The symbolic Alchemy game (one env's worth of state).

    Args:
        num_trials: trials per episode (10).
        max_steps_per_trial: a trial ends after this many steps (20).
        end_trial_action: add action 0 = end the trial (41 actions instead of 40).
        observe_used: include the per-slot used flags (39 floats instead of 24).
        reward_weights: ``(coefficients, offset, bonus)`` of a stone's value (§1.2).
        num_stones_per_trial / num_potions_per_trial: items drawn per trial (3 / 12).
        source: where :meth:`new_episode` takes episodes from (sampled or fixed).
        backend: the batch backend (``"auto"``, ``"c"`` or ``"numpy"``).
    """

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
        source: EpisodeSource | None = None,
        backend: str = "auto",
    ) -> None:
        config = GameConfig(
            num_trials=num_trials,
            max_steps_per_trial=max_steps_per_trial,
            end_trial_action=end_trial_action,
            observe_used=observe_used,
            reward_weights=reward_weights,
            num_stones_per_trial=num_stones_per_trial,
            num_potions_per_trial=num_potions_per_trial,
        )
        self._attach(GameBatch(1, config, source, backend=backend), 0)

    @classmethod
    def from_config(cls, config: GameConfig, source: EpisodeSource | None = None, backend: str = "auto") -> AlchemyGame:
        """A game of these settings (its own batch of one)."""
        game = cls.__new__(cls)
        game._attach(GameBatch(1, config, source, backend=backend), 0)
        return game

    @classmethod
    def view(cls, batch: GameBatch, row: int) -> AlchemyGame:
        """The game in ``row`` of ``batch`` (reads and steps that row only)."""
        if not 0 <= row < batch.num_games:
            raise IndexError(f"row {row} out of range: the batch holds {batch.num_games} games")
        game = cls.__new__(cls)
        game._attach(batch, row)
        return game

    def _attach(self, batch: GameBatch, row: int) -> None:
        config = batch.config
        self.batch, self.row, self.config = batch, row, config
        self.num_trials = config.num_trials
        self.max_steps_per_trial = config.max_steps_per_trial
        self.end_trial_action = config.end_trial_action
        self.observe_used = config.observe_used
        self.num_stones_per_trial = config.num_stones_per_trial
        self.num_potions_per_trial = config.num_potions_per_trial
        self.values = config.values
        self.num_actions = config.num_actions
        self._listeners: list[Callable] = []
        self._rs: np.random.RandomState | None = None
        self._bind_views()

    def _bind_views(self) -> None:
        b, row = self.batch, self.row
        #: The observation (a view of the batch's row; copy it to keep it).
        self.obs = b.row_view("obs", row)
        #: (num_trials, 3, 13) order of stone → potion/cauldron events, -1 if none (§7.2).
        self.matrix_events = b.row_view("matrix_events", row)
        self._trial = b.trial
        self._step_one = b.step_one

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("obs", "matrix_events", "_trial", "_step_one"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_views()

    # -------------------------------------------------------------- state

    @property
    def chemistry(self) -> Chemistry | None:
        return self.batch.chemistry(self.row)

    @property
    def trial_number(self) -> int:
        """Current trial (0-based); -1 before the first episode and after the episode ended."""
        return int(self._trial[self.row])

    @property
    def steps_this_trial(self) -> int:
        return int(self.batch.steps[self.row])

    @property
    def stones(self) -> list[int]:
        """Latent stone in each slot, -1 if used or empty."""
        return self.batch.stones[self.row].tolist()

    @property
    def potions(self) -> list[int]:
        """Latent potion in each slot, -1 if used or empty."""
        return self.batch.potions[self.row].tolist()

    @property
    def trial_rewards(self) -> list[float]:
        return self.batch.trial_rewards[self.row].tolist()

    @property
    def items_history(self) -> list[TrialItems]:
        """Latent items of every trial started so far in this episode."""
        return self.batch.items_history(self.row)

    @property
    def episode_over(self) -> bool:
        return self._trial[self.row] < 0

    @property
    def episode_index(self) -> int | None:
        """The fixed episode being played (``new_episode`` on a fixed source), else ``None``."""
        e = int(self.batch.episode[self.row])
        return e if e >= 0 else None

    @property
    def transitions(self) -> tuple[int, ...]:
        """The chemistry's transition table: ``[6 * stone + potion]`` → latent stone after (§1.7)."""
        return graphs.transition_table(int(self.batch.chem[self.row, CHEM_GRAPH]))

    # ----------------------------------------------------------- episodes

    def seed(self, seed: int | np.random.RandomState | None) -> None:
        """Restart the game's random stream: ``RandomState(seed)``'s, a copy of a ``RandomState``'s, or fresh."""
        self.batch.seed([self.row], [seed])

    def new_episode(self, episode: int | None = None, *, seed: int | None = None) -> None:
        """Start an episode from the game's source: sampled from its stream, or the next fixed one
        (``episode`` chooses a fixed one). ``seed`` first restarts the stream (and a fixed source's cursor),
        as an env's ``reset(seed=...)``; a game never seeded starts from fresh entropy."""
        self._rs = None
        self.batch.reset([self.row], [seed], None if episode is None else [episode])
        self._started()

    def start_episode(
        self,
        chemistry: Chemistry,
        rs: np.random.RandomState | None = None,
        items: Sequence[TrialItems] | None = None,
    ) -> None:
        """Start trial 0 of an episode with a given chemistry: items from ``items`` if given, else drawn from
        ``rs``'s stream (which advances with the game's draws)."""
        if items is None and rs is None:
            raise ValueError("start_episode needs a RandomState to draw items from, or fixed items")
        if items is not None and len(items) < self.num_trials:
            raise ValueError(f"fixed items cover {len(items)} trials, the game has {self.num_trials}")
        self._rs = rs if items is None else None
        if self._rs is not None:
            self.batch.seed([self.row], [rs])
        self.batch.begin_given(self.row, chemistry, None if items is None else items)
        self._started()

    def set_trial_items(self, trial: int, items: TrialItems) -> None:
        """The items of a later trial of an episode started with given items (for a game that learns its items
        as it goes, like the symbolic view of the 3D env): trial ``trial`` starts with them."""
        self.batch.set_items(self.row, trial, items)

    def _started(self) -> None:
        self._sync_rs()
        if self._listeners:
            self._notify("episode_start", self.chemistry)
            self._notify("trial_start", 0)

    def _sync_rs(self) -> None:
        if self._rs is not None:
            b, row = self.batch, self.row
            self._rs.set_state(("MT19937", b.rng_key[row], int(b.rng_pos[row]), 0, 0.0))

    # -------------------------------------------------------------- steps

    def step(self, action: int) -> tuple[float, bool]:
        """Apply a valid integer action; returns ``(reward, episode_over)``.

        The caller validates the range (``0 <= action < num_actions``).
        """
        if self._trial[self.row] < 0:
            raise EpisodeOver("the episode is over: start a new one (reset) before stepping")
        if self._listeners:
            reward, _, over = self._step_notified(action)
            return reward, over
        reward, ended, over = self._step_one(self.row, action)
        if ended >= 0 and self._rs is not None:
            self._sync_rs()
        return reward, over

    def step_trial(self, action: int) -> tuple[float, bool, bool]:
        """:meth:`step`, also saying whether the step ended a trial: ``(reward, trial_ended, episode_over)``
        (the step that ends the episode ends its last trial)."""
        if self._trial[self.row] < 0:
            raise EpisodeOver("the episode is over: start a new one (reset) before stepping")
        if self._listeners:
            reward, ended, over = self._step_notified(action)
            return reward, ended >= 0, over
        reward, ended, over = self._step_one(self.row, action)
        if ended >= 0 and self._rs is not None:
            self._sync_rs()
        return reward, ended >= 0, over

    def _step_notified(self, action: int) -> tuple[float, int, bool]:
        outcome = self.batch.apply_one(self.row, action)
        if outcome.kind == STONE_CASHED:
            self._notify("cauldron", outcome.stone_slot, outcome.old, outcome.reward)
        elif outcome.kind != NOTHING:
            self._notify("potion", outcome.stone_slot, outcome.potion_slot, outcome.old, outcome.potion, outcome.new)
        ended, over = self.batch.advance_one(self.row)
        self._ended(ended, over)
        return outcome.reward, ended, over

    def end_trial(self) -> tuple[float, bool]:
        """Finish the current trial at once (what no-ops until the step limit would do)."""
        if self._trial[self.row] < 0:
            raise EpisodeOver("the episode is over: start a new one (reset) first")
        return 0.0, self._ended(*self.batch.end_trial_one(self.row))

    def _ended(self, trial: int, over: bool) -> bool:
        if trial >= 0:
            self._sync_rs()
            if self._listeners:
                self._notify("trial_end", trial)
                if not over:
                    self._notify("trial_start", trial + 1)
        return over

    # ---------------------------------------------------------- listeners

    def add_listener(self, listener: Callable) -> None:
        """Register ``listener(kind, *args)`` for ``episode_start(chemistry)``, ``trial_start(trial)``,
        ``potion(slot, potion_slot, old_latent, latent_potion, new_latent)``,
        ``cauldron(slot, latent, reward)`` and ``trial_end(trial)``."""
        self._listeners.append(listener)

    def _notify(self, kind: str, *args) -> None:
        for listener in self._listeners:
            listener(kind, *args)

    # --------------------------------------------------------- perception

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
