"""dm_alchemy's own API as a dm_env view (alchemy_gym.compat): specs, timesteps, seeded stream, chemistry
observations, the evaluation episodes and bad input (spec §4, §7, §9.1), against the real dm_env library."""

from __future__ import annotations

import itertools
import subprocess
import sys
import unittest
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

dm_env = pytest.importorskip("dm_env")
from dm_env import specs, test_utils  # noqa: E402

import alchemy_gym  # noqa: E402
from alchemy_gym import data  # noqa: E402
from alchemy_gym.compat import symbolic_alchemy  # noqa: E402
from alchemy_gym.compat.encode import chemistries_proto_conversion  # noqa: E402
from alchemy_gym.compat.types import stones_and_potions, utils  # noqa: E402
from alchemy_gym.core.game import encode_action  # noqa: E402
from alchemy_gym.levels import EVALUATION_PREFIX  # noqa: E402
from tests.conftest import BOTTLENECK1, NO_ROTATION, STANDARD, fixed_chemistry, fixture_items  # noqa: E402
from tests.test_symbolic_env import OBS_314  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dm_alchemy"
FLAGS = list(itertools.product([True, False], [True, False]))  # observe_used x end_trial_action
GT = utils.ElementContent.GROUND_TRUTH
BELIEF = utils.ElementContent.BELIEF_STATE
UNKNOWN = utils.ElementContent.UNKNOWN
#: dm_alchemy.LEVEL_NAMES: the 3D levels (spec §5.2), 1004 names.
DM_ALCHEMY_LEVEL_NAMES = [lv.name for lv in alchemy_gym.levels() if lv.rpc_id and not lv.is_evaluation] + [
    f"{EVALUATION_PREFIX}/{i}" for i in range(1000)
]
#: ideal_observer's per-trial scores on evaluation episode 0 (§7.2).
IDEAL_OBSERVER_EPISODE_0 = [1, 16, 31, 3, 30, 45, 17, 2, 45, 17]


def fixed_env(items=None, chemistry=None, **kwargs):
    """dm_alchemy's test fixture (§9.1): two trials with the same items, all-fixed chemistry, full cube."""
    items = items or [fixture_items(), fixture_items()]
    return symbolic_alchemy.get_symbolic_alchemy_fixed(
        utils.EpisodeItems.from_trials(items), chemistry or fixed_chemistry(), **kwargs
    )


def absent_elements() -> dict:
    """Every element of a ChemistrySeen, left out."""
    return {
        "graph": utils.GraphElement(present=False),
        "potion_map": utils.PotionMapElement(present=False),
        "stone_map": utils.StoneMapElement(present=False),
        "rotation": utils.RotationElement(present=False),
    }


def slot(env, stone, potion):
    return encode_action(stone, potion, env.gym_env.game.end_trial_action)


def validate(env, timestep):
    """Every part of a timestep against the env's specs, with dm_env's own ``spec.validate``."""
    obs_spec = env.observation_spec()
    assert set(timestep.observation) == set(obs_spec)
    for name, spec in obs_spec.items():
        spec.validate(timestep.observation[name])
    if timestep.first():
        assert timestep.reward is None and timestep.discount is None
    else:
        env.reward_spec().validate(timestep.reward)
        env.discount_spec().validate(timestep.discount)


# ----------------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_specs_are_dm_alchemys_section_4_2_4_4(observe_used, end_trial_action):
    env = symbolic_alchemy.get_symbolic_alchemy_level(
        STANDARD, observe_used=observe_used, end_trial_action=end_trial_action
    )
    spec = env.observation_spec()
    assert list(spec) == ["symbolic_obs"]
    obs = spec["symbolic_obs"]
    assert type(obs) is specs.Array  # dm_alchemy's: unbounded
    assert (obs.shape, obs.dtype, obs.name) == ((39 if observe_used else 24,), np.float32, "symbolic_obs")
    action = env.action_spec()
    assert type(action) is specs.BoundedArray
    assert (action.shape, action.dtype, action.name) == ((), np.dtype(int), "action")
    assert (int(action.minimum), int(action.maximum)) == (0, 40 if end_trial_action else 39)
    # reward and discount: dm_env's defaults, as dm_alchemy leaves them
    assert env.reward_spec() == specs.Array(shape=(), dtype=float, name="reward")
    assert env.discount_spec() == specs.BoundedArray(shape=(), dtype=float, minimum=0.0, maximum=1.0, name="discount")


