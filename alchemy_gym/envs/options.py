"""Level options shared by the single and the vector symbolic env: parsing, validation, spaces."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from alchemy_gym.core.batch import BACKENDS, GameConfig
from alchemy_gym.core.belief import ChemistrySeen, ElementContent
from alchemy_gym.core.chemistry import Chemistry, ChemistrySampler, LevelRules, sampler_for
from alchemy_gym.core.episodes import EpisodeSource, FixedEpisode, TrialItems, check_episode_index, check_seed
from alchemy_gym.core.game import AlchemyGame, observation_size
from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS, MAX_POTIONS, MAX_STONES
from alchemy_gym.levels import EVALUATION_PREFIX, find_level

__all__ = [
    "DEFAULT_LEVEL",
    "LevelOptions",
    "check_backend",
    "check_episode_index",
    "check_see_chemistries",
    "check_seed",
    "symbolic_obs_space",
]

DEFAULT_LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
#: Substrings that give a level name meaning (dm_alchemy's rules, spec §5.1). A symbolic level name
#: must be a known level or combine some of these (e.g. ``perceptual_mapping_randomized_with_rotation``).
LEVEL_TOKENS = (
    "perceptual_mapping_randomized",
    "random_bottleneck",
    "bottleneck1",
    "bottleneck2",
    "bottleneck3",
    "rotation",
    "all_fixed",
)
#: The level whose rules describe the evaluation episodes' distribution.
EVALUATION_RULES = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"


@dataclass(frozen=True)
class LevelOptions:
    """Validated options of a symbolic level (the ``gymnasium.make`` kwargs)."""

    level_name: str
    end_trial_action: bool
    observe_used: bool
    num_trials: int
    max_steps_per_trial: int
    num_stones_per_trial: int
    num_potions_per_trial: int
    reward_weights: tuple
    rules: LevelRules
    #: True for the evaluation level or given episodes (no sampling).
    fixed: bool
    #: Given episodes; ``None`` for random levels and for the evaluation level (loaded on first use).
    episodes: tuple[FixedEpisode, ...] | None

    @classmethod
    def parse(
        cls,
        level_name: str = DEFAULT_LEVEL,
        *,
        end_trial_action=False,
        observe_used=True,
        num_trials=None,
        max_steps_per_trial=20,
        num_stones_per_trial=MAX_STONES,
        num_potions_per_trial=MAX_POTIONS,
        reward_weights=None,
        episodes=None,
    ) -> LevelOptions:
        """Check every option; errors name the option and what is allowed."""
        if not isinstance(level_name, str):
            raise TypeError(f"level_name must be a str, got {type(level_name).__name__}")
        evaluation = level_name.rstrip("/") in (EVALUATION_PREFIX, "evaluation_episodes")
        if not evaluation and level_name.startswith(EVALUATION_PREFIX):
            find_level(level_name)  # validates the index
            raise ValueError(
                f"{level_name!r}: use level_name={EVALUATION_PREFIX!r} and reset(options={{'episode': i}}) "
                "to play one evaluation episode"
            )
        if not evaluation and not any(token in level_name for token in LEVEL_TOKENS):
            find_level(level_name)  # raises, listing the known levels
        end_trial_action = _check_bool("end_trial_action", end_trial_action)
        observe_used = _check_bool("observe_used", observe_used)
        episodes = _check_episodes(episodes)
        fixed = evaluation or episodes is not None
        if episodes is not None:
            max_trials = min(len(e.trials) for e in episodes)
        else:
            max_trials = 10 if evaluation else None
        if num_trials is None:
            num_trials = max_trials or 10
        num_trials = _check_int("num_trials", num_trials, 1, max_trials)
        max_steps_per_trial = _check_int("max_steps_per_trial", max_steps_per_trial, 1)
        num_stones_per_trial = _check_int("num_stones_per_trial", num_stones_per_trial, 0, MAX_STONES)
        num_potions_per_trial = _check_int("num_potions_per_trial", num_potions_per_trial, 0, MAX_POTIONS)
        if fixed and (num_stones_per_trial, num_potions_per_trial) != (MAX_STONES, MAX_POTIONS):
            raise ValueError("fixed episodes have fixed items: num_stones/potions_per_trial cannot change")
        return cls(
            level_name=level_name,
            end_trial_action=end_trial_action,
            observe_used=observe_used,
            num_trials=num_trials,
            max_steps_per_trial=max_steps_per_trial,
            num_stones_per_trial=num_stones_per_trial,
            num_potions_per_trial=num_potions_per_trial,
            reward_weights=_check_reward_weights(reward_weights),
            rules=LevelRules.from_level_name(EVALUATION_RULES if evaluation else level_name),
            fixed=fixed,
            episodes=episodes,
        )

    @property
    def sampler(self) -> ChemistrySampler | None:
        """The (shared) chemistry sampler of a random level; ``None`` for fixed episodes."""
        return None if self.fixed else sampler_for(self.rules)

    @property
    def config(self) -> GameConfig:
        """The core game settings of these options."""
        return GameConfig(
            num_trials=self.num_trials,
            max_steps_per_trial=self.max_steps_per_trial,
            end_trial_action=self.end_trial_action,
            observe_used=self.observe_used,
            reward_weights=self.reward_weights,
            num_stones_per_trial=self.num_stones_per_trial,
            num_potions_per_trial=self.num_potions_per_trial,
        )

    @property
    def source(self) -> EpisodeSource:
        """Where the level's episodes come from: sampled, the evaluation set or the given episodes."""
        if self.episodes is not None:
            return EpisodeSource.fixed(self.episodes)
        if self.fixed:
            from alchemy_gym.data import evaluation_source

            return evaluation_source()
        return EpisodeSource.sampled(self.rules)

    def fixed_episodes(self) -> tuple[FixedEpisode, ...]:
        """The episodes of a fixed level (the packaged evaluation set unless episodes were given)."""
        return self.source.episodes

    def new_game(self, backend: str = "auto") -> AlchemyGame:
        """A game playing these options' episodes."""
        c = self.config
        return AlchemyGame(
            num_trials=c.num_trials,
            max_steps_per_trial=c.max_steps_per_trial,
            end_trial_action=c.end_trial_action,
            observe_used=c.observe_used,
            reward_weights=c.reward_weights,
            num_stones_per_trial=c.num_stones_per_trial,
            num_potions_per_trial=c.num_potions_per_trial,
            source=self.source,
            backend=backend,
        )


