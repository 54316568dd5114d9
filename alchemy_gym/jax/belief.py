"""The observer's belief about the chemistry in fixed-size arrays: the core's :class:`BeliefState` in JAX.

The belief of :class:`alchemy_gym.core.belief.BeliefState` (spec §6.2–6.3) is small and of fixed
size: for each of the 4 rotations, whether it is still possible, the stone maps (8) and potion
maps (48) still consistent with what was seen, the partial stone map and the edges known
present or absent. :class:`Belief` holds exactly that, and :func:`new_trial`,
:func:`observe_potion` and :func:`vector` are the core's ``new_trial``, ``observe_potion`` and
``vector`` written as array expressions over the rotations (the tests check them against the
core, step for step). Everything here works under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.belief import ELEMENT_SIZES
from alchemy_gym.core.items import (
    NUM_DIMS,
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    PERMUTATIONS,
    STONE_REWARD_INDICATOR,
    align_coords,
    coords_to_index,
    index_to_coords,
    potion_map_parts,
    stone_map_pos_dir,
)
from alchemy_gym.core.spec import SPEC
from alchemy_gym.jax import tree

#: Length of the belief vector (graph 12, potion map 6 + 3, stone map 3, rotation 4).
SIZE = sum(ELEMENT_SIZES.values())


def _pm_mask(potion_maps) -> np.ndarray:
    """A set of potion maps as a 48-bit mask in two words ``(lo: maps 0..31, hi: 32..47)``."""
    bits = sum(1 << pm for pm in set(potion_maps))
    return np.array([bits & 0xFFFFFFFF, bits >> 32], np.uint32)


def _sm_mask(stone_maps) -> int:
    """A set of stone maps as an 8-bit mask."""
    return sum(1 << sm for sm in set(stone_maps))


def _tables() -> dict[str, np.ndarray]:
    """The constant lookup tables of the belief updates (sets of maps as bit masks)."""
    aligned = np.full((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, NUM_ROTATIONS), -1, np.int32)
    for sm in range(NUM_STONE_MAPS):
        for true_rotation in range(NUM_ROTATIONS):
            for latent in range(NUM_LATENT_STONES):
                for r in range(NUM_ROTATIONS):
                    a = align_coords(PERCEIVED_STONE[sm, true_rotation, latent], r)
                    if a is not None:
                        aligned[sm, true_rotation, latent, r] = coords_to_index(a)
    sm_dir = [stone_map_pos_dir(sm) for sm in range(NUM_STONE_MAPS)]
    coords = [index_to_coords(v) for v in range(NUM_LATENT_STONES)]
    reward = STONE_REWARD_INDICATOR.astype(np.int32)
    # consistent[v, latent]: the stone maps that map aligned vertex v to the reward indicator of latent
    consistent = np.array(
        [
            [
                _sm_mask(
                    sm
                    for sm in range(NUM_STONE_MAPS)
                    if sum(a * d for a, d in zip(coords[v], sm_dir[sm])) == reward[latent]
                )
                for latent in range(NUM_LATENT_STONES)
            ]
            for v in range(NUM_LATENT_STONES)
        ],
        np.int32,
    )
    # sm_with_dir[k, i]: the stone maps whose pos_dir on axis k is -1 (i = 0) or +1 (i = 1)
    sm_with_dir = np.array(
        [
            [_sm_mask(sm for sm in range(NUM_STONE_MAPS) if sm_dir[sm][k] == v) for v in (-1, 1)]
            for k in range(NUM_DIMS)
        ],
        np.int32,
    )
    parts = [potion_map_parts(pm) for pm in range(NUM_POTION_MAPS)]
    # pm_with_dim[pd, d]: potion maps sending perceived dimension pd to latent dimension d
    pm_with_dim = np.array(
        [
            [_pm_mask(pm for pm in range(NUM_POTION_MAPS) if parts[pm][0][pd] == d) for d in range(NUM_DIMS)]
            for pd in range(NUM_DIMS)
        ]
    )
    # pm_with_dir[l, i]: potion maps whose direction on latent dimension l is -1 (i = 0) or +1 (i = 1)
    pm_with_dir = np.array(
        [
            [_pm_mask(pm for pm in range(NUM_POTION_MAPS) if parts[pm][1][l] == v) for v in (-1, 1)]
            for l in range(NUM_DIMS)
        ]
    )
    pm_perm = np.array(
        [_pm_mask(pm for pm in range(NUM_POTION_MAPS) if pm // 8 == q) for q in range(len(PERMUTATIONS))]
    )
    edge = np.zeros((NUM_LATENT_STONES, NUM_LATENT_STONES), np.int32)
    for (i, j), e in graphs.EDGE_INDEX.items():
        edge[i, j] = 1 << e
    return {
        "aligned": aligned,
        "consistent": consistent,
        "coords": np.array(coords, np.int32),
        "reward": reward,
        "sm_with_dir": sm_with_dir,
        "pm_with_dim": pm_with_dim,
        "pm_with_dir": pm_with_dir,
        "pm_perm": pm_perm,
        "perceived_potion": PERCEIVED_POTION.astype(np.int32),
        "edge_bit": edge,
        "edge_bits": (1 << np.arange(graphs.NUM_EDGES)).astype(np.int32),
    }


_T = _tables()
assert len(PERMUTATIONS) * 8 == NUM_POTION_MAPS  # potion map index = 8 * permutation + directions


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["alive", "stone_maps", "potion_maps", "partial_stone", "present", "absent", "updated"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Belief:
    """For each rotation (leading axis of 4): still possible; the stone maps still possible (an 8-bit
    mask, ``(4,)`` int32) and potion maps (a 48-bit mask in two words, ``(4, 2)`` uint32: maps 0..31,
    32..47); the partial stone map ``(4, 3)`` (+1 / -1 known, 0 not); the edges known present and known
    absent (12-bit masks of the aligned frame); whether anything was learnt."""

    alive: jax.Array
    stone_maps: jax.Array
    potion_maps: jax.Array
    partial_stone: jax.Array
    present: jax.Array
    absent: jax.Array
    updated: jax.Array


def level_tables(rules) -> dict[str, np.ndarray]:
    """A level's prior of the belief: its possible stone maps (8-bit mask) and potion maps (48-bit mask
    in two words), and every graph as seen in the aligned frame of each possible stone map (the graphs
    the closure uses)."""
    stone_maps, potion_maps = rules.stone_maps, rules.potion_maps
    aligned = sorted(
        {graphs.flip_graph(mask, stone_map_pos_dir(sm)) for mask in rules.graph_masks for sm in rules.stone_maps}
    )
    return {
        "stone_maps": np.int32(_sm_mask(stone_maps)),
        "potion_maps": _pm_mask(potion_maps),
        "graphs": np.array(aligned, np.int32),
    }


def initial(stone_maps: jax.Array, potion_maps: jax.Array) -> Belief:
    """Nothing seen yet: every rotation, the level's maps, no edge known."""
    zeros = jnp.zeros(NUM_ROTATIONS, jnp.int32)
    return Belief(
        alive=jnp.ones(NUM_ROTATIONS, bool),
        stone_maps=jnp.broadcast_to(stone_maps, (NUM_ROTATIONS,)),
        potion_maps=jnp.broadcast_to(potion_maps, (NUM_ROTATIONS, 2)),
        partial_stone=jnp.zeros((NUM_ROTATIONS, NUM_DIMS), jnp.int32),
        present=zeros,
        absent=zeros,
        updated=jnp.zeros(NUM_ROTATIONS, bool),
    )


