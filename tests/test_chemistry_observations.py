"""Chemistry observations: ground truth, belief state, groups (spec §4.9, §9.1 test_see_chemistry)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from alchemy_gym.core.belief import ChemistrySeen, ContentGroup
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.game import TrialItems, encode_action
from alchemy_gym.core.graphs import FULL_GRAPH
from alchemy_gym.core.items import coords_to_index, potion_index
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
from tests.conftest import BOTTLENECK1, NO_ROTATION, STANDARD, fixed_chemistry, fixture_items

GT, BELIEF, UNKNOWN = "ground_truth", "belief_state", "unknown"


def chem_env(seen: ChemistrySeen, graph=FULL_GRAPH, rotation=0, items=None) -> SymbolicAlchemyEnv:
    items = items or fixture_items()
    return SymbolicAlchemyEnv(
        "alchemy/all_fixed",
        episodes=[(fixed_chemistry(graph, rotation), [items, items])],
        see_chemistries={"test_chem": seen},
    )


def observe(seen, **kwargs) -> list[float]:
    obs, _ = chem_env(seen, **kwargs).reset()
    return obs["test_chem"].tolist()


def test_ground_truth_graph_section_9_1():
    assert observe(ChemistrySeen(GT, elements=["graph"])) == [1.0] * 12
    assert observe(ChemistrySeen(GT, elements=["graph"]), graph=BOTTLENECK1) == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0]


def test_ground_truth_maps_and_everything_section_9_1():
    assert observe(ChemistrySeen(GT, elements=["potion_map"])) == [1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert observe(ChemistrySeen(GT, elements=["stone_map"])) == [1, 1, 1]
    assert observe(ChemistrySeen(GT)) == [1] * 12 + [1, 0, 0, 0, 0, 0] + [1, 1, 1] + [1, 1, 1] + [1, 0, 0, 0]


@pytest.mark.parametrize("rotation", [0, 1, 2, 3])
def test_ground_truth_rotation_is_one_hot_section_9_1(rotation):
    items = TrialItems((coords_to_index([1, 1, 1]),), ())
    assert observe(ChemistrySeen(GT, elements=["rotation"]), rotation=rotation, items=items) == [
        1.0 if i == rotation else 0.0 for i in range(4)
    ]


@pytest.mark.parametrize("graph", [FULL_GRAPH, BOTTLENECK1])
def test_belief_before_anything_is_learnt_section_9_1(graph):
    prior = NO_ROTATION
    assert observe(ChemistrySeen(BELIEF, elements=["graph"], prior_level=prior), graph=graph) == [0.5] * 12
    assert observe(ChemistrySeen(BELIEF, elements=["potion_map"], prior_level=prior)) == [0.5] * 9
    # the stone (1,1,1) is present, so the stone map is known
    assert observe(ChemistrySeen(BELIEF, elements=["stone_map"], prior_level=prior)) == [1, 1, 1]
    seen = ChemistrySeen(BELIEF, elements=["graph", "potion_map", "stone_map"], prior_level=prior)
    assert observe(seen) == [0.5] * 21 + [1, 1, 1]


def test_belief_after_stone_into_potion_section_9_1():
    seen = ChemistrySeen(BELIEF, elements=["graph", "potion_map", "stone_map"], prior_level=NO_ROTATION)
    env = chem_env(seen)
    env.reset()
    obs, *_ = env.step(encode_action(0, 0, False))
    graph = [0.5] * 12
    graph[9] = 1.0
    assert obs["test_chem"].tolist() == graph + [0.5, 0, 0, 0, 0, 0.5] + [0.5, 1, 0.5] + [1, 1, 1]


def test_belief_with_content_groups_section_9_1():
    seen = ChemistrySeen(
        elements=["graph"],
        groups=[
            ContentGroup({"graph": {0, 1, 2, 3}}, (1, 0, 0)),
            ContentGroup({"graph": {4, 5, 6}}, (0, 0, 1)),
            ContentGroup({"graph": set(range(7, 12))}, (0, 1, 0)),
        ],
        prior_level=NO_ROTATION,
    )
    env = chem_env(seen, graph=BOTTLENECK1)
    env.reset()
    obs, *_ = env.step(encode_action(0, 0, False))
    assert obs["test_chem"].tolist() == [0, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 0.5, 0.5]


def test_rotation_belief_resolves_from_stones_section_9_1():
    seen = ChemistrySeen(BELIEF, elements=["stone_map", "rotation"], prior_level=STANDARD)
    two = TrialItems((coords_to_index([1, 1, 1]), coords_to_index([1, 1, -1])), ())
    assert observe(seen, rotation=3, items=two) == [1, 1, 1, 0, 0, 0, 1]
    one = TrialItems((coords_to_index([1, 1, 1]),), (potion_index(2, -1),))
    assert observe(seen, rotation=3, items=one) == [0.5] * 7
    env = chem_env(seen, rotation=3, items=one)
    env.reset()
    obs, *_ = env.step(encode_action(0, 0, False))  # (1,1,1) -> (1,1,-1) rules out the other rotation
    assert obs["test_chem"].tolist() == [1, 1, 1, 0, 0, 0, 1]


def test_notebook_seed_22_belief_section_4_9():
    env = gym.make("Alchemy/SymbolicStandard-v0", see_chemistries={"b": BELIEF})
    obs, _ = env.reset(seed=22)
    assert obs["b"].tolist() == [0.5] * 12 + [0.5] * 6 + [0.5] * 3 + [0.5, 0, 0.5] + [0, 0, 1, 0]
    obs, *_ = env.step(3)  # stone 0 -> potion 1
    graph = [0.5] * 12
    graph[4] = 1.0
    assert obs["b"].tolist() == graph + [0.5, 0, 0.5, 0, 0, 0] + [0.5, 0.5, 1] + [0.5, 0, 1] + [0, 0, 1, 0]


def test_ground_truth_differs_from_unknown_after_reset_section_9_1():
    env = gym.make(
        STANDARD.replace(
            "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck", "Alchemy/SymbolicStandard-v0"
        ),
        see_chemistries={"gt": GT, "u": UNKNOWN},
    )
    obs, _ = env.reset(seed=4)
    assert np.all(np.abs(obs["gt"] - 0.5) > 0.01)
    assert obs["u"].tolist() == [0.5] * 28


def test_random_content_groups_use_the_env_rng():
    seen = ChemistrySeen(groups=[ContentGroup({"stone_map": {0, 1, 2}}, (0.5, 0, 0.5))], elements=["stone_map"])
    env = gym.make("Alchemy/SymbolicStandard-v0", see_chemistries={"c": seen})
    first = [env.reset(seed=1)[0]["c"].tolist()] + [env.reset()[0]["c"].tolist() for _ in range(30)]
    again = [env.reset(seed=1)[0]["c"].tolist()] + [env.reset()[0]["c"].tolist() for _ in range(30)]
    assert first == again
    assert any(v == [0.5] * 3 for v in first) and any(v != [0.5] * 3 for v in first)


def test_content_group_validation():
    with pytest.raises(ValueError, match="sum"):
        ContentGroup({"graph": {0}}, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"0\.\.11"):
        ContentGroup({"graph": {12}}, (1, 0, 0))
    with pytest.raises(ValueError, match="allowed 'graph'"):
        ChemistrySeen(elements=["colour"])


def test_chemistry_validation():
    with pytest.raises(ValueError, match="potion_map=48"):
        Chemistry(48, 0, FULL_GRAPH, 0)
