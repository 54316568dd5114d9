"""Stable-Baselines3's ``VecEnv`` over the native symbolic vector env: SB3 at the batched core's speed.

SB3 vectorises ordinary envs with one Python env per worker (``DummyVecEnv``,
``SubprocVecEnv``). :class:`AlchemySB3VecEnv` gives it all sub-envs of one
:class:`~alchemy_gym.envs.vector.SymbolicAlchemyVectorEnv` instead::

    from stable_baselines3 import PPO
    from alchemy_gym.wrappers import AlchemySB3VecEnv

    venv = AlchemySB3VecEnv("Alchemy/SymbolicStandard-v0", num_envs=64, seed=0)
    PPO("MlpPolicy", venv).learn(100_000)

It behaves as ``DummyVecEnv`` over ``Monitor``-wrapped single envs does: an episode's last step
returns the next episode's first observation with ``infos[i]["terminal_observation"]`` (the last
one) and ``infos[i]["episode"]`` (``Monitor``'s ``{"r": return, "l": length, "t": seconds}``, so
SB3 logs ``rollout/ep_rew_mean`` with no ``VecMonitor``); ``infos[i]`` also holds the single env's
step info and ``"TimeLimit.truncated"``; ``seed(S)`` makes the next ``reset()`` seed sub-env ``i``
with ``S + i``. A ``VecMonitor`` on top replaces ``infos[i]["episode"]`` with its own (each
episode is still counted once). Needs the ``sb3`` extra and gymnasium>=1.0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "AlchemySB3VecEnv needs Stable-Baselines3: pip install torch==2.13.0 'alchemy-gym[sb3]' "
        "(install the CPU build of torch first)"
    ) from exc

from alchemy_gym.envs.gymnasium_version import AutoresetMode, require_vector_api
from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv


class AlchemySB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` of ``num_envs`` symbolic Alchemy games stepped in one call.

    Args:
        env_id: a symbolic ID (``"Alchemy/Symbolic...-v0"``), or an existing
            :class:`~alchemy_gym.envs.vector.SymbolicAlchemyVectorEnv` in same-step autoreset mode.
        num_envs: sub-envs (ignored when a vector env is given).
        seed: seeds the first ``reset()`` (sub-env ``i`` gets ``seed + i``).
        **kwargs: level settings and vector env arguments (``backend``, ``num_threads``, ...).
    """

    def __init__(self, env_id: str | SymbolicAlchemyVectorEnv, num_envs: int = 1, seed: int | None = None, **kwargs):
        require_vector_api("AlchemySB3VecEnv")
        if isinstance(env_id, SymbolicAlchemyVectorEnv):
            venv = env_id
            if venv.autoreset_mode != AutoresetMode.SAME_STEP:
                raise ValueError("AlchemySB3VecEnv needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        else:
            if not isinstance(env_id, str):
                raise TypeError(
                    f"env_id must be a symbolic ID (str) or a SymbolicAlchemyVectorEnv, got {type(env_id).__name__}"
                )
            spec = gym.spec(env_id)
            if spec.vector_entry_point != "alchemy_gym.envs.vector:SymbolicAlchemyVectorEnv":
                raise ValueError(f"{env_id!r} is not a symbolic Alchemy ID: AlchemySB3VecEnv plays the symbolic game")
            venv = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="vector_entry_point",
                autoreset_mode=AutoresetMode.SAME_STEP,
                **kwargs,
            ).unwrapped
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.render_mode = venv.render_mode
        self._actions: np.ndarray | None = None
        # Monitor's episode statistics, per sub-env
        self._t_start = time.time()
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        if seed is not None:
            self.seed(seed)

    # -------------------------------------------------------------------- VecEnv

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options and all(o == self._options[0] for o in self._options) else None
        obs, info = self.venv.reset(seed=seeds, options=options or None)
        self.reset_infos = _per_env(info, self.num_envs)
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        final_obs = info.pop("final_obs", None)
        final_mask = info.pop("_final_obs", None)
        final_info = info.pop("final_info", None)
        info.pop("_final_info", None)
        infos = _per_env(info, self.num_envs)
        if final_obs is not None:
            last = _per_env(final_info or {}, self.num_envs)
            for i in np.flatnonzero(final_mask).tolist():
                self.reset_infos[i] = infos[i]
                infos[i] = last[i]
                infos[i]["terminal_observation"] = final_obs[i]
        for i, value in enumerate((truncated & ~terminated).tolist()):
            infos[i]["TimeLimit.truncated"] = value
        dones = terminated | truncated
        self._episode_returns += rewards
        self._episode_lengths += 1
        if dones.any():
            seconds = round(time.time() - self._t_start, 6)
            for i in np.flatnonzero(dones).tolist():
                infos[i]["episode"] = {
                    "r": round(float(self._episode_returns[i]), 6),
                    "l": int(self._episode_lengths[i]),
                    "t": seconds,
                }
            self._episode_returns[dones] = 0.0
            self._episode_lengths[dones] = 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        pictures = self.venv.render()
        return list(pictures) if pictures is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The attribute of the vector env, once per sub-env asked for (the sub-envs share it)."""
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError("the sub-envs of AlchemySB3VecEnv share one vector env: set attributes on .venv")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise AttributeError(
            f"the sub-envs of AlchemySB3VecEnv are rows of one vector env: call .venv.{method_name}(...) instead"
        )

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        """``True`` for SB3's ``Monitor`` (the sub-envs give its episode statistics), else ``False``."""
        return [wrapper_class is Monitor] * len(self._get_indices(indices))


def _per_env(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays with ``_key`` masks) as one dict per sub-env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        rows = range(n) if mask is None else np.flatnonzero(mask).tolist()
        if isinstance(value, dict):
            nested = _per_env(value, n)
            for i in rows:
                out[i][key] = nested[i]
            continue
        flags = isinstance(value, np.ndarray) and value.dtype == np.bool_
        for i in rows:
            # as the single env gives them: numpy scalars, 0-d arrays for bool flags; objects as they are
            out[i][key] = np.array(value[i]) if flags else value[i]
    return out
