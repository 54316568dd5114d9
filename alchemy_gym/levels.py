"""Where level knowledge lives: the table of Alchemy levels (dm_alchemy name → Gymnasium IDs → meaning,
spec §5), the default level, the evaluation level and the level its episodes were drawn from.

Every registered ID, the README's table and :func:`env_id` come from :data:`LEVELS`. Symbolic IDs run
in-process (:mod:`alchemy_gym.envs.symbolic`); 3D IDs drive the Unity server over dm_env_rpc
(:mod:`alchemy_gym.envs.rpc`). What a level name randomises (its :class:`~alchemy_gym.core.chemistry.LevelRules`,
read from the substrings of :data:`~alchemy_gym.core.chemistry.LEVEL_TOKENS`) is the core's: :func:`level_rules`
gives a level's, the evaluation level's being those of :data:`EVALUATION_PRIOR`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core is imported where it is used: ``import alchemy_gym`` stays light
    from alchemy_gym.core.chemistry import LevelRules

NAMESPACE = "Alchemy"
#: The level the envs and the command line play when none is named: the standard task.
DEFAULT_LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
#: The evaluation level: the 1000 fixed episodes ``alchemy/evaluation_episodes/0..999``.
EVALUATION_PREFIX = "alchemy/evaluation_episodes"
NUM_EVALUATION_EPISODES = 1000
#: The level whose rules the evaluation episodes were drawn from (§7.1): the prior of a belief state or an
#: ideal observer on the evaluation level.
EVALUATION_PRIOR = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"


@dataclass(frozen=True)
class Level:
    """One Alchemy level: a row of :data:`LEVELS` (its identity; what it randomises is :attr:`rules`).

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
        """The level is the evaluation set."""
        return self.name == EVALUATION_PREFIX

    @property
    def prior(self) -> str:
        """The level whose rules its chemistries follow: :data:`EVALUATION_PRIOR` for the evaluation level,
        else the level itself."""
        return EVALUATION_PRIOR if self.is_evaluation else self.name

    @property
    def rules(self) -> LevelRules:
        """What the level randomises (for the evaluation level: the rules its episodes were drawn from)."""
        return level_rules(self.prior)


LEVELS: tuple[Level, ...] = (
    Level(
        DEFAULT_LEVEL,
        f"{NAMESPACE}/SymbolicStandard-v0",
        f"{NAMESPACE}/Standard-v0",
        "The standard task: random potion and stone maps, random bottleneck graph (109), random 45° rotation.",
    ),
    Level(
        EVALUATION_PRIOR,
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

#: The IDs of the evaluation level.
_EVALUATION_IDS = tuple(i for level in LEVELS if level.is_evaluation for i in (level.symbolic_id, level.rpc_id) if i)
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
    raise ValueError(
        f"unknown Alchemy level {level_name!r}: known levels are {known} and "
        f"{EVALUATION_PREFIX}/0..{NUM_EVALUATION_EPISODES - 1}"
    )


def symbolic_level(level_name: str) -> Level:
    """The level a symbolic env plays for a name or ID: ``all_fixed_w_shaping`` plays ``all_fixed`` (shaping
    has no effect in symbolic Alchemy); a ``ValueError`` for a level without a symbolic version."""
    level = find_level(level_name)
    if level.symbolic_id is None and level.name in _SYMBOLIC_ALIASES:
        level = find_level(_SYMBOLIC_ALIASES[level.name])
    if level.symbolic_id is None:
        raise ValueError(
            f"level {level.name!r} has no symbolic version: the symbolic levels are listed by `alchemy-gym levels`"
        )
    return level


def env_id(level_name: str, symbolic: bool = True) -> str:
    """The Gymnasium ID of a dm_alchemy level name.

    ``alchemy/evaluation_episodes/i`` maps to the evaluation ID; play episode
    ``i`` with ``env.reset(options={"episode": i})``.

    >>> env_id("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck")
    'Alchemy/SymbolicStandard-v0'
    >>> env_id("alchemy/all_fixed", symbolic=False)
    'Alchemy/AllFixed-v0'
    """
    if symbolic:
        return symbolic_level(level_name).symbolic_id
    level = find_level(level_name)
    if level.rpc_id is None:
        raise ValueError(
            f"level {level.name!r} exists only in symbolic Alchemy; the 3D levels are "
            + ", ".join(lv.name for lv in LEVELS if lv.rpc_id)
        )
    return level.rpc_id


# ------------------------------------------------------------------ any name dm_alchemy reads (§5.1)


def is_evaluation(level_name: str) -> bool:
    """The name names the evaluation level: one of its IDs, or ``alchemy/evaluation_episodes`` (with or without
    ``alchemy/``) or one of its episodes ``.../i`` (whose index :func:`parse_evaluation_name` checks)."""
    if level_name in _EVALUATION_IDS:
        return True
    name = _normalise(level_name)
    return name.rstrip("/") == EVALUATION_PREFIX or name.startswith(EVALUATION_PREFIX + "/")


def prior_level(level_name: str) -> str:
    """The level whose rules a level's chemistries follow: :data:`EVALUATION_PRIOR` for the evaluation level,
    the dm_alchemy name of an ID, else the name itself (dm_alchemy reads any name, §5.1)."""
    if is_evaluation(level_name):
        return EVALUATION_PRIOR
    for level in LEVELS:
        if level_name in (level.symbolic_id, level.rpc_id):
            return level.name
    return level_name


def level_rules(level_name: str) -> LevelRules:
    """What a level randomises: the :class:`~alchemy_gym.core.chemistry.LevelRules` of :func:`prior_level`
    (shared, immutable)."""
    from alchemy_gym.core.chemistry import LevelRules

    return LevelRules.from_level_name(prior_level(level_name))


def check_level_name(level_name: str) -> str:
    """A name dm_alchemy gives a meaning to: a known level (or its ID), an evaluation episode, or any name
    combining some of :data:`~alchemy_gym.core.chemistry.LEVEL_TOKENS` (e.g.
    ``perceptual_mapping_randomized_with_rotation``). Otherwise a ``ValueError`` listing the known levels
    (dm_alchemy would silently play ``all_fixed``)."""
    from alchemy_gym.core.chemistry import LEVEL_TOKENS

    if not isinstance(level_name, str):
        raise TypeError(f"level name must be a str, got {type(level_name).__name__}")
    if is_evaluation(level_name):
        if _normalise(level_name).rstrip("/") != EVALUATION_PREFIX:
            parse_evaluation_name(level_name)  # checks an episode's index
    elif not any(token in level_name for token in LEVEL_TOKENS):
        find_level(level_name)  # a known level or ID; else raises, listing the known levels
    return level_name
