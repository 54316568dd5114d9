"""The symbolic Gymnasium env: observations, actions, rewards, seeding (spec §3, §4, §9.1, §9.4)."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import alchemy_gym
from alchemy_gym.core.game import EpisodeOver, encode_action
from alchemy_gym.data import evaluation_episodes
from alchemy_gym.envs.gymnasium_version import VECTOR_API
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
from tests.conftest import STANDARD

THIRD = 1 / 3
OBS_314 = [
    -1, -1, 0, -THIRD, 0,  0, -1, 1, THIRD, 0,  -1, 1, 0, -1, 0,
    2 / 3, 0, 2 / 3, 0, -2 / 3, 0, -2 / 3, 0, THIRD, 0, 0, 0, -2 / 3, 0, 0, 0, -2 / 3, 0, THIRD, 0, 0, 0, -THIRD, 0,
]  # fmt: skip

FLAGS = list(itertools.product([True, False], [True, False]))  # observe_used x end_trial_action


def make_fixed(episodes, **kwargs) -> SymbolicAlchemyEnv:
    return SymbolicAlchemyEnv("alchemy/all_fixed", episodes=episodes, **kwargs)


def act(env, stone, potion):
    return encode_action(stone, potion, env.game.end_trial_action)


def test_seed_314_first_observation_and_step_section_4_4():
    env = gym.make("Alchemy/SymbolicStandard-v0")
    obs, _ = env.reset(seed=314)
    assert obs.dtype == np.float32 and obs.shape == (39,)
    np.testing.assert_array_equal(obs, np.array(OBS_314, dtype=np.float32))
    obs, reward, terminated, truncated, _ = env.step(2)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs[:5].tolist() == [-1, 1, 0, -1, 0]
    assert obs[15:17].tolist() == [1, 1]


def test_observe_used_false_drops_the_used_flags_section_4_4():
    env = gym.make("Alchemy/SymbolicStandard-v0", observe_used=False)
    obs, _ = env.reset(seed=314)
    full = np.array(OBS_314, dtype=np.float32)
    expected = np.concatenate([full[:15].reshape(3, 5)[:, :4].ravel(), full[15::2]])
    assert obs.shape == (24,)
    np.testing.assert_array_equal(obs, expected)


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_no_op_keeps_the_observation_section_9_1(fixture_episode, observe_used, end_trial_action):
    env = make_fixed(fixture_episode, observe_used=observe_used, end_trial_action=end_trial_action)
    obs, _ = env.reset()
    obs2, reward, *_ = env.step(act(env, -1, -1))
    assert reward == 0.0
    np.testing.assert_array_equal(obs, obs2)


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_cashing_stones_gives_their_values_and_defaults_section_9_1(fixture_episode, observe_used, end_trial_action):
    env = make_fixed(fixture_episode, observe_used=observe_used, end_trial_action=end_trial_action)
    env.reset()
    stride = 5 if observe_used else 4
    rewards = []
    for s in range(3):
        obs, reward, *_ = env.step(act(env, s, -1))
        rewards.append(reward)
        assert obs[stride * s : stride * s + stride].tolist() == [2, 2, 2, 2, 1][:stride]
    assert rewards == [-1.0, 15.0, 1.0]
    # a trial with nothing left to cash ends with no reward
    total = 0.0
    while env.unwrapped.trial_number == 0:
        total += env.step(act(env, -2, -2) if end_trial_action else 0)[1]
    assert total == 0.0


@pytest.mark.parametrize("noops", [0, 18, 19])
def test_cashing_positive_stones_section_9_1(fixture_episode, noops):
    """use_positive_stones: 16 with time left, 15 when only one step remains."""
    env = make_fixed(fixture_episode)
    env.reset()
    for _ in range(noops):
        env.step(0)
    total = 0.0
    for slot in env.game.stones_above(0):
        total += env.step(act(env, slot, -1))[1]
        if env.unwrapped.trial_number != 0:
            break
    assert total == (15.0 if noops == 19 else 16.0)


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_stone_into_potion_section_9_1(fixture_episode, observe_used, end_trial_action):
    env = make_fixed(fixture_episode, observe_used=observe_used, end_trial_action=end_trial_action)
    obs, _ = env.reset()
    p0 = 15 if observe_used else 12
    obs, reward, *_ = env.step(act(env, 0, 0))
    assert reward == 0.0
    assert obs[p0] == 1.0  # the potion slot shows the default colour
    assert obs[:4].tolist() == pytest.approx([-1, 1, 1, THIRD])


@pytest.mark.parametrize("observe_used", [True, False])
def test_initial_observation_section_9_1(fixture_episode, observe_used):
    env = make_fixed(fixture_episode, observe_used=observe_used)
    obs, _ = env.reset()
    stride, p0, pstride = (5, 15, 2) if observe_used else (4, 12, 1)
    for s, coords in enumerate(([-1, -1, 1], [1, 1, 1], [1, 1, -1])):
        assert obs[stride * s : stride * s + 3].tolist() == coords
        assert obs[stride * s + 3] == pytest.approx(sum(coords) / 3)
        if observe_used:
            assert obs[stride * s + 4] == 0
    assert obs[p0] == obs[p0 + 2 * pstride] != obs[p0 + pstride]
    if observe_used:
        assert obs[p0 + 1] == 0


def test_end_trial_action_moves_to_the_next_trial_section_9_1(fixture_episode):
    for noops in (0, 5, 19):
        env = make_fixed(fixture_episode, end_trial_action=True)
        env.reset()
        for _ in range(noops):
            env.step(1)
        assert env.unwrapped.trial_number == 0
        _, _, terminated, _, info = env.step(0)
        assert env.unwrapped.trial_number == 1 and not terminated
        assert info["trial_ended"] and info["trial"] == 0


def test_trial_ends_after_20_steps_and_episode_after_last_trial(fixture_episode):
    env = make_fixed(fixture_episode)
    env.reset()
    for step in range(1, 41):
        _, _, terminated, truncated, info = env.step(0)
        assert not truncated
        assert info["trial_ended"] == (step % 20 == 0) and info["trial"] == (step - 1) // 20
        if step == 20:
            assert env.unwrapped.trial_number == 1
        assert terminated == (step == 40)
    assert info["discount"] == 0.0 and info["episode_return"] == 0.0
    assert env.unwrapped.episode_record().trial_rewards.tolist() == [0.0, 0.0]
    assert env.unwrapped.trial_number == -1


def test_notebook_seed_22_trackers_section_9_4():
    env = gym.make("Alchemy/SymbolicStandard-v0")
    env.reset(seed=22)
    rewards = [env.step(a)[1] for a in (2, 3, 1)]  # stone 0 -> potion 0, -> potion 1, -> cauldron
    assert rewards[-1] == -1.0
    while env.unwrapped.trial_number == 0:
        env.step(0)
    events = env.unwrapped.game.matrix_events[0]
    assert [(events[:, :12] >= 0).sum(), (events[:, 12] >= 0).sum()] == [2, 1]  # items_used [2, 1]
    assert env.unwrapped.game.trial_rewards[0] == -1.0


def test_matrix_events_record_order_and_no_change_dips_section_7_2(fixture_episode):
    env = make_fixed(fixture_episode)
    env.reset()
    env.step(act(env, 0, 1))  # (1,-1) on a stone already at y=-1: no change, still recorded
    env.step(act(env, 0, 1))  # potion 1 is gone: not recorded
    env.step(act(env, 2, 0))  # (1,+1) on (1,1,-1): no change (already +1)
    env.step(act(env, 1, -1))
    events = env.unwrapped.game.matrix_events[0]
    assert events[0, 1] == 0 and events[2, 0] == 1 and events[1, 12] == 2
    assert (events >= 0).sum() == 3


def test_reset_seed_reproduces_this_and_following_episodes():
    def run(env, seed):
        out = []
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        for _ in range(3):
            terminated = False
            out.append(obs.copy())
            while not terminated:
                obs, reward, terminated, _, _ = env.step(int(rng.integers(40)))
                out.append((obs.copy(), reward))
            obs, _ = env.reset()
        return out

    a = run(gym.make("Alchemy/SymbolicStandard-v0"), 5)
    env = gym.make("Alchemy/SymbolicStandard-v0")
    env.reset(seed=99)
    b = run(env, 5)
    for x, y in zip(a, b):
        np.testing.assert_equal(x, y)
    c = run(gym.make("Alchemy/SymbolicStandard-v0"), 6)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a[1:50], c[1:50]))


def test_second_reset_continues_the_dm_alchemy_stream_section_4_9():
    """seed 789: the notebook's second reset() shows the second chemistry of the stream."""
    env = gym.make("Alchemy/SymbolicStandard-v0", see_chemistries={"gt": "ground_truth"})
    obs, _ = env.reset(seed=789)
    assert obs["gt"].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0]
    obs, _ = env.reset()
    assert obs["gt"].tolist() == [1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("level_id", [lv.symbolic_id for lv in alchemy_gym.levels() if lv.symbolic_id])
def test_check_env_passes_without_warnings(level_id):
    evaluation_episodes()  # import-time warnings of an old protobuf on new Pythons are not the env's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(level_id)
        check_env(env.unwrapped)
        env = gym.make(level_id, end_trial_action=True, observe_used=False, render_mode="ansi")
        check_env(env.unwrapped)
        assert env.action_space == gym.spaces.Discrete(41)
        assert env.observation_space.shape == (24,)


def _shares_mutable_data(a, b) -> bool:
    """Whether two timesteps' data share a mutable object (what Gymnasium 1.4's passive checker warns about: users
    keep every step's data, so an env reusing a buffer would change data they hold)."""
    if isinstance(a, dict):
        return a is b or any(_shares_mutable_data(a[k], b[k]) for k in a.keys() & b.keys())
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.shares_memory(a, b))
    return False


