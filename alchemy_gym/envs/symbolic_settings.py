"""The settings of the symbolic envs (the ``gymnasium.make`` / ``make_vec`` kwargs), declared once.

:class:`SymbolicSettings` is what :class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv` takes and
:class:`VectorSettings` what :class:`~alchemy_gym.envs.vector.SymbolicAlchemyVectorEnv` takes;
both check every value on construction, with errors that name the setting and what is allowed.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from alchemy_gym.core.batch import MAX_THREADS, GameConfig, observation_bounds
from alchemy_gym.core.belief import ChemistrySeen, ElementContent
from alchemy_gym.core.checks import (
    MAX_STEPS_PER_TRIAL,
    MAX_TRIALS,
    check_backend,
    check_bool,
    check_int,
    check_reward_weights,
)
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.episodes import EpisodeSource, FixedEpisode, TrialItems
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS, MAX_POTIONS, MAX_STONES
from alchemy_gym.envs.gymnasium_version import AutoresetMode
from alchemy_gym.envs.settings import Settings, render_mode_check, setting
from alchemy_gym.levels import (
    DEFAULT_LEVEL,
    EVALUATION_PREFIX,
    check_level_name,
    is_evaluation,
    level_rules,
    parse_evaluation_name,
)
from alchemy_gym.render import check_render_scale

__all__ = [
    "SymbolicSettings",
    "VectorSettings",
    "check_see_chemistries",
    "symbolic_obs_space",
]


def _check_level_name(name: str, level_name) -> str:
    if not isinstance(level_name, str):
        raise TypeError(f"level_name must be a str, got {type(level_name).__name__}")
    check_level_name(level_name)
    if is_evaluation(level_name) and parse_evaluation_name(level_name.rstrip("/")) is not None:
        raise ValueError(
            f"{level_name!r}: use level_name={EVALUATION_PREFIX!r} and reset(options={{'episode': i}}) "
            "to play one evaluation episode"
        )
    return level_name


def _check_optional_trials(name: str, value):
    return None if value is None else check_int(name, value, 1, MAX_TRIALS)


def _bounded(low: int, high: int | None = None):
    return lambda name, value: check_int(name, value, low, high)


def symbolic_obs_space(observe_used: bool) -> spaces.Box:
    """``Box`` of the 39 (or 24) symbolic observation floats with per-feature bounds."""
    low, high = observation_bounds(observe_used)
    return spaces.Box(low, high, shape=low.shape, dtype=np.float32)


def _check_episodes(name: str, episodes):
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
        if isinstance(entry, FixedEpisode):
            entry = (entry.chemistry, entry.trials)
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


def check_see_chemistries(name: str, see) -> dict[str, ChemistrySeen]:
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


@dataclass(frozen=True)
class SymbolicSettings(Settings):
    """The settings of a symbolic env."""

    what = "symbolic env"
    owner = "SymbolicAlchemyEnv.__init__"

    level_name: str = setting(
        DEFAULT_LEVEL,
        "dm_alchemy level name (§5.1 rules) or ``alchemy/evaluation_episodes``",
        _check_level_name,
        shown="the standard task",
    )
    end_trial_action: bool = setting(False, "add action 0: end the trial now (41 actions)", check_bool)
    observe_used: bool = setting(True, "include the per-slot used flags (39 floats, else 24)", check_bool)
    num_trials: int | None = setting(
        None, "trials per episode (at most the trials of fixed episodes)", _check_optional_trials, shown="10"
    )
    max_steps_per_trial: int = setting(20, "a trial ends after this many steps", _bounded(1, MAX_STEPS_PER_TRIAL))
    num_stones_per_trial: int = setting(
        MAX_STONES, "stones drawn per trial (0..3; sampled levels)", _bounded(0, MAX_STONES)
    )
    num_potions_per_trial: int = setting(
        MAX_POTIONS, "potions drawn per trial (0..12; sampled levels)", _bounded(0, MAX_POTIONS)
    )
    reward_weights: tuple | None = setting(
        None,
        "``(coefficients, offset, bonus)`` of a stone's value (§1.2)",
        check_reward_weights,
        shown="((1, 1, 1), 0, 12)",
    )
    see_chemistries: Mapping | None = setting(
        None,
        "chemistry observations ``{name: ChemistrySeen or 'ground_truth' / 'belief_state'}``",
        check_see_chemistries,
    )
    episodes: tuple | None = setting(
        None, "fixed ``(Chemistry, [TrialItems, ...])`` episodes to play in turn (instead of sampling)", _check_episodes
    )
    render_mode: str | None = setting(
        None,
        "``'ansi'`` (text) or ``'rgb_array'`` (picture of the trial)",
        render_mode_check("ansi", "rgb_array"),
    )
    render_scale: int = setting(1, "``'rgb_array'`` size: ``240·s × 180·s`` pixels (s = 1..8)", check_render_scale)
    backend: str = setting(
        "auto",
        "game backend: ``'c'`` (the compiled kernel), ``'numpy'``, ``'auto'`` (the kernel when built)",
        check_backend,
    )

    def _check_together(self) -> None:
        if self.episodes is not None:
            max_trials = min(len(e.trials) for e in self.episodes)
        else:
            max_trials = 10 if self.evaluation else None
        num_trials = max_trials or 10 if self.num_trials is None else self.num_trials
        object.__setattr__(self, "num_trials", check_int("num_trials", num_trials, 1, max_trials or MAX_TRIALS))
        if self.fixed and (self.num_stones_per_trial, self.num_potions_per_trial) != (MAX_STONES, MAX_POTIONS):
            raise ValueError("fixed episodes have fixed items: num_stones/potions_per_trial cannot change")
        if self.reward_weights is None:
            object.__setattr__(self, "reward_weights", DEFAULT_REWARD_WEIGHTS)

    # ------------------------------------------------------------------ derived

    @property
    def evaluation(self) -> bool:
        """The level is the packaged evaluation set."""
        return is_evaluation(self.level_name)

    @property
    def fixed(self) -> bool:
        """Episodes are fixed (the evaluation level or given ``episodes``), not sampled."""
        return self.evaluation or self.episodes is not None

    @property
    def rules(self) -> LevelRules:
        """The level's rules (for the evaluation level: those of its distribution, for belief priors)."""
        return level_rules(self.level_name)

    @property
    def config(self) -> GameConfig:
        """The core game settings."""
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
        """Where the episodes come from: sampled, the evaluation set or the given episodes."""
        if self.episodes is not None:
            return EpisodeSource.fixed(self.episodes)
        if self.fixed:
            from alchemy_gym.data import evaluation_source

            return evaluation_source()
        return EpisodeSource.sampled(self.rules)

    def new_game(self) -> AlchemyGame:
        """A game playing these settings' episodes."""
        return AlchemyGame.from_config(self.config, self.source, self.backend)


