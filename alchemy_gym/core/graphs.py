"""Cube graphs, bottleneck constraints, the graph prior and transitions (spec §1.4–1.7).

A graph is stored as a 12-bit mask over the cube edges of :data:`CUBE_EDGES`
(bit ``e`` set = edge ``e`` present). A *constraint* is dm_alchemy's 3×3 list
of strings (``'X'`` on the diagonal, ``'*'``, ``'-1'`` or ``'1'`` elsewhere).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

from alchemy_gym.core.items import NUM_DIMS, NUM_LATENT_STONES, NUM_POTION_TYPES, POTION_DIM_DIR, STONE_COORDS

Constraint = list[list[str]]

#: The 12 cube edges (i < j differing in one coordinate), ``itertools.combinations`` order.
CUBE_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j)
    for i, j in itertools.combinations(range(NUM_LATENT_STONES), 2)
    if int(np.sum(STONE_COORDS[i] != STONE_COORDS[j])) == 1
)
NUM_EDGES = len(CUBE_EDGES)
FULL_GRAPH = (1 << NUM_EDGES) - 1

#: Axis along which each cube edge runs.
EDGE_AXIS = tuple(int(np.flatnonzero(STONE_COORDS[i] != STONE_COORDS[j])[0]) for i, j in CUBE_EDGES)

#: ``EDGE_INDEX[(i, j)]`` (both orders) → edge number.
EDGE_INDEX: dict[tuple[int, int], int] = {}
for _e, (_i, _j) in enumerate(CUBE_EDGES):
    EDGE_INDEX[(_i, _j)] = _e
    EDGE_INDEX[(_j, _i)] = _e


def no_bottleneck_constraints() -> list[Constraint]:
    """The full cube."""
    return [[["X", "*", "*"], ["*", "X", "*"], ["*", "*", "X"]]]


def bottleneck1_constraints() -> list[Constraint]:
    return [[["X", "-1", "1"], ["*", "X", "*"], ["*", "*", "X"]]]


def bottleneck2_constraints() -> list[Constraint]:
    return [[["X", "-1", "*"], ["*", "X", "*"], ["*", "*", "X"]]]


def bottleneck3_constraints() -> list[Constraint]:
    return [[["X", "-1", "1"], ["*", "X", "*"], ["*", "-1", "X"]]]


def constraint_to_graph(constraint: Constraint) -> int:
    """Edge mask of the graph a constraint allows."""
    _check_constraint(constraint)
    mask = 0
    for e, (i, _j) in enumerate(CUBE_EDGES):
        axis = EDGE_AXIS[e]
        row = constraint[axis]
        if all(row[o] in ("*", "X") or int(row[o]) == STONE_COORDS[i][o] for o in range(NUM_DIMS)):
            mask |= 1 << e
    return mask


def _check_constraint(constraint: Constraint) -> None:
    ok = len(constraint) == NUM_DIMS and all(len(row) == NUM_DIMS for row in constraint)
    if ok:
        for d, row in enumerate(constraint):
            for o, entry in enumerate(row):
                if (o == d and entry != "X") or (o != d and entry not in ("*", "-1", "1")):
                    ok = False
    if not ok:
        raise ValueError(
            f"invalid constraint {constraint!r}: expected a 3x3 list of strings with 'X' on the "
            "diagonal and '*', '-1' or '1' elsewhere"
        )


def graph_to_constraint(mask: int) -> Constraint:
    """Reconstruct the constraint of a graph (constant coordinate of the edges along each axis)."""
    constraint = [["X" if o == d else "*" for o in range(NUM_DIMS)] for d in range(NUM_DIMS)]
    for d in range(NUM_DIMS):
        lows = [CUBE_EDGES[e][0] for e in range(NUM_EDGES) if EDGE_AXIS[e] == d and mask >> e & 1]
        for o in range(NUM_DIMS):
            if o != d and lows:
                values = {int(STONE_COORDS[i][o]) for i in lows}
                if len(values) == 1:
                    constraint[d][o] = str(values.pop())
    return constraint


def num_constraints(constraint: Constraint) -> int:
    """Number of ``'-1'``/``'1'`` entries (the bottleneck 'strength')."""
    return sum(entry in ("-1", "1") for row in constraint for entry in row)


def is_valid_graph(mask: int) -> bool:
    """Every node has an edge and all edges form one connected component."""
    parent = list(range(NUM_LATENT_STONES))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    touched = set()
    for e, (i, j) in enumerate(CUBE_EDGES):
        if mask >> e & 1:
            touched.update((i, j))
            parent[find(i)] = find(j)
    return len(touched) == NUM_LATENT_STONES and len({find(n) for n in range(NUM_LATENT_STONES)}) == 1


@lru_cache(maxsize=1)
def _possible_constraints() -> tuple[tuple[tuple[str, ...], ...], ...]:
    values = ["-1", "1", "*"]
    pairs = [[a, b] for a in values for b in values]
    result = []
    for x, y, z in itertools.product(pairs, repeat=3):
        constraint = [x[:0] + ["X"] + x[0:], y[:1] + ["X"] + y[1:], z[:2] + ["X"] + z[2:]]
        if is_valid_graph(constraint_to_graph(constraint)):
            result.append(tuple(tuple(row) for row in constraint))
    return tuple(result)


def possible_constraints() -> list[Constraint]:
    """All 109 valid constraints in dm_alchemy's enumeration order (load-bearing for seeding)."""
    return [[list(row) for row in c] for c in _possible_constraints()]


