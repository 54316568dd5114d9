"""The one table of Alchemy levels: dm_alchemy name → Gymnasium IDs → meaning (spec §5).

Every registered ID, the README's table and :func:`env_id` come from
:data:`LEVELS`. Symbolic IDs run in-process (:mod:`alchemy_gym.envs.symbolic`);
3D IDs drive the Unity server over dm_env_rpc (:mod:`alchemy_gym.envs.rpc`).
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "Alchemy"
EVALUATION_PREFIX = "alchemy/evaluation_episodes"
NUM_EVALUATION_EPISODES = 1000


@dataclass(frozen=True)
class Level:
    """One Alchemy level.

    Attributes:
        name: dm_alchemy level name (``alchemy/...``).
        symbolic_id: Gymnasium ID of the symbolic version, or ``None``.
        rpc_id: Gymnasium ID of the 3D version, or ``None``.
        description: what the level randomises.
    """

    name: str
    symbolic_id: str | None
    rpc_id: str | None
    description: str

    @property
    def is_evaluation(self) -> bool:
        return self.name == EVALUATION_PREFIX


LEVELS: tuple[Level, ...] = (
    Level(
        "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck",
        f"{NAMESPACE}/SymbolicStandard-v0",
        f"{NAMESPACE}/Standard-v0",
        "The standard task: random potion and stone maps, random bottleneck graph (109), random 45° rotation.",
    ),
    Level(
        "alchemy/perceptual_mapping_randomized_with_random_bottleneck",
        f"{NAMESPACE}/SymbolicNoRotation-v0",
        f"{NAMESPACE}/NoRotation-v0",
        "As the standard task without rotation (the evaluation-set distribution).",
    ),
    Level(
        "alchemy/perceptual_mapping_randomized",
        f"{NAMESPACE}/SymbolicRandomizedMaps-v0",
        None,
        "Random potion and stone maps on the full cube, no rotation.",
    ),
    Level(
        "alchemy/all_fixed",
        f"{NAMESPACE}/SymbolicAllFixed-v0",
        f"{NAMESPACE}/AllFixed-v0",
        "Fixed identity maps, full cube, no rotation: only the items change.",
    ),
    Level(
        "alchemy/all_fixed_w_shaping",
        None,
        f"{NAMESPACE}/AllFixedShaping-v0",
        "all_fixed with a potion-use shaping reward (3D only; in symbolic Alchemy shaping has no effect).",
    ),
    Level(
        "alchemy/all_fixed_bottleneck1",
        f"{NAMESPACE}/SymbolicAllFixedBottleneck1-v0",
        None,
        "Fixed maps with the bottleneck1 graph (one x-edge, 9 edges).",
    ),
    Level(
        "alchemy/all_fixed_bottleneck2",
        f"{NAMESPACE}/SymbolicAllFixedBottleneck2-v0",
        None,
        "Fixed maps with the bottleneck2 graph (x-edges only where y = -1, 10 edges).",
    ),
    Level(
        "alchemy/all_fixed_bottleneck3",
        f"{NAMESPACE}/SymbolicAllFixedBottleneck3-v0",
        None,
        "Fixed maps with the bottleneck3 graph (a spanning tree, 7 edges).",
    ),
    Level(
        EVALUATION_PREFIX,
        f"{NAMESPACE}/SymbolicEvaluation-v0",
        f"{NAMESPACE}/Evaluation-v0",
        "The 1000 fixed evaluation episodes (`alchemy/evaluation_episodes/0..999`); "
        'pick one with `reset(options={"episode": i})`.',
    ),
)

#: Symbolic names that map onto another level's symbolic ID (documented aliases).
_SYMBOLIC_ALIASES = {"alchemy/all_fixed_w_shaping": "alchemy/all_fixed"}


def levels() -> tuple[Level, ...]:
    """All levels, in the order of the README's table."""
    return LEVELS


def _normalise(level_name: str) -> str:
    name = level_name.strip()
    if not name.startswith("alchemy/"):
        name = "alchemy/" + name
    return name


def parse_evaluation_name(level_name: str) -> int | None:
    """Episode index of ``alchemy/evaluation_episodes/i``; ``None`` for other names."""
    name = _normalise(level_name)
    if not name.startswith(EVALUATION_PREFIX + "/"):
        return None
    index = name[len(EVALUATION_PREFIX) + 1 :]
    if not index.isdigit() or not 0 <= int(index) < NUM_EVALUATION_EPISODES:
        raise ValueError(
            f"evaluation episode {index!r} in {level_name!r} is not valid: "
            f"allowed {EVALUATION_PREFIX}/0 .. {EVALUATION_PREFIX}/{NUM_EVALUATION_EPISODES - 1}"
        )
    return int(index)


def find_level(level_name: str) -> Level:
    """The :class:`Level` of a dm_alchemy name (with or without ``alchemy/``) or of a registered ID."""
    if not isinstance(level_name, str):
        raise TypeError(f"level name must be a str, got {type(level_name).__name__}")
    for level in LEVELS:
        if level_name in (level.symbolic_id, level.rpc_id):
            return level
    name = _normalise(level_name)
    if parse_evaluation_name(name) is not None:
        name = EVALUATION_PREFIX
    for level in LEVELS:
        if level.name == name:
            return level
    known = ", ".join(level.name for level in LEVELS if not level.is_evaluation)
    raise ValueError(f"unknown Alchemy level {level_name!r}: known levels are {known} and {EVALUATION_PREFIX}/0..999")


def env_id(level_name: str, symbolic: bool = True) -> str:
    """The Gymnasium ID of a dm_alchemy level name.

    ``alchemy/evaluation_episodes/i`` maps to the evaluation ID; play episode
    ``i`` with ``env.reset(options={"episode": i})``.

    >>> env_id("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck")
    'Alchemy/SymbolicStandard-v0'
    >>> env_id("alchemy/all_fixed", symbolic=False)
    'Alchemy/AllFixed-v0'
    """
    level = find_level(level_name)
    if symbolic:
        if level.symbolic_id is None and level.name in _SYMBOLIC_ALIASES:
            level = find_level(_SYMBOLIC_ALIASES[level.name])
        if level.symbolic_id is None:
            raise ValueError(f"level {level.name!r} has no symbolic version")
        return level.symbolic_id
    if level.rpc_id is None:
        raise ValueError(
            f"level {level.name!r} exists only in symbolic Alchemy; the 3D levels are "
            + ", ".join(lv.name for lv in LEVELS if lv.rpc_id)
        )
    return level.rpc_id
