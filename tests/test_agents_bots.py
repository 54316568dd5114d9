"""Bots (§6.1), the replay agent (§7.2) and the common agent interface."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym
from alchemy_gym.agents import AGENT_NAMES, PositiveStonesBot, RandomActionBot, make_agent, run_env_episode, run_episode
from alchemy_gym.agents.replay_agent import ReplayAgent
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.data import evaluation_episodes


def _play(agent, indices, end_trial_action=False) -> np.ndarray:
    episodes = evaluation_episodes()
    game = AlchemyGame(end_trial_action=end_trial_action)
    out = []
    for i in indices:
        game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
        out.append(run_episode(agent, game, i))
    return np.array(out)


def test_positive_stones_bot_scores_the_reference_mean():
    """Cash-positive-immediately: 67.418 on the 1000 evaluation episodes (§1.2)."""
    rewards = _play(PositiveStonesBot(), range(1000))
    assert rewards.sum(axis=1).mean() == pytest.approx(67.418)


def test_positive_stones_bot_with_end_trial_action():
    assert (
        _play(PositiveStonesBot(), range(50), end_trial_action=True).sum()
        == _play(PositiveStonesBot(), range(50)).sum()
    )


def test_replay_agent_reproduces_published_scores():
    """Replaying the ideal observer's events: episode 0 → (1, 16, 31, 3, 30, 45, 17, 2, 45, 17) = 207 (§7.2)."""
    rewards = _play(ReplayAgent("ideal_observer"), range(100))
    assert rewards[0].tolist() == [1, 16, 31, 3, 30, 45, 17, 2, 45, 17]
    expected = alchemy_gym.replay_agent_events("ideal_observer", episodes=range(100))
    np.testing.assert_array_equal(rewards, expected)


def test_replay_agent_needs_an_episode_index():
    with pytest.raises(ValueError, match="episode"):
        ReplayAgent("baseline").reset(AlchemyGame(), None)
    with pytest.raises(ValueError, match="0..999"):
        ReplayAgent("baseline").reset(AlchemyGame(), 1000)


def test_random_bot_is_seeded_per_episode_and_leaves_the_best_stone():
    a = _play(RandomActionBot(seed=3), range(20))
    b = _play(RandomActionBot(seed=3), [*range(10, 20), *range(10)])
    np.testing.assert_array_equal(a, np.concatenate([b[10:], b[:10]]))
    assert not np.array_equal(a, _play(RandomActionBot(seed=4), range(20)))
    # It never touches a +15 stone, so a trial starting with one scores at least 15.
    episodes = evaluation_episodes()
    for i in range(20):
        for t, items in enumerate(episodes[i].trials):
            if 7 in items.stones:
                assert a[i, t] >= 15


def test_random_bot_mean_is_between_the_bots():
    """The random bot beats cashing at once (it may improve stones) and is far below the ideal observer."""
    mean = _play(RandomActionBot(seed=0), range(300)).sum(axis=1).mean()
    assert 120 < mean < 170


def test_agents_play_through_the_gymnasium_env():
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    for agent in (PositiveStonesBot(), ReplayAgent("search_oracle"), RandomActionBot(seed=1)):
        via_env = run_env_episode(agent, env, episode=5)
        assert via_env == _play(agent, [5]).tolist()[0]


def test_make_agent_names():
    for name in AGENT_NAMES:
        assert make_agent(name).name == name
    assert make_agent("replay:baseline").name == "replay:baseline"
    with pytest.raises(ValueError, match="unknown agent 'oracle'.*allowed"):
        make_agent("oracle")
    with pytest.raises(FileNotFoundError, match="packaged agents are"):
        make_agent("replay:/no/such/file")
