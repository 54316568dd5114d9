"""Training libraries run on the symbolic env out of the box (skipped where the library is not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gymnasium_vector_env_runs_the_symbolic_env():
    envs = gym.make_vec("Alchemy/SymbolicStandard-v0", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=[1, 2, 3])
    assert obs.shape == (3, 39)
    single = gym.make("Alchemy/SymbolicStandard-v0")
    np.testing.assert_array_equal(obs[1], single.reset(seed=2)[0])
    for _ in range(250):  # crosses an episode end: the vector env auto-resets
        obs, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
    envs.close()


def test_stable_baselines3_checker_and_ppo():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra (sb3)")
    from stable_baselines3.common.env_checker import check_env

    check_env(gym.make("Alchemy/SymbolicStandard-v0"))
    mean = _load("sb3_ppo").main(["--timesteps", "800", "--n-envs", "2"])
    assert -90 <= mean <= 450  # episode rewards lie in [-3 x 3 x 10, 45 x 10]


def test_cleanrl_style_ppo_script():
    pytest.importorskip("torch", reason="torch is only needed by the training examples")
    args = ["--total-timesteps", "800", "--num-envs", "2", "--num-steps", "200", "--update-epochs", "1"]
    returns = _load("cleanrl_ppo").main(args)
    # 2 envs x 400 steps: each env finishes one 200-step episode (the vector env's next step is the reset)
    assert len(returns) == 2
    assert all(-90 <= r <= 450 for r in returns)
