"""A native vector env of symbolic Alchemy: N games stepped in one call, one batch buffer.

``gymnasium.make_vec(ID, num_envs=N, vectorization_mode="vector_entry_point")`` builds it for any
symbolic ID. Sub-env ``i`` is exactly the single env seeded with ``seed + i`` (``reset(seed=S)``),
stepped with the same actions; episodes auto-reset on the *next* step (Gymnasium's default
``NEXT_STEP`` mode: that step ignores the action and returns the first observation of a new
episode with reward 0). Chemistry observations are not batched here: use
``vectorization_mode="sync"`` for those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from alchemy_gym.core.game import observation_size
from alchemy_gym.envs.options import DEFAULT_LEVEL, LevelOptions, check_episode_index, check_seed, symbolic_obs_space

try:  # gymnasium >= 1.1
    from gymnasium.vector import AutoresetMode

    _NEXT_STEP = AutoresetMode.NEXT_STEP
except ImportError:  # gymnasium 1.0: next-step autoreset is the only mode
    _NEXT_STEP = "next_step"


class SymbolicAlchemyVectorEnv(VectorEnv):
    """``num_envs`` symbolic Alchemy games with batched observations ``(num_envs, 39)``.

    Takes the same level options as :class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv`
    (except ``see_chemistries`` and ``render_mode``). On the evaluation level (or with
    ``episodes=``) sub-env ``i`` plays episodes ``i, i + N, i + 2N, …``; ``reset(options={"episode":
    [e_0, …, e_{N-1}]})`` chooses them.
    """

    metadata = {"autoreset_mode": _NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, level_name: str = DEFAULT_LEVEL, **kwargs: Any) -> None:
        unsupported = {"see_chemistries", "render_mode"} & {k for k, v in kwargs.items() if v is not None}
        if unsupported:
            raise ValueError(
                f"{sorted(unsupported)} are not supported by the native vector env; "
                "use gymnasium.make_vec(..., vectorization_mode='sync') for them"
            )
        kwargs.pop("see_chemistries", None)
        kwargs.pop("render_mode", None)
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.level_options = LevelOptions.parse(level_name, **kwargs)
        opts = self.level_options
        self.num_envs = num_envs
        self.render_mode = None
        size = observation_size(opts.observe_used)
        self._obs = np.empty((num_envs, size), dtype=np.float32)
        self.games = [opts.new_game(obs=self._obs[i]) for i in range(num_envs)]
        self._n_actions = self.games[0].num_actions
        self.single_observation_space = symbolic_obs_space(opts.observe_used)
        self.single_action_space = spaces.Discrete(self._n_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._sampler = opts.sampler
        self._episodes = None
        self._rs: list[np.random.RandomState] | None = None
        self._next_episode = list(range(num_envs))
        self._autoreset = [False] * num_envs

    # ------------------------------------------------------------------ API

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, Sequence) and not isinstance(seed, str):
            if len(seed) != n:
                raise ValueError(f"seed list has {len(seed)} entries, num_envs is {n}")
            seeds = [check_seed(s) for s in seed]
        else:
            first = check_seed(seed)
            seeds = [check_seed(first + i) if first + i < 2**32 else None for i in range(n)]
            if None in seeds:
                raise ValueError(f"seed {seed} + {n - 1} sub-envs exceeds 2**32-1")
        super().reset(seed=seed if not isinstance(seed, Sequence) else None)
        if self._rs is None:
            self._rs = [np.random.RandomState(s) for s in seeds]
        else:
            for rs, s in zip(self._rs, seeds):
                if s is not None:
                    rs.seed(s)
        episodes = self._episode_option(options)
        if self.level_options.fixed and seed is not None and episodes is None:
            self._next_episode = list(range(n))
        for i in range(n):
            self._start(i, None if episodes is None else episodes[i])
        self._autoreset = [False] * n
        return self._obs.copy(), {}

    def step(self, actions):
        actions = self._check_actions(actions)
        autoreset = self._autoreset
        rewards = [0.0] * self.num_envs
        ended = []
        for i, game in enumerate(self.games):
            if autoreset[i]:
                self._start(i)
                autoreset[i] = False
            else:
                rewards[i], over = game.step(actions[i])
                if over:
                    autoreset[i] = True
                    ended.append(i)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        info: dict[str, Any] = {}
        if ended:
            terminated[ended] = True
            trial_rewards = np.zeros((self.num_envs, self.level_options.num_trials))
            for i in ended:
                trial_rewards[i] = self.games[i].trial_rewards
            info = {"trial_rewards": trial_rewards, "_trial_rewards": terminated.copy()}
        return self._obs.copy(), np.array(rewards), terminated, np.zeros(self.num_envs, dtype=np.bool_), info

    # -------------------------------------------------------------- helpers

    def _start(self, i: int, episode: int | None = None) -> None:
        game, rs = self.games[i], self._rs[i]
        if self.level_options.fixed:
            if self._episodes is None:
                self._episodes = self.level_options.fixed_episodes()
            if episode is None:
                episode = self._next_episode[i]
            entry = self._episodes[episode]
            self._next_episode[i] = (episode + self.num_envs) % len(self._episodes)
            game.start_episode(entry.chemistry, items=entry.trials)
        else:
            game.start_episode(self._sampler.sample(rs), rs)

    def _episode_option(self, options) -> list[int] | None:
        if not options:
            return None
        unknown = set(options) - {"episode"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}: the only option is 'episode'")
        if not self.level_options.fixed:
            raise ValueError("options={'episode': [...]} applies to fixed episodes only (the evaluation level)")
        episodes = options["episode"]
        if not isinstance(episodes, Sequence) or len(episodes) != self.num_envs:
            raise ValueError(f"options['episode'] must list one episode per sub-env ({self.num_envs})")
        count = len(self.level_options.fixed_episodes())
        return [check_episode_index(e, count) for e in episodes]

    def _check_actions(self, actions) -> list[int]:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be {self.num_envs} integers (MultiDiscrete of Discrete({self._n_actions})), "
                f"got {a.dtype} array of shape {a.shape}"
            )
        if a.size and (a.min() < 0 or a.max() >= self._n_actions):
            bad = a[(a < 0) | (a >= self._n_actions)]
            raise ValueError(f"actions {bad.tolist()} out of range: each must be in 0..{self._n_actions - 1}")
        return a.tolist()

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the games live in this process."""
