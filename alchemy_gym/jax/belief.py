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
from alchemy_gym.core.items import (
    NUM_DIMS,
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    PERMUTATIONS,
    STONE_COORDS,
    STONE_REWARD_INDICATOR,
    align_coords,
    coords_to_index,
    index_to_coords,
    potion_map_parts,
    stone_map_pos_dir,
)

#: Length of the belief vector (graph 12, potion map 6 + 3, stone map 3, rotation 4).
SIZE = 28


def _tables() -> dict[str, np.ndarray]:
    """The constant lookup tables of the belief updates."""
    aligned = np.full((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, NUM_ROTATIONS), -1, np.int32)
    for sm in range(NUM_STONE_MAPS):
        for true_rotation in range(NUM_ROTATIONS):
            for latent in range(NUM_LATENT_STONES):
                for r in range(NUM_ROTATIONS):
                    a = align_coords(PERCEIVED_STONE[sm, true_rotation, latent], r)
                    if a is not None:
                        aligned[sm, true_rotation, latent, r] = coords_to_index(a)
    sm_dir = np.array([stone_map_pos_dir(sm) for sm in range(NUM_STONE_MAPS)], np.int32)  # (8, 3)
    # consistent[v, latent, sm]: stone map sm maps aligned vertex v to the reward indicator of latent
    consistent = (
        np.einsum("vk,mk->vm", STONE_COORDS.astype(np.int32), sm_dir)[:, None, :]
        == STONE_REWARD_INDICATOR.astype(np.int32)[None, :, None]
    )
    edge = np.full((NUM_LATENT_STONES, NUM_LATENT_STONES), 0, np.int32)
    for (i, j), e in graphs.EDGE_INDEX.items():
        edge[i, j] = e
    pm_dim = np.array([potion_map_parts(pm)[0] for pm in range(NUM_POTION_MAPS)], np.int32)  # (48, 3)
    pm_dir = np.array([potion_map_parts(pm)[1] for pm in range(NUM_POTION_MAPS)], np.int32)  # (48, 3)
    return {
        "aligned": aligned,
        "consistent": consistent,
        "coords": np.array([index_to_coords(v) for v in range(NUM_LATENT_STONES)], np.int32),
        "reward": STONE_REWARD_INDICATOR.astype(np.int32),
        "sm_dir": sm_dir,
        "pm_dim": pm_dim,
        "pm_dir": pm_dir,
        "perceived_potion": PERCEIVED_POTION.astype(np.int32),
        "edge": edge,
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
    """For each rotation (leading axis of 4): still possible; stone maps ``(4, 8)`` and potion maps
    ``(4, 48)`` still possible; the partial stone map ``(4, 3)`` (+1 / -1 known, 0 not); the edges
    known present and known absent (bit masks of the aligned frame); whether anything was learnt."""

    alive: jax.Array
    stone_maps: jax.Array
    potion_maps: jax.Array
    partial_stone: jax.Array
    present: jax.Array
    absent: jax.Array
    updated: jax.Array


def level_tables(rules) -> dict[str, np.ndarray]:
    """A level's prior of the belief: its possible stone maps (8,) and potion maps (48,), and every
    graph as seen in the aligned frame of each possible stone map (the graphs the closure uses)."""
    stone_maps = np.zeros(NUM_STONE_MAPS, bool)
    stone_maps[list(rules.stone_maps)] = True
    potion_maps = np.zeros(NUM_POTION_MAPS, bool)
    potion_maps[list(rules.potion_maps)] = True
    aligned = sorted(
        {graphs.flip_graph(mask, stone_map_pos_dir(sm)) for mask in rules.graph_masks for sm in rules.stone_maps}
    )
    return {"stone_maps": stone_maps, "potion_maps": potion_maps, "graphs": np.array(aligned, np.int32)}


def initial(stone_maps: jax.Array, potion_maps: jax.Array) -> Belief:
    """Nothing seen yet: every rotation, the level's maps, no edge known."""
    zeros = jnp.zeros(NUM_ROTATIONS, jnp.int32)
    return Belief(
        alive=jnp.ones(NUM_ROTATIONS, bool),
        stone_maps=jnp.broadcast_to(stone_maps, (NUM_ROTATIONS, NUM_STONE_MAPS)),
        potion_maps=jnp.broadcast_to(potion_maps, (NUM_ROTATIONS, NUM_POTION_MAPS)),
        partial_stone=jnp.zeros((NUM_ROTATIONS, NUM_DIMS), jnp.int32),
        present=zeros,
        absent=zeros,
        updated=jnp.zeros(NUM_ROTATIONS, bool),
    )


def _aligned(chem: jax.Array, latent: jax.Array) -> jax.Array:
    """Aligned vertex of a latent stone under each rotation (``(..., 4)``, -1 where not a vertex)."""
    return jnp.asarray(_T["aligned"])[chem[1], chem[3], jnp.maximum(latent, 0)]


def _project(stone_maps: jax.Array) -> jax.Array:
    """Partial stone map ``(4, 3)``: the value every possible stone map agrees on, else 0."""
    sm_dir = jnp.asarray(_T["sm_dir"])  # (8, 3)
    pos = jnp.any(stone_maps[:, :, None] & (sm_dir == 1)[None], axis=1)
    neg = jnp.any(stone_maps[:, :, None] & (sm_dir == -1)[None], axis=1)
    return jnp.where(pos & ~neg, 1, jnp.where(neg & ~pos, -1, 0)).astype(jnp.int32)


def new_trial(belief: Belief, chem: jax.Array, stones: jax.Array) -> Belief:
    """The trial's stones (latent per slot, -1 empty) are seen: drop the rotations and stone maps they rule out."""
    stones = stones.astype(jnp.int32)
    present = stones >= 0  # (3,)
    aligned = _aligned(chem, stones)  # (3, 4)
    unaligned = jnp.any(present[:, None] & (aligned < 0), axis=0)  # (4,)
    consistent = jnp.asarray(_T["consistent"])[jnp.maximum(aligned, 0), jnp.maximum(stones, 0)[:, None]]  # (3, 4, 8)
    stone_maps = belief.stone_maps & jnp.all(consistent | ~present[:, None, None], axis=0)
    alive = belief.alive & ~unaligned & jnp.any(stone_maps, axis=1)
    return dataclasses.replace(belief, alive=alive, stone_maps=stone_maps, partial_stone=_project(stone_maps))


def observe_potion(belief: Belief, chem: jax.Array, before: jax.Array, potion: jax.Array, after: jax.Array) -> Belief:
    """Latent stone ``before`` went into latent potion ``potion`` and became ``after``."""
    T = {k: jnp.asarray(v) for k, v in _T.items()}
    s, r = _aligned(chem, before), _aligned(chem, after)  # (4,)
    ok = (s >= 0) & (r >= 0)
    s, r = jnp.maximum(s, 0), jnp.maximum(r, 0)
    stone_maps = belief.stone_maps & T["consistent"][r, jnp.maximum(after, 0)]  # (4, 8)
    ok &= jnp.any(stone_maps, axis=1)
    perceived = T["perceived_potion"][chem[0], jnp.maximum(potion, 0)]
    pd, pdir = perceived // 2, jnp.where(perceived % 2 == 1, 1, -1)
    dim_of = T["pm_dim"][:, pd]  # (48,): the latent dimension each potion map gives this potion
    rows = jnp.arange(NUM_ROTATIONS)

    # no change: an edge may be learnt absent
    dims = jnp.any(belief.potion_maps[:, :, None] & (dim_of[None, :, None] == jnp.arange(NUM_DIMS)), axis=1)  # (4, 3)
    latent_dim = jnp.argmax(dims, axis=1)  # (4,)
    dirs = T["pm_dir"][:, latent_dim].T  # (4, 48)
    pos = jnp.any(belief.potion_maps & (dirs == 1), axis=1)
    neg = jnp.any(belief.potion_maps & (dirs == -1), axis=1)
    sign = belief.partial_stone[rows, latent_dim]
    aligned_dir = pdir * jnp.where(pos, 1, -1) * sign
    learnt_absent = (
        (jnp.sum(dims, axis=1) == 1) & (pos ^ neg) & (sign != 0) & (T["coords"][s, latent_dim] == -aligned_dir)
    )
    absent_edge = T["edge_bits"][T["edge"][s, s ^ (1 << latent_dim)]]
    same = dataclasses.replace(
        belief,
        stone_maps=stone_maps,
        absent=jnp.where(learnt_absent, belief.absent | absent_edge, belief.absent),
        updated=belief.updated | learnt_absent,
    )

    # a change along one axis: the potion's dimension and direction, the stone map's sign on that axis
    changed = T["coords"][s] != T["coords"][r]  # (4, 3)
    axis = jnp.argmax(changed, axis=1)
    delta = T["reward"][jnp.maximum(after, 0)] - T["reward"][jnp.maximum(before, 0)]
    step = jnp.where(delta > 0, 1, -1)
    moved_ok = (jnp.sum(changed, axis=1) == 1) & (jnp.abs(delta) == 2)
    potion_maps = belief.potion_maps & (dim_of[None, :] == axis[:, None]) & (T["pm_dir"][:, axis].T == (pdir * step))
    value = T["coords"][r, axis] * step  # (4,)
    moved_stone_maps = stone_maps & (T["sm_dir"][:, axis].T == value[:, None])
    moved = Belief(
        alive=belief.alive,
        stone_maps=moved_stone_maps,
        potion_maps=potion_maps,
        partial_stone=jnp.where(jnp.arange(NUM_DIMS) == axis[:, None], value[:, None], belief.partial_stone),
        present=belief.present | T["edge_bits"][T["edge"][s, r]],
        absent=belief.absent,
        updated=jnp.ones(NUM_ROTATIONS, bool),
    )
    moved_ok &= jnp.any(potion_maps, axis=1) & jnp.any(moved_stone_maps, axis=1)

    no_change = s == r
    out = jax.tree_util.tree_map(
        lambda a, b: jnp.where(no_change.reshape((NUM_ROTATIONS,) + (1,) * (a.ndim - 1)), a, b), same, moved
    )
    return dataclasses.replace(out, alive=belief.alive & ok & (no_change | moved_ok))


def vector(belief: Belief, level_graphs: jax.Array) -> jax.Array:
    """The 28-float belief-state chemistry observation (§4.9): 1/0 where known, 0.5 where not, all 0.5
    while more than one rotation is possible. ``level_graphs`` is :func:`level_tables`'s ``graphs``."""
    T = {k: jnp.asarray(v) for k, v in _T.items()}
    r = jnp.argmax(belief.alive)
    present, absent, updated = belief.present[r], belief.absent[r], belief.updated[r]
    # the partial graph closed under "every graph still matching agrees on this edge"
    bits = (level_graphs[:, None] & T["edge_bits"]) != 0  # (G, 12)
    known_present = (present & T["edge_bits"]) != 0
    known_absent = (absent & T["edge_bits"]) != 0
    matching = jnp.all(bits | ~known_present, axis=1) & ~jnp.any(bits & known_absent, axis=1)
    close = updated & jnp.any(matching)
    known_present |= close & jnp.all(bits | ~matching[:, None], axis=0)
    known_absent |= close & jnp.all(~bits | ~matching[:, None], axis=0)
    graph = jnp.where(known_present, 1.0, jnp.where(known_absent, 0.0, 0.5))

    potion_maps = belief.potion_maps[r]
    perms = jnp.any(potion_maps.reshape(len(PERMUTATIONS), 8), axis=1)
    dims = jnp.where(perms, jnp.where(jnp.sum(potion_maps) == 1, 1.0, 0.5), 0.0)
    pos = jnp.any(potion_maps[:, None] & (T["pm_dir"] == 1), axis=0)
    neg = jnp.any(potion_maps[:, None] & (T["pm_dir"] == -1), axis=0)
    dirs = jnp.where(pos ^ neg, jnp.where(pos, 1.0, 0.0), 0.5)
    partial_stone = belief.partial_stone[r]
    stone_map = jnp.where(partial_stone != 0, (partial_stone + 1) / 2, 0.5)
    rotation = jnp.where(jnp.arange(NUM_ROTATIONS) == r, 1.0, 0.0)
    out = jnp.concatenate([graph, dims, dirs, stone_map, rotation]).astype(jnp.float32)
    return jnp.where(jnp.sum(belief.alive) == 1, out, jnp.float32(0.5))