def _aligned(chem: jax.Array, latent: jax.Array) -> jax.Array:
    """Aligned vertex of a latent stone under each rotation (``(..., 4)``, -1 where not a vertex)."""
    return jnp.asarray(_T["aligned"])[chem[SPEC.chem_stone_map], chem[SPEC.chem_rotation], jnp.maximum(latent, 0)]


def _any(potion_maps: jax.Array) -> jax.Array:
    """Whether a potion-map mask (``(..., 2)``) is not empty."""
    return jnp.any(potion_maps != 0, axis=-1)


def _project(stone_maps: jax.Array) -> jax.Array:
    """Partial stone map ``(4, 3)``: the value every possible stone map agrees on, else 0."""
    with_dir = jnp.asarray(_T["sm_with_dir"])  # (3, 2)
    neg = (stone_maps[:, None] & with_dir[:, 0]) != 0
    pos = (stone_maps[:, None] & with_dir[:, 1]) != 0
    return jnp.where(pos & ~neg, 1, jnp.where(neg & ~pos, -1, 0)).astype(jnp.int32)


def new_trial(belief: Belief, chem: jax.Array, stones: jax.Array) -> Belief:
    """The trial's stones (latent per slot, -1 empty) are seen: drop the rotations and stone maps they rule out."""
    stones = stones.astype(jnp.int32)
    present = stones >= 0  # (3,)
    aligned = _aligned(chem, stones)  # (3, 4)
    unaligned = jnp.any(present[:, None] & (aligned < 0), axis=0)  # (4,)
    consistent = jnp.asarray(_T["consistent"])[jnp.maximum(aligned, 0), jnp.maximum(stones, 0)[:, None]]  # (3, 4)
    consistent = jnp.where(present[:, None], consistent, 0xFF)
    stone_maps = belief.stone_maps & consistent[0] & consistent[1] & consistent[2]
    alive = belief.alive & ~unaligned & (stone_maps != 0)
    return dataclasses.replace(belief, alive=alive, stone_maps=stone_maps, partial_stone=_project(stone_maps))


