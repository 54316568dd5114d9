"""The state of many symbolic Alchemy games as arrays, and one step over all of them (spec §3, §4).

:class:`GameBatch` is the game: every rule of a step, a trial and an episode lives here
(the single env, the vector env, the agents and the server all play through it). The
state of ``n`` games is a struct of arrays, one row per game:

| array | shape, dtype | content |
|---|---|---|
| ``rng_key/pos`` | (n, 624) u4, (n,) i4 | each game's MT19937 stream (:mod:`~alchemy_gym.core.rng`) |
| ``chem`` | (n, 4) i2 | potion map, stone map, graph mask, rotation (-1: none yet) |
| ``episode`` | (n,) i4 | fixed episode played, :data:`SAMPLED` or :data:`GIVEN` |
| ``next_episode`` | (n,) i4 | the fixed-episode cursor |
| ``trial`` | (n,) i2 | current trial, -1 before the first and after the last |
| ``steps`` | (n,) i4 | steps taken in the current trial |
| ``ending`` | (n,) bool | the last applied action ends the trial |
| ``stones`` | (n, 3) i1 | latent stone per slot, -1 if used or empty |
| ``potions`` | (n, 12) i1 | latent potion per slot, -1 if used or empty |
| ``items`` | (n, T, 15) i1 | items of every trial of the episode so far |
| ``trial_rewards`` | (n, T) f8 | reward of each trial |
| ``matrix_events`` | (n, T, 3, 13) i1 | order of each stone → potion/cauldron event (§7.2), -1 |
| ``event_count`` | (n,) i1 | events so far in the trial |
| ``obs`` | (n, F) f4 | the symbolic observation (§4.4) |

Two backends run the same operations: the compiled kernel
(:mod:`alchemy_gym.core._kernel`, built with the package when a C compiler is available)
and a numpy implementation that needs nothing but numpy. Both give the same arrays bit for
bit; ``backend="auto"`` takes the kernel when it is importable.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from alchemy_gym.core import graphs, rng
from alchemy_gym.core.chemistry import FIXED_POTION_MAP, FIXED_STONE_MAP, Chemistry
from alchemy_gym.core.episodes import ITEM_SLOTS, EpisodeSource, TrialItems, chemistry_of
from alchemy_gym.core.items import (
    DEFAULT_REWARD_WEIGHTS,
    MAX_POTIONS,
    MAX_STONES,
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_POTION_TYPES,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_REWARD_INDICATOR,
    stone_values,
)

#: Actions per stone slot: cauldron + one per potion slot (§4.2).
STONE_BLOCK = MAX_POTIONS + 1
#: Column of the cauldron in a matrix-event array (§7.2).
CAULDRON = MAX_POTIONS
#: ``a = action - k`` of the end-trial action and of the no-op (§4.2).
END_TRIAL = -2
NO_OP = -1
#: Reward indicator scale of the observation and potion colour scale (§4.4).
REWARD_SCALE = 3.0
POTION_TYPE_SCALE = 3.0
#: ``episode`` codes of a game not playing a fixed episode: items drawn, or items given.
SAMPLED = -1
GIVEN = -2
#: Outcome kinds of :meth:`GameBatch.apply_one`.
NOTHING, POTION_USED, STONE_CASHED = 0, 1, 2

BACKENDS = ("auto", "c", "numpy")


def num_actions(end_trial_action: bool) -> int:
    """40, or 41 with the end-trial action (§4.2)."""
    return MAX_STONES * STONE_BLOCK + (2 if end_trial_action else 1)


def observation_size(observe_used: bool) -> int:
    """39, or 24 without the used flags (§4.4)."""
    return MAX_STONES * (5 if observe_used else 4) + MAX_POTIONS * (2 if observe_used else 1)


def observation_bounds(observe_used: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 bounds of each observation float (§4.4): features in [-1, 2], potion
    colours and used flags in their own ranges."""
    size = observation_size(observe_used)
    s, p = (5, 2) if observe_used else (4, 1)
    low = np.full(size, -1.0, dtype=np.float32)
    high = np.full(size, 2.0, dtype=np.float32)
    high[MAX_STONES * s :] = 1.0  # potion colours are in [-1, 1], used flags in [0, 1]
    if observe_used:
        low[4 : MAX_STONES * s : s] = 0.0  # stone used flags
        high[4 : MAX_STONES * s : s] = 1.0
        low[MAX_STONES * s + 1 :: p] = 0.0  # potion used flags
    return low, high


