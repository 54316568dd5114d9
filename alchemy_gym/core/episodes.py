"""Where episodes come from, and the checks of seeds and reset options (spec §4.6, §4.7, §7.1).

An :class:`EpisodeSource` is either

* **sampled**: each episode draws a chemistry from the game's own random stream in
  dm_alchemy's order (potion map, stone map, graph, rotation; §4.7), then each trial
  draws its items from the same stream; or
* **fixed**: a list of given episodes (chemistry + the items of every trial), such as
  the 1000 evaluation episodes, played in turn by a cursor: a game that played
  episode ``e`` plays ``(e + stride) % count`` next (stride 1 for one env, ``N`` for
  sub-env ``i`` of ``N``, which starts at ``i``).

The tables a game batch reads (graph masks and their CDF; chemistries and items as
arrays) are built once per source.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.items import MAX_POTIONS, MAX_STONES, NUM_LATENT_STONES, NUM_POTION_TYPES
from alchemy_gym.core.spec import ITEM_SLOTS, SPEC

#: Largest seed ``numpy.random.RandomState`` accepts.
MAX_SEED = 2**32 - 1
#: Distinct chemistries :func:`chemistry_of` keeps (least recently used dropped first): about 1 MB, and room for
#: the 1000 evaluation chemistries.
CHEMISTRY_CACHE_SIZE = 2048


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
            raise ValueError(f"latent stone indices must be 0..{NUM_LATENT_STONES - 1}, got {self.stones}")
        if any(not 0 <= p < NUM_POTION_TYPES for p in self.potions):
            raise ValueError(f"latent potion indices must be 0..{NUM_POTION_TYPES - 1}, got {self.potions}")

    def as_row(self) -> np.ndarray:
        """The ``ITEM_SLOTS`` int8 row of these items (stones, then potions, -1 padded)."""
        row = np.full(ITEM_SLOTS, -1, dtype=np.int8)
        row[: len(self.stones)] = self.stones
        row[MAX_STONES : MAX_STONES + len(self.potions)] = self.potions
        return row

    @classmethod
    def from_row(cls, row) -> TrialItems:
        """Inverse of :meth:`as_row`."""
        values = [int(v) for v in row]
        return cls(tuple(v for v in values[:MAX_STONES] if v >= 0), tuple(v for v in values[MAX_STONES:] if v >= 0))


@dataclass(frozen=True)
class FixedEpisode:
    """A given episode: its chemistry and the items of each trial (e.g. an evaluation episode)."""

    chemistry: Chemistry
    trials: tuple[TrialItems, ...]


class EpisodeSource:
    """Sampled episodes of a level (:meth:`sampled`) or fixed episodes played in turn (:meth:`fixed`)."""

    def __init__(
        self,
        *,
        rules: LevelRules | None = None,
        episodes: Sequence[FixedEpisode] | Callable[[], Sequence[FixedEpisode]] | None = None,
    ) -> None:
        if (rules is None) == (episodes is None):
            raise ValueError("an EpisodeSource is either sampled (rules=...) or fixed (episodes=...)")
        self.rules = rules
        self._episodes = episodes

    @classmethod
    def sampled(cls, rules: LevelRules | str) -> EpisodeSource:
        """Episodes drawn with a level's rules (a :class:`LevelRules` or a dm_alchemy level name)."""
        if isinstance(rules, str):
            rules = LevelRules.from_level_name(rules)
        return _sampled_source(rules)

    @classmethod
    def fixed(cls, episodes: Sequence[FixedEpisode] | Callable[[], Sequence[FixedEpisode]]) -> EpisodeSource:
        """Given episodes in turn; ``episodes`` may be a zero-argument loader, called on first use."""
        return cls(episodes=episodes)

    @property
    def is_fixed(self) -> bool:
        return self.rules is None

    # ------------------------------------------------------------------ sampled

    @cached_property
    def graph_masks(self) -> np.ndarray:
        """uint16 edge masks of the level's graphs, in dm_alchemy's order."""
        return _frozen(np.array(self.rules.graph_masks, dtype=np.uint16))

    @cached_property
    def graph_cdf(self) -> np.ndarray:
        """float64 CDF that ``RandomState.choice(n, p=float32 prior)`` searches (§1.6)."""
        prior = self.rules.graph_prior
        return _frozen(np.array(graphs.prior_cdf(prior), dtype=np.float64))

    # -------------------------------------------------------------------- fixed

    @cached_property
    def episodes(self) -> tuple[FixedEpisode, ...]:
        """The fixed episodes (loaded now if a loader was given)."""
        if self._episodes is None:
            raise ValueError("a sampled source has no fixed episodes")
        episodes = self._episodes() if callable(self._episodes) else self._episodes
        return tuple(episodes)

    @property
    def count(self) -> int:
        return len(self.episodes)

    @cached_property
    def chemistry_table(self) -> np.ndarray:
        """(count, 4) int16: potion map, stone map, graph mask, rotation of each episode."""
        return _frozen(
            np.array(
                [
                    (e.chemistry.potion_map, e.chemistry.stone_map, e.chemistry.graph, e.chemistry.rotation)
                    for e in self.episodes
                ],
                dtype=np.int16,
            ).reshape(-1, SPEC.chem_width)
        )

    @cached_property
    def items_table(self) -> np.ndarray:
        """(count, trials, ITEM_SLOTS) int8 items of every trial (-1 padded; trials = the most of any episode)."""
        trials = max(len(e.trials) for e in self.episodes)
        table = np.full((self.count, trials, ITEM_SLOTS), -1, dtype=np.int8)
        for i, episode in enumerate(self.episodes):
            for t, items in enumerate(episode.trials):
                table[i, t] = items.as_row()
        return _frozen(table)

    @property
    def min_trials(self) -> int:
        """Trials of the shortest fixed episode."""
        return min(len(e.trials) for e in self.episodes)

    def __repr__(self) -> str:
        if self.is_fixed:
            return f"EpisodeSource.fixed(<{len(self.episodes) if 'episodes' in self.__dict__ else '?'} episodes>)"
        return f"EpisodeSource.sampled({self.rules!r})"


