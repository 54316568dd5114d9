"""The package on gymnasium 0.29.1 as on 1.x: the same episodes, the same info, clear errors for what needs 1.x.

CI runs this file (with the other single-env tests) under gymnasium 1.x and, in a venv of its own, under
gymnasium 0.29.1 (the version AMAGO and CleanRL pin). Every episode is checked against version-independent
references (the plain reference game of ``tests/reference_game.py``, dm_alchemy's published figures), so
the two versions give the same episodes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym  # noqa: F401  (registers the IDs)
from alchemy_gym.agents import make_agent, run_env_episode
from alchemy_gym.data import evaluation_episodes
from alchemy_gym.envs.gymnasium_version import VECTOR_API, GymnasiumVersionError
from alchemy_gym.envs.info import INFO_KEYS
from alchemy_gym.evaluation import resolve_level, run_episodes
from alchemy_gym.levels import LEVELS
from tests.reference_game import ReferenceGame
from tests.test_symbolic_env import OBS_314

SYMBOLIC = [level for level in LEVELS if level.symbolic_id]


def _check_info(info):
    assert list(info) == [key.name for key in INFO_KEYS]
    for key in INFO_KEYS:
        assert isinstance(info[key.name], (np.generic, np.ndarray)) and info[key.name].dtype == key.dtype, key.name


class AmagoStyleAlchemy(gym.Wrapper):
    """AMAGO's symbolic-Alchemy wrapper pattern (a ``gym.Wrapper`` whose ``reset(*args, **kwargs)`` and ``step``
    hand the inner env's results through), over one ``gym.make`` instead of a dm_alchemy level rebuilt with a
    random seed at every reset: here ``reset()`` continues the seeded stream, ``reset(seed=S)`` restarts it."""

    def __init__(self, env_id: str) -> None:
        super().__init__(gym.make(env_id))

    def reset(self, *args, **kwargs):
        state, info = self.env.reset(*args, **kwargs)
        return state, info

    def step(self, action):
        return self.env.step(action)


@pytest.mark.parametrize("level", SYMBOLIC, ids=[lv.symbolic_id for lv in SYMBOLIC])
def test_amago_wrapper_loop_plays_the_reference_episodes(level):
    env = AmagoStyleAlchemy(level.symbolic_id)
    env.action_space.seed(0)
    evaluation = level.is_evaluation
    ref = ReferenceGame(None if evaluation else level.name, 12)
    fixed = evaluation_episodes() if evaluation else None
    env.reset(seed=12)  # then AMAGO's loop: reset(), steps until te or tr (episodes 2, 3, 4 of the stream)
    if not evaluation:
        ref.new_episode()  # the seeded reset's episode (its chemistry and first items), not played
    returns = []
    for ep in range(3):
        state, info = env.reset()
        _check_info(info)
        if evaluation:
            ref.new_episode(fixed[ep + 1].chemistry, fixed[ep + 1].trials)
            assert info["episode_index"] == ep + 1
        else:
            ref.new_episode()
        np.testing.assert_array_equal(state, ref.observation())
        return_ = 0.0
        for _step in range(1000):
            action = env.action_space.sample()
            next_state, rew, te, tr, info = env.step(action)
            ref_reward, _, ref_over = ref.step(int(action))
            np.testing.assert_array_equal(next_state, ref.observation() if not ref_over else next_state)
            assert (rew, te, tr) == (ref_reward, ref_over, False)
            _check_info(info)
            return_ += rew
            if te or tr:
                break
        assert _step == 199 and info["discount"] == 0 and info["trial"] == 9 and info["trial_ended"]
        assert return_ == info["episode_return"] == sum(ref.trial_rewards)
        assert env.unwrapped.episode_record().trial_rewards.tolist() == ref.trial_rewards
        returns.append(return_)
    assert len(returns) == 3


def test_seed_314_is_dm_alchemys_first_observation():
    env = AmagoStyleAlchemy("Alchemy/SymbolicStandard-v0")
    state, _ = env.reset(seed=314)
    np.testing.assert_array_equal(state, np.array(OBS_314, dtype=np.float32))


def test_agents_through_the_env_equal_the_evaluation_and_dm_alchemys_figures():
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    # dm_alchemy's published ideal observer, replayed: episode 0 scores (1, 16, 31, 3, 30, 45, 17, 2, 45, 17)
    replay = make_agent("replay:ideal_observer", "alchemy/evaluation_episodes")
    assert run_env_episode(replay, env, episode=0) == [1, 16, 31, 3, 30, 45, 17, 2, 45, 17]
    level = resolve_level("Alchemy/SymbolicEvaluation-v0")
    core = dict(run_episodes("positive", level, range(5), seed=0))
    bot = make_agent("positive", level.prior)
    assert [run_env_episode(bot, env, episode=e) for e in range(5)] == [core[e] for e in range(5)]


def test_gymnasiums_wrappers_and_vector_envs_over_the_single_env():
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("Alchemy/SymbolicEvaluation-v0"))
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(1)  # stone 0 into the cauldron, then no-ops
    # RecordEpisodeStatistics' "episode" and ours do not clash: the evaluation episode is "episode_index"
    assert float(np.asarray(info["episode"]["r"]).item()) == info["episode_return"] and info["episode_index"] == 0
    flat = gym.wrappers.FlattenObservation(
        gym.make("Alchemy/SymbolicStandard-v0", see_chemistries={"truth": "ground_truth"})
    )
    obs, _ = flat.reset(seed=1)
    assert obs.shape == (39 + 28,)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Alchemy/SymbolicStandard-v0")] * 2)
    obs, info = envs.reset(seed=[4, 5])
    np.testing.assert_array_equal(obs[1], gym.make("Alchemy/SymbolicStandard-v0").reset(seed=5)[0])
    assert set(info) == {key.name for key in INFO_KEYS} | {"_" + key.name for key in INFO_KEYS}
    envs.close()


@pytest.mark.skipif(VECTOR_API, reason="gymnasium 0.29 only: on 1.x the native vector env works (test_vector_env)")
def test_what_needs_gymnasium_1_names_the_version():
    from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv

    with pytest.raises(GymnasiumVersionError, match=r"needs gymnasium>=1\.0 .*installed gymnasium is 0\.29"):
        SymbolicAlchemyVectorEnv(2)
    with pytest.raises(GymnasiumVersionError, match=r"needs gymnasium>=1\.0"):
        gym.make_vec("Alchemy/SymbolicStandard-v0", num_envs=2, vectorization_mode="custom")
