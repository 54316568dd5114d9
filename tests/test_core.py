"""The pure game core: items, graphs, chemistry sampling (spec §1, §2, §4.7)."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import alchemy_gym.core
from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import ChemistrySampler, LevelRules
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.core.items import (
    INDEX_TO_PERM_INDEX,
    PERCEIVED_STONE,
    ROTATION_ANGLES,
    STONE_COORDS,
    align_coords,
    coords_to_index,
    potion_map_index,
    potion_map_parts,
    stone_map_pos_dir,
    stone_values,
)
from tests.conftest import NO_ROTATION, STANDARD


def test_latent_stone_index_and_values_follow_section_1_1():
    assert coords_to_index([1, -1, -1]) == 1
    assert coords_to_index([-1, 1, 1]) == 6
    assert STONE_COORDS[5].tolist() == [1, -1, 1]
    assert stone_values() == (-3.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 15.0)
    assert stone_values(((1, 1, 1), 0, 0))[7] == 3.0


def test_cube_edges_are_in_combinations_order_section_1_4():
    assert graphs.CUBE_EDGES == (
        (0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7),
    )  # fmt: skip
    assert graphs.EDGE_AXIS == (0, 1, 2, 1, 2, 0, 2, 2, 0, 1, 1, 0)


@pytest.mark.parametrize(
    ("constraints", "edges"),
    [
        (graphs.no_bottleneck_constraints(), set(range(12))),
        (graphs.bottleneck1_constraints(), set(range(12)) - {0, 5, 11}),
        (graphs.bottleneck2_constraints(), set(range(12)) - {5, 11}),
        (graphs.bottleneck3_constraints(), {1, 2, 3, 4, 8, 9, 10}),
    ],
)
def test_named_constraints_keep_the_edges_of_section_1_5(constraints, edges):
    mask = graphs.constraint_to_graph(constraints[0])
    assert {e for e in range(12) if mask >> e & 1} == edges


def test_109_valid_constraints_in_enumeration_order_section_1_5():
    constraints = graphs.possible_constraints()
    assert len(constraints) == 109
    assert constraints[0] == [["X", "-1", "-1"], ["*", "X", "-1"], ["*", "*", "X"]]
    assert constraints[1] == [["X", "-1", "-1"], ["*", "X", "1"], ["*", "*", "X"]]
    assert constraints[-1] == graphs.no_bottleneck_constraints()[0]
    masks = [graphs.constraint_to_graph(c) for c in constraints]
    assert len(set(masks)) == 109
    by_count = Counter(graphs.num_constraints(c) for c in constraints)
    assert by_count == {0: 1, 1: 12, 2: 48, 3: 48}
    edges_with_two = Counter(bin(m).count("1") for c, m in zip(constraints, masks) if graphs.num_constraints(c) == 2)
    assert edges_with_two == {8: 36, 9: 12}
    assert all(bin(m).count("1") == 7 for c, m in zip(constraints, masks) if graphs.num_constraints(c) == 3)
    # round trip graph -> constraint -> graph is the identity (§9.3 graphs_test)
    assert all(graphs.graph_to_constraint(m) == c for c, m in zip(constraints, masks))


def test_graph_prior_gives_each_constraint_count_a_quarter_section_1_6():
    prior = graphs.graph_prior(graphs.possible_constraints())
    assert prior.dtype == np.float32
    assert prior[-1] == np.float32(0.25)
    assert np.float32(1 / 48) in prior and np.float32(1 / 192) in prior
    assert float(prior[0]) == pytest.approx(0.0052083335)
    assert graphs.graph_prior(graphs.bottleneck1_constraints()).tolist() == [1.0]


def test_graph_draw_matches_randomstate_choice_with_float32_prior_section_1_6():
    sampler = ChemistrySampler(LevelRules.from_level_name(NO_ROTATION))
    prior = graphs.graph_prior(graphs.possible_constraints())
    masks = sampler.graphs
    for seed in range(200):
        expected = np.random.RandomState(seed)
        got = np.random.RandomState(seed)
        expected.randint(0, 48), expected.randint(0, 8)
        want = masks[expected.choice(109, p=prior)]
        assert sampler.sample(got).graph == want


def test_invalid_constraints_are_rejected_with_the_allowed_form():
    with pytest.raises(ValueError, match="'X' on the"):
        graphs.constraint_to_graph([["X", "2", "*"], ["*", "X", "*"], ["*", "*", "X"]])


def test_potion_map_index_and_permutation_tables_section_2_2():
    assert INDEX_TO_PERM_INDEX == (5, 7, 11, 15, 19, 21)
    assert potion_map_parts(7) == ((0, 1, 2), (1, 1, 1))
    assert potion_map_parts(20) == ((1, 0, 2), (-1, -1, 1))
    assert all(potion_map_index(*potion_map_parts(i)) == i for i in range(48))


def test_rotations_give_8_distinct_perceived_stones_in_minus1_0_1_section_2_3():
    assert ROTATION_ANGLES[1] == (0.0, 0.0, -45.0)
    for sm in range(8):
        for rot in range(4):
            stones = {tuple(p) for p in PERCEIVED_STONE[sm, rot].tolist()}
            assert len(stones) == 8
            assert all(v in (-1, 0, 1) for s in stones for v in s)
            if rot:
                assert all(s.count(0) == 1 for s in stones)
            for latent in range(8):
                aligned = align_coords(PERCEIVED_STONE[sm, rot, latent], rot)
                assert np.array_equal(np.array(aligned) * np.array(stone_map_pos_dir(sm)), STONE_COORDS[latent])
    # rotation 1: p0 = (a0 - a1) / 2, p1 = (a0 + a1) / 2
    assert PERCEIVED_STONE[7, 1, coords_to_index([1, -1, 1])].tolist() == [1, 0, 1]


def test_transition_moves_along_present_edges_only_section_1_7():
    full = graphs.transition_table(graphs.FULL_GRAPH)
    # stone (-1,-1,-1) with potion (0,+1) -> (1,-1,-1); with (0,-1) unchanged
    assert full[0 * 6 + 1] == 1 and full[0 * 6 + 0] == 0
    b1 = graphs.transition_table(graphs.constraint_to_graph(graphs.bottleneck1_constraints()[0]))
    assert b1[0 * 6 + 1] == 0  # edge (0,1) missing in bottleneck1
    assert b1[4 * 6 + 1] == 5  # the only x-edge, (4,5)


# §4.7 reference table: (level, seed) -> potion map, stone map, constraint, rotation, trial-0 stones.
SEED_TABLE = [
    (
        STANDARD,
        314,
        ((0, 2, 1), (-1, -1, -1)),
        (1, -1, 1),
        [["X", "*", "*"], ["*", "X", "-1"], ["1", "*", "X"]],
        (0, -45, 0),
        [[-1, 1, -1], [-1, 1, 1], [-1, -1, -1]],
    ),
    (
        STANDARD,
        22,
        ((0, 1, 2), (-1, -1, 1)),
        (-1, -1, 1),
        [["X", "*", "*"], ["*", "X", "*"], ["*", "1", "X"]],
        (0, -45, 0),
        [[-1, 1, 1], [1, 1, -1], [-1, -1, 1]],
    ),
    (
        STANDARD,
        789,
        ((0, 2, 1), (-1, 1, 1)),
        (-1, 1, 1),
        [["X", "-1", "-1"], ["*", "X", "*"], ["*", "*", "X"]],
        (0, 0, 0),
        None,
    ),
    (
        NO_ROTATION.replace("alchemy/", ""),
        0,
        ((2, 1, 0), (-1, -1, 1)),
        (1, 1, 1),
        [["X", "*", "*"], ["*", "X", "*"], ["*", "-1", "X"]],
        (0, 0, 0),
        [[1, 1, -1]] * 3,
    ),
    (
        "alchemy/all_fixed",
        0,
        ((0, 1, 2), (1, 1, 1)),
        (1, 1, 1),
        graphs.no_bottleneck_constraints()[0],
        (0, 0, 0),
        [[1, -1, 1], [-1, -1, -1], [1, 1, -1]],
    ),
]


@pytest.mark.parametrize(("level", "seed", "potion_map", "stone_map", "constraint", "rotation", "stones"), SEED_TABLE)
def test_seeded_first_episode_matches_section_4_7(level, seed, potion_map, stone_map, constraint, rotation, stones):
    rs = np.random.RandomState(seed)
    chemistry = ChemistrySampler(LevelRules.from_level_name(level)).sample(rs)
    assert (chemistry.dim_map, chemistry.dir_map) == potion_map
    assert chemistry.pos_dir == stone_map
    assert chemistry.constraint == constraint
    assert chemistry.rotation_angles == tuple(float(a) for a in rotation)
    game = AlchemyGame()
    game.start_episode(chemistry, rs)
    if stones is not None:
        assert [STONE_COORDS[s].tolist() for s in game.items_history[0].stones] == stones


def _potions(game):
    from alchemy_gym.core.items import POTION_DIM_DIR

    return [POTION_DIM_DIR[p] for p in game.items_history[0].potions]


def test_seed_22_and_all_fixed_seed_0_trial_0_potions_section_4_7():
    rs = np.random.RandomState(22)
    game = AlchemyGame()
    game.start_episode(ChemistrySampler(LevelRules.from_level_name(STANDARD)).sample(rs), rs)
    assert _potions(game) == [
        (0, -1), (2, -1), (2, 1), (1, -1), (2, -1), (2, 1), (0, -1), (1, -1), (2, 1), (1, -1), (0, 1), (0, -1),
    ]  # fmt: skip
    rs = np.random.RandomState(0)
    game.start_episode(ChemistrySampler(LevelRules.from_level_name("alchemy/all_fixed")).sample(rs), rs)
    assert _potions(game) == [
        (1, 1), (1, 1), (0, 1), (1, 1), (2, 1), (1, -1), (2, -1), (0, -1), (0, -1), (2, -1), (1, -1), (0, 1),
    ]  # fmt: skip


def test_random_bottleneck_gives_each_constraint_class_about_a_quarter_section_9_4():
    sampler = ChemistrySampler(LevelRules.from_level_name(NO_ROTATION))
    rs = np.random.RandomState(1234)
    counts = Counter(graphs.num_constraints(sampler.sample(rs).constraint) for _ in range(8000))
    for k in range(4):
        assert counts[k] / 8000 == pytest.approx(0.25, abs=0.02)


def test_level_name_substring_rules_section_5_1():
    rules = LevelRules.from_level_name("alchemy/all_fixed_bottleneck2")
    assert not rules.randomize_maps and not rules.rotation
    assert rules.graph_masks == (graphs.constraint_to_graph(graphs.bottleneck2_constraints()[0]),)
    rules = LevelRules.from_level_name(STANDARD)
    assert rules.randomize_maps and rules.rotation and len(rules.graph_masks) == 109
    assert LevelRules.from_level_name("alchemy/evaluation_episodes/3").graph_masks == (graphs.FULL_GRAPH,)


def test_core_imports_only_numpy_stdlib_and_itself():
    """The layering rule: the game core knows nothing of Gymnasium, protobuf, gRPC or I/O."""
    core = Path(alchemy_gym.core.__file__).parent
    allowed = {"numpy", "alchemy_gym", "__future__"} | set(sys.stdlib_module_names)
    forbidden_stdlib = {"os", "io", "pathlib", "socket", "subprocess", "lzma", "importlib"}
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed and top not in forbidden_stdlib, f"{path.name} imports {name}"
                if top == "alchemy_gym":
                    assert name.startswith("alchemy_gym.core"), f"{path.name} imports {name} (upward)"
