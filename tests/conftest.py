"""Shared fixtures. Reference values cite the sections of the task, ``docs/task.md``, as §n."""

from __future__ import annotations

import pytest

from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.game import TrialItems
from alchemy_gym.core.graphs import FULL_GRAPH, bottleneck1_constraints, constraint_to_graph
from alchemy_gym.core.items import coords_to_index, potion_index
from alchemy_gym.envs.gymnasium_version import VECTOR_API

#: For tests of what needs Gymnasium 1.x (the native vector envs): skipped on gymnasium 0.29.
needs_gymnasium_1 = pytest.mark.skipif(not VECTOR_API, reason="needs gymnasium>=1.0 (the native vector env)")

STANDARD = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
NO_ROTATION = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"

# §9.1 fixture: stones and (dim, dir) potions of symbolic_alchemy_test.
FIXTURE_STONES = ([-1, -1, 1], [1, 1, 1], [1, 1, -1])
FIXTURE_POTIONS = ((1, 1), (1, -1), (1, 1), (1, 1), (2, 1), (1, 1), (2, -1), (0, 1), (2, -1), (2, 1), (1, 1), (1, -1))


def fixture_items() -> TrialItems:
    return TrialItems(
        tuple(coords_to_index(s) for s in FIXTURE_STONES),
        tuple(potion_index(d, s) for d, s in FIXTURE_POTIONS),
    )


def fixed_chemistry(graph: int = FULL_GRAPH, rotation: int = 0) -> Chemistry:
    """All-fixed maps (identity), the given graph and rotation."""
    return Chemistry(potion_map=7, stone_map=7, graph=graph, rotation=rotation)


BOTTLENECK1 = constraint_to_graph(bottleneck1_constraints()[0])


@pytest.fixture
def fixture_episode():
    """Two trials with the §9.1 items, all-fixed chemistry, full cube."""
    return [(fixed_chemistry(), [fixture_items(), fixture_items()])]