def test_chemistry_observation_specs_follow_the_elements_section_4_9():
    see = {
        "all": utils.ChemistrySeen(content=GT),
        "graph": utils.ChemistrySeen(
            content=GT,
            potion_map=utils.PotionMapElement(present=False),
            stone_map=utils.StoneMapElement(present=False),
            rotation=utils.RotationElement(present=False),
        ),
        "maps": utils.ChemistrySeen(
            graph=utils.GraphElement(present=False), rotation=utils.RotationElement(present=False)
        ),
    }
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, see_chemistries=see)
    spec = env.observation_spec()
    assert list(spec) == ["symbolic_obs", "all", "graph", "maps"]
    assert [(s.shape, s.dtype, s.name) for s in list(spec.values())[1:]] == [
        ((28,), np.float32, "all"),
        ((12,), np.float32, "graph"),
        ((12,), np.float32, "maps"),
    ]
    assert [see[n].obs_size() for n in see] == [28, 12, 12]


# ------------------------------------------------------------------------------------- timesteps, stream


def test_seed_314_first_timestep_and_step_section_4_4():
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=314)
    first = env.reset()
    assert first.step_type is dm_env.StepType.FIRST and first.reward is None and first.discount is None
    np.testing.assert_array_equal(first.observation["symbolic_obs"], np.array(OBS_314, dtype=np.float32))
    step = env.step(2)  # stone 0 into potion 0
    assert (step.step_type, step.reward, step.discount) == (dm_env.StepType.MID, 0.0, 1.0)
    assert type(step.reward) is float and type(step.discount) is float
    assert step.observation["symbolic_obs"][:5].tolist() == [-1, 1, 0, -1, 0]
    assert step.observation["symbolic_obs"][15:17].tolist() == [1, 1]


def test_all_fixed_seed_0_trial_0_stones_section_4_7():
    env = symbolic_alchemy.get_symbolic_alchemy_level("alchemy/all_fixed", seed=0)
    obs = env.reset().observation["symbolic_obs"].reshape(-1)[:15].reshape(3, 5)
    stones = [[1, -1, 1], [-1, -1, -1], [1, 1, -1]]  # identity maps: perceived = latent coords
    assert obs[:, :3].tolist() == stones
    np.testing.assert_allclose(obs[:, 3], [sum(s) / 3 for s in stones], rtol=1e-6)
    assert obs[:, 4].tolist() == [0, 0, 0]


def test_an_episode_is_first_then_mids_then_last_and_step_starts_the_next():
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=5, num_trials=3, max_steps_per_trial=4)
    timestep = env.reset()
    kinds, rewards = [timestep.step_type], []
    while not timestep.last():
        timestep = env.step(1)  # stone 0 into the cauldron, then nothing left in slot 0
        kinds.append(timestep.step_type)
        rewards.append(timestep.reward)
        validate(env, timestep)
    assert kinds == [dm_env.StepType.FIRST] + [dm_env.StepType.MID] * 11 + [dm_env.StepType.LAST]
    assert timestep.discount == 0.0 and env.trial_number == -1 and env.is_last_step()
    # one cashed stone per trial, worth one of the four stone values (§1.2)
    assert [r != 0 for r in rewards] == [True, False, False, False] * 3
    assert {r for r in rewards if r} <= {-3.0, -1.0, 1.0, 15.0}
    after = env.step(7)  # dm_env: the action after LAST is ignored and a new episode starts
    assert after.step_type is dm_env.StepType.FIRST and after.reward is None and env.trial_number == 0


def test_step_on_a_fresh_env_starts_the_first_episode():
    a = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=314)
    first = a.step(13)  # any valid action: ignored
    assert first.first() and a.trial_number == 0
    np.testing.assert_array_equal(first.observation["symbolic_obs"], np.array(OBS_314, dtype=np.float32))


def test_observation_before_reset_is_all_defaults_section_4_4():
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, see_chemistries={"c": utils.ChemistrySeen(content=GT)})
    obs = env.observation()
    assert obs["symbolic_obs"].tolist() == [2, 2, 2, 2, 1] * 3 + [1, 1] * 12
    assert obs["c"].tolist() == [0.5] * 28
    assert env.trial_number == -1 and env.chemistry is None


