"""Symbolic Alchemy as a Gymnasium environment."""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from alchemy_gym.core.belief import ChemistryObserver
from alchemy_gym.core.episodes import check_episode_index, check_seed, reset_options
from alchemy_gym.core.game import EpisodeOver, slot_action
from alchemy_gym.envs.info import EpisodeRecord, reset_info, step_info
from alchemy_gym.envs.symbolic_settings import SymbolicSettings, symbolic_obs_space
from alchemy_gym.levels import DEFAULT_LEVEL
from alchemy_gym.render import FRAME_SIZE, FramePainter


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

    ## Rendering

    ``render_mode="rgb_array"``: a ``(180·s, 240·s, 3)`` uint8 picture (``s = render_scale``, default
    1) of the trial: a strip with the trial, the step in the trial and the episode's reward so far;
    the cauldron; each stone drawn with its perceived colour, size and roundness above a tag with its
    value (``USED`` once cashed); the 12 potions in their colours (used ones empty). ``"ansi"``: the
    same as text. Gymnasium's ``RecordVideo`` records the pictures.

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

    Keyword arguments (:class:`~alchemy_gym.envs.symbolic_settings.SymbolicSettings`):

    | argument | default | meaning |
    |---|---|---|
    | level_name | the standard task | dm_alchemy level name (§5.1 rules) or ``alchemy/evaluation_episodes`` |
    | end_trial_action | False | add action 0: end the trial now (41 actions) |
    | observe_used | True | include the per-slot used flags (39 floats, else 24) |
    | num_trials | 10 | trials per episode (at most the trials of fixed episodes) |
    | max_steps_per_trial | 20 | a trial ends after this many steps |
    | num_stones_per_trial | 3 | stones drawn per trial (0..3; sampled levels) |
    | num_potions_per_trial | 12 | potions drawn per trial (0..12; sampled levels) |
    | reward_weights | ((1, 1, 1), 0, 12) | ``(coefficients, offset, bonus)`` of a stone's value (§1.2) |
    | see_chemistries | None | chemistry observations ``{name: ChemistrySeen or 'ground_truth' / 'belief_state'}`` |
    | episodes | None | fixed ``(Chemistry, [TrialItems, ...])`` episodes to play in turn (instead of sampling) |
    | render_mode | None | ``'ansi'`` (text) or ``'rgb_array'`` (picture of the trial) |
    | render_scale | 1 | ``'rgb_array'`` size: ``240·s × 180·s`` pixels (s = 1..8) |
    | backend | 'auto' | game backend: ``'c'`` (the compiled kernel), ``'numpy'``, ``'auto'`` (the kernel when built) |

    ``episodes=[(chemistry, [TrialItems, ...]), ...]`` plays given episodes
    instead of sampling (like the evaluation level). The evaluation level plays
    episode ``i`` after ``reset(options={"episode": i})``;
    without the option successive resets play 0, 1, 2, … (wrapping after 999);
    ``reset(seed=S)`` restarts that sequence at episode 0.

    ## Info

    The same keys on ``reset`` and on every step, each a 0-d numpy array of a fixed dtype
    (:mod:`alchemy_gym.envs.info`): ``trial`` (int32, the trial the step was played in),
    ``trial_ended`` (bool), ``trial_reward`` (float32, the trial's reward so far),
    ``episode_return`` (float32), ``episode_index`` (int32, the fixed episode, -1 if sampled),
    ``discount`` (float32, 0 on the last step) and ``valid_action`` (bool, always true: invalid
    actions raise). The episode's chemistry, items, trial rewards and matrix events (§7.2) are
    :meth:`episode_record`'s.

    ## Version history

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, level_name: str = DEFAULT_LEVEL, **settings: Any) -> None:
        self.settings = settings = SymbolicSettings.parse(level_name=level_name, **settings)
        render_mode = settings.render_mode
        self.render_mode = render_mode
        #: Size (width, height) of the ``rgb_array`` pictures (``render_scale`` times 240×180).
        self.render_size = (FRAME_SIZE[0] * settings.render_scale, FRAME_SIZE[1] * settings.render_scale)
        self.level_name = level_name
        self.reward_weights = settings.reward_weights
        self.rules = settings.rules
        self._evaluation = settings.fixed
        self.game = settings.new_game()
        self._num_actions = self.game.num_actions
        self.action_space = spaces.Discrete(self._num_actions)
        symbolic_space = symbolic_obs_space(settings.observe_used)
        self._chem_seen = settings.see_chemistries
        if self._chem_seen:
            self.observation_space = spaces.Dict(
                {"symbolic_obs": symbolic_space}
                | {
                    name: spaces.Box(0.0, 1.0, shape=(seen.size,), dtype=np.float32)
                    for name, seen in self._chem_seen.items()
                }
            )
            self._chemistry_observer = ChemistryObserver(self.game, self._chem_seen, self.rules)
        else:
            self.observation_space = symbolic_space
        self._painter = None
        self._last_reward = 0.0
        self._return = self._trial_reward = 0.0
        self._trial, self._episode = 0, None

    # ----------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = check_seed(seed)
        options = reset_options(options, fixed=self._evaluation, level=self.level_name)
        episode = None
        if "episode" in options:
            episode = check_episode_index(options["episode"], self.game.batch.source.count)
        super().reset(seed=seed)
        self.game.new_episode(episode, seed=seed)
        self._last_reward = 0.0
        # what the info reports, kept here (every step goes through step(); reading the game's row costs more)
        self._return = self._trial_reward = 0.0
        self._trial = 0
        self._episode = self.game.episode_index
        if self._chem_seen:
            self._chemistry_observer.new_episode(self.np_random)
        return self._observation(), reset_info(self._episode)

    def step(self, action):
        if type(action) is not int:
            action = self._coerce_action(action)
        if not 0 <= action < self._num_actions:
            raise ValueError(f"action {action} out of range: the action space is Discrete({self._num_actions})")
        trial = self._trial
        try:
            reward, ended, terminated = self.game.step_trial(action)
        except EpisodeOver:
            raise EpisodeOver(
                "the episode is over (or was never started): call env.reset() before env.step()"
            ) from None
        self._last_reward = reward
        self._return += reward
        trial_reward = self._trial_reward + reward  # as the batch sums trial_rewards, in the same order
        info = step_info(trial, ended, trial_reward, self._return, self._episode, terminated)
        if ended:
            self._trial, self._trial_reward = trial + 1, 0.0
        else:
            self._trial_reward = trial_reward
        if self._chem_seen:
            return self._observation(), reward, terminated, False, info
        return self.game.obs.copy(), reward, terminated, False, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' to gymnasium.make")
            return None
        if self.render_mode == "rgb_array":
            if self._painter is None:
                self._painter = FramePainter(self.settings.render_scale)
            return self._painter.paint(self.game)
        from alchemy_gym.render import render_ansi

        return render_ansi(self.game, self.level_name, self.episode_index, self._last_reward)

    # --------------------------------------------------------------- helpers

    @property
    def trial_number(self) -> int:
        """Current trial (0-based); -1 before the first reset and after the episode ended."""
        return self.game.trial_number

    @property
    def episode_index(self) -> int | None:
        """The fixed episode being played (evaluation level or ``episodes=``), else ``None``."""
        return self.game.episode_index

    @property
    def episode_return(self) -> float:
        """Sum of the rewards of the current (or just finished) episode."""
        return self._return

    def _coerce_action(self, action) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action[()]
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, numbers.Integral):
            raise ValueError(
                f"action must be an integer in 0..{self._num_actions - 1} (Discrete({self._num_actions})), "
                f"got {action!r} of type {type(action).__name__}"
            )
        return int(action)

    def _observation(self):
        obs = self.game.obs.copy()
        if not self._chem_seen:
            return obs
        return {"symbolic_obs": obs} | self._chemistry_observer.observe()

    def episode_record(self) -> EpisodeRecord:
        """The chemistry, items, trial rewards and matrix events of the current (or just finished) episode."""
        if self.game.chemistry is None:
            raise RuntimeError("no episode yet: call env.reset() first")
        return EpisodeRecord.of_rows(self.game.batch, np.array([self.game.row]))[0]

    def decode_action(self, action: int) -> tuple[int, int]:
        """``(stone slot, potion slot)`` of an action: (-2, -2) end trial, (-1, -1) no-op, (s, -1) cauldron."""
        return slot_action(int(action), self.game.end_trial_action)


SymbolicAlchemyEnv.__init__.__signature__ = SymbolicSettings.signature(positional=("level_name",))