def _stone_feature_table() -> np.ndarray:
    """(8 stone maps, 4 rotations, 8 latent stones, 4) f4: perceived coords, reward indicator / 3."""
    table = np.zeros((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, 4), dtype=np.float32)
    table[..., :3] = PERCEIVED_STONE
    table[..., 3] = STONE_REWARD_INDICATOR / REWARD_SCALE
    return table


#: Observation features of a latent stone under (stone map, rotation), and of a latent potion
#: under a potion map: the tables every backend reads.
STONE_FEATURES = _stone_feature_table()
STONE_FEATURES.setflags(write=False)
POTION_FEATURES = (PERCEIVED_POTION / POTION_TYPE_SCALE - 1.0).astype(np.float32)
POTION_FEATURES.setflags(write=False)
#: Observation of an empty or used slot: stone ``[2, 2, 2, 2, 1]``, potion ``[1, 1]`` (§4.4).
STONE_DEFAULT = np.array([2, 2, 2, 2, 1], dtype=np.float32)
POTION_DEFAULT = np.array([1, 1], dtype=np.float32)


@dataclass(frozen=True)
class GameConfig:
    """The fixed settings of a game (validated by the envs' option parsing).

    Attributes:
        num_trials: trials per episode.
        max_steps_per_trial: a trial ends after this many steps.
        end_trial_action: action 0 ends the trial (41 actions instead of 40).
        observe_used: the observation holds per-slot used flags (39 floats instead of 24).
        reward_weights: ``(coefficients, offset, bonus)`` of a stone's value (§1.2).
        num_stones_per_trial / num_potions_per_trial: items drawn per trial of a sampled episode.
    """

    num_trials: int = 10
    max_steps_per_trial: int = 20
    end_trial_action: bool = False
    observe_used: bool = True
    reward_weights: tuple = DEFAULT_REWARD_WEIGHTS
    num_stones_per_trial: int = MAX_STONES
    num_potions_per_trial: int = MAX_POTIONS
    values: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.num_trials <= 127:
            raise ValueError(f"num_trials={self.num_trials} out of range: allowed 1..127")
        if not 1 <= self.max_steps_per_trial <= 2**31 - 1:
            raise ValueError(f"max_steps_per_trial={self.max_steps_per_trial} out of range: allowed >= 1")
        if not 0 <= self.num_stones_per_trial <= MAX_STONES or not 0 <= self.num_potions_per_trial <= MAX_POTIONS:
            raise ValueError(f"a trial draws 0..{MAX_STONES} stones and 0..{MAX_POTIONS} potions")
        coefficients, offset, bonus = self.reward_weights
        weights = (tuple(float(c) for c in coefficients), float(offset), float(bonus))
        object.__setattr__(self, "reward_weights", weights)
        object.__setattr__(self, "values", stone_values(weights))

    @property
    def action_offset(self) -> int:
        """``k`` of §4.2: actions below it are the end-trial action and the no-op."""
        return 2 if self.end_trial_action else 1

    @property
    def num_actions(self) -> int:
        return num_actions(self.end_trial_action)

    @property
    def observation_size(self) -> int:
        return observation_size(self.observe_used)

    @property
    def stone_stride(self) -> int:
        return 5 if self.observe_used else 4

    @property
    def potion_stride(self) -> int:
        return 2 if self.observe_used else 1


class StepResult(NamedTuple):
    """What :meth:`GameBatch.step` returns (arrays of one row per game)."""

    reward: np.ndarray  #: (n,) float64
    terminated: np.ndarray  #: (n,) bool: the step ended the episode
    trial_ended: np.ndarray  #: (n,) int16: the trial the step ended, -1 if none
    num_trial_ends: int
    num_terminated: int


class Outcome(NamedTuple):
    """What one applied action did (:meth:`GameBatch.apply_one`)."""

    reward: float
    kind: int  #: :data:`NOTHING`, :data:`POTION_USED` or :data:`STONE_CASHED`
    stone_slot: int
    potion_slot: int
    old: int  #: latent stone before
    potion: int  #: latent potion used
    new: int  #: latent stone after