def _play_both(compat, genv, seed, episodes, actions):
    """Step the dm_env view and the Gymnasium env side by side; the view starts each next episode with
    ``step()`` after LAST, the Gymnasium env with ``reset()``: both continue the seeded stream."""
    timestep = compat.reset()
    obs, _ = genv.reset(seed=seed)
    checked = 0
    for _ in range(episodes):
        while True:
            got = timestep.observation
            want = obs if isinstance(obs, dict) else {"symbolic_obs": obs}
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
            if timestep.last():
                break
            action = int(actions.randint(genv.action_space.n))
            timestep = compat.step(action)
            obs, reward, terminated, _, _ = genv.step(action)
            assert timestep.reward == reward and timestep.last() == terminated
            assert timestep.discount == (0.0 if terminated else 1.0)
            checked += 1
        timestep = compat.step(0)
        assert timestep.first()
        obs, _ = genv.reset()
    return checked


@pytest.mark.parametrize("level", [lv for lv in alchemy_gym.levels() if lv.symbolic_id], ids=lambda lv: lv.name)
def test_seeded_stream_is_the_gymnasium_envs_on_every_symbolic_level(level):
    compat = symbolic_alchemy.get_symbolic_alchemy_level(level.name, seed=11, end_trial_action=True)
    genv = gym.make(level.symbolic_id, end_trial_action=True)
    assert _play_both(compat, genv, 11, 3, np.random.RandomState(0)) > 30


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_seeded_stream_with_chemistry_observations_and_settings(observe_used, end_trial_action):
    groups = [
        utils.GroupInChemistry({utils.ElementType.GRAPH: {0, 1, 2, 3}}, [0.5, 0.0, 0.5]),
        utils.GroupInChemistry({utils.ElementType.POTION_MAP: set(range(9))}, [0.0, 0.5, 0.5]),
    ]
    see = {"gt": utils.ChemistrySeen(content=GT), "belief": utils.ChemistrySeen(content=BELIEF)}
    see["mixed"] = utils.ChemistrySeen(groups=groups)
    settings = dict(
        observe_used=observe_used,
        end_trial_action=end_trial_action,
        num_trials=4,
        num_stones_per_trial=2,
        num_potions_per_trial=7,
        max_steps_per_trial=9,
        reward_weights=stones_and_potions.RewardWeights((1, 2, 0.5), -1, 5),
    )
    compat = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=22, see_chemistries=see, **settings)
    genv = gym.make(
        "Alchemy/SymbolicStandard-v0",
        see_chemistries={name: s.to_core() for name, s in see.items()},
        **(settings | {"reward_weights": ((1, 2, 0.5), -1, 5)}),
    )
    assert _play_both(compat, genv, 22, 4, np.random.RandomState(1)) > 100


