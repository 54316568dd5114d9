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
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from alchemy_gym.core import rng
from alchemy_gym.core.checks import (
    BACKENDS,
    MAX_STEPS_PER_TRIAL,
    MAX_TRIALS,
    check_actions,
    check_backend,
    check_bool,
    check_count,
    check_int,
    check_reward_weights,
)
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import EpisodeSource, TrialItems, chemistry_of
from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS, MAX_POTIONS, MAX_STONES, stone_values
from alchemy_gym.core.spec import (
    CAULDRON,
    END_TRIAL,
    GIVEN,
    NO_OP,
    NOTHING,
    POTION_TYPE_SCALE,
    POTION_USED,
    REWARD_SCALE,
    SAMPLED,
    SPEC,
    STONE_BLOCK,
    STONE_CASHED,
)

__all__ = [
    "BACKENDS",
    "CAULDRON",
    "END_TRIAL",
    "GIVEN",
    "MAX_THREADS",
    "NOTHING",
    "NO_OP",
    "POTION_FEATURES",
    "POTION_TYPE_SCALE",
    "POTION_USED",
    "REWARD_SCALE",
    "SAMPLED",
    "STATE_ARRAYS",
    "STONE_BLOCK",
    "STONE_CASHED",
    "STONE_FEATURES",
    "GameBatch",
    "GameConfig",
    "KernelSettings",
    "Outcome",
    "StepResult",
    "num_actions",
    "observation_bounds",
    "observation_size",
]

#: Most threads one step of the compiled kernel runs on (``GameBatch.threads``, the vector env's ``num_threads``).
MAX_THREADS = 16

#: Observation features of a latent stone under (stone map, rotation), and of a latent potion under a potion
#: map; what an empty or used slot shows (the description's tables, :data:`~alchemy_gym.core.spec.SPEC`).
STONE_FEATURES = SPEC.stone_features
POTION_FEATURES = SPEC.potion_features
STONE_DEFAULT = SPEC.stone_default
POTION_DEFAULT = SPEC.potion_default


def num_actions(end_trial_action: bool) -> int:
    """40, or 41 with the end-trial action (§4.2)."""
    return SPEC.num_actions(end_trial_action)


def observation_size(observe_used: bool) -> int:
    """39, or 24 without the used flags (§4.4)."""
    return SPEC.observation_size(observe_used)