#: The arrays of a batch's state, in the order the compiled kernel takes them.
STATE_ARRAYS = (
    "rng_key", "rng_pos", "chem", "episode", "next_episode", "trial", "steps", "ending", "stones", "potions",
    "items", "trial_rewards", "matrix_events", "event_count", "obs",
)  # fmt: skip


class GameBatch:
    """``num_games`` symbolic Alchemy games, stepped together or one at a time.

    Args:
        num_games: how many games (rows).
        config: the game settings.
        source: where episodes come from (``None``: only given episodes, :meth:`begin_given`).
        stride: the fixed-episode cursor step (1 for one env, ``N`` for ``N`` sub-envs).
        backend: ``"auto"`` (the compiled kernel if available), ``"c"`` or ``"numpy"``.
    """

    def __init__(
        self,
        num_games: int,
        config: GameConfig | None = None,
        source: EpisodeSource | None = None,
        *,
        stride: int = 1,
        backend: str = "auto",
    ) -> None:
        if isinstance(num_games, bool) or not isinstance(num_games, (int, np.integer)) or num_games < 1:
            raise ValueError(f"num_games must be a positive int, got {num_games!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        n = int(num_games)
        self.num_games = n
        self.config = config = config or GameConfig()
        self.source = source
        self.stride = int(stride)
        T = config.num_trials
        self.rng_key, self.rng_pos = rng.new_state(n)
        self.chem = np.full((n, 4), -1, dtype=np.int16)
        self.episode = np.full(n, SAMPLED, dtype=np.int32)
        self.next_episode = np.arange(n, dtype=np.int32)  # sub-env i starts at fixed episode i
        self.trial = np.full(n, -1, dtype=np.int16)
        self.steps = np.zeros(n, dtype=np.int32)
        self.ending = np.zeros(n, dtype=np.bool_)
        self.stones = np.full((n, MAX_STONES), -1, dtype=np.int8)
        self.potions = np.full((n, MAX_POTIONS), -1, dtype=np.int8)
        self.items = np.full((n, T, ITEM_SLOTS), -1, dtype=np.int8)
        self.trial_rewards = np.zeros((n, T), dtype=np.float64)
        self.matrix_events = np.full((n, T, MAX_STONES, STONE_BLOCK), -1, dtype=np.int8)
        self.event_count = np.zeros(n, dtype=np.int8)
        self.obs = np.empty((n, config.observation_size), dtype=np.float32)
        S, P = config.stone_stride, config.potion_stride
        self.obs[:, : MAX_STONES * S] = np.tile(STONE_DEFAULT[:S], MAX_STONES)
        self.obs[:, MAX_STONES * S :] = np.tile(POTION_DEFAULT[:P], MAX_POTIONS)
        #: Rows whose stream was seeded (the others get fresh entropy on their first reset).
        self.seeded = np.zeros(n, dtype=np.bool_)
        self.backend = backend
        self._kernel = _make_kernel(self, backend)

    # ----------------------------------------------------------------- copying

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_kernel")
        state.pop("values", None)  # cached property
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kernel = _make_kernel(self, self.backend)

    def __deepcopy__(self, memo: dict) -> GameBatch:
        new = object.__new__(GameBatch)
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new

    @property
    def kernel_name(self) -> str:
        """``"c"`` or ``"numpy"``: the backend in use."""
        return self._kernel.name

    @cached_property
    def values(self) -> np.ndarray:
        """(8,) float64 value of cashing each latent stone."""
        return np.array(self.config.values, dtype=np.float64)

    def nbytes(self) -> tuple[int, int]:
        """``(bytes of game state, bytes of RNG state)`` of the whole batch."""
        total = sum(getattr(self, name).nbytes for name in STATE_ARRAYS)
        rng_bytes = self.rng_key.nbytes + self.rng_pos.nbytes
        return total - rng_bytes, rng_bytes

    # ----------------------------------------------------------------- seeding

    def seed(self, rows: Sequence[int] | np.ndarray, seeds: Sequence) -> None:
        """Seed each of ``rows``: an int (``RandomState(seed)``), a ``RandomState`` (its stream is copied) or
        ``None`` (fresh entropy)."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        self.seeded[rows] = True
        ints = [(r, s) for r, s in zip(rows.tolist(), seeds) if isinstance(s, (int, np.integer))]
        if ints:
            r, s = zip(*ints)
            self._kernel.seed(np.array(r, dtype=np.intp), np.array(s, dtype=np.uint32))
        for r, s in zip(rows.tolist(), seeds):
            if s is None:
                s = np.random.RandomState()
            if isinstance(s, np.random.RandomState):
                rng.load_random_state(self.rng_key, self.rng_pos, r, s)
            elif not isinstance(s, (int, np.integer)):
                raise TypeError(f"a seed is an int, a numpy RandomState or None, got {type(s).__name__}")

    def random_state(self, row: int) -> np.random.RandomState:
        """A ``RandomState`` continuing ``row``'s stream (the batch's own stream is not advanced)."""
        return rng.to_random_state(self.rng_key, self.rng_pos, row)

    # ---------------------------------------------------------------- episodes

    def reset(
        self,
        rows: Sequence[int] | np.ndarray | None = None,
        seeds: Sequence | None = None,
        episodes: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Start new episodes in ``rows`` (default all), as an env's ``reset`` does; returns the rows.

        ``seeds`` (one per row): an int restarts the row's stream as ``RandomState(seed)`` and, on a fixed
        source, its cursor at the row's own index; ``None`` continues the stream (fresh entropy for a row
        never seeded). ``episodes`` chooses fixed episodes (one index per row).
        """
        rows = np.arange(self.num_games, dtype=np.intp) if rows is None else np.asarray(rows, dtype=np.intp)
        seeds = [None] * len(rows) if seeds is None else list(seeds)
        if len(seeds) != len(rows):
            raise ValueError(f"{len(seeds)} seeds for {len(rows)} games")
        seeded = [s is not None for s in seeds]
        fresh = [r for r, s, done in zip(rows.tolist(), seeds, self.seeded[rows].tolist()) if s is None and not done]
        if fresh:
            self.seed(fresh, [None] * len(fresh))
        if any(seeded):
            with_seed = rows[np.array(seeded)]
            self.seed(with_seed, [s for s in seeds if s is not None])
            if self.source is not None and self.source.is_fixed:
                self.next_episode[with_seed] = with_seed % self.source.count
        self.begin(rows, episodes)
        return rows

    def begin(self, rows: Sequence[int] | np.ndarray | None = None, episodes: Sequence[int] | None = None) -> None:
        """Start a new episode in each of ``rows`` (default all) from the source: sampled episodes draw their
        chemistry and trial 0; fixed ones play ``episodes`` (indices per row) or the cursor's next."""
        if self.source is None:
            raise ValueError("this GameBatch has no episode source: start episodes with begin_given()")
        rows = np.arange(self.num_games, dtype=np.intp) if rows is None else np.asarray(rows, dtype=np.intp)
        if episodes is not None:
            if not self.source.is_fixed:
                raise ValueError("episode indices apply to a fixed episode source only")
            episodes = np.asarray(episodes, dtype=np.int32).reshape(-1)
            if len(episodes) != len(rows):
                raise ValueError(f"{len(episodes)} episode indices for {len(rows)} games")
            if len(episodes) and (episodes.min() < 0 or episodes.max() >= self.source.count):
                raise ValueError(f"episode indices must be in 0..{self.source.count - 1}")
        self._bind_source()
        self._kernel.begin(rows, episodes)

    def begin_given(self, row: int, chemistry: Chemistry, trials: Sequence[TrialItems] | None = None) -> None:
        """Start an episode with a given chemistry in ``row``: items from ``trials`` (one per trial), or drawn
        from the row's stream when ``trials`` is None."""
        T = self.config.num_trials
        self.chem[row] = (chemistry.potion_map, chemistry.stone_map, chemistry.graph, chemistry.rotation)
        self.items[row] = -1
        if trials is None:
            self.episode[row] = SAMPLED
        else:
            if len(trials) < T:
                raise ValueError(f"fixed items cover {len(trials)} trials, the game has {T}")
            for t in range(T):
                self.items[row, t] = trials[t].as_row()
            self.episode[row] = GIVEN
        self._kernel.begin(np.array([row], dtype=np.intp), np.array([GIVEN], dtype=np.int32))

    def _bind_source(self) -> None:
        if self.source is not None and self.source.is_fixed and not self._kernel.bound:
            if self.source.min_trials < self.config.num_trials:
                raise ValueError(
                    f"fixed episodes have {self.source.min_trials} trials, the game plays {self.config.num_trials}"
                )
            self.next_episode %= self.source.count
            self._kernel.bind_fixed(
                np.ascontiguousarray(self.source.chemistry_table),
                np.ascontiguousarray(self.source.items_table[:, : self.config.num_trials]),
            )

    def chemistry(self, row: int) -> Chemistry | None:
        """The chemistry of ``row``'s current (or last) episode; ``None`` before the first."""
        pm, sm, graph, rotation = self.chem[row].tolist()
        return None if pm < 0 else chemistry_of(pm, sm, graph, rotation)

    def chemistries(self, rows: Sequence[int] | np.ndarray) -> list[Chemistry | None]:
        """The chemistries of ``rows`` (``None`` for rows before their first episode)."""
        return [None if c[0] < 0 else chemistry_of(*c) for c in self.chem[np.asarray(rows, dtype=np.intp)].tolist()]

    def items_history(self, row: int) -> list[TrialItems]:
        """Latent items of every trial started so far in ``row``'s episode."""
        if self.chem[row, 0] < 0:
            return []
        trial = int(self.trial[row])
        started = self.config.num_trials if trial < 0 else trial + 1
        return [TrialItems.from_row(r) for r in self.items[row, :started]]

    # -------------------------------------------------------------------- steps

    def check_actions(self, actions) -> np.ndarray:
        """``actions`` as an int64 array of one valid action per game, or a clear ``ValueError``."""
        a = np.asarray(actions)
        n, limit = self.num_games, self.config.num_actions
        if a.shape != (n,) or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be {n} integers (an int array of shape ({n},), each in 0..{limit - 1}), "
                f"got {a.dtype} array of shape {a.shape}"
            )
        a = a.astype(np.int64, copy=False)
        bad = self._kernel.first_bad_action(a, limit)
        if bad >= 0:
            raise ValueError(
                f"action {int(a[bad])} of sub-env {bad} out of range: each action must be in 0..{limit - 1} "
                f"(Discrete({limit}))"
            )
        return a

    def step(
        self, actions: np.ndarray, *, begin: np.ndarray | None = None, obs_out: np.ndarray | None = None
    ) -> StepResult:
        """One step of every game: rows where ``begin`` is set start a new episode instead (their action is
        ignored, reward 0); the others apply their action and end their trial when it is over.

        ``actions`` must be checked (:meth:`check_actions`); every stepped row must be in an episode.
        ``obs_out`` (n, F) float32, if given, receives a copy of the observations after the step.
        """
        n = self.num_games
        reward = np.empty(n, dtype=np.float64)
        terminated = np.empty(n, dtype=np.bool_)
        trial_ended = np.empty(n, dtype=np.int16)
        if begin is not None:
            self._bind_source()
        ends, terms = self._kernel.step(actions, begin, reward, terminated, trial_ended, obs_out)
        return StepResult(reward, terminated, trial_ended, ends, terms)

    def step_one(self, row: int, action: int) -> tuple[float, int, bool]:
        """Step one game: ``(reward, trial ended or -1, episode over)``; the action must be valid."""
        return self._kernel.step_one(row, action)

    def apply_one(self, row: int, action: int) -> Outcome:
        """The first half of :meth:`step_one`: apply the action (the trial is not ended yet)."""
        return Outcome(*self._kernel.apply_one(row, action))

    def advance_one(self, row: int) -> tuple[int, bool]:
        """The second half of :meth:`step_one`: end the trial if the applied action ended it;
        ``(trial ended or -1, episode over)``."""
        return self._kernel.advance_one(row)

    def end_trial_one(self, row: int) -> tuple[int, bool]:
        """End ``row``'s current trial now (what no-ops until the step limit would do)."""
        self.ending[row] = True
        return self._kernel.advance_one(row)


