"""Latent stones and potions, perceptual maps, rotations (spec §1.1–1.3, §2).

Everything here is a small constant table computed once at import. Index
conventions follow dm_alchemy exactly because data files and observations
depend on them:

* latent stone index ``Σ_k ((c_k + 1) / 2) · 2**k`` (coordinate 0 least
  significant), 8 stones;
* latent potion index ``2 · dim + (dir + 1) / 2``, 6 potions;
* stone map index ``coords_to_index(pos_dir)`` (8), potion map index
  ``8 · perm_index(dim_map) + coords_to_index(dir_map)`` (48);
* rotation number 0..3 in the order of §2.3.
"""

from __future__ import annotations

import itertools

import numpy as np

NUM_DIMS = 3
NUM_LATENT_STONES = 8
NUM_POTION_TYPES = 6
NUM_STONE_MAPS = 8
NUM_POTION_MAPS = 48
NUM_ROTATIONS = 4

#: Observation/action slot limits (``MAX_STONES``, ``MAX_POTIONS``).
MAX_STONES = 3
MAX_POTIONS = 12

#: Default reward weights: coefficients, offset, bonus (§1.2).
DEFAULT_REWARD_WEIGHTS: tuple[tuple[float, float, float], float, float] = ((1.0, 1.0, 1.0), 0.0, 12.0)