def test_reset_continues_the_seeded_stream_section_4_9():
    """seed 789: dm_alchemy's second reset() shows the second chemistry of the stream."""
    env = symbolic_alchemy.get_symbolic_alchemy_level(
        STANDARD, seed=789, see_chemistries={"gt": utils.ChemistrySeen(content=GT)}
    )
    first = env.reset().observation["gt"].tolist()
    assert first == [1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0]
    second = env.reset().observation["gt"].tolist()
    assert second == [1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    again = symbolic_alchemy.get_symbolic_alchemy_level(
        STANDARD, seed=789, see_chemistries={"gt": utils.ChemistrySeen(content=GT)}
    )
    assert again.reset().observation["gt"].tolist() == first  # the same seed, the same stream (test_seed)


# ------------------------------------------------------------------------------ dm_alchemy's tests (§9.1)


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
def test_no_op_and_cashing_stones_section_9_1(observe_used, end_trial_action):
    env = fixed_env(observe_used=observe_used, end_trial_action=end_trial_action)
    first = env.reset().observation["symbolic_obs"]
    no_op = env.step(slot(env, -1, -1))
    assert no_op.reward == 0.0
    np.testing.assert_array_equal(no_op.observation["symbolic_obs"], first)
    stride = 5 if observe_used else 4
    rewards = []
    for s in range(3):
        timestep = env.step(slot(env, s, -1))
        rewards.append(timestep.reward)
        assert timestep.observation["symbolic_obs"][stride * s : stride * (s + 1)].tolist() == [2, 2, 2, 2, 1][:stride]
    assert rewards == [-1.0, 15.0, 1.0]
    assert env.end_trial() == (0.0, 1.0) and env.trial_number == 1


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
@pytest.mark.parametrize("no_ops", [None, 0, 5, 18, 19])
def test_use_positive_stones_section_9_1(observe_used, end_trial_action, no_ops):
    env = fixed_env(observe_used=observe_used, end_trial_action=end_trial_action)
    if no_ops is not None:  # None: an env never reset
        env.reset()
        for _ in range(no_ops):
            env.step(slot(env, -1, -1))
    timestep = env.use_positive_stones()
    assert timestep.reward == (15.0 if no_ops == 19 else 16.0)  # one step left: only the first stone
    assert (timestep.step_type, timestep.discount) == (dm_env.StepType.MID, 1.0)
    assert env.trial_number == 1 and env.is_new_trial()


@pytest.mark.parametrize(("observe_used", "end_trial_action"), FLAGS)
@pytest.mark.parametrize("no_ops", [None, 0, 7, 19])
def test_end_trial_section_9_1(observe_used, end_trial_action, no_ops):
    env = fixed_env(observe_used=observe_used, end_trial_action=end_trial_action)
    if no_ops is not None:
        env.reset()
        for _ in range(no_ops):
            env.step(slot(env, -1, -1))
    assert env.end_trial() == (0.0, 1.0)
    assert env.trial_number == 1
    assert env.end_trial() == (0.0, 1.0)  # the last trial: the episode is over
    assert env.is_last_step() and env.trial_number == -1


def test_use_potion_section_9_1():
    env = fixed_env()
    env.reset()
    timestep = env.step(slot(env, 0, 0))  # stone (-1,-1,1) into potion 0, latent (1, +1)
    obs = timestep.observation["symbolic_obs"]
    assert timestep.reward == 0.0
    np.testing.assert_allclose(obs[:5], [-1, 1, 1, 1 / 3, 0], rtol=1e-6)
    assert obs[15:17].tolist() == [1, 1]


def test_is_new_trial_follows_dm_alchemy():
    env = fixed_env(max_steps_per_trial=2)
    assert not env.is_new_trial()
    env.reset()
    assert env.is_new_trial()
    env.step(0)
    assert not env.is_new_trial()
    env.step(0)  # the second step ends trial 0
    assert env.is_new_trial() and env.trial_number == 1
    env.step(0)
    env.step(0)  # ends the episode: no new trial
    assert not env.is_new_trial() and env.is_last_step()


# ------------------------------------------------------------------------------ chemistry observations


def test_ground_truth_chemistry_observations_section_9_1():
    def observe(chemistry, **elements):
        see = {"test_chem": utils.ChemistrySeen(content=GT, **elements)}
        env = fixed_env(chemistry=chemistry, see_chemistries=see)
        before = env.observation()["test_chem"]
        return before, env.reset().observation["test_chem"].tolist()

    def only(keep):
        return {k: v for k, v in absent_elements().items() if k != keep}

    assert observe(fixed_chemistry(), **only("graph"))[1] == [1] * 12
    assert observe(fixed_chemistry(BOTTLENECK1), **only("graph"))[1] == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0]
    assert observe(fixed_chemistry(), **only("potion_map"))[1] == [1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert observe(fixed_chemistry(), **only("stone_map"))[1] == [1, 1, 1]
    before, after = observe(fixed_chemistry())
    assert before.tolist() == [0.5] * 28
    assert after == [1] * 12 + [1, 0, 0, 0, 0, 0] + [1, 1, 1] + [1, 1, 1] + [1, 0, 0, 0]
    for rotation in range(4):
        assert observe(fixed_chemistry(rotation=rotation), **only("rotation"))[1] == np.eye(4)[rotation].tolist()


@pytest.mark.parametrize("precomputed", [None, NO_ROTATION, STANDARD])
def test_belief_state_chemistry_observation_seed_22_section_4_9(precomputed):
    see = {"belief": utils.ChemistrySeen(content=BELIEF, precomputed=precomputed)}
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=22, see_chemistries=see)
    obs = env.reset().observation["belief"].tolist()
    assert obs == [0.5] * 12 + [0.5] * 6 + [0.5] * 3 + [0.5, 0, 0.5] + [0, 0, 1, 0]
    obs = env.step(3).observation["belief"].tolist()  # stone 0 into potion 1
    graph = [0.5] * 12
    graph[4] = 1
    assert obs == graph + [0.5, 0, 0.5, 0, 0, 0] + [0.5, 0.5, 1] + [0.5, 0, 1] + [0, 0, 1, 0]