# ------------------------------------------------------------------------------------ backends


def _make_kernel(batch: GameBatch, backend: str):
    if backend in ("auto", "c"):
        try:
            from alchemy_gym.core import _kernel
        except ImportError:
            if backend == "c":
                raise ImportError(
                    "the compiled game kernel (alchemy_gym.core._kernel) is not built: reinstall alchemy-gym "
                    "with a C compiler available (pip install --force-reinstall --no-binary alchemy-gym ...), "
                    "or use backend='numpy'"
                ) from None
        else:
            return _kernel.Kernel(batch, _kernel_tables(batch))
    return NumpyKernel(batch)


def _kernel_tables(batch: GameBatch) -> tuple:
    """The constant tables and settings the compiled kernel reads (it keeps references)."""
    c = batch.config
    source = batch.source
    sampled = source is not None and not source.is_fixed
    rules = source.rules if sampled else None
    return (
        graphs.TRANSITIONS,
        STONE_FEATURES,
        POTION_FEATURES,
        batch.values,
        np.ascontiguousarray(source.graph_masks) if sampled else np.zeros(1, dtype=np.uint16),
        np.ascontiguousarray(source.graph_cdf) if sampled else np.ones(1, dtype=np.float64),
        int(sampled and rules.randomize_maps),
        int(sampled and rules.rotation),
        c.num_trials,
        c.max_steps_per_trial,
        c.action_offset,
        int(c.observe_used),
        c.num_stones_per_trial,
        c.num_potions_per_trial,
        batch.stride,
        0 if source is None else 2 if source.is_fixed else 1,
    )


