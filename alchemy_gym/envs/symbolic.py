"""Symbolic Alchemy as a Gymnasium environment."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from alchemy_gym.core.belief import BeliefState, ChemistrySeen, ElementContent
from alchemy_gym.core.chemistry import Chemistry, LevelRules, sampler_for
from alchemy_gym.core.game import AlchemyGame, EpisodeOver, FixedEpisode, TrialItems, observation_size, slot_action
from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS, MAX_POTIONS, MAX_STONES
from alchemy_gym.levels import EVALUATION_PREFIX, NUM_EVALUATION_EPISODES, find_level

DEFAULT_LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"


class SymbolicAlchemyEnv(gym.Env):
    """Symbolic Alchemy (Wang et al. 2021), bit-compatible with dm_alchemy's ``SymbolicAlchemy``.

    Each episode samples a hidden chemistry: how 6 potion types move stones
    along the edges of a cube (some edges missing), seen through random
    potion/stone maps and possibly a 45° rotation. An episode is ``num_trials``
    trials; each trial brings 3 new stones and 12 new potions. Cashing a stone
    in the cauldron earns its value (-3, -1, +1 or +15 by default).

    ## Action space

    ``Discrete(40)`` (``Discrete(41)`` with ``end_trial_action=True``, where
    action 0 ends the trial and everything else shifts by one):

    | action | meaning |
    |---|---|
    | 0 | no-op |
    | 13·s + 1 | put stone slot s (0..2) into the cauldron |
    | 13·s + 2 + p | put stone slot s into potion slot p (0..11) |

    ## Observation space

    ``Box(-1, 2, (39,), float32)`` (24 floats with ``observe_used=False``):

    | indices | content |
    |---|---|
    | 5·s .. 5·s+4 | stone slot s: perceived colour, size, roundness in {-1, 0, 1}; reward indicator / 3; used flag |
    | 15 + 2·p, 16 + 2·p | potion slot p: colour ``index / 3 - 1``; used flag |

    Empty or used slots hold ``[2, 2, 2, 2, 1]`` (stones) and ``[1, 1]``
    (potions). With ``see_chemistries`` the observation is a ``Dict`` with
    ``"symbolic_obs"`` and one ``Box(0, 1, (n,))`` per chemistry observation.

    ## Rewards

    The value of a stone when it goes into the cauldron (``reward_weights``:
    coefficients · latent coords + offset, + bonus at (1, 1, 1)); 0 otherwise.

    ## Episode end

    ``terminated=True`` on the step that ends the last trial. A trial ends after
    ``max_steps_per_trial`` steps or on the end-trial action. Never truncated.
    Stepping a finished episode raises an error: call ``reset()``.

    ## Seeding

    ``reset(seed=S)`` makes this and the following episodes (plain ``reset()``)
    identical to a dm_alchemy level built with ``seed=S``: one
    ``numpy.random.RandomState(S)`` draws chemistries and items in dm_alchemy's
    order. Chemistry-observation contents (random groups) use the env's
    ``np_random`` instead of numpy's global RNG.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | level_name | the standard task | dm_alchemy level name (§5.1 rules) or ``alchemy/evaluation_episodes`` |
    | end_trial_action | False | add the end-trial action |
    | observe_used | True | include used flags |
    | num_trials | 10 | trials per episode (default: all trials of given ``episodes``) |
    | max_steps_per_trial | 20 | steps per trial |
    | num_stones_per_trial / num_potions_per_trial | 3 / 12 | items per trial (random levels) |
    | reward_weights | ((1, 1, 1), 0, 12) | (coefficients, offset, bonus) |
    | see_chemistries | None | ``{name: ChemistrySeen or "ground_truth" / "belief_state"}`` |
    | episodes | None | fixed ``(Chemistry, trials)`` episodes to play in turn |
    | render_mode | None | ``"ansi"`` (text) or ``"rgb_array"`` (96×72 picture of the trial) |

    ``episodes=[(chemistry, [TrialItems, ...]), ...]`` plays given episodes
    instead of sampling (like the evaluation level). The evaluation level plays
    episode ``i`` after ``reset(options={"episode": i})``;
    without the option successive resets play 0, 1, 2, … (wrapping after 999);
    ``reset(seed=S)`` restarts that sequence at episode 0.

    ## Version history

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    #: Size (width, height) of ``rgb_array`` pictures: that of the 3D env's default camera.
    render_size = (96, 72)

    def __init__(
        self,
        level_name: str = DEFAULT_LEVEL,
        *,
        end_trial_action: bool = False,
        observe_used: bool = True,
        num_trials: int | None = None,
        max_steps_per_trial: int = 20,
        num_stones_per_trial: int = MAX_STONES,
        num_potions_per_trial: int = MAX_POTIONS,
        reward_weights=None,
        see_chemistries: Mapping[str, ChemistrySeen | str] | None = None,
        episodes: Sequence | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(level_name, str):
            raise TypeError(f"level_name must be a str, got {type(level_name).__name__}")
        self.level_name = level_name
        evaluation = level_name.rstrip("/") in (EVALUATION_PREFIX, "evaluation_episodes")
        if not evaluation and level_name.startswith(EVALUATION_PREFIX):
            find_level(level_name)  # validates the index
            raise ValueError(
                f"{level_name!r}: use level_name={EVALUATION_PREFIX!r} and reset(options={{'episode': i}}) "
                "to play one evaluation episode"
            )
        end_trial_action = _check_bool("end_trial_action", end_trial_action)
        observe_used = _check_bool("observe_used", observe_used)
        self._episodes = _check_episodes(episodes)
        self._evaluation = evaluation or self._episodes is not None
        if self._episodes is not None:
            max_trials = min(len(e.trials) for e in self._episodes)
        else:
            max_trials = 10 if evaluation else None
        if num_trials is None:
            num_trials = max_trials or 10
        num_trials = _check_int("num_trials", num_trials, 1, max_trials)
        max_steps_per_trial = _check_int("max_steps_per_trial", max_steps_per_trial, 1)
        num_stones_per_trial = _check_int("num_stones_per_trial", num_stones_per_trial, 0, MAX_STONES)
        num_potions_per_trial = _check_int("num_potions_per_trial", num_potions_per_trial, 0, MAX_POTIONS)
        if self._evaluation and (num_stones_per_trial, num_potions_per_trial) != (MAX_STONES, MAX_POTIONS):
            raise ValueError("fixed episodes have fixed items: num_stones/potions_per_trial cannot change")
        self.reward_weights = _check_reward_weights(reward_weights)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported: allowed None, 'ansi' or 'rgb_array'")
        self.render_mode = render_mode

        rules_name = "alchemy/perceptual_mapping_randomized_with_random_bottleneck" if evaluation else level_name
        self.rules = LevelRules.from_level_name(rules_name)
        self._sampler = None if self._evaluation else sampler_for(self.rules)
        self.game = AlchemyGame(
            num_trials=num_trials,
            max_steps_per_trial=max_steps_per_trial,
            end_trial_action=end_trial_action,
            observe_used=observe_used,
            reward_weights=self.reward_weights,
            num_stones_per_trial=num_stones_per_trial,
            num_potions_per_trial=num_potions_per_trial,
        )
        self._num_actions = self.game.num_actions
        self.action_space = spaces.Discrete(self._num_actions)
        symbolic_space = _symbolic_obs_space(observe_used)
        self._chem_seen = _check_see_chemistries(see_chemistries)
        self._chem_contents: dict[str, list] = {}
        self._beliefs: dict[str, BeliefState] = {}
        if self._chem_seen:
            self.observation_space = spaces.Dict(
                {"symbolic_obs": symbolic_space}
                | {
                    name: spaces.Box(0.0, 1.0, shape=(seen.size,), dtype=np.float32)
                    for name, seen in self._chem_seen.items()
                }
            )
            for name, seen in self._chem_seen.items():
                if seen.needs_belief:
                    prior = LevelRules.from_level_name(seen.prior_level) if seen.prior_level else self.rules
                    self._beliefs[name] = BeliefState(prior)
            if self._beliefs:
                self.game.add_listener(self._feed_beliefs)
        else:
            self.observation_space = symbolic_space
        self._rs: np.random.RandomState | None = None
        self._painter = None
        self._next_episode = 0
        self.episode_index: int | None = None
        self._last_reward = 0.0
        self._episode_return = 0.0

    # ----------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**32:
                raise ValueError(f"seed must be an int in 0..2**32-1 (numpy RandomState), got {seed!r}")
            seed = int(seed)
        super().reset(seed=seed)
        if seed is not None:
            if self._rs is None:
                self._rs = np.random.RandomState(seed)
            else:
                self._rs.seed(seed)  # same stream as a new RandomState(seed), without reallocating
            self._next_episode = 0  # a seeded evaluation env restarts its sequence at episode 0
        elif self._rs is None:
            self._rs = np.random.RandomState()
        episode = self._episode_option(options)
        if self._evaluation:
            if self._episodes is None:
                from alchemy_gym.data import evaluation_episodes

                self._episodes = evaluation_episodes()
            if episode is None:
                episode = self._next_episode
            entry = self._episodes[episode]
            self._next_episode = (episode + 1) % len(self._episodes)
            self.episode_index = episode
            self.game.start_episode(entry.chemistry, items=entry.trials)
        else:
            self.game.start_episode(self._sampler.sample(self._rs), self._rs)
        self._last_reward = 0.0
        self._episode_return = 0.0
        if self._chem_seen:
            rng = self.np_random
            self._chem_contents = {name: seen.sample_contents(rng) for name, seen in self._chem_seen.items()}
        info = {"trial": 0}
        if self._evaluation:
            info["episode"] = episode
        return self._observation(), info

    def step(self, action):
        if type(action) is not int:
            action = self._coerce_action(action)
        if not 0 <= action < self._num_actions:
            raise ValueError(f"action {action} out of range: the action space is Discrete({self._num_actions})")
        game = self.game
        trial = game.trial_number
        try:
            reward, terminated = game.step(action)
        except EpisodeOver:
            raise EpisodeOver(
                "the episode is over (or was never started): call env.reset() before env.step()"
            ) from None
        self._last_reward = reward
        self._episode_return += reward
        if terminated:
            info = {
                "trial_ended": trial,
                "trial_reward": game.trial_rewards[trial],
                "trial_rewards": list(game.trial_rewards),
                "matrix_events": game.matrix_events.copy(),
                "chemistry": game.chemistry,
                "items": tuple(game.items_history),
            }
            if self._evaluation:
                info["episode"] = self.episode_index
        elif game.trial_number != trial:
            info = {"trial_ended": trial, "trial_reward": game.trial_rewards[trial]}
        else:
            info = {}
        if self._chem_seen:
            return self._observation(), reward, terminated, False, info
        return game.obs.copy(), reward, terminated, False, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' to gymnasium.make")
            return None
        if self.render_mode == "rgb_array":
            if self._painter is None:
                from alchemy_gym.render import TrialPainter

                self._painter = TrialPainter(*self.render_size)
            return self._painter.paint(self.game)
        from alchemy_gym.render import render_ansi

        return render_ansi(self)

    # --------------------------------------------------------------- helpers

    @property
    def trial_number(self) -> int:
        """Current trial (0-based); -1 before the first reset and after the episode ended."""
        return self.game.trial_number

    @property
    def episode_return(self) -> float:
        return self._episode_return

    def _coerce_action(self, action) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action[()]
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, numbers.Integral):
            raise ValueError(
                f"action must be an integer in 0..{self._num_actions - 1} (Discrete({self._num_actions})), "
                f"got {action!r} of type {type(action).__name__}"
            )
        return int(action)

    def _episode_option(self, options) -> int | None:
        if not options:
            return None
        if not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        unknown = set(options) - {"episode"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}: the only option is 'episode'")
        if not self._evaluation:
            raise ValueError(
                "options={'episode': i} applies to fixed episodes only (the evaluation level "
                f"{EVALUATION_PREFIX!r} or episodes=...); this env plays {self.level_name!r}"
            )
        count = NUM_EVALUATION_EPISODES if self._episodes is None else len(self._episodes)
        episode = options["episode"]
        if isinstance(episode, bool) or not isinstance(episode, numbers.Integral):
            raise ValueError(f"episode must be an int in 0..{count - 1}, got {episode!r}")
        if not 0 <= episode < count:
            raise ValueError(f"episode {episode} out of range: allowed 0..{count - 1}")
        return int(episode)

    def _observation(self):
        obs = self.game.obs.copy()
        if not self._chem_seen:
            return obs
        out = {"symbolic_obs": obs}
        chemistry = self.game.chemistry
        for name, seen in self._chem_seen.items():
            out[name] = seen.observe(self._chem_contents.get(name, ()), chemistry, self._beliefs.get(name))
        return out

    def _feed_beliefs(self, kind: str, *args) -> None:
        game = self.game
        if kind == "episode_start":
            for belief in self._beliefs.values():
                belief.reset()
        elif kind == "trial_start":
            stones = [game.perceived_stone(s) for s in game.stones if s >= 0]
            for belief in self._beliefs.values():
                belief.new_trial(stones)
        elif kind == "potion":
            _slot, _potion_slot, old, latent_potion, new = args
            before, after = game.perceived_stone(old), game.perceived_stone(new)
            potion = game.perceived_potion(latent_potion)
            for belief in self._beliefs.values():
                belief.observe_potion(before, potion, after)

    def decode_action(self, action: int) -> tuple[int, int]:
        """``(stone slot, potion slot)`` of an action: (-2, -2) end trial, (-1, -1) no-op, (s, -1) cauldron."""
        return slot_action(int(action), self.game.end_trial_action)


def _symbolic_obs_space(observe_used: bool) -> spaces.Box:
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


def _check_see_chemistries(see) -> dict[str, ChemistrySeen]:
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
