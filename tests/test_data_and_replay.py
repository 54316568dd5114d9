"""Packaged evaluation episodes and agent events, replay (spec §7, §9.4)."""

from __future__ import annotations

import lzma
from collections import Counter
from importlib import resources
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym
from alchemy_gym import data
from alchemy_gym.core.graphs import graph_to_constraint, num_constraints

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dm_alchemy"

# §7.2 / issue: mean episode reward of replaying each agent over the 1000 episodes.
REFERENCE_MEANS = {
    "ideal_observer": 284.417,
    "search_oracle": 288.529,
    "ground_truth_predict": 283.100,
    "belief_state_predict": 265.815,  # 265.81 / 265.82 depending on rounding
    "baseline": 155.182,
}


def test_package_ships_data_with_its_license():
    root = resources.files("alchemy_gym.data")
    assert "Apache License" in root.joinpath("LICENSE").read_text()
    assert root.joinpath("chemistries.xz").is_file()
    for name in data.AGENT_EVENT_NAMES:
        assert root.joinpath(f"agent_events/{name}.xz").is_file()


def test_evaluation_episode_0_section_7_1():
    episodes = data.evaluation_episodes()
    assert len(episodes) == 1000
    first = episodes[0]
    assert (first.chemistry.potion_map, first.chemistry.stone_map, first.chemistry.rotation) == (20, 4, 0)
    edges = [2, 4, 6, 4, 6, 0, 6, 6, 2, 4, 4, 0]
    assert [(first.chemistry.graph >> e) & 1 for e in range(12)] == [int(v > 0) for v in edges]
    assert first.trials[0].stones == (0, 2, 0)
    assert first.trials[0].potions == (5, 0, 3, 2, 4, 4, 0, 0, 2, 0, 1, 4)
    assert all(len(e.trials) == 10 for e in episodes)


def test_evaluation_set_covers_every_map_and_graph_section_7_1():
    episodes = data.evaluation_episodes()
    assert {e.chemistry.potion_map for e in episodes} == set(range(48))
    assert {e.chemistry.stone_map for e in episodes} == set(range(8))
    assert len({e.chemistry.graph for e in episodes}) == 109
    counts = Counter(num_constraints(graph_to_constraint(e.chemistry.graph)) for e in episodes)
    assert [counts[k] for k in range(4)] == [251, 278, 224, 247]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared reference data not present")
def test_packaged_files_are_the_published_ones():
    packaged = resources.files("alchemy_gym.data")
    assert lzma.decompress(packaged.joinpath("chemistries.xz").read_bytes()) == (SHARED / "chemistries").read_bytes()
    for name in data.AGENT_EVENT_NAMES:
        raw = lzma.decompress(packaged.joinpath(f"agent_events/{name}.xz").read_bytes())
        assert raw == (SHARED / "agent_events" / name).read_bytes()


def test_replay_ideal_observer_episode_0_section_7_2():
    rewards = alchemy_gym.replay_agent_events("ideal_observer", episodes=[0])
    assert rewards.shape == (1, 10)
    assert rewards[0].tolist() == [1, 16, 31, 3, 30, 45, 17, 2, 45, 17]


@pytest.mark.parametrize("name", sorted(REFERENCE_MEANS))
def test_replay_means_over_1000_episodes_section_4_5(name):
    rewards = alchemy_gym.replay_agent_events(name)
    assert rewards.shape == (1000, 10)
    assert rewards.sum(axis=1).mean() == pytest.approx(REFERENCE_MEANS[name], abs=1e-9)


def test_replay_from_a_path_raw_or_xz(tmp_path):
    raw = lzma.decompress(resources.files("alchemy_gym.data").joinpath("agent_events/baseline.xz").read_bytes())
    (tmp_path / "baseline").write_bytes(raw)
    by_path = alchemy_gym.replay_agent_events(tmp_path / "baseline", episodes=range(5))
    by_name = alchemy_gym.replay_agent_events("baseline", episodes=range(5))
    np.testing.assert_array_equal(by_path, by_name)


def test_replay_through_the_gym_env_matches_the_fast_replay():
    """The env (with no-ops to finish each trial) and the core replay agree."""
    events = data.load_agent_events("ideal_observer")
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    fast = alchemy_gym.replay_agent_events("ideal_observer", episodes=range(3))
    for episode in range(3):
        env.reset(options={"episode": episode})
        terminated = False
        for trial in range(10):
            for stone, potion in data.events_to_actions(events[episode, trial]):
                env.step(13 * stone + 2 + potion if potion >= 0 else 13 * stone + 1)
            while not terminated and env.unwrapped.trial_number == trial:
                _, _, terminated, _, info = env.step(0)
        record = env.unwrapped.episode_record()
        assert record.trial_rewards.tolist() == fast[episode].tolist() and record.episode_index == episode
        assert info["episode_index"] == episode and info["episode_return"] == fast[episode].sum()
        np.testing.assert_array_equal(record.matrix_events, events[episode])


def test_evaluation_env_plays_requested_and_successive_episodes():
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    assert env.reset()[1]["episode_index"] == 0
    assert env.reset()[1]["episode_index"] == 1
    assert env.reset(options={"episode": 999})[1]["episode_index"] == 999
    assert env.reset()[1]["episode_index"] == 0
    obs, info = env.reset(options={"episode": 0})
    assert env.unwrapped.game.chemistry == data.evaluation_episodes()[0].chemistry


@pytest.mark.parametrize("episode", [-1, 1000, 2.0, "3", True])
def test_evaluation_episode_out_of_range_raises(episode):
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    with pytest.raises(ValueError, match=r"0\.\.999"):
        env.reset(options={"episode": episode})


def test_missing_or_corrupt_event_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="packaged agents are"):
        alchemy_gym.replay_agent_events(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ValueError, match="not a valid serialised alchemy.EvaluationSetEvents"):
        alchemy_gym.replay_agent_events(bad)
    broken_xz = tmp_path / "broken.xz"
    broken_xz.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(ValueError, match="does not decompress"):
        alchemy_gym.replay_agent_events(broken_xz)
    with pytest.raises(ValueError, match=r"allowed 0\.\.999"):
        alchemy_gym.replay_agent_events("baseline", episodes=[1000])
