"""dm_alchemy's ``symbolic_alchemy`` module: symbolic Alchemy as a ``dm_env.Environment``.

``from alchemy_gym.compat import symbolic_alchemy`` in place of ``from dm_alchemy import
symbolic_alchemy``; then

>>> env = symbolic_alchemy.get_symbolic_alchemy_level(
...     "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck", seed=314)
>>> timestep = env.reset()
>>> timestep = env.step(2)  # stone 0 into potion 0

gives dm_alchemy's specs and timesteps: observation ``{"symbolic_obs": float32 (39,)}`` plus one
float32 vector per chemistry observation, reward ``None`` on FIRST and a float after, discount
``None`` / 1.0 / 0.0 on FIRST / MID / LAST, ``step()`` after LAST (or on a fresh env) starting the
next episode, and ``reset()`` continuing the seeded stream: a seeded env plays dm_alchemy's
episodes, bit for bit. The game is alchemy-gym's
(:class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv`); this module only adapts its interface.

Differences from dm_alchemy, all about input dm_alchemy accepts silently: an action outside
``action_spec()``, a level name with no part dm_alchemy reads (it plays ``all_fixed`` for those) and
a bad seed raise errors saying what is allowed; ``alchemy/evaluation_episodes/N`` plays evaluation
episode N (dm_alchemy ignores the number); trackers, bots and type-based actions are not provided
(see :mod:`alchemy_gym.agents`). Chemistry-observation contents drawn per group come from a stream
the seed controls (dm_alchemy uses numpy's global one).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import dm_env
    from dm_env import specs
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "alchemy_gym.compat.symbolic_alchemy needs the dm-env package: pip install 'alchemy-gym[dm_env]'"
    ) from e
import numpy as np

from alchemy_gym.compat.types import utils as type_utils
from alchemy_gym.compat.types.stones_and_potions import RewardWeights
from alchemy_gym.core import belief
from alchemy_gym.core.batch import END_TRIAL, NO_OP, POTION_TYPE_SCALE, REWARD_SCALE, GameConfig
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import FixedEpisode, TrialItems, check_seed
from alchemy_gym.core.game import encode_action
from alchemy_gym.core.items import MAX_POTIONS, MAX_STONES
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
from alchemy_gym.levels import DEFAULT_LEVEL, EVALUATION_PREFIX, EVALUATION_PRIOR, is_evaluation, parse_evaluation_name

__all__ = [
    "DEFAULT_MAX_STEPS_PER_TRIAL",
    "END_TRIAL",
    "MAX_POTIONS",
    "MAX_STONES",
    "NO_OP",
    "POTION_TYPE_SCALE",
    "REWARD_SCALE",
    "Chemistry",
    "ElementContent",
    "RewardWeights",
    "SeeChemistry",
    "SymbolicAlchemy",
    "TrialItems",
    "get_symbolic_alchemy_fixed",
    "get_symbolic_alchemy_level",
]

#: A trial ends after this many steps unless set otherwise.
DEFAULT_MAX_STEPS_PER_TRIAL: int = GameConfig.max_steps_per_trial
ElementContent = type_utils.ElementContent
SeeChemistry = type_utils.ChemistrySeen


class SymbolicAlchemy(dm_env.Environment):
    """Symbolic Alchemy with dm_alchemy's ``dm_env`` interface (build one with
    :func:`get_symbolic_alchemy_level` or :func:`get_symbolic_alchemy_fixed`).

    Args:
        env: the alchemy-gym env that plays the game.
        seed: seeds the first episode's stream (later episodes continue it), or ``None`` for fresh entropy.
        generate_events: :meth:`events` adds the matrix events and items of the finished episode.
    """

    def __init__(self, env: SymbolicAlchemyEnv, seed: int | None = None, generate_events: bool = False) -> None:
        if not isinstance(env, SymbolicAlchemyEnv):
            raise TypeError(
                "SymbolicAlchemy wraps an alchemy_gym SymbolicAlchemyEnv; build one with "
                f"get_symbolic_alchemy_level(...) or get_symbolic_alchemy_fixed(...), got {type(env).__name__}"
            )
        self._env = env
        if not isinstance(generate_events, (bool, np.bool_)):
            raise TypeError(f"generate_events must be a bool, got {generate_events!r}")
        self._seed = check_seed(seed)
        self._seeded = False
        self._generate_events = bool(generate_events)
        self._num_actions = int(env.action_space.n)
        self._seen: dict[str, belief.ChemistrySeen] = dict(env.settings.see_chemistries or {})
        self._last = True  # a fresh env starts an episode on its first step, as after LAST
        self._new_trial = False
        self._obs = self._as_dict(env.game.obs.copy(), {n: s.observe((), None, None) for n, s in self._seen.items()})

    # ------------------------------------------------------------------------------- dm_env

    def reset(self) -> dm_env.TimeStep:
        """Start a new episode (the seeded stream continues); returns the FIRST timestep."""
        seed = None if self._seeded else self._seed
        obs, _ = self._env.reset(seed=seed)
        self._seeded = True
        self._last = False
        self._new_trial = True
        self._obs = self._as_dict(obs)
        return dm_env.restart(self.observation())

    def step(self, action) -> dm_env.TimeStep:
        """Take an integer action of :meth:`action_spec`; after LAST (or on a fresh env) start the next
        episode instead and return its FIRST timestep (the action is ignored)."""
        action = self._check_action(action)
        if self._last:
            return self.reset()
        obs, reward, terminated, _, info = self._env.step(action)
        self._obs = self._as_dict(obs)
        self._last = bool(terminated)
        self._new_trial = not terminated and bool(info["trial_ended"])
        return self._timestep(float(reward), 1.0)

    def observation_spec(self) -> dict[str, specs.Array]:
        """``{"symbolic_obs": Array((39,) or (24,), float32)}`` plus ``Array((n,), float32)`` per chemistry
        observation, named by their keys (dm_alchemy's specs: unbounded ``Array``)."""
        size = self._env.game.config.observation_size
        spec = {"symbolic_obs": specs.Array(shape=(size,), dtype=np.float32, name="symbolic_obs")}
        for name, seen in self._seen.items():
            spec[name] = specs.Array(shape=(seen.size,), dtype=np.float32, name=name)
        return spec

    def action_spec(self) -> specs.BoundedArray:
        """``BoundedArray((), int, 0, 39)`` (``0..40`` with the end-trial action), named ``action``."""
        return specs.BoundedArray(shape=(), dtype=int, minimum=0, maximum=self._num_actions - 1, name="action")

    def close(self) -> None:
        self._env.close()

    # ------------------------------------------------------------------- dm_alchemy's extras

    def observation(self) -> dict[str, np.ndarray]:
        """The current observation (before the first reset: every slot empty, chemistry entries 0.5)."""
        return {name: value.copy() for name, value in self._obs.items()}

    def end_trial(self) -> tuple[float, float]:
        """Finish the current trial (with the end-trial action, else no-ops until the trial ends); after LAST,
        start a new episode first. Returns ``(reward, 1.0)`` as dm_alchemy does."""
        if self._last:
            self.reset()
        total = 0.0
        if self._env.game.end_trial_action:
            total += self._step_action(encode_action(END_TRIAL, END_TRIAL, True))
        else:
            no_op = encode_action(NO_OP, NO_OP, False)
            if self._new_trial:
                total += self._step_action(no_op)
            while not (self._last or self._new_trial):
                total += self._step_action(no_op)
        return total, 1.0

    def use_positive_stones(self) -> dm_env.TimeStep:
        """Cash every stone worth more than 0, in slot order, then end the trial (stopping early at the end of
        the trial or episode); after LAST, start a new episode first. Returns the summed reward."""
        if self._last:
            self.reset()
        game = self._env.game
        total, discount = 0.0, 1.0
        for slot in game.stones_above(0):
            timestep = self.step(encode_action(slot, -1, game.end_trial_action))
            total += timestep.reward
            discount *= timestep.discount
            if self._last or self._new_trial:
                return self._timestep(total, discount)
        reward, end_discount = self.end_trial()
        return self._timestep(total + reward, discount * end_discount)

    def events(self) -> dict[str, Any]:
        """After LAST: ``{"chemistry": Chemistry}``, with ``generate_events`` also ``"matrix_event"``
        (``{"event_tracker": int8 (trials, 3, 13)}``, spec §7.2) and ``"items_generated"``
        (:class:`~alchemy_gym.compat.types.utils.EpisodeItems`); ``{}`` during an episode."""
        if not self._last:
            return {}
        events: dict[str, Any] = {"chemistry": self._env.game.chemistry}
        if self._generate_events and self._seeded:
            record = self._env.episode_record()
            events["matrix_event"] = {"event_tracker": record.matrix_events}
            events["items_generated"] = type_utils.EpisodeItems.from_trials(
                [TrialItems.from_row(row) for row in record.items]
            )
        return events

    def is_new_trial(self) -> bool:
        """True after ``reset()`` and after the step that started a new trial."""
        return self._new_trial

    def is_last_step(self) -> bool:
        """True after the step that ended the episode (and before the first reset)."""
        return self._last

    @property
    def trial_number(self) -> int:
        """The current trial (0-based); -1 before the first reset and after the episode ended."""
        return self._env.trial_number

    @property
    def max_steps_per_trial(self) -> int:
        return self._env.game.max_steps_per_trial

    @property
    def num_trials(self) -> int:
        return self._env.game.num_trials

    @property
    def observe_used(self) -> bool:
        return self._env.game.observe_used

    @property
    def chemistry(self) -> Chemistry | None:
        """The chemistry of the current (or last) episode; ``None`` before the first reset."""
        return self._env.game.chemistry

    @property
    def gym_env(self) -> SymbolicAlchemyEnv:
        """The alchemy-gym env underneath (its game, rendering, ...)."""
        return self._env

    def __repr__(self) -> str:
        return f"SymbolicAlchemy({self._env.level_name!r}, num_trials={self.num_trials})"

    # ------------------------------------------------------------------------------ helpers

    def _as_dict(self, obs, chem: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if isinstance(obs, dict):
            return obs
        return {"symbolic_obs": obs} | dict(chem or {})

    def _timestep(self, reward: float, discount: float) -> dm_env.TimeStep:
        if self._last:
            return dm_env.TimeStep(dm_env.StepType.LAST, float(reward), 0.0, self.observation())
        return dm_env.TimeStep(dm_env.StepType.MID, float(reward), float(discount), self.observation())

    def _step_action(self, action: int) -> float:
        return self.step(action).reward

    def _check_action(self, action) -> int:
        if type(action) is int and 0 <= action < self._num_actions:
            return action
        value = action
        if isinstance(value, np.ndarray):
            if value.shape != () and value.size != 1:
                raise ValueError(
                    f"action must be one integer in 0..{self._num_actions - 1} (action_spec()), "
                    f"got an array of shape {value.shape}"
                )
            value = value.reshape(())[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"action must be an integer in 0..{self._num_actions - 1} (action_spec()), "
                f"got {action!r} of type {type(action).__name__}"
            )
        value = int(value)
        if not 0 <= value < self._num_actions:
            raise ValueError(f"action {value} is out of range: action_spec() allows 0..{self._num_actions - 1}")
        return value


# ------------------------------------------------------------------------------------ builders


def _reward_weights(weights) -> tuple | None:
    """``None``, ``(coefficients, offset, bonus)`` or any object with those three attributes."""
    if weights is None or isinstance(weights, tuple):
        return weights
    if all(hasattr(weights, a) for a in ("coefficients", "offset", "bonus")):
        return (tuple(weights.coefficients), weights.offset, weights.bonus)
    return weights  # the env's check says what is allowed


def _see_chemistries(see) -> dict[str, belief.ChemistrySeen] | None:
    if see is None:
        return None
    if not isinstance(see, Mapping):
        raise TypeError(f"see_chemistries must be a dict {{name: ChemistrySeen}} or None, got {type(see).__name__}")
    out = {}
    for name, seen in see.items():
        if isinstance(seen, type_utils.ChemistrySeen):
            seen = seen.to_core()
        elif not isinstance(seen, belief.ChemistrySeen):
            raise TypeError(
                f"see_chemistries[{name!r}] must be a ChemistrySeen (alchemy_gym.compat.types.utils), got {seen!r}"
            )
        out[name] = seen
    return out


def _make(level_name: str, seed, generate_events: bool, see_chemistries, reward_weights, **settings) -> SymbolicAlchemy:
    seed = check_seed(seed)
    env = SymbolicAlchemyEnv(
        level_name,
        see_chemistries=_see_chemistries(see_chemistries),
        reward_weights=_reward_weights(reward_weights),
        **settings,
    )
    return SymbolicAlchemy(env, seed=seed, generate_events=generate_events)


def get_symbolic_alchemy_level(
    level_name: str,
    observe_used: bool = True,
    end_trial_action: bool = False,
    num_trials: int = 10,
    num_stones_per_trial: int = MAX_STONES,
    num_potions_per_trial: int = MAX_POTIONS,
    seed: int | None = None,
    reward_weights: RewardWeights | tuple | None = None,
    max_steps_per_trial: int = DEFAULT_MAX_STEPS_PER_TRIAL,
    see_chemistries: Mapping[str, type_utils.ChemistrySeen] | None = None,
    generate_events: bool = False,
) -> SymbolicAlchemy:
    """A symbolic Alchemy level as a ``dm_env.Environment``, with dm_alchemy's arguments and seeded stream.

    Args:
        level_name: a dm_alchemy level name: one of the 3D levels (``alchemy/...``, with or without the
            prefix) or any name combining ``perceptual_mapping_randomized``, ``random_bottleneck``,
            ``bottleneck1/2/3``, ``rotation``, ``all_fixed``; ``alchemy/evaluation_episodes/N`` plays
            evaluation episode N at every reset (``alchemy/evaluation_episodes``: 0, 1, 2, ... in turn).
        observe_used: per-slot used flags in ``symbolic_obs`` (39 floats, else 24).
        end_trial_action: action 0 ends the trial (41 actions instead of 40).
        num_trials: trials per episode.
        num_stones_per_trial, num_potions_per_trial: items drawn per trial (0..3, 0..12).
        seed: ``numpy.random.RandomState`` seed (0..2**32-1) of the first episode; ``reset()`` continues
            the stream. ``None``: fresh entropy.
        reward_weights: :class:`RewardWeights` or ``(coefficients, offset, bonus)``; default ((1, 1, 1), 0, 12).
        max_steps_per_trial: a trial ends after this many steps.
        see_chemistries: ``{name: ChemistrySeen}``: chemistry observations added to the observation dict.
        generate_events: :meth:`SymbolicAlchemy.events` also gives the matrix events and items.
    """
    if not isinstance(level_name, str):
        raise TypeError(f"level_name must be a str, got {type(level_name).__name__}")
    settings: dict[str, Any] = dict(
        observe_used=observe_used,
        end_trial_action=end_trial_action,
        num_trials=num_trials,
        max_steps_per_trial=max_steps_per_trial,
    )
    episode = parse_evaluation_name(level_name)
    if is_evaluation(level_name):
        if (num_stones_per_trial, num_potions_per_trial) != (MAX_STONES, MAX_POTIONS):
            raise ValueError(
                f"{level_name!r} plays fixed evaluation episodes (3 stones and 12 potions per trial): "
                "num_stones_per_trial and num_potions_per_trial cannot change"
            )
        if episode is not None:
            from alchemy_gym.data import evaluation_episodes

            settings["episodes"] = (evaluation_episodes()[episode],)
        level_name = EVALUATION_PREFIX
    else:
        settings.update(num_stones_per_trial=num_stones_per_trial, num_potions_per_trial=num_potions_per_trial)
    return _make(level_name, seed, generate_events, see_chemistries, reward_weights, **settings)


def _fixed_trials(episode_items) -> tuple[TrialItems, ...]:
    if isinstance(episode_items, type_utils.EpisodeItems):
        return tuple(episode_items.trials)
    if isinstance(episode_items, FixedEpisode):
        return tuple(episode_items.trials)
    if isinstance(episode_items, Sequence) and not isinstance(episode_items, str):
        trials = []
        for t, trial in enumerate(episode_items):
            if isinstance(trial, TrialItems):
                trials.append(trial)
                continue
            try:
                stones, potions = trial
                trials.append(TrialItems(tuple(int(s) for s in stones), tuple(int(p) for p in potions)))
            except (TypeError, ValueError) as e:
                raise TypeError(
                    f"episode_items[{t}] must be a TrialItems or (stones, potions) of latent indices: {e}"
                ) from None
        if trials:
            return tuple(trials)
    raise TypeError(
        "episode_items must be an EpisodeItems (alchemy_gym.compat.types.utils) or a non-empty list of "
        f"TrialItems, one per trial; got {episode_items!r}"
    )


def get_symbolic_alchemy_fixed(
    episode_items: type_utils.EpisodeItems | Sequence[TrialItems],
    chemistry: Chemistry,
    observe_used: bool = True,
    reward_weights: RewardWeights | tuple | None = None,
    end_trial_action: bool = False,
    max_steps_per_trial: int = DEFAULT_MAX_STEPS_PER_TRIAL,
    see_chemistries: Mapping[str, type_utils.ChemistrySeen] | None = None,
    generate_events: bool = False,
) -> SymbolicAlchemy:
    """Symbolic Alchemy that plays the same chemistry and trial items at every reset (dm_alchemy's
    evaluation runs: ``get_symbolic_alchemy_fixed(items, chemistry)`` over
    :func:`~alchemy_gym.compat.encode.chemistries_proto_conversion.load_chemistries_and_items`).

    Args:
        episode_items: the items of each trial (``num_trials`` is their number).
        chemistry: the episode's :class:`~alchemy_gym.core.chemistry.Chemistry`.
        observe_used, reward_weights, end_trial_action, max_steps_per_trial, see_chemistries, generate_events:
            as for :func:`get_symbolic_alchemy_level`. The belief-state prior of chemistry observations is the
            evaluation level's (with rotations if the chemistry is rotated) unless ``precomputed`` names one.
    """
    if not isinstance(chemistry, Chemistry):
        raise TypeError(
            "chemistry must be a Chemistry (alchemy_gym.compat.types.utils.Chemistry, e.g. from "
            f"load_chemistries_and_items()), got {type(chemistry).__name__}"
        )
    trials = _fixed_trials(episode_items)
    level = DEFAULT_LEVEL if chemistry.rotation else EVALUATION_PRIOR
    return _make(
        level,
        None,
        generate_events,
        see_chemistries,
        reward_weights,
        episodes=(FixedEpisode(chemistry, trials),),
        num_trials=len(trials),
        observe_used=observe_used,
        end_trial_action=end_trial_action,
        max_steps_per_trial=max_steps_per_trial,
    )