def observation_bounds(observe_used: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 bounds of each observation float (§4.4): features in [-1, 2], potion
    colours and used flags in their own ranges."""
    size = SPEC.observation_size(observe_used)
    s, p = SPEC.stone_stride(observe_used), SPEC.potion_stride(observe_used)
    stones = SPEC.max_stones * s
    low = np.full(size, -1.0, dtype=np.float32)
    high = np.full(size, 2.0, dtype=np.float32)
    high[stones:] = 1.0  # potion colours are in [-1, 1], used flags in [0, 1]
    if observe_used:
        used = SPEC.stone_feature_size
        low[used:stones:s] = 0.0  # stone used flags
        high[used:stones:s] = 1.0
        low[stones + 1 :: p] = 0.0  # potion used flags
    return low, high


@dataclass(frozen=True)
class GameConfig:
    """The fixed settings of a game, each checked by :mod:`alchemy_gym.core.checks` (as the envs' settings are).

    Attributes:
        num_trials: trials per episode (1..127).
        max_steps_per_trial: a trial ends after this many steps (1..2**31-1).
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
        checked = {
            "num_trials": check_int("num_trials", self.num_trials, 1, MAX_TRIALS),
            "max_steps_per_trial": check_int("max_steps_per_trial", self.max_steps_per_trial, 1, MAX_STEPS_PER_TRIAL),
            "end_trial_action": check_bool("end_trial_action", self.end_trial_action),
            "observe_used": check_bool("observe_used", self.observe_used),
            "num_stones_per_trial": check_int("num_stones_per_trial", self.num_stones_per_trial, 0, MAX_STONES),
            "num_potions_per_trial": check_int("num_potions_per_trial", self.num_potions_per_trial, 0, MAX_POTIONS),
            "reward_weights": check_reward_weights("reward_weights", self.reward_weights),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "values", stone_values(self.reward_weights))

    @property
    def action_offset(self) -> int:
        """``k`` of §4.2: actions below it are the end-trial action and the no-op."""
        return SPEC.action_offset(self.end_trial_action)

    @property
    def num_actions(self) -> int:
        return SPEC.num_actions(self.end_trial_action)

    @property
    def observation_size(self) -> int:
        return SPEC.observation_size(self.observe_used)

    @property
    def stone_stride(self) -> int:
        return SPEC.stone_stride(self.observe_used)

    @property
    def potion_stride(self) -> int:
        return SPEC.potion_stride(self.observe_used)


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


#: The arrays of a batch's state (each read by name by both kernels).
STATE_ARRAYS = (
    "rng_key", "rng_pos", "chem", "episode", "next_episode", "trial", "steps", "ending", "stones", "potions",
    "items", "trial_rewards", "matrix_events", "event_count", "obs",
)  # fmt: skip


class BatchState:
    """The writable arrays of a batch's state, by name (:data:`STATE_ARRAYS`), and ``num_games``: what a kernel
    reads and writes in place. Only the core writes them; :class:`GameBatch` shows them read-only."""

    __slots__ = (*STATE_ARRAYS, "num_games")

    def __init__(self, num_games: int, config: GameConfig) -> None:
        n, T = num_games, config.num_trials
        self.num_games = n
        self.rng_key, self.rng_pos = rng.new_state(n)
        self.chem = np.full((n, SPEC.chem_width), -1, dtype=np.int16)
        self.episode = np.full(n, SAMPLED, dtype=np.int32)
        self.next_episode = np.arange(n, dtype=np.int32)  # sub-env i starts at fixed episode i
        self.trial = np.full(n, -1, dtype=np.int16)
        self.steps = np.zeros(n, dtype=np.int32)
        self.ending = np.zeros(n, dtype=np.bool_)
        self.stones = np.full((n, SPEC.max_stones), -1, dtype=np.int8)
        self.potions = np.full((n, SPEC.max_potions), -1, dtype=np.int8)
        self.items = np.full((n, T, SPEC.item_slots), -1, dtype=np.int8)
        self.trial_rewards = np.zeros((n, T), dtype=np.float64)
        self.matrix_events = np.full((n, T, SPEC.max_stones, SPEC.stone_block), -1, dtype=np.int8)
        self.event_count = np.zeros(n, dtype=np.int8)
        self.obs = np.empty((n, config.observation_size), dtype=np.float32)
        S, P = config.stone_stride, config.potion_stride
        self.obs[:, : SPEC.max_stones * S] = np.tile(SPEC.stone_default[:S], SPEC.max_stones)
        self.obs[:, SPEC.max_stones * S :] = np.tile(SPEC.potion_default[:P], SPEC.max_potions)

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)


class _ReadOnlyState:
    """A state array of :class:`GameBatch`: a read-only view of the array the kernel keeps (no setter)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, batch: GameBatch | None, owner: type | None = None):
        if batch is None:
            return self
        view = batch._views.get(self.name)
        if view is None:  # made on first use: a single env reads few of them
            view = batch._views[self.name] = _read_only(getattr(batch._state, self.name))
        return view

    def __set__(self, batch: GameBatch, value) -> None:
        raise AttributeError(
            f"GameBatch.{self.name} is read-only: the game kernel keeps this array, so a new one would not be "
            "played (change the state through GameBatch's methods: reset, begin, begin_given, set_items, step)"
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class KernelSettings(NamedTuple):
    """A batch's settings as both kernels read them, by name (with :data:`~alchemy_gym.core.spec.SPEC`)."""

    num_trials: int
    max_steps_per_trial: int
    #: ``k`` of §4.2.
    action_offset: int
    observe_used: bool
    num_stones_per_trial: int
    num_potions_per_trial: int
    #: The fixed-episode cursor step.
    stride: int
    #: ``"none"`` (given episodes only), ``"sampled"`` or ``"fixed"``.
    source: str
    #: Sampled episodes draw their maps (else the fixed ones) and their rotation (else none).
    randomize_maps: bool
    rotation: bool
    #: (8,) float64 value of cashing each latent stone (read-only).
    values: np.ndarray
    #: The level's graph masks (uint16) and the CDF of their prior (float64), one dummy entry if not sampled.
    graph_masks: np.ndarray
    graph_cdf: np.ndarray
    #: Every action's decoding (:meth:`~alchemy_gym.core.spec.GameSpec.action_table`).
    action_stone: np.ndarray
    action_column: np.ndarray
    #: Most threads one step may run on.
    max_threads: int


class GameBatch:
    """``num_games`` symbolic Alchemy games, stepped together or one at a time.

    The state arrays (:data:`STATE_ARRAYS`: ``batch.obs``, ``batch.stones``, …) are read-only views of the
    arrays the kernel keeps; the batch's methods change them.

    Args:
        num_games: how many games (rows).
        config: the game settings.
        source: where episodes come from (``None``: only given episodes, :meth:`begin_given`).
        stride: the fixed-episode cursor step (1 for one env, ``N`` for ``N`` sub-envs).
        backend: ``"auto"`` (the compiled kernel if available), ``"c"`` or ``"numpy"``.
    """

    rng_key = _ReadOnlyState()
    rng_pos = _ReadOnlyState()
    chem = _ReadOnlyState()
    episode = _ReadOnlyState()
    next_episode = _ReadOnlyState()
    trial = _ReadOnlyState()
    steps = _ReadOnlyState()
    ending = _ReadOnlyState()
    stones = _ReadOnlyState()
    potions = _ReadOnlyState()
    items = _ReadOnlyState()
    trial_rewards = _ReadOnlyState()
    matrix_events = _ReadOnlyState()
    event_count = _ReadOnlyState()
    obs = _ReadOnlyState()

    def __init__(
        self,
        num_games: int,
        config: GameConfig | None = None,
        source: EpisodeSource | None = None,
        *,
        stride: int = 1,
        backend: str = "auto",
    ) -> None:
        n = check_count("num_games", num_games)
        check_backend("backend", backend)
        self.num_games = n
        self.config = config = config or GameConfig()
        self.source = source
        self.stride = int(stride)
        self._state = BatchState(n, config)
        self._actions_shape, self._num_actions = (n,), config.num_actions
        #: Rows whose stream was seeded (the others get fresh entropy on their first reset).
        self.seeded = np.zeros(n, dtype=np.bool_)
        self.backend = backend
        self._attach_kernel()

    def _attach_kernel(self) -> None:
        self._views: dict[str, np.ndarray] = {}
        self._settings = kernel_settings(self.config, self.source, self.stride)
        self._kernel = _make_kernel(self._state, self._settings, self.backend)

    # ----------------------------------------------------------------- copying

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["threads"] = self._kernel.threads
        for name in ("_kernel", "_views", "_settings"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        threads = state.pop("threads", 1)
        self.__dict__.update(state)
        self._attach_kernel()
        self._kernel.threads = threads

    def __deepcopy__(self, memo: dict) -> GameBatch:
        new = object.__new__(GameBatch)
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new

    def row_view(self, name: str, row: int) -> np.ndarray:
        """A read-only view of one row of a state array (``row_view("obs", 3)`` is ``batch.obs[3]``)."""
        return _read_only(getattr(self._state, name)[row])

    @property
    def kernel_name(self) -> str:
        """``"c"`` or ``"numpy"``: the backend in use."""
        return self._kernel.name

    @property
    def threads(self) -> int:
        """Threads one :meth:`step` runs on (1..:data:`MAX_THREADS`; more than 1 needs the compiled kernel)."""
        return self._kernel.threads

    @threads.setter
    def threads(self, value: int) -> None:
        value = check_int("threads", value, 1, MAX_THREADS)
        if value > 1 and self.kernel_name != "c":
            raise ValueError("threads > 1 needs the compiled kernel (backend='c')")
        self._kernel.threads = value

    @property
    def values(self) -> np.ndarray:
        """(8,) float64 value of cashing each latent stone (read-only)."""
        return self._settings.values

    def nbytes(self) -> tuple[int, int]:
        """``(bytes of game state, bytes of RNG state)`` of the whole batch."""
        total = sum(getattr(self._state, name).nbytes for name in STATE_ARRAYS)
        rng_bytes = self._state.rng_key.nbytes + self._state.rng_pos.nbytes
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
                rng.load_random_state(self._state.rng_key, self._state.rng_pos, r, s)
            elif not isinstance(s, (int, np.integer)):
                raise TypeError(f"a seed is an int, a numpy RandomState or None, got {type(s).__name__}")

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
                self._state.next_episode[with_seed] = with_seed % self.source.count
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
        s = self._state
        s.chem[row] = (chemistry.potion_map, chemistry.stone_map, chemistry.graph, chemistry.rotation)
        s.items[row] = -1
        if trials is None:
            s.episode[row] = SAMPLED
        else:
            if len(trials) < T:
                raise ValueError(f"fixed items cover {len(trials)} trials, the game has {T}")
            for t in range(T):
                s.items[row, t] = trials[t].as_row()
            s.episode[row] = GIVEN
        self._kernel.begin(np.array([row], dtype=np.intp), np.array([GIVEN], dtype=np.int32))

    def set_items(self, row: int, trial: int, items: TrialItems) -> None:
        """The items trial ``trial`` of ``row``'s given episode starts with (a later trial than the current)."""
        if self._state.episode[row] != GIVEN or not self._state.trial[row] < trial < self.config.num_trials:
            raise ValueError(
                f"trial {trial} is not a later trial of a given episode (the game is in trial "
                f"{int(self._state.trial[row])})"
            )
        self._state.items[row, trial] = items.as_row()

    def _bind_source(self) -> None:
        if self.source is not None and self.source.is_fixed and not self._kernel.bound:
            if self.source.min_trials < self.config.num_trials:
                raise ValueError(
                    f"fixed episodes have {self.source.min_trials} trials, the game plays {self.config.num_trials}"
                )
            self._state.next_episode %= self.source.count
            self._kernel.bind_fixed(
                np.ascontiguousarray(self.source.chemistry_table),
                np.ascontiguousarray(self.source.items_table[:, : self.config.num_trials]),
            )

    def chemistry(self, row: int) -> Chemistry | None:
        """The chemistry of ``row``'s current (or last) episode; ``None`` before the first."""
        pm, sm, graph, rotation = self._state.chem[row].tolist()
        return None if pm < 0 else chemistry_of(pm, sm, graph, rotation)

    def chemistries(self, rows: Sequence[int] | np.ndarray) -> list[Chemistry | None]:
        """The chemistries of ``rows`` (``None`` for rows before their first episode)."""
        chem = self._state.chem[np.asarray(rows, dtype=np.intp)].tolist()
        return [None if c[0] < 0 else chemistry_of(*c) for c in chem]

    def items_history(self, row: int) -> list[TrialItems]:
        """Latent items of every trial started so far in ``row``'s episode."""
        if self._state.chem[row, 0] < 0:
            return []
        trial = int(self._state.trial[row])
        started = self.config.num_trials if trial < 0 else trial + 1
        return [TrialItems.from_row(r) for r in self._state.items[row, :started]]

    # -------------------------------------------------------------------- steps

    def check_actions(self, actions) -> np.ndarray:
        """``actions`` as an int64 array of one valid action per game, or a clear ``ValueError``
        (:func:`alchemy_gym.core.checks.check_actions`)."""
        return check_actions(actions, self._actions_shape, self._num_actions, first_bad=self._kernel.first_bad_action)

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
        self._state.ending[row] = True
        return self._kernel.advance_one(row)


# ------------------------------------------------------------------------------------ backends


@lru_cache(maxsize=64)
def kernel_settings(config: GameConfig, source: EpisodeSource | None, stride: int = 1) -> KernelSettings:
    """What a kernel reads of a batch's settings (read-only tables; shared by the batches of the same settings)."""
    sampled = source is not None and not source.is_fixed
    rules = source.rules if sampled else None
    actions = SPEC.action_table(config.end_trial_action)
    return KernelSettings(
        num_trials=config.num_trials,
        max_steps_per_trial=config.max_steps_per_trial,
        action_offset=config.action_offset,
        observe_used=config.observe_used,
        num_stones_per_trial=config.num_stones_per_trial,
        num_potions_per_trial=config.num_potions_per_trial,
        stride=int(stride),
        source="none" if source is None else "fixed" if source.is_fixed else "sampled",
        randomize_maps=bool(sampled and rules.randomize_maps),
        rotation=bool(sampled and rules.rotation),
        values=_read_only(np.array(config.values, dtype=np.float64)),
        graph_masks=source.graph_masks if sampled else _read_only(np.zeros(1, dtype=np.uint16)),
        graph_cdf=source.graph_cdf if sampled else _read_only(np.ones(1, dtype=np.float64)),
        action_stone=actions.stone,
        action_column=actions.column,
        max_threads=MAX_THREADS,
    )


def _make_kernel(state: BatchState, settings: KernelSettings, backend: str):
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
            return _kernel.Kernel(state, SPEC, settings)
    return NumpyKernel(state, SPEC, settings)


class NumpyKernel:
    """The batch operations in numpy (vectorised over rows); the reference the compiled kernel matches.

    It reads what the compiled kernel reads, by the same names: the state (:class:`BatchState`), the game's
    description (:data:`~alchemy_gym.core.spec.SPEC`) and the batch's :class:`KernelSettings`.
    """

    name = "numpy"
    threads = 1

    def __init__(self, state: BatchState, spec, settings: KernelSettings) -> None:
        self.b, self.spec, self.settings = state, spec, settings
        self.bound = False
        self.S = spec.stone_stride(settings.observe_used)
        self.P = spec.potion_stride(settings.observe_used)
        self.values = settings.values
        self.stone_default = spec.stone_default[: self.S]
        self.potion_default = spec.potion_default[: self.P]
        self.action_stone = settings.action_stone.astype(np.intp)
        self.action_column = settings.action_column.astype(np.intp)
        # observation column of each stone feature and of each potion's colour / used flag
        features = spec.stone_feature_size
        self.stone_cols = np.arange(spec.max_stones)[:, None] * self.S + np.arange(features)[None, :]
        self.potion_base = spec.max_stones * self.S
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
        b, spec, settings = self.b, self.spec, self.settings
        if not len(rows):
            return
        if episodes is not None and len(episodes) and episodes[0] == spec.given:
            pass  # chemistry and items written by begin_given
        elif settings.source == "sampled":
            chem = np.empty((len(rows), spec.chem_width), dtype=np.int16)
            if settings.randomize_maps:
                chem[:, spec.chem_potion_map] = self._randint(rows, spec.num_potion_maps)
                chem[:, spec.chem_stone_map] = self._randint(rows, spec.num_stone_maps)
            else:
                chem[:, spec.chem_potion_map] = spec.fixed_potion_map
                chem[:, spec.chem_stone_map] = spec.fixed_stone_map
            u = rng.random_sample(b.rng_key, b.rng_pos, rows)
            masks = settings.graph_masks
            pick = np.minimum(np.searchsorted(settings.graph_cdf, u, side="right"), len(masks) - 1)
            chem[:, spec.chem_graph] = masks[pick]
            chem[:, spec.chem_rotation] = self._randint(rows, spec.num_rotations) if settings.rotation else 0
            b.chem[rows] = chem
            b.items[rows] = -1
            b.episode[rows] = spec.sampled
        else:
            if episodes is None:
                episodes = b.next_episode[rows]
            b.chem[rows] = self.chem_table[episodes]
            b.items[rows] = self.items_table[episodes]
            b.episode[rows] = episodes
            b.next_episode[rows] = (episodes + settings.stride) % len(self.chem_table)
        b.trial_rewards[rows] = 0.0
        b.matrix_events[rows] = -1
        self._start_trial(rows, np.zeros(len(rows), dtype=np.int16))

    def _start_trial(self, rows: np.ndarray, trials: np.ndarray) -> None:
        b, spec, settings = self.b, self.spec, self.settings
        ns, npot = spec.max_stones, spec.max_potions
        sampled = b.episode[rows] == spec.sampled
        draw = rows[sampled]
        if len(draw):
            t = trials[sampled]
            for slot in range(settings.num_stones_per_trial):
                b.items[draw, t, slot] = self._randint(draw, spec.num_latent_stones)
            for slot in range(settings.num_potions_per_trial):
                b.items[draw, t, ns + slot] = self._randint(draw, spec.num_potion_types)
        items = b.items[rows, trials]
        stones, potions = items[:, :ns], items[:, ns:]
        b.trial[rows] = trials
        b.steps[rows] = 0
        b.ending[rows] = False
        b.event_count[rows] = 0
        b.stones[rows] = stones
        b.potions[rows] = potions
        obs = b.obs[rows]
        chem = b.chem[rows].astype(np.intp)
        S, P, features = self.S, self.P, spec.stone_feature_size
        sm, rot, pm = (
            chem[:, spec.chem_stone_map, None],
            chem[:, spec.chem_rotation, None],
            chem[:, spec.chem_potion_map, None],
        )
        stone_obs = obs[:, : ns * S].reshape(-1, ns, S)
        present = stones >= 0
        stone_obs[:] = self.stone_default
        stone_obs[..., :features] = np.where(
            present[..., None], spec.stone_features[sm, rot, np.maximum(stones, 0)], stone_obs[..., :features]
        )
        if S > features:
            stone_obs[..., features] = np.where(present, 0.0, self.stone_default[features])
        potion_obs = obs[:, ns * S :].reshape(-1, npot, P)
        present = potions >= 0
        colours = spec.potion_features[pm, np.maximum(potions, 0)]
        potion_obs[..., 0] = np.where(present, colours, self.potion_default[0])
        if P == 2:
            potion_obs[..., 1] = np.where(present, 0.0, self.potion_default[1])
        b.obs[rows] = obs

    # ---------------------------------------------------------------- steps

    def first_bad_action(self, actions: np.ndarray, limit: int) -> int:
        bad = np.flatnonzero(actions.view(np.uint64) >= np.uint64(limit))
        return int(bad[0]) if len(bad) else -1

    def _apply(self, rows: np.ndarray, actions: np.ndarray, reward: np.ndarray):
        """Apply ``actions`` (one per row); fills ``reward`` (one per row); returns the outcome arrays."""
        b, spec = self.b, self.spec
        m = len(rows)
        s, column = self.action_stone[actions], self.action_column[actions]
        b.steps[rows] += 1
        trial = b.trial[rows].astype(np.intp)
        kind = np.zeros(m, dtype=np.int8)
        old = np.where(column >= 0, b.stones[rows, s], -1)
        reward[:] = 0.0
        potion = np.full(m, -1, dtype=np.int8)
        new = old.copy()
        # stone into the cauldron
        cash = (old >= 0) & (column == spec.cauldron)
        if cash.any():
            r, sl, latent, t = rows[cash], s[cash], old[cash], trial[cash]
            reward[cash] = self.values[latent]
            b.stones[r, sl] = -1
            new[cash] = -1
            cols = sl[:, None] * self.S + np.arange(self.S)[None, :]
            b.obs[r[:, None], cols] = self.stone_default
            b.trial_rewards[r, t] += reward[cash]
            b.matrix_events[r, t, sl, spec.cauldron] = b.event_count[r]
            b.event_count[r] += 1
            kind[cash] = spec.stone_cashed
        # stone into a potion
        dip = (old >= 0) & (column >= 0) & (column < spec.cauldron)
        if dip.any():
            r, sl, p, t = rows[dip], s[dip], column[dip], trial[dip]
            pl = b.potions[r, p]
            ok = pl >= 0
            r, sl, p, t, pl = r[ok], sl[ok], p[ok], t[ok], pl[ok]
            stone = old[dip][ok]
            idx = np.flatnonzero(dip)[ok]
            chem = b.chem[r].astype(np.intp)
            moved = spec.transitions[chem[:, spec.chem_graph], stone.astype(np.intp) * spec.num_potion_types + pl]
            b.potions[r, p] = -1
            base = self.potion_base + p * self.P
            b.obs[r, base] = self.potion_default[0]
            if self.P == 2:
                b.obs[r, base + 1] = self.potion_default[1]
            b.stones[r, sl] = moved
            features = spec.stone_features[
                chem[:, spec.chem_stone_map], chem[:, spec.chem_rotation], moved.astype(np.intp)
            ]
            b.obs[r[:, None], self.stone_cols[sl]] = features
            b.matrix_events[r, t, sl, p] = b.event_count[r]
            b.event_count[r] += 1
            kind[idx] = spec.potion_used
            potion[idx] = pl
            new[idx] = moved
        b.ending[rows] = (column == spec.end_trial) | (b.steps[rows] >= self.settings.max_steps_per_trial)
        return kind, s, np.where((column >= 0) & (column < spec.cauldron), column, -1), old, potion, new

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
        last = t >= self.settings.num_trials - 1
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
            if self.settings.source == "none":
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