def _frozen(array: np.ndarray) -> np.ndarray:
    """The array, read-only: a kernel keeps a view of these tables."""
    array.setflags(write=False)
    return array


@lru_cache(maxsize=64)
def _sampled_source(rules: LevelRules) -> EpisodeSource:
    return EpisodeSource(rules=rules)


@dataclass
class EpisodeCursor:
    """Which fixed episode a game plays next: ``first``, then ``stride`` further each time (modulo ``count``);
    a chosen episode moves the cursor on from there. (A game batch keeps one such cursor per row, as arrays.)"""

    count: int
    first: int = 0
    stride: int = 1

    def __post_init__(self) -> None:
        self.next = self.first % self.count

    def take(self, chosen: int | None = None) -> int:
        """The episode to play now (``chosen``, or the cursor's); the cursor moves past it."""
        episode = self.next if chosen is None else chosen
        self.next = (episode + self.stride) % self.count
        return episode

    def restart(self) -> None:
        """Back to ``first`` (a seeded reset)."""
        self.next = self.first % self.count


@lru_cache(maxsize=CHEMISTRY_CACHE_SIZE)
def chemistry_of(potion_map: int, stone_map: int, graph: int, rotation: int) -> Chemistry:
    """The (immutable) :class:`Chemistry` of four indices a game batch holds (already in range: the checks of
    ``Chemistry()`` are skipped). The last :data:`CHEMISTRY_CACHE_SIZE` distinct ones are shared."""
    chemistry = object.__new__(Chemistry)
    chemistry.__dict__.update(potion_map=potion_map, stone_map=stone_map, graph=graph, rotation=rotation)
    return chemistry


# --------------------------------------------------------------------------- checks