def test_groups_draw_their_contents_from_the_seeded_stream():
    groups = [
        utils.GroupInChemistry({utils.ElementType.GRAPH: set(range(12))}, [0.5, 0.0, 0.5]),
        utils.GroupInChemistry({utils.ElementType.ROTATION: {0, 1, 2, 3}}, [0.5, 0.0, 0.5]),
    ]

    def contents(seed):
        env = symbolic_alchemy.get_symbolic_alchemy_level(
            STANDARD, seed=seed, see_chemistries={"c": utils.ChemistrySeen(groups=groups)}
        )
        return [tuple(env.reset().observation["c"]) for _ in range(20)]

    first = contents(3)
    assert first == contents(3)
    graphs = {obs[:12] == (0.5,) * 12 for obs in first}
    assert graphs == {True, False}  # both contents were drawn over 20 episodes


# ---------------------------------------------------------------------------------------- level names


def test_every_dm_alchemy_level_name_builds_and_plays():
    episodes = data.evaluation_episodes()
    for name in DM_ALCHEMY_LEVEL_NAMES:
        env = symbolic_alchemy.get_symbolic_alchemy_level(name, seed=1)
        timestep = env.reset()
        validate(env, timestep)
        if name.startswith(EVALUATION_PREFIX + "/"):
            episode = episodes[int(name.rsplit("/", 1)[1])]
            assert env.chemistry == episode.chemistry
            assert env.gym_env.game.stones == list(episode.trials[0].stones)
    # dm_alchemy's symbolic-only names (with or without the prefix) and combinations of their parts
    for name in [
        "alchemy/perceptual_mapping_randomized",
        "perceptual_mapping_randomized_with_rotation_and_random_bottleneck",
        "alchemy/all_fixed_bottleneck1",
        "all_fixed_bottleneck2",
        "alchemy/all_fixed_bottleneck3",
        "perceptual_mapping_randomized_with_rotation",
        "alchemy/evaluation_episodes",
    ]:
        env = symbolic_alchemy.get_symbolic_alchemy_level(name)
        validate(env, env.reset())


def test_level_names_mean_what_they_mean_in_dm_alchemy():
    shaping = symbolic_alchemy.get_symbolic_alchemy_level("alchemy/all_fixed_w_shaping", seed=4)
    plain = symbolic_alchemy.get_symbolic_alchemy_level("all_fixed", seed=4)
    for _ in range(3):
        np.testing.assert_array_equal(
            shaping.reset().observation["symbolic_obs"], plain.reset().observation["symbolic_obs"]
        )
    b3 = symbolic_alchemy.get_symbolic_alchemy_level("alchemy/all_fixed_bottleneck3", seed=0)
    b3.reset()
    assert b3.chemistry.constraint == [["X", "-1", "1"], ["*", "X", "*"], ["*", "-1", "X"]]


# ----------------------------------------------------------------------------------- evaluation episodes


def _replay(env, matrices) -> list[float]:
    """Replay one episode's matrix events (§7.2) with end-trial actions; per-trial rewards."""
    timestep = env.reset()
    scores = []
    for matrix in matrices:
        total = 0.0
        for stone, potion in data.events_to_actions(matrix):
            total += env.step(encode_action(stone, potion, True)).reward
        timestep = env.step(encode_action(-2, -2, True))
        scores.append(total + timestep.reward)
    assert timestep.last()
    return scores


def test_evaluation_chemistries_are_the_packaged_episodes_section_7_1():
    chems = chemistries_proto_conversion.load_chemistries_and_items()
    assert len(chems) == 1000
    chemistry, items = chems[0]
    assert (chemistry.potion_map, chemistry.stone_map, chemistry.rotation) == (20, 4, 0)
    assert items.num_trials == 10
    assert items.stones[0] == (0, 2, 0) and items.potions[0] == (5, 0, 3, 2, 4, 4, 0, 0, 2, 0, 1, 4)
    # dm_alchemy's relative path to its packaged file means the same episodes
    relative = chemistries_proto_conversion.EVALUATION_CHEMISTRIES
    assert chemistries_proto_conversion.load_chemistries_and_items(relative)[999] == chems[999]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared reference data not present")