def check_backend(backend) -> str:
    """The game backend: ``"auto"`` (the compiled kernel when built), ``"c"`` or ``"numpy"``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return backend


def symbolic_obs_space(observe_used: bool) -> spaces.Box:
    """``Box`` of the 39 (or 24) symbolic observation floats with per-feature bounds."""
    size = observation_size(observe_used)
    s, p = (5, 2) if observe_used else (4, 1)
    low = np.full(size, -1.0, dtype=np.float32)
    high = np.full(size, 2.0, dtype=np.float32)
    potions = slice(MAX_STONES * s, size)
    high[potions] = 1.0  # potion colours are in [-1, 1], used flags in [0, 1]
    if observe_used:
        low[4 : MAX_STONES * s : s] = 0.0  # stone used flags
        high[4 : MAX_STONES * s : s] = 1.0
        low[MAX_STONES * s + 1 :: p] = 0.0  # potion used flags
    return spaces.Box(low, high, shape=(size,), dtype=np.float32)


def _check_episodes(episodes):
    if episodes is None:
        return None
    try:
        episodes = tuple(episodes)
    except TypeError:
        raise TypeError(f"episodes must be a sequence of (chemistry, trials) pairs, got {episodes!r}") from None
    if not episodes:
        raise ValueError("episodes must hold at least one (chemistry, trials) pair")
    out = []
    for i, entry in enumerate(episodes):
        try:
            chemistry, trials = entry
            trials = tuple(t if isinstance(t, TrialItems) else TrialItems(*t) for t in trials)
        except (TypeError, ValueError) as e:
            raise TypeError(f"episodes[{i}] must be a (Chemistry, [TrialItems, ...]) pair: {e}") from None
        if not isinstance(chemistry, Chemistry):
            raise TypeError(f"episodes[{i}][0] must be a Chemistry, got {type(chemistry).__name__}")
        if not trials:
            raise ValueError(f"episodes[{i}] has no trials")
        out.append(FixedEpisode(chemistry, trials))
    return tuple(out)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
    return bool(value)


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value} out of range: allowed {allowed}")
    return int(value)


def _check_reward_weights(weights):
    if weights is None:
        return DEFAULT_REWARD_WEIGHTS
    message = (
        "reward_weights must be (coefficients, offset, bonus) with 3 numeric coefficients, "
        f"e.g. ((1, 1, 1), 0, 12); got {weights!r}"
    )
    try:
        coefficients, offset, bonus = weights
        coefficients = tuple(float(c) for c in coefficients)
        offset, bonus = float(offset), float(bonus)
    except (TypeError, ValueError):
        raise TypeError(message) from None
    if len(coefficients) != 3:
        raise TypeError(message)
    return coefficients, offset, bonus


def check_see_chemistries(see) -> dict[str, ChemistrySeen]:
    if see is None:
        return {}
    if not isinstance(see, Mapping):
        raise TypeError(
            "see_chemistries must be a dict {name: ChemistrySeen or 'ground_truth' / 'belief_state' / 'unknown'}, "
            f"got {type(see).__name__}"
        )
    out = {}
    for name, seen in see.items():
        if not isinstance(name, str) or not name or name == "symbolic_obs":
            raise ValueError(
                f"chemistry observation names must be non-empty strings other than 'symbolic_obs', got {name!r}"
            )
        if isinstance(seen, (str, ElementContent)):
            seen = ChemistrySeen(content=seen)
        if not isinstance(seen, ChemistrySeen):
            raise TypeError(f"see_chemistries[{name!r}] must be a ChemistrySeen or a content name, got {seen!r}")
        out[name] = seen
    return out