def coords_to_index(coords) -> int:
    """Index of a ±1 vector: coordinate 0 is the least significant bit."""
    return sum(((int(c) + 1) // 2) << k for k, c in enumerate(coords))


def index_to_coords(index: int, dims: int = NUM_DIMS) -> tuple[int, ...]:
    """Inverse of :func:`coords_to_index`."""
    return tuple(1 if (index >> k) & 1 else -1 for k in range(dims))


#: (8, 3) int8: coordinates of latent stone ``i``.
STONE_COORDS = np.array([index_to_coords(i) for i in range(NUM_LATENT_STONES)], dtype=np.int8)
STONE_COORDS.setflags(write=False)

#: Reward indicator (sum of latent coordinates) of each latent stone.
STONE_REWARD_INDICATOR = STONE_COORDS.sum(axis=1).astype(np.int8)
STONE_REWARD_INDICATOR.setflags(write=False)

#: (6, 2): (dim, dir) of latent potion ``i``.
POTION_DIM_DIR = tuple((i // 2, 1 if i % 2 else -1) for i in range(NUM_POTION_TYPES))


def potion_index(dim: int, direction: int) -> int:
    """Latent (or perceived) potion index of ``(dim, dir)``."""
    return 2 * dim + (direction + 1) // 2


def stone_values(reward_weights=DEFAULT_REWARD_WEIGHTS) -> tuple[float, ...]:
    """Value of cashing each latent stone: ``coefficients·c + offset (+ bonus at (1,1,1))``."""
    coefficients, offset, bonus = reward_weights
    coefficients = np.asarray(coefficients, dtype=np.float64)
    values = STONE_COORDS.astype(np.float64) @ coefficients + float(offset)
    values[NUM_LATENT_STONES - 1] += float(bonus)
    return tuple(float(v) for v in values)


# --------------------------------------------------------------------------- maps

#: The 6 permutations of (0, 1, 2) in ``itertools.permutations`` order (§2.2).
PERMUTATIONS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations(range(NUM_DIMS)))
#: dm_alchemy's "perm index" 9·p0 + 3·p1 + p2 of each permutation.
INDEX_TO_PERM_INDEX = tuple(9 * p[0] + 3 * p[1] + p[2] for p in PERMUTATIONS)


def stone_map_pos_dir(stone_map: int) -> tuple[int, int, int]:
    """``pos_dir`` of a stone map index (aligned_k · pos_dir_k = latent_k)."""
    return index_to_coords(stone_map)  # type: ignore[return-value]


def potion_map_parts(potion_map: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(dim_map, dir_map)`` of a potion map index (§2.2)."""
    return PERMUTATIONS[potion_map // 8], index_to_coords(potion_map % 8)  # type: ignore[return-value]


def potion_map_index(dim_map, dir_map) -> int:
    """Potion map index from its parts."""
    return 8 * PERMUTATIONS.index(tuple(int(d) for d in dim_map)) + coords_to_index(dir_map)


def _perceived_potion_table() -> np.ndarray:
    """(48, 6): perceived potion index of each latent potion under each potion map."""
    table = np.zeros((NUM_POTION_MAPS, NUM_POTION_TYPES), dtype=np.int8)
    for pm in range(NUM_POTION_MAPS):
        dim_map, dir_map = potion_map_parts(pm)
        for latent in range(NUM_POTION_TYPES):
            dim, direction = POTION_DIM_DIR[latent]
            perceived_dim = dim_map.index(dim)
            table[pm, latent] = potion_index(perceived_dim, direction * dir_map[dim])
    return table


#: (48, 6): ``PERCEIVED_POTION[potion_map, latent_potion]`` → perceived index 0..5.
PERCEIVED_POTION = _perceived_potion_table()
PERCEIVED_POTION.setflags(write=False)

#: Colour names of perceived potions 0..5 (§2.5).
POTION_COLOURS = ("red", "green", "orange", "yellow", "pink", "turquoise")

# ---------------------------------------------------------------------- rotations

#: Euler angles (x, y, z) in degrees of the 4 possible rotations (§2.3).
ROTATION_ANGLES: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (0.0, 0.0, -45.0),
    (0.0, -45.0, 0.0),
    (-45.0, 0.0, 0.0),
)

#: aligned = R · perceived (integer matrices of §2.3).
ROTATION_MATRICES = np.array(
    [
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 1, 0], [-1, 1, 0], [0, 0, 1]],
        [[1, 0, -1], [0, 1, 0], [1, 0, 1]],
        [[1, 0, 0], [0, 1, 1], [0, -1, 1]],
    ],
    dtype=np.int8,
)
ROTATION_MATRICES.setflags(write=False)

#: perceived = R⁻¹ · aligned.
INVERSE_ROTATION_MATRICES = np.array([np.linalg.inv(r.astype(np.float64)) for r in ROTATION_MATRICES])
INVERSE_ROTATION_MATRICES.setflags(write=False)


def rotation_from_angles(angles) -> int:
    """Rotation number of Euler angles (degrees); raises ``ValueError`` if not one of the 4."""
    angles = tuple(float(a) for a in angles)
    if len(angles) != 3:
        raise ValueError(f"rotation angles must be 3 numbers (x, y, z), got {angles}")
    for number, candidate in enumerate(ROTATION_ANGLES):
        if all(abs(a - b) < 1e-3 for a, b in zip(angles, candidate)):
            return number
    raise ValueError(f"rotation angles {angles} are not one of the possible rotations {ROTATION_ANGLES}")


def perceive_coords(aligned, rotation: int) -> tuple[int, int, int]:
    """Perceived coordinates (in {-1, 0, 1}) of aligned coordinates under a rotation."""
    p = INVERSE_ROTATION_MATRICES[rotation] @ np.asarray(aligned, dtype=np.float64)
    return tuple(int(v) for v in np.rint(p))  # type: ignore[return-value]


def align_coords(perceived, rotation: int) -> tuple[int, int, int] | None:
    """Aligned coordinates of perceived ones, or ``None`` if not a cube vertex under ``rotation``."""
    a = ROTATION_MATRICES[rotation].astype(np.int64) @ np.asarray(perceived, dtype=np.int64)
    if np.all(np.abs(a) == 1):
        return tuple(int(v) for v in a)  # type: ignore[return-value]
    return None


def _perceived_stone_table() -> np.ndarray:
    """(8 stone maps, 4 rotations, 8 latent stones, 3) perceived coordinates."""
    table = np.zeros((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, NUM_DIMS), dtype=np.int8)
    for sm in range(NUM_STONE_MAPS):
        pos_dir = np.array(stone_map_pos_dir(sm))
        for rot in range(NUM_ROTATIONS):
            for latent in range(NUM_LATENT_STONES):
                table[sm, rot, latent] = perceive_coords(STONE_COORDS[latent] * pos_dir, rot)
    return table


#: ``PERCEIVED_STONE[stone_map, rotation, latent]`` → perceived coords in {-1, 0, 1}.
PERCEIVED_STONE = _perceived_stone_table()
PERCEIVED_STONE.setflags(write=False)

#: Names of the perceived stone features by coordinate -1, 0, +1 (§2.4).
STONE_FEATURE_NAMES = (
    ("colour", ("purple", "blurple", "blue")),
    ("size", ("small", "medium", "large")),
    ("roundness", ("pointy", "somewhat pointy", "round")),
)
