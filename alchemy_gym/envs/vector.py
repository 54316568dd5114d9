"""A native vector env of symbolic Alchemy: ``N`` games stepped in one call of the batched core.

``gymnasium.make_vec(ID, num_envs=N, vectorization_mode="vector_entry_point")`` builds it for any
symbolic ID. Every sub-env is a row of one :class:`~alchemy_gym.core.batch.GameBatch`, so a step
is one call over all ``N`` games (compiled when the package's C kernel is built).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from alchemy_gym.core.batch import MAX_THREADS, GameBatch
from alchemy_gym.core.episodes import episode_indices, reset_options, sub_env_seeds
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.envs.symbolic_settings import DEFAULT_LEVEL, VectorSettings, symbolic_obs_space

#: Sub-envs per thread when ``num_threads`` is chosen automatically.
ROWS_PER_THREAD = 8192


class SymbolicAlchemyVectorEnv(VectorEnv):
    """``num_envs`` symbolic Alchemy games with batched observations ``(num_envs, 39)``.

    Sub-env ``i`` after ``reset(seed=S)`` is exactly
    :class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv` after ``reset(seed=S + i)``, stepped with
    the same actions, through its autoresets: the same observations, rewards, episode ends and info
    (``info`` has the layout of ``SyncVectorEnv`` over single envs: ``info[key]`` an array over
    sub-envs, ``info["_" + key]`` the mask of sub-envs that set it).

    ## Arguments

    ``num_envs`` and the keyword arguments of
    :class:`~alchemy_gym.envs.symbolic_settings.VectorSettings` (the single env's and how the batch runs):

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
    | render_mode | None | ``'rgb_array'``: ``render()`` returns each sub-env's picture |
    | backend | 'auto' | game backend: ``'c'`` (the compiled kernel), ``'numpy'``, ``'auto'`` (the kernel when built) |
    | autoreset_mode | NEXT_STEP | ``AutoresetMode.NEXT_STEP`` or ``SAME_STEP`` (with ``info['final_obs']``) |
    | num_threads | None | threads of a step (compiled kernel); ``None``: one per 8192 sub-envs, at most the CPUs |
    | copy | True | fresh observation arrays each step (``False``: one buffer, overwritten by the next step) |

    ## Autoreset

    ``NEXT_STEP`` (Gymnasium's default): the step after an episode's last step ignores that
    sub-env's action and returns the first observation of a new episode, reward 0, with the reset
    info. ``SAME_STEP``: the last step returns the new episode's first observation, with
    ``info["final_obs"]`` and ``info["final_info"]`` (masked per sub-env) holding the last ones.

    ## Fixed episodes

    On the evaluation level (or with ``episodes=``) sub-env ``i`` plays episodes ``i, i + N,
    i + 2N, …``; ``reset(options={"episode": e})`` chooses them: one int for every sub-env, or a
    list, tuple or array of ``N`` indices. After the chosen ones each sub-env goes on ``N`` further.

    ## Chemistry observations

    ``see_chemistries`` entries with ground-truth or unknown contents (also drawn per episode from
    content groups, with each sub-env's own ``np_random``) are batched. Belief-state contents follow
    each sub-env's observations one event at a time: use ``vectorization_mode="sync"`` for them.

    ## Reset options

    ``"episode"`` (fixed episodes) and ``"reset_mask"`` (a bool array of ``N``: reset only those
    sub-envs, as ``SyncVectorEnv`` does).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int = 1, level_name: str = DEFAULT_LEVEL, **settings: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        num_envs = int(num_envs)
        self.settings = opts = VectorSettings.parse(level_name=level_name, **settings)
        self.level_name = level_name
        self.num_envs = num_envs
        self.autoreset_mode = opts.autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": opts.autoreset_mode}
        self.render_mode = opts.render_mode
        self.copy = opts.copy
        self._chem_seen = opts.see_chemistries
        self.batch = GameBatch(num_envs, opts.config, opts.source, stride=num_envs, backend=opts.backend)
        self.num_threads = self._threads(opts.num_threads)
        self._fixed = opts.fixed
        self._obs_size = opts.config.observation_size
        self._n_actions = opts.config.num_actions
        symbolic = symbolic_obs_space(opts.observe_used)
        if self._chem_seen:
            self.single_observation_space = spaces.Dict(
                {"symbolic_obs": symbolic}
                | {
                    name: spaces.Box(0.0, 1.0, shape=(seen.size,), dtype=np.float32)
                    for name, seen in self._chem_seen.items()
                }
            )
            self._chem_masks = {
                name: np.zeros((num_envs, seen.size), dtype=np.bool_) for name, seen in self._chem_seen.items()
            }
            self._chem_obs = {
                name: np.full((num_envs, seen.size), 0.5, dtype=np.float32) for name, seen in self._chem_seen.items()
            }
        else:
            self.single_observation_space = symbolic
        self.single_action_space = spaces.Discrete(self._n_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._painter = None
        self._obs_buffer = None if self.copy else np.empty((num_envs, self._obs_size), dtype=np.float32)

    def _threads(self, num_threads: int | None) -> int:
        if num_threads is None:
            try:
                cpus = len(os.sched_getaffinity(0))
            except AttributeError:  # not Linux
                cpus = os.cpu_count() or 1
            num_threads = max(1, min(cpus, self.num_envs // ROWS_PER_THREAD, MAX_THREADS))
        if num_threads > 1 and self.batch.kernel_name != "c":
            raise ValueError("num_threads > 1 needs the compiled kernel (backend='c')")
        self.batch.threads = num_threads
        return self.batch.threads

    # ------------------------------------------------------------------ views

    @property
    def games(self) -> list[AlchemyGame]:
        """Each sub-env's game (a view of its row: reading it does not copy the batch)."""
        return [AlchemyGame.view(self.batch, i) for i in range(self.num_envs)]

    # -------------------------------------------------------------------- API

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        n = self.num_envs
        seeds = sub_env_seeds(seed, n)
        options = reset_options(options, fixed=self._fixed, level=self.level_name, allowed=("episode", "reset_mask"))
        rows = np.arange(n)
        if "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool numpy array of shape ({n},)")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one sub-env")
            rows = np.flatnonzero(mask)
        episodes = None
        if "episode" in options:
            episodes = episode_indices(options["episode"], n, self.batch.source.count)[rows]
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
        if self._chem_seen:
            for i in rows.tolist():
                if seeds[i] is not None or self._rngs[i] is None:
                    self._rngs[i], _ = seeding.np_random(seeds[i])
        self.batch.reset(rows, [seeds[i] for i in rows.tolist()], episodes)
        self._autoreset[rows] = False
        if self._chem_seen:
            self._chemistries_changed(rows)
        return self._observation(), self._reset_info(rows)

    def step(self, actions):
        batch = self.batch
        actions = batch.check_actions(actions)
        obs_out = self._obs_out()
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            begin = self._autoreset if self._autoreset.any() else None
            result = batch.step(actions, begin=begin, obs_out=obs_out)
            info = self._step_info(result)
            started = None
            if begin is not None:
                started = np.flatnonzero(begin)
                self._merge(info, self._reset_info(started))
            self._autoreset = result.terminated.copy()
        else:
            result = batch.step(actions, obs_out=obs_out)
            started = None
            if not result.num_terminated:
                info = self._step_info(result)
            else:
                # as SyncVectorEnv: the last step's observation and info go to final_obs / final_info,
                # the sub-env's own entries are those of its reset
                started = np.flatnonzero(result.terminated)
                info = self._step_info(result, exclude=result.terminated)
                final_info = self._step_info(result, exclude=~result.terminated)
                last = obs_out[started].copy()
                final = np.full(self.num_envs, None, dtype=object)
                for j, i in enumerate(started.tolist()):
                    if self._chem_seen:
                        final[i] = {"symbolic_obs": last[j]} | {k: v[i].copy() for k, v in self._chem_obs.items()}
                    else:
                        final[i] = last[j]
                batch.reset(started)
                obs_out[started] = batch.obs[started]
                info["final_obs"], info["_final_obs"] = final, result.terminated.copy()
                info["final_info"], info["_final_info"] = final_info, result.terminated.copy()
                self._merge(info, self._reset_info(started))
        if self._chem_seen and started is not None:
            self._chemistries_changed(started)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        return self._observation(obs_out), result.reward, result.terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each sub-env's picture (``render_mode="rgb_array"``), as the single env draws it."""
        if self.render_mode is None:
            from gymnasium import logger

            logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to make_vec")
            return None
        if self._painter is None:
            from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
            from alchemy_gym.render import TrialPainter

            self._painter = TrialPainter(*SymbolicAlchemyEnv.render_size)
        return tuple(self._painter.paint(game) for game in self.games)

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the games live in this process."""

    # ---------------------------------------------------------------- helpers

    def _obs_out(self) -> np.ndarray:
        if self._obs_buffer is not None:
            return self._obs_buffer
        return np.empty((self.num_envs, self._obs_size), dtype=np.float32)

    def _observation(self, symbolic: np.ndarray | None = None):
        if symbolic is None:
            symbolic = self.batch.obs.copy() if self.copy else self.batch.obs
        if not self._chem_seen:
            return symbolic
        return {"symbolic_obs": symbolic} | {name: obs.copy() for name, obs in self._chem_obs.items()}

    def _chemistries_changed(self, rows: np.ndarray) -> None:
        """New episodes in ``rows``: draw their chemistry-observation contents and refresh the observations."""
        if not len(rows):
            return
        chem = self.batch.chem[rows]
        for name, seen in self._chem_seen.items():
            masks = self._chem_masks[name]
            for i in rows.tolist():
                masks[i] = seen.ground_truth_mask(seen.sample_contents(self._rngs[i]))
            self._chem_obs[name][rows] = seen.observe_rows(chem, masks[rows])

    def _reset_info(self, rows: np.ndarray) -> dict[str, Any]:
        """What the single envs' ``reset`` infos give, in the vector layout."""
        n = self.num_envs
        mask = np.zeros(n, dtype=np.bool_)
        mask[rows] = True
        info = {"trial": np.zeros(n, dtype=np.int64), "_trial": mask}
        if self._fixed:
            episode = np.zeros(n, dtype=np.int64)
            episode[rows] = self.batch.episode[rows]
            info["episode"], info["_episode"] = episode, mask.copy()
        return info

    def _step_info(self, result, exclude: np.ndarray | None = None) -> dict[str, Any]:
        """What the single envs' ``step`` infos give, in the vector layout (without the ``exclude`` sub-envs)."""
        if not result.num_trial_ends:
            return {}
        n, batch = self.num_envs, self.batch
        ended = result.trial_ended >= 0
        if exclude is not None:
            ended &= ~exclude
        rows = np.flatnonzero(ended)
        if not len(rows):
            return {}
        trial = np.zeros(n, dtype=np.int64)
        trial[rows] = result.trial_ended[rows]
        reward = np.zeros(n, dtype=np.float64)
        reward[rows] = batch.trial_rewards[rows, trial[rows]]
        info: dict[str, Any] = {
            "trial_ended": trial,
            "_trial_ended": ended,
            "trial_reward": reward,
            "_trial_reward": ended.copy(),
        }
        over = result.terminated & ended
        if over.any():
            done = np.flatnonzero(over)
            for key, source in (
                ("trial_rewards", batch.trial_rewards),
                ("matrix_events", batch.matrix_events),
                ("items", batch.items),
            ):
                if len(done) == n:
                    values = source.copy()
                else:
                    values = np.zeros_like(source)
                    values[done] = source[done]
                info[key], info["_" + key] = values, over.copy()
            chemistry = np.full(n, None, dtype=object)
            chemistry[done] = batch.chemistries(done)
            info["chemistry"], info["_chemistry"] = chemistry, over.copy()
            if self._fixed:
                episode = np.zeros(n, dtype=np.int64)
                episode[done] = batch.episode[done]
                info["episode"], info["_episode"] = episode, over.copy()
        return info

    @staticmethod
    def _merge(info: dict[str, Any], extra: dict[str, Any]) -> None:
        """Add ``extra``'s entries to ``info`` where their masks are set (as ``SyncVectorEnv`` would)."""
        for key, value in extra.items():
            if key.startswith("_"):
                continue
            mask = extra["_" + key]
            if key in info:
                info[key][mask] = value[mask]
                info["_" + key] |= mask
            else:
                info[key], info["_" + key] = value, mask


SymbolicAlchemyVectorEnv.__init__.__signature__ = VectorSettings.signature(
    inspect.Parameter("num_envs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1), positional=("level_name",)
)