@pytest.mark.parametrize("level_id", [lv.symbolic_id for lv in alchemy_gym.levels() if lv.symbolic_id])
def test_no_two_steps_share_observation_or_info_data(level_id):
    env = gym.make(level_id, see_chemistries={"b": "belief_state"})
    env.action_space.seed(0)
    previous = env.reset(seed=0)
    for t in range(450):  # through trial ends and an episode end
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not _shares_mutable_data(previous[0], obs) and not _shares_mutable_data(previous[1], info), t
        assert all(isinstance(v, (np.generic, np.ndarray)) and v.shape == () for v in info.values()), t  # typed
        previous = env.reset() if terminated or truncated else (obs, info)
    if not VECTOR_API:  # the native vector env needs gymnasium>=1.0
        return
    envs = gym.make_vec(level_id, num_envs=3, vectorization_mode="vector_entry_point")
    previous = envs.reset(seed=0)
    for t in range(450):
        obs, _, _, _, info = envs.step(envs.action_space.sample())
        assert not _shares_mutable_data(previous[0], obs) and not _shares_mutable_data(previous[1], info), t
        previous = obs, info


def test_check_env_passes_with_chemistry_observations():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("Alchemy/SymbolicStandard-v0", see_chemistries={"gt": "ground_truth", "b": "belief_state"})
        check_env(env.unwrapped)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space["gt"].shape == (28,)


