"""The symbolic view of the 3D env: a symbolic game kept in step from the world events (interface spec §7)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import gymnasium as gym  # noqa: E402

import alchemy_gym  # noqa: E402, F401
from alchemy_gym.core.chemistry import ChemistrySampler, LevelRules  # noqa: E402
from alchemy_gym.core.game import AlchemyGame  # noqa: E402
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.events import WorldEvent, decode_event  # noqa: E402
from alchemy_gym.server.events import EventRecorder  # noqa: E402
from alchemy_gym.server.service import EVENT_NAMES, make_server  # noqa: E402
from alchemy_gym.wrappers.symbolic_view import (  # noqa: E402
    EventFollower,
    SymbolicView,
    SymbolicViewError,
    SymbolicViewVector,
    chemistry_from_event,
)
from tests.conftest import needs_gymnasium_1  # noqa: E402

SEE = {"truth": "ground_truth", "belief": "belief_state"}
LEVELS = {
    "Alchemy/Standard-v0": "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck",
    "Alchemy/NoRotation-v0": "alchemy/perceptual_mapping_randomized_with_random_bottleneck",
    "Alchemy/AllFixed-v0": "alchemy/all_fixed",
}


@pytest.fixture(scope="module")
def address():
    server, port = make_server("127.0.0.1", 0, max_connections=16)
    yield f"127.0.0.1:{port}"
    server.stop(grace=0.5).wait(5)


@pytest.mark.parametrize("env_id", list(LEVELS))
def test_the_view_equals_the_servers_symbolic_obs_and_the_in_process_chemistry_observations(address, env_id):
    env = SymbolicView(
        gym.make(env_id, address=address, observations=["symbolic_obs", "Score"]), see_chemistries=SEE, key="view"
    )
    assert env.observation_space["view"].shape == (39,) and env.observation_space["belief"].shape == (28,)
    obs, info = env.reset(seed=11)
    reference = SymbolicAlchemyEnv(LEVELS[env_id], see_chemistries=SEE)
    expected, _ = reference.reset(seed=info["world_seed"])
    actions = np.random.default_rng(len(env_id))
    episodes = 0
    for t in range(1300):
        for name in ("truth", "belief"):
            np.testing.assert_array_equal(obs[name], expected[name], err_msg=f"{name} at step {t}")
        np.testing.assert_array_equal(obs["view"], obs["symbolic_obs"], err_msg=f"step {t}")
        np.testing.assert_array_equal(obs["view"], expected["symbolic_obs"])
        action = int(actions.integers(0, 40))
        obs, reward, terminated, _, _ = env.step(action)
        expected, expected_reward, expected_terminated, _, _ = reference.step(action)
        assert terminated == expected_terminated
        if terminated:
            episodes += 1
            obs, _ = env.reset()
            expected, _ = reference.reset()
    assert episodes == 6 and env.skipped_events == 0
    env.close()


@needs_gymnasium_1
def test_the_vector_view_follows_every_sub_env(address):
    n = 3
    envs = SymbolicViewVector(
        gym.make_vec(
            "Alchemy/Standard-v0",
            num_envs=n,
            vectorization_mode="vector_entry_point",
            address=address,
            observations=["symbolic_obs", "Score"],
        ),
        see_chemistries={"truth": "ground_truth"},
        key="view",
    )
    assert envs.observation_space["view"].shape == (n, 39)
    obs, _ = envs.reset(seed=4)
    actions = np.random.default_rng(0)
    ends = 0
    for _ in range(450):
        np.testing.assert_array_equal(obs["view"], obs["symbolic_obs"])
        obs, _, terminated, _, _ = envs.step(actions.integers(0, 40, size=n))
        ends += int(terminated.sum())
    assert ends >= n  # through the vector env's autoresets
    envs.close()


def _recorded_episode(level: str, seed: int, actions) -> tuple[AlchemyGame, list[list[WorldEvent]]]:
    """A game played in-process and the world events our server would send for it, step by step."""
    rs = np.random.RandomState(seed)
    game = AlchemyGame()
    recorder = EventRecorder(game, frozenset(EVENT_NAMES), game.config.reward_weights, seed)
    game.start_episode(ChemistrySampler(LevelRules.from_level_name(level)).sample(rs), rs)
    steps = [[decode_event(e) for e in recorder.take()]]
    for action in actions:
        if game.episode_over:
            break
        game.step(int(action))
        steps.append([decode_event(e) for e in recorder.take()])
    return game, steps


def test_the_mock_unity_event_order_is_followed():
    """Per trial: ChemistryCreated (first trial) or TrialEnded, CauldronCreated, the potions, the stones,
    TrialStarted; uses arrive on later steps (interface spec §7)."""
    level = LEVELS["Alchemy/Standard-v0"]
    game, steps = _recorded_episode(level, 5, np.random.default_rng(1).integers(0, 40, size=200))
    order = {"ChemistryCreated": 0, "TrialEnded": 0, "CauldronCreated": 1, "PotionCreated": 2, "StoneCreated": 3}
    follower = EventFollower(LevelRules.from_level_name(level))
    for events in steps:
        starts = [e for e in events if e.name.endswith(("Created", "TrialEnded", "TrialStarted"))]
        uses = [e for e in events if e not in starts]
        starts.sort(key=lambda e: order.get(e.name.rsplit("/", 1)[-1], 4))  # stable: creation order kept
        follower.follow(uses + starts)
    np.testing.assert_array_equal(follower.game.obs, game.obs)
    assert follower.game.trial_rewards == game.trial_rewards
    np.testing.assert_array_equal(follower.game.matrix_events, game.matrix_events)


PERMUTATION = [2, 0, 1]


def relabel(index: int) -> int:
    """A latent stone index with latent axis j relabelled PERMUTATION[j]."""
    bits = [(index >> j) & 1 for j in range(3)]
    return sum(bits[j] << PERMUTATION[j] for j in range(3))


def test_a_chemistry_with_permuted_latent_labels_is_relabelled():
    level = LEVELS["Alchemy/Standard-v0"]
    for seed in range(20):
        game, steps = _recorded_episode(level, seed, [])
        detail = next(e.detail for e in steps[0] if e.name.endswith("ChemistryCreated"))
        chemistry, weights = chemistry_from_event(detail)
        assert chemistry == game.chemistry and weights == game.config.reward_weights
        perm = PERMUTATION  # latent axis j is labelled perm[j]

        permuted = {**detail, "chemistry": {"stones": [], "potions": []}}
        for stone in detail["chemistry"]["stones"]:
            index = relabel(stone["latent"]["index"])
            coords = [1 if index >> k & 1 else -1 for k in range(3)]
            permuted["chemistry"]["stones"].append({**stone, "latent": {"index": index, "coordinates": coords}})
        for potion in detail["chemistry"]["potions"]:
            label = potion["label"]
            reactions = [
                {"from_stone_index": relabel(r["from_stone_index"]), "to_stone_index": relabel(r["to_stone_index"])}
                for r in potion["reactions"]
            ]
            permuted["chemistry"]["potions"].append(
                {
                    **potion,
                    "label": {**label, "dimension_index": perm[label["dimension_index"]]},
                    "reactions": reactions,
                }
            )
        assert chemistry_from_event(permuted)[0] == game.chemistry


def test_events_out_of_order_or_unknown_raise_at_once():
    level = LEVELS["Alchemy/NoRotation-v0"]
    game, steps = _recorded_episode(level, 2, [2] * 5)
    start, uses = steps[0], [e for step in steps[1:] for e in step if e.name.endswith("PotionUsed")]
    assert uses
    rules = LevelRules.from_level_name(level)
    with pytest.raises(SymbolicViewError, match="before any ChemistryCreated"):
        EventFollower(rules).follow([e for e in start if e.name.endswith("StoneCreated")])
    with pytest.raises(SymbolicViewError, match="outside a trial"):
        EventFollower(rules).follow([start[0], uses[0]])
    follower = EventFollower(rules)
    follower.follow(start)
    wrong = WorldEvent(uses[0].name, detail={**uses[0].detail, "stone_instance_id": 999999})
    with pytest.raises(SymbolicViewError, match="stone instance 999999 was not created in this trial"):
        follower.follow([wrong])
    follower = EventFollower(rules)
    follower.follow(start)
    old = uses[0].detail["stone_properties_old"]
    lie = WorldEvent(
        uses[0].name,
        detail={**uses[0].detail, "stone_properties_new": {**old, "size": 1.8 if old["size"] != 1.8 else 1.0}},
    )
    with pytest.raises(SymbolicViewError, match="PotionUsed: the symbolic stone became latent"):
        follower.follow([lie])
    follower = EventFollower(rules)
    follower.follow(start + [WorldEvent("DeepMind/Alchemy/SomethingNew", detail={})])
    assert follower.skipped_events == 1
    with pytest.raises(SymbolicViewError, match=r"TrialStarted\(5\) while the symbolic game is in trial 0"):
        follower.follow([WorldEvent("DeepMind/Trial/TrialStarted", detail={"trial_id": 5})])


def test_an_env_without_events_or_dict_observations_is_refused(address):
    silent = gym.make("Alchemy/Standard-v0", address=address, event_regex=None)
    with pytest.raises(SymbolicViewError, match="made with event_regex=None.*event_regex='DeepMind/.\\*'"):
        SymbolicView(silent, key="view")
    silent.close()
    # events of another task: none of Alchemy's arrive, so no chemistry within a few steps of the reset
    other = SymbolicView(gym.make("Alchemy/Standard-v0", address=address, event_regex="NotAlchemy/.*"), key="view")
    other.reset(seed=1)
    with pytest.raises(SymbolicViewError, match="no ChemistryCreated event within 10 steps of the reset"):
        for _ in range(11):
            other.step(0)
    other.close()
    served = gym.make("Alchemy/Standard-v0", address=address, observations=["symbolic_obs", "Score"])
    with pytest.raises(ValueError, match=r"already observes \['symbolic_obs'\]"):
        SymbolicView(served)
    served.close()
    with pytest.raises(ValueError, match="Dict observations"):
        SymbolicView(gym.make("Alchemy/SymbolicStandard-v0"), level_name=LEVELS["Alchemy/Standard-v0"])