def prior_shares(constraints: Sequence[Constraint]) -> list[Fraction]:
    """The graph prior of §1.6 as exact fractions: each constraint-count class gets an equal share of the
    mass, split equally among its graphs."""
    counts = [num_constraints(c) for c in constraints]
    classes = len(set(counts))
    return [Fraction(1, classes * counts.count(k)) for k in counts]


def graph_prior(constraints: Sequence[Constraint]) -> np.ndarray:
    """float32 prior: each constraint-count class gets equal total mass (§1.6)."""
    return np.array([float(share) for share in prior_shares(constraints)], dtype=np.float32)


def prior_table(constraints: Sequence[Constraint]) -> np.ndarray:
    """int32 graph masks of the constraints, each repeated in proportion to its prior probability (§1.6): the
    shares are exact fractions, so a uniform pick from a table of their common denominator's size is a draw
    from the prior, exactly (192 entries for the 109 graphs)."""
    shares = prior_shares(constraints)
    size = math.lcm(*(share.denominator for share in shares))
    masks = [constraint_to_graph(c) for c in constraints]
    return np.repeat(np.array(masks, dtype=np.int32), [int(share * size) for share in shares])


def prior_cdf(prior: np.ndarray) -> tuple[float, ...]:
    """The normalised CDF ``RandomState.choice(n, p=prior)`` searches (float64 cumsum of the float32 p)."""
    cdf = np.cumsum(np.asarray(prior, dtype=np.float64))
    cdf /= cdf[-1]
    return tuple(float(c) for c in cdf)


def graph_from_edge_values(values: Sequence[int]) -> int:
    """Edge mask from the 12 adjacency values of dm_alchemy's ``GraphArray`` (0 = absent)."""
    if len(values) != NUM_EDGES:
        raise ValueError(f"a graph has {NUM_EDGES} edge values, got {len(values)}")
    return sum(1 << e for e, v in enumerate(values) if v)


def graph_to_edge_vector(mask: int) -> np.ndarray:
    """12 floats: 1.0 where the edge is present, 0.0 where absent."""
    return np.array([(mask >> e) & 1 for e in range(NUM_EDGES)], dtype=np.float32)


def _transitions() -> np.ndarray:
    """(4096, 48) int8: ``[mask, 6 * stone + potion]`` → the latent stone after dipping (§1.7)."""
    stay = np.repeat(np.arange(NUM_LATENT_STONES), NUM_POTION_TYPES)
    move, edge = stay.copy(), np.zeros_like(stay)
    for stone in range(NUM_LATENT_STONES):
        for potion in range(NUM_POTION_TYPES):
            dim, direction = POTION_DIM_DIR[potion]
            if STONE_COORDS[stone][dim] == -direction:  # the potion pushes this coordinate over
                other = stone ^ (1 << dim)
                move[stone * NUM_POTION_TYPES + potion] = other
                edge[stone * NUM_POTION_TYPES + potion] = EDGE_INDEX[(stone, other)]
    masks = np.arange(FULL_GRAPH + 1)[:, None]
    present = (masks >> edge[None, :]) & 1
    return np.where(present.astype(bool), move[None, :], stay[None, :]).astype(np.int8)


#: ``TRANSITIONS[mask, 6 * stone + potion]`` → the latent stone after dipping, for every edge mask (§1.7).
TRANSITIONS = _transitions()
TRANSITIONS.setflags(write=False)


@cache
def transition_table(mask: int) -> tuple[int, ...]:
    """``table[6 * stone + potion]`` → the latent stone after dipping (§1.7): a row of :data:`TRANSITIONS`."""
    return tuple(TRANSITIONS[mask].tolist())


def flip_graph(mask: int, pos_dir: Sequence[int]) -> int:
    """The same graph with the axes where ``pos_dir`` is -1 mirrored (latent ↔ aligned frame)."""
    flip = sum(1 << k for k, s in enumerate(pos_dir) if s < 0)
    out = 0
    for e, (i, j) in enumerate(CUBE_EDGES):
        if mask >> e & 1:
            out |= 1 << EDGE_INDEX[(i ^ flip, j ^ flip)]
    return out