def test_evaluation_chemistries_match_dm_alchemys_file_section_7_1():
    theirs = chemistries_proto_conversion.load_chemistries_and_items(SHARED / "chemistries")
    ours = chemistries_proto_conversion.load_chemistries_and_items()
    assert len(theirs) == 1000
    assert all(a[0] == b[0] and a[1] == b[1] for a, b in zip(theirs, ours))
    chemistry, items = theirs[0]
    env = symbolic_alchemy.get_symbolic_alchemy_fixed(items, chemistry, end_trial_action=True)
    events = data.load_agent_events(SHARED / "agent_events" / "ideal_observer")
    assert _replay(env, events[0]) == IDEAL_OBSERVER_EPISODE_0


def test_replaying_the_ideal_observer_on_evaluation_episode_0_section_7_2():
    chemistry, items = chemistries_proto_conversion.load_chemistries_and_items()[0]
    events = data.load_agent_events("ideal_observer")[0]
    fixed = symbolic_alchemy.get_symbolic_alchemy_fixed(items, chemistry, end_trial_action=True)
    assert _replay(fixed, events) == IDEAL_OBSERVER_EPISODE_0
    assert _replay(fixed, events) == IDEAL_OBSERVER_EPISODE_0  # every reset plays the same episode
    by_name = symbolic_alchemy.get_symbolic_alchemy_level(f"{EVALUATION_PREFIX}/0", end_trial_action=True)
    assert _replay(by_name, events) == IDEAL_OBSERVER_EPISODE_0


def test_the_evaluation_level_plays_the_episodes_in_turn():
    events = data.load_agent_events("search_oracle")
    env = symbolic_alchemy.get_symbolic_alchemy_level("alchemy/evaluation_episodes", end_trial_action=True)
    chems = chemistries_proto_conversion.load_chemistries_and_items()
    for i in range(5):
        scores = _replay(env, events[i])
        fixed = symbolic_alchemy.get_symbolic_alchemy_fixed(chems[i][1], chems[i][0], end_trial_action=True)
        assert _replay(fixed, events[i]) == scores
        assert env.chemistry == chems[i][0]


def test_replaying_every_agent_over_the_1000_episodes_gives_the_reference_means_section_4_5():
    from tests.test_data_and_replay import REFERENCE_MEANS

    chems = chemistries_proto_conversion.load_chemistries_and_items()
    envs = [symbolic_alchemy.get_symbolic_alchemy_fixed(i, c, end_trial_action=True) for c, i in chems]
    for agent, mean in REFERENCE_MEANS.items():
        events = data.load_agent_events(agent)
        total = sum(sum(_replay(env, events[i])) for i, env in enumerate(envs))
        assert total / 1000 == pytest.approx(mean, abs=0.01), agent


def test_generate_events_gives_the_episodes_events_and_items():
    chemistry, items = chemistries_proto_conversion.load_chemistries_and_items()[0]
    env = symbolic_alchemy.get_symbolic_alchemy_fixed(items, chemistry, end_trial_action=True, generate_events=True)
    events = data.load_agent_events("ideal_observer")[0]
    assert env.events() == {"chemistry": None}  # dm_alchemy: a fresh env counts as finished
    env.reset()
    assert env.events() == {}
    _replay(env, events)
    got = env.events()
    assert got["chemistry"] == chemistry and got["items_generated"] == items
    np.testing.assert_array_equal(got["matrix_event"]["event_tracker"], events)
    quiet = symbolic_alchemy.get_symbolic_alchemy_fixed(items, chemistry, end_trial_action=True)
    _replay(quiet, events)
    assert set(quiet.events()) == {"chemistry"}


# ------------------------------------------------------------------------------------- dm_env clients


def test_a_plain_dm_env_client_loop():
    """What acme's EnvironmentLoop does, with every timestep validated against the specs."""
    rng = np.random.RandomState(0)
    see = {"gt": utils.ChemistrySeen(content=GT)}
    with symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=2, see_chemistries=see) as env:
        assert isinstance(env, dm_env.Environment)
        spec = env.action_spec()
        returns = []
        for _ in range(3):
            timestep = env.reset()
            validate(env, timestep)
            episode_return, steps = 0.0, 0
            while not timestep.last():
                action = np.asarray(rng.randint(spec.minimum, spec.maximum + 1), dtype=spec.dtype)
                spec.validate(action)
                timestep = env.step(action)
                validate(env, timestep)
                episode_return += timestep.reward
                steps += 1
            assert steps == 200
            returns.append(episode_return)
    assert len(set(returns)) > 1  # three different episodes