def observe_potion(belief: Belief, chem: jax.Array, before: jax.Array, potion: jax.Array, after: jax.Array) -> Belief:
    """Latent stone ``before`` went into latent potion ``potion`` and became ``after``."""
    T = {k: jnp.asarray(v) for k, v in _T.items()}
    s, r = _aligned(chem, before), _aligned(chem, after)  # (4,)
    ok = (s >= 0) & (r >= 0)
    s, r = jnp.maximum(s, 0), jnp.maximum(r, 0)
    stone_maps = belief.stone_maps & T["consistent"][r, jnp.maximum(after, 0)]  # (4,)
    ok &= stone_maps != 0
    perceived = T["perceived_potion"][chem[SPEC.chem_potion_map], jnp.maximum(potion, 0)]
    pd, pdir = perceived // 2, jnp.where(perceived % 2 == 1, 1, -1)
    pm = belief.potion_maps  # (4, 2)
    rows = jnp.arange(NUM_ROTATIONS)

    # no change: an edge may be learnt absent
    dims = _any(pm[:, None, :] & T["pm_with_dim"][pd][None])  # (4, 3): latent dimensions the potion may move
    latent_dim = jnp.argmax(dims, axis=1)  # (4,)
    neg = _any(pm & T["pm_with_dir"][latent_dim, 0])
    pos = _any(pm & T["pm_with_dir"][latent_dim, 1])
    sign = belief.partial_stone[rows, latent_dim]
    aligned_dir = pdir * jnp.where(pos, 1, -1) * sign
    learnt_absent = (
        (jnp.sum(dims, axis=1) == 1) & (pos ^ neg) & (sign != 0) & (T["coords"][s, latent_dim] == -aligned_dir)
    )
    same = dataclasses.replace(
        belief,
        stone_maps=stone_maps,
        absent=jnp.where(learnt_absent, belief.absent | T["edge_bit"][s, s ^ (1 << latent_dim)], belief.absent),
        updated=belief.updated | learnt_absent,
    )

    # a change along one axis: the potion's dimension and direction, the stone map's sign on that axis
    changed = T["coords"][s] != T["coords"][r]  # (4, 3)
    axis = jnp.argmax(changed, axis=1)
    delta = T["reward"][jnp.maximum(after, 0)] - T["reward"][jnp.maximum(before, 0)]
    step = jnp.where(delta > 0, 1, -1)
    moved_ok = (jnp.sum(changed, axis=1) == 1) & (jnp.abs(delta) == 2)
    potion_maps = pm & T["pm_with_dim"][pd, axis] & T["pm_with_dir"][axis, (pdir * step + 1) // 2]
    value = T["coords"][r, axis] * step  # (4,)
    moved_stone_maps = stone_maps & T["sm_with_dir"][axis, (value + 1) // 2]
    moved = Belief(
        alive=belief.alive,
        stone_maps=moved_stone_maps,
        potion_maps=potion_maps,
        partial_stone=jnp.where(jnp.arange(NUM_DIMS) == axis[:, None], value[:, None], belief.partial_stone),
        present=belief.present | T["edge_bit"][s, r],
        absent=belief.absent,
        updated=jnp.ones(NUM_ROTATIONS, bool),
    )
    moved_ok &= _any(potion_maps) & (moved_stone_maps != 0)

    no_change = s == r
    out = tree.select(no_change, same, moved)
    return dataclasses.replace(out, alive=belief.alive & ok & (no_change | moved_ok))


def vector(belief: Belief, level_graphs: jax.Array) -> jax.Array:
    """The 28-float belief-state chemistry observation (§4.9): 1/0 where known, 0.5 where not, all 0.5
    while more than one rotation is possible. ``level_graphs`` is :func:`level_tables`'s ``graphs``."""
    T = {k: jnp.asarray(v) for k, v in _T.items()}
    full = jnp.int32(graphs.FULL_GRAPH)
    r = jnp.argmax(belief.alive)
    present, absent, updated = belief.present[r], belief.absent[r], belief.updated[r]
    # the partial graph closed under "every graph still matching agrees on this edge"
    matching = ((level_graphs & present) == present) & ((level_graphs & absent) == 0)
    every = jax.lax.reduce(jnp.where(matching, level_graphs, full), full, jax.lax.bitwise_and, (0,))
    none = jax.lax.reduce(jnp.where(matching, ~level_graphs & full, full), full, jax.lax.bitwise_and, (0,))
    close = updated & jnp.any(matching)
    present = jnp.where(close, present | every, present)
    absent = jnp.where(close, absent | none, absent)
    graph = jnp.where((present & T["edge_bits"]) != 0, 1.0, jnp.where((absent & T["edge_bits"]) != 0, 0.0, 0.5))

    pm = belief.potion_maps[r]  # (2,)
    one = jnp.sum(jax.lax.population_count(pm)) == 1
    dims = jnp.where(_any(pm & T["pm_perm"]), jnp.where(one, 1.0, 0.5), 0.0)
    neg, pos = _any(pm & T["pm_with_dir"][:, 0]), _any(pm & T["pm_with_dir"][:, 1])
    dirs = jnp.where(pos ^ neg, jnp.where(pos, 1.0, 0.0), 0.5)
    partial_stone = belief.partial_stone[r]
    stone_map = jnp.where(partial_stone != 0, (partial_stone + 1) / 2, 0.5)
    rotation = jnp.where(jnp.arange(NUM_ROTATIONS) == r, 1.0, 0.0)
    out = jnp.concatenate([graph, dims, dirs, stone_map, rotation]).astype(jnp.float32)
    return jnp.where(jnp.sum(belief.alive) == 1, out, jnp.float32(0.5))