class NumpyKernel:
    """The batch operations in numpy (vectorised over rows); the reference the compiled kernel matches."""

    name = "numpy"

    def __init__(self, batch: GameBatch) -> None:
        self.b = batch
        self.bound = False
        c = batch.config
        self.S, self.P = c.stone_stride, c.potion_stride
        self.k = c.action_offset
        self.values = batch.values
        self.stone_default = STONE_DEFAULT[: self.S]
        self.potion_default = POTION_DEFAULT[: self.P]
        # observation column of each stone feature and of each potion's colour / used flag
        self.stone_cols = np.arange(MAX_STONES)[:, None] * self.S + np.arange(4)[None, :]
        self.potion_base = MAX_STONES * self.S
        self.chem_table = self.items_table = None

    def bind_fixed(self, chem_table: np.ndarray, items_table: np.ndarray) -> None:
        self.chem_table, self.items_table = chem_table, items_table
        self.bound = True

    # ------------------------------------------------------------------ rng

    def seed(self, rows: np.ndarray, seeds: np.ndarray) -> None:
        rng.seed_rows(self.b.rng_key, self.b.rng_pos, rows, seeds)

    def _randint(self, rows: np.ndarray, high: int) -> np.ndarray:
        return rng.randint(self.b.rng_key, self.b.rng_pos, rows, high)

    # ------------------------------------------------------------- episodes

    def begin(self, rows: np.ndarray, episodes: np.ndarray | None) -> None:
        b = self.b
        if not len(rows):
            return
        source = b.source
        if episodes is not None and len(episodes) and episodes[0] == GIVEN:
            pass  # chemistry and items written by begin_given
        elif not source.is_fixed:
            rules = source.rules
            chem = np.empty((len(rows), 4), dtype=np.int16)
            if rules.randomize_maps:
                chem[:, 0] = self._randint(rows, NUM_POTION_MAPS)
                chem[:, 1] = self._randint(rows, NUM_STONE_MAPS)
            else:
                chem[:, 0], chem[:, 1] = FIXED_POTION_MAP, FIXED_STONE_MAP
            u = rng.random_sample(b.rng_key, b.rng_pos, rows)
            masks = source.graph_masks
            pick = np.minimum(np.searchsorted(source.graph_cdf, u, side="right"), len(masks) - 1)
            chem[:, 2] = masks[pick]
            chem[:, 3] = self._randint(rows, NUM_ROTATIONS) if rules.rotation else 0
            b.chem[rows] = chem
            b.items[rows] = -1
            b.episode[rows] = SAMPLED
        else:
            if episodes is None:
                episodes = b.next_episode[rows]
            b.chem[rows] = self.chem_table[episodes]
            b.items[rows] = self.items_table[episodes]
            b.episode[rows] = episodes
            b.next_episode[rows] = (episodes + b.stride) % len(self.chem_table)
        b.trial_rewards[rows] = 0.0
        b.matrix_events[rows] = -1
        self._start_trial(rows, np.zeros(len(rows), dtype=np.int16))

    def _start_trial(self, rows: np.ndarray, trials: np.ndarray) -> None:
        b, c = self.b, self.b.config
        draw = rows[b.episode[rows] == SAMPLED]
        if len(draw):
            t = trials[b.episode[rows] == SAMPLED]
            for slot in range(c.num_stones_per_trial):
                b.items[draw, t, slot] = self._randint(draw, NUM_LATENT_STONES)
            for slot in range(c.num_potions_per_trial):
                b.items[draw, t, MAX_STONES + slot] = self._randint(draw, NUM_POTION_TYPES)
        items = b.items[rows, trials]
        stones, potions = items[:, :MAX_STONES], items[:, MAX_STONES:]
        b.trial[rows] = trials
        b.steps[rows] = 0
        b.ending[rows] = False
        b.event_count[rows] = 0
        b.stones[rows] = stones
        b.potions[rows] = potions
        obs = b.obs[rows]
        chem = b.chem[rows].astype(np.intp)
        S, P = self.S, self.P
        stone_obs = obs[:, : MAX_STONES * S].reshape(-1, MAX_STONES, S)
        features = STONE_FEATURES[chem[:, 1:2], chem[:, 3:4], np.maximum(stones, 0)]  # (m, 3, 4)
        stone_obs[:] = self.stone_default
        present = stones >= 0
        stone_obs[..., :4] = np.where(present[..., None], features, stone_obs[..., :4])
        if S == 5:
            stone_obs[..., 4] = np.where(present, 0.0, 1.0)
        potion_obs = obs[:, MAX_STONES * S :].reshape(-1, MAX_POTIONS, P)
        present = potions >= 0
        colours = POTION_FEATURES[chem[:, 0:1], np.maximum(potions, 0)]
        potion_obs[..., 0] = np.where(present, colours, 1.0)
        if P == 2:
            potion_obs[..., 1] = np.where(present, 0.0, 1.0)
        b.obs[rows] = obs

    # ---------------------------------------------------------------- steps

    def first_bad_action(self, actions: np.ndarray, limit: int) -> int:
        bad = np.flatnonzero((actions < 0) | (actions >= limit))
        return int(bad[0]) if len(bad) else -1

    def _apply(self, rows: np.ndarray, actions: np.ndarray, reward: np.ndarray):
        """Apply ``actions`` (one per row); fills ``reward`` (one per row); returns the outcome arrays."""
        b = self.b
        m = len(rows)
        a = actions.astype(np.int64) - self.k
        b.steps[rows] += 1
        trial = b.trial[rows].astype(np.intp)
        kind = np.zeros(m, dtype=np.int8)
        s = np.where(a >= 0, a // STONE_BLOCK, 0)
        q = np.where(a >= 0, a % STONE_BLOCK, -1)
        old = np.where(a >= 0, b.stones[rows, s], -1)
        reward[:] = 0.0
        potion = np.full(m, -1, dtype=np.int8)
        new = old.copy()
        # stone into the cauldron
        cash = (old >= 0) & (q == 0)
        if cash.any():
            r, sl, latent, t = rows[cash], s[cash], old[cash], trial[cash]
            reward[cash] = self.values[latent]
            b.stones[r, sl] = -1
            new[cash] = -1
            cols = sl[:, None] * self.S + np.arange(self.S)[None, :]
            b.obs[r[:, None], cols] = self.stone_default
            b.trial_rewards[r, t] += reward[cash]
            b.matrix_events[r, t, sl, CAULDRON] = b.event_count[r]
            b.event_count[r] += 1
            kind[cash] = STONE_CASHED
        # stone into a potion
        dip = (old >= 0) & (q > 0)
        if dip.any():
            r, sl, p, t = rows[dip], s[dip], q[dip] - 1, trial[dip]
            pl = b.potions[r, p]
            ok = pl >= 0
            r, sl, p, t, pl = r[ok], sl[ok], p[ok], t[ok], pl[ok]
            stone = old[dip][ok]
            idx = np.flatnonzero(dip)[ok]
            moved = graphs.TRANSITIONS[b.chem[r, 2].astype(np.intp), stone.astype(np.intp) * NUM_POTION_TYPES + pl]
            b.potions[r, p] = -1
            base = self.potion_base + p * self.P
            b.obs[r, base] = 1.0
            if self.P == 2:
                b.obs[r, base + 1] = 1.0
            b.stones[r, sl] = moved
            chem = b.chem[r].astype(np.intp)
            b.obs[r[:, None], self.stone_cols[sl]] = STONE_FEATURES[chem[:, 1], chem[:, 3], moved.astype(np.intp)]
            b.matrix_events[r, t, sl, p] = b.event_count[r]
            b.event_count[r] += 1
            kind[idx] = POTION_USED
            potion[idx] = pl
            new[idx] = moved
        b.ending[rows] = (a == END_TRIAL) | (b.steps[rows] >= b.config.max_steps_per_trial)
        return kind, s, q - 1, old, potion, new

    def _advance(self, rows: np.ndarray, terminated: np.ndarray, trial_ended: np.ndarray) -> tuple[int, int]:
        """End the trials of ``rows`` whose applied action ended them; fills one value per row."""
        b = self.b
        over = b.ending[rows]
        terminated[:] = False
        trial_ended[:] = -1
        if not over.any():
            return 0, 0
        r = rows[over]
        t = b.trial[r]
        trial_ended[over] = t
        last = t >= b.config.num_trials - 1
        terminated[over] = last
        b.ending[r] = False
        b.trial[r[last]] = -1
        more = ~last
        if more.any():
            self._start_trial(r[more], (t[more] + 1).astype(np.int16))
        return int(len(r)), int(last.sum())

    def step(self, actions, begin, reward, terminated, trial_ended, obs_out) -> tuple[int, int]:
        b = self.b
        starting = np.flatnonzero(begin) if begin is not None else np.zeros(0, dtype=np.intp)
        stepping = np.flatnonzero(~begin) if begin is not None else np.arange(b.num_games)
        if (b.trial[stepping] < 0).any():
            bad = int(stepping[b.trial[stepping] < 0][0])
            raise RuntimeError(f"game {bad} is not in an episode: start one before stepping it")
        if len(starting):
            if b.source is None:
                raise ValueError("this GameBatch has no episode source: start episodes with begin_given()")
            self.begin(starting, None)
        rew = np.zeros(len(stepping))
        self._apply(stepping, actions[stepping], rew)
        term = np.zeros(len(stepping), dtype=np.bool_)
        ended = np.zeros(len(stepping), dtype=np.int16)
        counts = self._advance(stepping, term, ended)
        reward[:] = 0.0
        terminated[:] = False
        trial_ended[:] = -1
        reward[stepping], terminated[stepping], trial_ended[stepping] = rew, term, ended
        if obs_out is not None:
            obs_out[:] = b.obs
        return counts

    def step_one(self, row: int, action: int) -> tuple[float, int, bool]:
        reward, *_ = self.apply_one(row, action)
        ended, over = self.advance_one(row)
        return reward, ended, over

    def apply_one(self, row: int, action: int) -> tuple:
        if self.b.trial[row] < 0:
            raise RuntimeError(f"game {row} is not in an episode: start one before stepping it")
        rows = np.array([row], dtype=np.intp)
        reward = np.zeros(1)
        kind, s, p, old, potion, new = self._apply(rows, np.array([action], dtype=np.int64), reward)
        return float(reward[0]), int(kind[0]), int(s[0]), int(p[0]), int(old[0]), int(potion[0]), int(new[0])

    def advance_one(self, row: int) -> tuple[int, bool]:
        terminated = np.zeros(1, dtype=np.bool_)
        trial_ended = np.zeros(1, dtype=np.int16)
        self._advance(np.array([row], dtype=np.intp), terminated, trial_ended)
        return int(trial_ended[0]), bool(terminated[0])