def _mixin_case(name, make, num_trials):
    def make_action_sequence(self):
        end = self.environment.gym_env.game.end_trial_action
        rng = np.random.RandomState(0)
        for _ in range(num_trials):  # dm_alchemy's sequence: 10 random slot actions, then end the trial
            for _ in range(10):
                yield encode_action(int(rng.randint(3)), int(rng.randint(-1, 12)), end)
            yield from [encode_action(-2, -2, True)] if end else [encode_action(-1, -1, False)] * 10
        yield 0  # after LAST: a FIRST

    return type(
        name,
        (test_utils.EnvironmentTestMixin, unittest.TestCase),
        {"make_object_under_test": lambda self: make(), "make_action_sequence": make_action_sequence},
    )


for _observe_used, _end in FLAGS:
    _suffix = f"{'Used' if _observe_used else 'NotUsed'}{'EndTrial' if _end else ''}"
    _kw = dict(observe_used=_observe_used, end_trial_action=_end)
    globals()[f"TestDmEnvConformanceFixed{_suffix}"] = _mixin_case(
        f"TestDmEnvConformanceFixed{_suffix}", lambda kw=_kw: fixed_env(max_steps_per_trial=20, **kw), 2
    )
    globals()[f"TestDmEnvConformanceRandom{_suffix}"] = _mixin_case(
        f"TestDmEnvConformanceRandom{_suffix}",
        lambda kw=_kw: symbolic_alchemy.get_symbolic_alchemy_level(
            "perceptual_mapping_randomized_with_random_bottleneck", seed=0, num_trials=2, **kw
        ),
        2,
    )


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("level_name", "error", "match"),
    [
        ("alchemy/perceptual_maping_randomized", ValueError, "known levels are"),
        ("alchemy/", ValueError, "known levels are"),
        ("", ValueError, "known levels are"),
        ("alchemy/evaluation_episodes/1000", ValueError, r"allowed alchemy/evaluation_episodes/0 \.\. .*/999"),
        ("alchemy/evaluation_episodes/x", ValueError, "allowed alchemy/evaluation_episodes/0"),
        (None, TypeError, "level_name must be a str"),
        (3, TypeError, "level_name must be a str"),
    ],
)
def test_bad_level_names_say_what_is_allowed(level_name, error, match):
    with pytest.raises(error, match=match):
        symbolic_alchemy.get_symbolic_alchemy_level(level_name)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "7", True, [1, 2]])
def test_bad_seeds_say_what_is_allowed(seed):
    with pytest.raises(ValueError, match=r"seed must be an int in 0\.\.2\*\*32-1"):
        symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=seed)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_trials=0), ValueError, r"num_trials=0 out of range: allowed"),
        (dict(num_stones_per_trial=4), ValueError, r"num_stones_per_trial=4 out of range: allowed 0\.\.3"),
        (dict(num_potions_per_trial=-1), ValueError, r"allowed 0\.\.12"),
        (dict(max_steps_per_trial=0), ValueError, "max_steps_per_trial=0 out of range"),
        (dict(observe_used="yes"), TypeError, "observe_used must be a bool"),
        (dict(end_trial_action=1), TypeError, "end_trial_action must be a bool"),
        (dict(reward_weights=(1, 2)), TypeError, r"reward_weights must be \(coefficients, offset, bonus\)"),
        (dict(generate_events="yes"), TypeError, "generate_events must be a bool"),
        (dict(see_chemistries=["gt"]), TypeError, r"see_chemistries must be a dict \{name: ChemistrySeen\}"),
        (dict(see_chemistries={"gt": "nonsense"}), TypeError, r"must be a ChemistrySeen"),
        (dict(see_chemistries={"symbolic_obs": utils.ChemistrySeen()}), ValueError, "other than 'symbolic_obs'"),
    ],
)
def test_bad_settings_say_what_is_allowed(kwargs, error, match):
    with pytest.raises(error, match=match):
        symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, **kwargs)


