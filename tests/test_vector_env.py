"""The native vector env: sub-env i is the single env seeded with seed + i (next-step autoreset)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv


def make(n, level="Alchemy/SymbolicStandard-v0", **kwargs):
    return gym.make_vec(level, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)


def test_make_vec_builds_the_native_vector_env():
    envs = make(4)
    assert isinstance(envs.unwrapped, SymbolicAlchemyVectorEnv)
    assert envs.observation_space.shape == (4, 39)
    assert envs.single_action_space == gym.spaces.Discrete(40)


@pytest.mark.parametrize("kwargs", [{}, {"end_trial_action": True, "observe_used": False, "num_trials": 2}])
def test_sub_envs_match_single_envs_step_for_step_with_next_step_autoreset(kwargs):
    n, seed = 3, 17
    envs = make(n, **kwargs)
    singles = [gym.make("Alchemy/SymbolicStandard-v0", **kwargs) for _ in range(n)]
    obs, _ = envs.reset(seed=seed)
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(obs[i], env.reset(seed=seed + i)[0])
    rng = np.random.default_rng(0)
    pending_reset = [False] * n
    ends = 0
    for _ in range(450):
        actions = rng.integers(0, envs.single_action_space.n, size=n)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        assert not truncated.any()
        for i, env in enumerate(singles):
            if pending_reset[i]:
                expected, r, t = env.reset()[0], 0.0, False
            else:
                expected, r, t, _, single_info = env.step(int(actions[i]))
                if t:
                    assert info["trial_rewards"][i].tolist() == single_info["trial_rewards"]
                    assert info["_trial_rewards"][i]
                    ends += 1
            pending_reset[i] = t
            np.testing.assert_array_equal(obs[i], expected)
            assert rewards[i] == r and terminated[i] == t
    assert ends >= n


def test_evaluation_level_spreads_episodes_over_sub_envs():
    envs = make(2, "Alchemy/SymbolicEvaluation-v0")
    envs.reset()
    from alchemy_gym.data import evaluation_episodes

    games = envs.unwrapped.games
    assert [g.chemistry for g in games] == [evaluation_episodes()[i].chemistry for i in (0, 1)]
    envs.reset(options={"episode": [10, 999]})
    assert [g.chemistry for g in games] == [evaluation_episodes()[i].chemistry for i in (10, 999)]
    envs.reset()
    assert [g.chemistry for g in games] == [evaluation_episodes()[i].chemistry for i in (12, 1)]


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        ([0, 40], r"out of range: each must be in 0\.\.39"),
        ([0.0, 1.0], "must be 2 integers"),
        ([0, 1, 2], "must be 2 integers"),
    ],
)
def test_bad_actions_raise(actions, match):
    envs = make(2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        envs.step(np.array(actions))


def test_unsupported_options_point_to_the_sync_vector_env():
    with pytest.raises(ValueError, match="vectorization_mode='sync'"):
        SymbolicAlchemyVectorEnv(2, see_chemistries={"gt": "ground_truth"})
    with pytest.raises(ValueError, match="one episode per sub-env"):
        make(2, "Alchemy/SymbolicEvaluation-v0").reset(options={"episode": [1]})
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        SymbolicAlchemyVectorEnv(0)
