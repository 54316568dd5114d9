"""A chemistry and the seeded way a level samples one (spec §2, §4.7, §5.1)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.items import (
    NUM_POTION_MAPS,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    ROTATION_ANGLES,
    potion_map_parts,
    stone_map_pos_dir,
)

#: Potion map and stone map of the "all fixed" levels (identity maps, §2.1–2.2).
FIXED_POTION_MAP = 7
FIXED_STONE_MAP = 7


@dataclass(frozen=True)
class Chemistry:
    """The hidden structure of an episode.

    Attributes:
        potion_map: potion map index 0..47 (§2.2).
        stone_map: stone map index 0..7 (§2.1).
        graph: 12-bit mask of the cube edges present, in latent space (§1.4).
        rotation: rotation number 0..3 (§2.3).
    """

    potion_map: int
    stone_map: int
    graph: int
    rotation: int = 0

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("potion_map", self.potion_map, NUM_POTION_MAPS),
            ("stone_map", self.stone_map, NUM_STONE_MAPS),
            ("graph", self.graph, graphs.FULL_GRAPH + 1),
            ("rotation", self.rotation, NUM_ROTATIONS),
        ):
            if not 0 <= int(value) < limit:
                raise ValueError(f"Chemistry.{name}={value} out of range: allowed 0..{limit - 1}")

    @property
    def dim_map(self) -> tuple[int, int, int]:
        return potion_map_parts(self.potion_map)[0]

    @property
    def dir_map(self) -> tuple[int, int, int]:
        return potion_map_parts(self.potion_map)[1]

    @property
    def pos_dir(self) -> tuple[int, int, int]:
        return stone_map_pos_dir(self.stone_map)

    @property
    def constraint(self) -> graphs.Constraint:
        return graphs.graph_to_constraint(self.graph)

    @property
    def rotation_angles(self) -> tuple[float, float, float]:
        return ROTATION_ANGLES[self.rotation]

    def describe(self) -> str:
        """A one-line human-readable summary."""
        return (
            f"potion map dims={list(self.dim_map)} dirs={list(self.dir_map)}, stone map {list(self.pos_dir)}, "
            f"constraint {self.constraint}, rotation {self.rotation_angles}"
        )


#: The substrings of a level name that dm_alchemy reads (§5.1): ``perceptual_mapping_randomized`` (random maps),
#: ``random_bottleneck`` / ``bottleneck1`` / ``bottleneck2`` / ``bottleneck3`` (the graphs), ``rotation``;
#: ``all_fixed`` names a level that randomises none of them. Any other part of a name is ignored.
LEVEL_TOKENS = (
    "perceptual_mapping_randomized",
    "random_bottleneck",
    "bottleneck1",
    "bottleneck2",
    "bottleneck3",
    "rotation",
    "all_fixed",
)


@dataclass(frozen=True)
class LevelRules:
    """What a level randomises at each episode start (dm_alchemy's level-name substrings, §5.1): the rules a
    game's chemistries are drawn from. Any name has rules (parts dm_alchemy does not read are ignored);
    :mod:`alchemy_gym.levels` says which names are levels and which rules the evaluation level's follow.

    Attributes:
        randomize_maps: random potion map (48) and stone map (8); else the fixed ones.
        constraints: the graphs to choose from (sampled with the prior of §1.6).
        rotation: random rotation (4); else identity.
    """

    randomize_maps: bool = True
    constraints: tuple = field(default_factory=lambda: _freeze(graphs.possible_constraints()))
    rotation: bool = True

    @classmethod
    def from_level_name(cls, level_name: str) -> LevelRules:
        """dm_alchemy's substring rules: any string is accepted, only some substrings matter.

        Rules are immutable; the same name returns the same (shared) object.
        """
        return _rules_from_level_name(level_name)

    @classmethod
    def _build(cls, level_name: str) -> LevelRules:
        if "random_bottleneck" in level_name:
            constraints = graphs.possible_constraints()
        elif "bottleneck1" in level_name:
            constraints = graphs.bottleneck1_constraints()
        elif "bottleneck2" in level_name:
            constraints = graphs.bottleneck2_constraints()
        elif "bottleneck3" in level_name:
            constraints = graphs.bottleneck3_constraints()
        else:
            constraints = graphs.no_bottleneck_constraints()
        return cls(
            randomize_maps="perceptual_mapping_randomized" in level_name,
            constraints=_freeze(constraints),
            rotation="rotation" in level_name,
        )

    @property
    def potion_maps(self) -> tuple[int, ...]:
        return tuple(range(NUM_POTION_MAPS)) if self.randomize_maps else (FIXED_POTION_MAP,)

    @property
    def stone_maps(self) -> tuple[int, ...]:
        return tuple(range(NUM_STONE_MAPS)) if self.randomize_maps else (FIXED_STONE_MAP,)

    @property
    def rotations(self) -> tuple[int, ...]:
        return tuple(range(NUM_ROTATIONS)) if self.rotation else (0,)

    @property
    def graph_masks(self) -> tuple[int, ...]:
        return tuple(graphs.constraint_to_graph(_thaw(c)) for c in self.constraints)

    def constraint_lists(self) -> list[graphs.Constraint]:
        """The constraints as the nested lists :mod:`~alchemy_gym.core.graphs`' functions take."""
        return [_thaw(c) for c in self.constraints]

    @property
    def graph_prior(self) -> np.ndarray:
        """The prior probability of each graph of :attr:`graph_masks` (§1.6)."""
        return graphs.graph_prior(self.constraint_lists())


@lru_cache(maxsize=64)
def _rules_from_level_name(level_name: str) -> LevelRules:
    return LevelRules._build(level_name)


def _freeze(constraints) -> tuple:
    return tuple(tuple(tuple(row) for row in c) for c in constraints)


def _thaw(constraint) -> graphs.Constraint:
    return [list(row) for row in constraint]


class ChemistrySampler:
    """Samples chemistries with dm_alchemy's draw order from a ``numpy.random.RandomState``.

    Draws per episode (§4.7): potion map ``randint(0, 48)`` and stone map
    ``randint(0, 8)`` if the maps are randomised; always one ``random_sample()``
    for the graph (what ``choice(n, p=float32 prior)`` consumes); ``randint(0, 4)``
    for the rotation if rotations are on. All tables are built once here.
    """

    def __init__(self, rules: LevelRules) -> None:
        self.rules = rules
        self._graphs = rules.graph_masks
        for mask in self._graphs:
            graphs.transition_table(mask)  # warm the cache: nothing is computed at reset
        self._cdf = graphs.prior_cdf(rules.graph_prior)

    @property
    def graphs(self) -> tuple[int, ...]:
        return self._graphs

    @property
    def prior(self) -> np.ndarray:
        return self.rules.graph_prior

    def sample(self, rs: np.random.RandomState) -> Chemistry:
        rules = self.rules
        if rules.randomize_maps:
            potion_map = int(rs.randint(0, NUM_POTION_MAPS))
            stone_map = int(rs.randint(0, NUM_STONE_MAPS))
        else:
            potion_map, stone_map = FIXED_POTION_MAP, FIXED_STONE_MAP
        u = rs.random_sample()
        graph = self._graphs[min(bisect.bisect_right(self._cdf, u), len(self._graphs) - 1)]
        rotation = int(rs.randint(0, NUM_ROTATIONS)) if rules.rotation else 0
        return Chemistry(potion_map, stone_map, graph, rotation)