def check_seed(seed: Any, high: int | None = MAX_SEED) -> int | None:
    """``None`` or an int in ``0..high``: by default what ``numpy.random.RandomState`` takes (0..2**32-1), the
    symbolic game's stream; ``high=None``: any non-negative int, what Gymnasium's ``np_random`` takes (the 3D
    envs). A 0-d integer array (an info value such as ``info["world_seed"]``) counts as its int."""
    if seed is None:
        return None
    if isinstance(seed, np.ndarray) and seed.shape == () and seed.dtype.kind in "iu":
        seed = seed.item()
    if (
        isinstance(seed, (bool, np.bool_))
        or not isinstance(seed, numbers.Integral)
        or seed < 0
        or (high is not None and seed > high)
    ):
        if high is None:
            allowed = "a non-negative int"
        elif high == MAX_SEED:
            allowed = "an int in 0..2**32-1 (numpy RandomState)"
        else:
            allowed = f"an int in 0..{high}"
        raise ValueError(f"seed must be {allowed}, got {seed!r}")
    return int(seed)


def sub_env_seeds(seed: Any, num_envs: int, high: int | None = MAX_SEED) -> list[int | None]:
    """Seeds of ``num_envs`` sub-envs: ``S + i`` for one int ``S``, or a list (or 1-d array) of ``num_envs`` seeds
    (or ``None``), each checked by :func:`check_seed` with ``high``."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, Sequence) and not isinstance(seed, str) or isinstance(seed, np.ndarray) and seed.ndim:
        if len(seed) != num_envs:
            raise ValueError(f"seed list has {len(seed)} entries, num_envs is {num_envs}")
        return [check_seed(s, high) for s in seed]
    first = check_seed(seed, high)
    if high is not None and first + num_envs - 1 > high:
        raise ValueError(f"seed {seed} + {num_envs - 1} (one seed per sub-env) exceeds {_bound_text(high)}")
    return [first + i for i in range(num_envs)]


def _bound_text(high: int) -> str:
    return "2**32-1" if high == MAX_SEED else str(high)


def check_episode_index(episode: Any, count: int) -> int:
    """One fixed-episode index in ``0..count-1``."""
    if isinstance(episode, (bool, np.bool_)) or not isinstance(episode, numbers.Integral):
        raise ValueError(f"episode must be an int in 0..{count - 1}, got {episode!r}")
    if not 0 <= episode < count:
        raise ValueError(f"episode {episode} out of range: allowed 0..{count - 1}")
    return int(episode)


def reset_options(options: Any, *, fixed: bool, level: str = "", allowed: tuple[str, ...] = ("episode",)) -> dict:
    """Check ``reset(options=...)``: a dict of known keys; ``"episode"`` only for fixed episodes."""
    if not options:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    unknown = set(options) - set(allowed)
    if unknown:
        names = " and ".join(repr(a) for a in allowed)
        rule = f"the only option is {names}" if len(allowed) == 1 else f"the options are {names}"
        raise ValueError(f"unknown reset options {sorted(unknown)}: {rule}")
    if "episode" in options and not fixed:
        raise ValueError(
            "options={'episode': ...} applies to fixed episodes only (the evaluation level "
            f"'alchemy/evaluation_episodes' or episodes=...); this env plays {level!r}"
        )
    return dict(options)


def episode_indices(value: Any, num_envs: int, count: int) -> np.ndarray:
    """``options["episode"]`` of a vector env: one int for every sub-env, or a list / tuple / array of ``num_envs``."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = list(np.asarray(value).reshape(-1)) if isinstance(value, np.ndarray) else list(value)
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise ValueError(f"options['episode'] must be 1-D (one index per sub-env), got shape {value.shape}")
        if len(values) != num_envs:
            raise ValueError(
                f"options['episode'] lists {len(values)} episodes: give one per sub-env ({num_envs}) or one int for all"
            )
        return np.array([check_episode_index(v, count) for v in values], dtype=np.int32)
    return np.full(num_envs, check_episode_index(value, count), dtype=np.int32)