def test_observations_stay_in_the_space_over_random_play():
    env = gym.make("Alchemy/SymbolicStandard-v0", end_trial_action=True)
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(2000):
        assert env.observation_space.contains(obs)
        obs, _, terminated, _, _ = env.step(env.action_space.sample())
        if terminated:
            obs, _ = env.reset()


def test_episode_return_is_sum_of_cashed_values():
    env = gym.make("Alchemy/SymbolicNoRotation-v0")
    env.reset(seed=11)
    rng = np.random.default_rng(1)
    total, terminated = 0.0, False
    while not terminated:
        _, reward, terminated, _, info = env.step(int(rng.integers(40)))
        assert reward in (0.0, -3.0, -1.0, 1.0, 15.0)
        total += reward
    record = env.unwrapped.episode_record()
    assert total == sum(record.trial_rewards) == info["episode_return"] == env.unwrapped.episode_return
    assert len(record.items) == 10 and len(record.trial_items()) == 10


def test_reward_weights_change_stone_values(fixture_episode):
    env = make_fixed(fixture_episode, reward_weights=((2, 0, 0), 1, 0))
    env.reset()
    assert [env.step(act(env, s, -1))[1] for s in range(3)] == [-1.0, 3.0, 3.0]


def test_render_ansi_shows_stones_potions_and_counters():
    env = gym.make("Alchemy/SymbolicAllFixed-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(1)
    text = env.render()
    assert "Trial 1/10" in text and "step 1/20" in text
    assert "[0] (used)" in text  # stone 0 was cashed
    assert "purple small pointy" in text and "blue large pointy" in text  # (-1,-1,-1), (1,1,-1), fixed maps
    assert "green" in text and "reward indicator" in text


def test_render_rgb_array_draws_the_trial():
    env = gym.make("Alchemy/SymbolicAllFixed-v0", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (180, 240, 3) and first.dtype == np.uint8
    env.step(1)  # stone 0 into the cauldron: its pixels go back to the table
    second = env.render()
    assert (first != second).any(axis=2).sum() > 20
    env.step(0)  # a no-op: only the step counter in the top strip changes
    assert np.array_equal(env.render()[15:], second[15:]) and not np.array_equal(env.render(), second)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("action", [40, -1, 1.0, 2.5, "3", True, None, np.array([1, 2])])
def test_bad_actions_raise_naming_the_allowed_range(action):
    env = gym.make("Alchemy/SymbolicStandard-v0", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Discrete\(40\)|0\.\.39"):
        env.step(action)


def test_numpy_integer_actions_are_accepted():
    env = gym.make("Alchemy/SymbolicStandard-v0")
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(2))


def test_stepping_a_finished_episode_raises(fixture_episode):
    env = make_fixed(fixture_episode, max_steps_per_trial=1, num_trials=1)
    env.reset()
    assert env.step(0)[2] is True
    with pytest.raises(EpisodeOver, match="reset"):
        env.step(0)
    with pytest.raises(EpisodeOver, match="reset"):
        SymbolicAlchemyEnv().step(0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_trials": "10"}, TypeError, "num_trials must be an int"),
        ({"num_trials": 0}, ValueError, r"allowed 1\.\.127"),
        ({"max_steps_per_trial": 2.0}, TypeError, "max_steps_per_trial must be an int"),
        ({"observe_used": 1}, TypeError, "observe_used must be a bool"),
        ({"end_trial_action": "yes"}, TypeError, "end_trial_action must be a bool"),
        ({"num_stones_per_trial": 4}, ValueError, r"allowed 0\.\.3"),
        ({"reward_weights": (1, 2)}, TypeError, "coefficients, offset, bonus"),
        ({"see_chemistries": ["gt"]}, TypeError, "see_chemistries must be a dict"),
        ({"see_chemistries": {"gt": "truth"}}, ValueError, "allowed 'ground_truth'"),
        ({"render_mode": "bogus"}, ValueError, "allowed None, 'ansi' or 'rgb_array'"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_bad_kwargs_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make("Alchemy/SymbolicStandard-v0", **kwargs)


def test_bad_seeds_and_options_raise():
    env = gym.make("Alchemy/SymbolicStandard-v0")
    with pytest.raises(ValueError, match="seed must be an int"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="seed must be an int"):
        env.reset(seed=2**32)
    with pytest.raises(ValueError, match="evaluation level"):
        env.reset(options={"episode": 1})
    with pytest.raises(ValueError, match="only option is 'episode'"):
        env.reset(options={"level": 1})


def test_default_constructor_is_the_standard_task():
    env = SymbolicAlchemyEnv()
    assert env.level_name == STANDARD
    assert env.rules.rotation and env.rules.randomize_maps