def _check_autoreset_mode(name: str, value) -> AutoresetMode:
    allowed = [m.value for m in AutoresetMode if m != AutoresetMode.DISABLED]
    try:
        mode = AutoresetMode(value)
    except ValueError:
        raise ValueError(f"autoreset_mode {value!r} is not supported: allowed {allowed}") from None
    if mode == AutoresetMode.DISABLED:
        raise ValueError(f"autoreset_mode DISABLED is not supported: allowed {allowed}")
    return mode


def _check_threads(name: str, value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{name} must be an int in 1..{MAX_THREADS} or None, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class VectorSettings(SymbolicSettings):
    """The settings of the native symbolic vector env: a symbolic env's, and how the batch runs."""

    what = "symbolic vector env"
    owner = "SymbolicAlchemyVectorEnv.__init__"

    render_mode: str | None = setting(
        None, "``'rgb_array'``: ``render()`` returns each sub-env's picture", render_mode_check("rgb_array")
    )
    autoreset_mode: AutoresetMode = setting(
        AutoresetMode.NEXT_STEP,
        "``AutoresetMode.NEXT_STEP`` or ``SAME_STEP`` (with ``info['final_obs']``)",
        _check_autoreset_mode,
        shown="NEXT_STEP",
    )
    num_threads: int | None = setting(
        None, "threads of a step (compiled kernel); ``None``: one per 8192 sub-envs, at most the CPUs", _check_threads
    )
    copy: bool = setting(
        True, "fresh observation arrays each step (``False``: one buffer, overwritten by the next step)",
        check_bool,
    )  # fmt: skip

    def _check_together(self) -> None:
        super()._check_together()
        belief = [name for name, seen in (self.see_chemistries or {}).items() if seen.needs_belief]
        if belief:
            raise ValueError(
                f"see_chemistries {belief} need the belief state, which the native vector env does not batch: "
                "use gymnasium.make_vec(..., vectorization_mode='sync') for them"
            )
