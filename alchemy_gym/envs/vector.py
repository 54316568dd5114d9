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
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from alchemy_gym.core.batch import MAX_THREADS, GameBatch
from alchemy_gym.core.checks import check_count
from alchemy_gym.core.episodes import episode_indices, reset_options, sub_env_seeds
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.envs.gymnasium_version import AutoresetMode, require_vector_api
from alchemy_gym.envs.info import INFO_NAMES, EpisodeRecord, batched, snapshot
from alchemy_gym.envs.symbolic_settings import VectorSettings, symbolic_obs_space
from alchemy_gym.levels import DEFAULT_LEVEL

#: Sub-envs per thread when ``num_threads`` is chosen automatically.
ROWS_PER_THREAD = 8192


class SymbolicAlchemyVectorEnv(VectorEnv):
    """``num_envs`` symbolic Alchemy games with batched observations ``(num_envs, 39)``.

    Sub-env ``i`` after ``reset(seed=S)`` is exactly
    :class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv` after ``reset(seed=S + i)``, stepped with
    the same actions, through its autoresets: the same observations, rewards, episode ends and info
    (``info`` has the layout of ``SyncVectorEnv`` over single envs: ``info[key]`` an array over
    sub-envs, ``info["_" + key]`` the mask of sub-envs that set it). Needs gymnasium>=1.0.

    ## Info

    The single env's keys (:mod:`alchemy_gym.envs.info`) as ``(num_envs,)`` arrays, on every step
    and reset, their masks all set (after ``reset(options={"reset_mask": m})``: ``m``). The
    chemistry, items, trial rewards and matrix events of the episodes that ended on the last step
    are :meth:`episode_records`'s.

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
    | render_scale | 1 | ``'rgb_array'`` size: ``240·s × 180·s`` pixels (s = 1..8) |
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
        num_envs = check_count("num_envs", num_envs)
        require_vector_api("the native symbolic vector env (SymbolicAlchemyVectorEnv)")
        self.settings = settings = VectorSettings.parse(level_name=level_name, **settings)
        self.level_name = level_name
        self.num_envs = num_envs
        self.autoreset_mode = settings.autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": settings.autoreset_mode}
        self.render_mode = settings.render_mode
        self.copy = settings.copy
        self._chem_seen = settings.see_chemistries
        self.batch = GameBatch(num_envs, settings.config, settings.source, stride=num_envs, backend=settings.backend)
        self.num_threads = self._threads(settings.num_threads)
        self._fixed = settings.fixed
        self._obs_size = settings.config.observation_size
        self._n_actions = settings.config.num_actions
        symbolic = symbolic_obs_space(settings.observe_used)
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
        # each sub-env's rewards so far in its episode and in its trial (summed as the batch sums trial_rewards)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._trial_sums = np.zeros(num_envs, dtype=np.float64)
        self._ended: tuple | None = None  # the rows whose episode ended on the last step, and their snapshot
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
        self._returns[rows] = self._trial_sums[rows] = 0.0
        self._ended = None
        if self._chem_seen:
            self._chemistries_changed(rows)
        mask = np.zeros(n, dtype=np.bool_)
        mask[rows] = True
        return self._observation(), self._reset_info(mask)

    def step(self, actions):
        batch = self.batch
        actions = batch.check_actions(actions)
        obs_out = self._obs_out()
        trial = batch.trial.astype(np.int32)  # the trial each step is played in
        started = None
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            begin = self._autoreset if self._autoreset.any() else None
            if begin is not None:
                started = np.flatnonzero(begin)
                trial[started] = 0  # a new episode's first trial
                self._returns[started] = 0.0
            result = batch.step(actions, begin=begin, obs_out=obs_out)
            info = self._step_info(result, trial)
            self._autoreset = result.terminated.copy()
            self._keep_ended(result)
        else:
            result = batch.step(actions, obs_out=obs_out)
            info = self._step_info(result, trial)
            self._keep_ended(result)
            if result.num_terminated:
                # as SyncVectorEnv: the last step's observation and info go to final_obs / final_info,
                # the sub-env's own entries are those of its reset
                ended = result.terminated
                started = np.flatnonzero(ended)
                final_info = {
                    key: (np.where(ended, value, value.dtype.type(0)) if not key.startswith("_") else ended.copy())
                    for key, value in info.items()
                }
                last = obs_out[started].copy()
                final = np.full(self.num_envs, None, dtype=object)
                for j, i in enumerate(started.tolist()):
                    if self._chem_seen:
                        final[i] = {"symbolic_obs": last[j]} | {k: v[i].copy() for k, v in self._chem_obs.items()}
                    else:
                        final[i] = last[j]
                batch.reset(started)
                self._returns[started] = 0.0  # (their trial sums were zeroed: their trial ended)
                obs_out[started] = batch.obs[started]
                self._reset_rows(info, started)
                info["final_obs"], info["_final_obs"] = final, ended.copy()
                info["final_info"], info["_final_info"] = final_info, ended.copy()
        if self._chem_seen and started is not None:
            self._chemistries_changed(started)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        return self._observation(obs_out), result.reward, result.terminated, truncated, info

    def episode_records(self) -> dict[int, EpisodeRecord]:
        """``{sub-env: record}`` of the episodes that ended on the last step: their chemistry, items, trial
        rewards and matrix events (an empty dict if none ended)."""
        if self._ended is None:
            return {}
        rows, *arrays = self._ended
        return dict(zip(rows.tolist(), EpisodeRecord.of_arrays(*arrays)))

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each sub-env's picture (``render_mode="rgb_array"``), as the single env draws it."""
        if self.render_mode is None:
            from gymnasium import logger

            logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to make_vec")
            return None
        if self._painter is None:
            from alchemy_gym.render import FramePainter

            self._painter = FramePainter(self.settings.render_scale)
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

    def _keep_ended(self, result) -> None:
        """Keep what :meth:`episode_records` gives of the episodes that ended on this step (before any reset)."""
        if result.num_terminated:
            rows = np.flatnonzero(result.terminated)
            self._ended = (rows, *snapshot(self.batch, rows))
        else:
            self._ended = None

    def _episode_index(self) -> np.ndarray:
        episode = self.batch.episode
        return np.where(episode >= 0, episode, -1)

    def _reset_info(self, mask: np.ndarray) -> dict[str, Any]:
        """What the single envs' ``reset`` infos give, in the vector layout (set for the sub-envs of ``mask``)."""
        n = self.num_envs
        zeros = np.zeros(n)
        info = batched(
            {
                "trial": zeros,
                "trial_ended": zeros,
                "trial_reward": zeros,
                "episode_return": zeros,
                "episode_index": np.where(mask, self._episode_index(), 0),
                "discount": mask,
                "valid_action": mask,
            },
            n,
        )
        for key in info:
            if key.startswith("_"):
                info[key] = mask.copy()
        return info

    def _step_info(self, result, trial: np.ndarray) -> dict[str, Any]:
        """What the single envs' ``step`` infos give (``reset`` infos for the sub-envs that started an
        episode instead), in the vector layout; ``trial``: each sub-env's trial before the step. Written out
        (it runs every step): fresh arrays of the schema's dtypes, every mask set."""
        n = self.num_envs
        self._returns += result.reward
        self._trial_sums += result.reward
        ended = result.trial_ended >= 0
        info: dict[str, Any] = {
            "trial": trial,
            "trial_ended": ended,
            "trial_reward": self._trial_sums.astype(np.float32),
            "episode_return": self._returns.astype(np.float32),
            "episode_index": self.batch.episode.copy(),  # -1 (SAMPLED) for sampled levels
            "discount": (~result.terminated).astype(np.float32),
            "valid_action": np.ones(n, dtype=np.bool_),
        }
        if result.num_trial_ends:
            self._trial_sums[ended] = 0.0
        for key in INFO_NAMES:
            info["_" + key] = np.ones(n, dtype=np.bool_)
        return info

    def _reset_rows(self, info: dict[str, Any], rows: np.ndarray) -> None:
        """Overwrite ``rows``' entries of ``info`` with their reset info (after an autoreset in the same step)."""
        for key in ("trial", "trial_ended", "trial_reward", "episode_return"):
            info[key][rows] = 0
        info["discount"][rows] = 1
        info["episode_index"][rows] = self._episode_index()[rows]


SymbolicAlchemyVectorEnv.__init__.__signature__ = VectorSettings.signature(
    inspect.Parameter("num_envs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1), positional=("level_name",)
)