def test_bad_chemistry_seen_says_what_is_allowed():
    with pytest.raises(ValueError, match="3 values"):
        utils.GroupInChemistry({utils.ElementType.GRAPH: {0}}, [1.0, 0.0])
    with pytest.raises(ValueError, match="summing to 1"):
        utils.GroupInChemistry({utils.ElementType.GRAPH: {0}}, [0.5, 0.0, 0.2])
    with pytest.raises(ValueError, match=r"dimensions must be in 0\.\.3"):
        utils.GroupInChemistry({utils.ElementType.ROTATION: {4}}, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="must be one of ElementType.GRAPH"):
        utils.GroupInChemistry({"graph": {0}}, [1.0, 0.0, 0.0])
    group = utils.GroupInChemistry({utils.ElementType.GRAPH: {0}}, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="not both"):
        utils.ChemistrySeen(groups=[group], content=GT)
    with pytest.raises(ValueError, match="must be one of ElementContent.GROUND_TRUTH"):
        utils.ChemistrySeen(content="ground truth")
    with pytest.raises(TypeError, match="precomputed must be a level name"):
        utils.ChemistrySeen(content=BELIEF, precomputed=object())
    with pytest.raises(ValueError, match="precomputed: unknown Alchemy level 'nonsense': known levels are"):
        utils.ChemistrySeen(content=BELIEF, precomputed="nonsense")
    with pytest.raises(ValueError, match=r"allowed alchemy/evaluation_episodes/0 \.\."):
        utils.ChemistrySeen(content=BELIEF, precomputed="alchemy/evaluation_episodes/1000")
    with pytest.raises(TypeError, match="graph must be a GraphElement"):
        utils.ChemistrySeen(graph=utils.StoneMapElement())
    with pytest.raises(ValueError, match="at least one of graph"):
        utils.ChemistrySeen(**absent_elements())


@pytest.mark.parametrize("end_trial_action", [False, True])
def test_bad_actions_say_what_is_allowed(end_trial_action):
    env = symbolic_alchemy.get_symbolic_alchemy_level(STANDARD, seed=0, end_trial_action=end_trial_action)
    top = 40 if end_trial_action else 39
    env.reset()
    for action in [-1, top + 1, 1000, np.int64(-5)]:
        with pytest.raises(ValueError, match=rf"out of range: action_spec\(\) allows 0\.\.{top}"):
            env.step(action)
    for action in [1.0, "3", None, True, np.float32(2)]:
        with pytest.raises(TypeError, match=rf"action must be an integer in 0\.\.{top}"):
            env.step(action)
    with pytest.raises(ValueError, match="must be one integer"):
        env.step(np.array([1, 2]))
    # nothing was stepped: the next valid action is the episode's first step
    assert env.step(np.asarray(top)).mid() and env.step(np.int32(0)).mid()


def test_bad_fixed_episodes_say_what_is_allowed():
    chemistry, items = chemistries_proto_conversion.load_chemistries_and_items()[0]
    with pytest.raises(TypeError, match="chemistry must be a Chemistry"):
        symbolic_alchemy.get_symbolic_alchemy_fixed(items, "chemistry")
    with pytest.raises(TypeError, match="episode_items must be an EpisodeItems"):
        symbolic_alchemy.get_symbolic_alchemy_fixed(None, chemistry)
    with pytest.raises(TypeError, match="episode_items must be an EpisodeItems"):
        symbolic_alchemy.get_symbolic_alchemy_fixed([], chemistry)
    with pytest.raises(TypeError, match=r"latent stone indices must be 0\.\.7"):
        symbolic_alchemy.get_symbolic_alchemy_fixed([((9,), (0,))], chemistry)
    with pytest.raises(ValueError, match="trial 0: a trial holds at most 3 stones"):
        utils.EpisodeItems(potions=[[0]], stones=[[0, 1, 2, 3]])
    with pytest.raises(ValueError, match="same trials"):
        utils.EpisodeItems(potions=[[0], [1]], stones=[[0]])
    with pytest.raises(ValueError, match="num_stones_per_trial and num_potions_per_trial cannot change"):
        symbolic_alchemy.get_symbolic_alchemy_level("alchemy/evaluation_episodes/3", num_stones_per_trial=2)
    with pytest.raises(FileNotFoundError, match="no such file"):
        chemistries_proto_conversion.load_chemistries_and_items("/nonexistent/chemistries")
    with pytest.raises(TypeError, match="filename must be a path"):
        chemistries_proto_conversion.load_chemistries_and_items(3)


def test_without_dm_env_the_import_error_says_how_to_get_it():
    code = (
        "import sys; sys.modules['dm_env'] = None\n"
        "from alchemy_gym.compat.types import utils\n"
        "from alchemy_gym.compat.encode import chemistries_proto_conversion\n"
        "utils.ChemistrySeen(content=utils.ElementContent.GROUND_TRUTH)\n"
        "try:\n"
        "    from alchemy_gym.compat import symbolic_alchemy\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs the dm-env package: pip install 'alchemy-gym[dm_env]'" in out
