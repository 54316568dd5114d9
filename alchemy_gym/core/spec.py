"""The game's constants and tables as one named description (spec §1, §2, §4.2, §4.4, §7.2).

:data:`SPEC` is what every implementation of the game reads, by name: the numpy kernel, the
compiled game kernel (:mod:`alchemy_gym.core._kernel`, which checks at start that the description
fits it), the JAX env (as device constants), the search kernel's world model, the server's event
encoder and the client's decoder. Nothing outside the core retypes a number that is here.

* **slots and actions** (§4.2): 3 stone slots, 12 potion slots; an action ``a = action − k`` (``k``
  = 1, or 2 with the end-trial action) is the end-trial action (``a = −2``), the no-op (``a = −1``),
  or stone ``a // 13`` into the cauldron (``a % 13 = 0``) or into potion slot ``a % 13 − 1``. Each
  action's decoding, as arrays, is :meth:`GameSpec.action_table`.
* **items and maps** (§1, §2): 8 latent stones, 6 latent potions, 8 stone maps, 48 potion maps,
  4 rotations, graphs as 12-bit edge masks (4096), the maps of the "fixed" levels.
* **the chemistry row** (a batch's ``chem``, ``EnvState.chem``): potion map, stone map, graph mask,
  rotation, in :attr:`GameSpec.chem_layout` order.
* **episode codes** of a batch row (:data:`SAMPLED`, :data:`GIVEN`) and the **outcome kinds** of an
  applied action (:data:`NOTHING`, :data:`POTION_USED`, :data:`STONE_CASHED`).
* **the observation** (§4.4): a stone's 4 features (perceived coordinates, reward indicator / 3)
  and used flag, a potion's colour and used flag, and what an empty or used slot shows.
* **tables** (read-only numpy arrays): transitions under every edge mask, the perceived features of
  every stone and potion, latent coordinates and reward indicators.

Rules that depend on a level or on settings stay functions of the core: the graph prior
(:func:`alchemy_gym.core.graphs.graph_prior`, :func:`~alchemy_gym.core.graphs.prior_table`) and
the stone values (:func:`alchemy_gym.core.items.stone_values`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from typing import NamedTuple

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import FIXED_POTION_MAP, FIXED_STONE_MAP
from alchemy_gym.core.items import (
    MAX_POTIONS,
    MAX_STONES,
    NUM_DIMS,
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_POTION_TYPES,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_COORDS,
    STONE_REWARD_INDICATOR,
)

#: Version of this description's layout: a compiled kernel states the version it reads and refuses another.
SPEC_VERSION = 1

#: Actions per stone slot: the cauldron, then one per potion slot (§4.2).
STONE_BLOCK = MAX_POTIONS + 1
#: Column of the cauldron in an action's decoding and in a matrix-event row (§7.2).
CAULDRON = MAX_POTIONS
#: Items of one trial as stored in arrays: the stones, then the potions, -1 padded.
ITEM_SLOTS = MAX_STONES + MAX_POTIONS
#: ``a = action - k`` (and the decoded column) of the end-trial action and of the no-op (§4.2).
END_TRIAL = -2
NO_OP = -1
#: ``episode`` codes of a batch row not playing a fixed episode: items drawn, or items given.
SAMPLED = -1
GIVEN = -2
#: Outcome kinds of an applied action.
NOTHING, POTION_USED, STONE_CASHED = 0, 1, 2
#: The chemistry row: the column of each part, in order (a batch's ``chem``, ``EnvState.chem``).
CHEM_LAYOUT = ("potion_map", "stone_map", "graph", "rotation")
CHEM_POTION_MAP, CHEM_STONE_MAP, CHEM_GRAPH, CHEM_ROTATION = range(len(CHEM_LAYOUT))
#: Features of a stone in the observation: perceived coordinates, then the reward indicator (§4.4).
STONE_FEATURE_SIZE = NUM_DIMS + 1
#: Reward indicator scale of the observation and potion colour scale (§4.4).
REWARD_SCALE = 3.0
POTION_TYPE_SCALE = 3.0
#: Observation of an empty or used slot: stone features then used flag, potion colour then used flag (§4.4).
STONE_DEFAULT = (2.0,) * STONE_FEATURE_SIZE + (1.0,)
POTION_DEFAULT = (1.0, 1.0)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


class ActionTable(NamedTuple):
    """The decoding of every action of one action space (§4.2), as read-only int8 arrays indexed by action."""

    #: Stone slot the action moves (0 where it moves none).
    stone: np.ndarray
    #: Where the stone goes: potion slot 0..11, :data:`CAULDRON`; or :data:`NO_OP`, :data:`END_TRIAL`.
    column: np.ndarray


@dataclass(frozen=True, eq=False)
class GameSpec:
    """The game's constants and tables, each by name (see the module docstring). Build: :data:`SPEC`."""

    version: int = SPEC_VERSION
    # slots and actions (§4.2)
    max_stones: int = MAX_STONES
    max_potions: int = MAX_POTIONS
    item_slots: int = ITEM_SLOTS
    stone_block: int = STONE_BLOCK
    cauldron: int = CAULDRON
    end_trial: int = END_TRIAL
    no_op: int = NO_OP
    # items, maps and graphs (§1, §2)
    num_dims: int = NUM_DIMS
    num_latent_stones: int = NUM_LATENT_STONES
    num_potion_types: int = NUM_POTION_TYPES
    num_stone_maps: int = NUM_STONE_MAPS
    num_potion_maps: int = NUM_POTION_MAPS
    num_rotations: int = NUM_ROTATIONS
    num_edges: int = graphs.NUM_EDGES
    num_graph_masks: int = graphs.FULL_GRAPH + 1
    fixed_potion_map: int = FIXED_POTION_MAP
    fixed_stone_map: int = FIXED_STONE_MAP
    # the chemistry row
    chem_layout: tuple[str, ...] = CHEM_LAYOUT
    chem_width: int = len(CHEM_LAYOUT)
    chem_potion_map: int = CHEM_POTION_MAP
    chem_stone_map: int = CHEM_STONE_MAP
    chem_graph: int = CHEM_GRAPH
    chem_rotation: int = CHEM_ROTATION
    # episode codes and outcome kinds
    sampled: int = SAMPLED
    given: int = GIVEN
    nothing: int = NOTHING
    potion_used: int = POTION_USED
    stone_cashed: int = STONE_CASHED
    # the observation (§4.4)
    stone_feature_size: int = STONE_FEATURE_SIZE
    reward_scale: float = REWARD_SCALE
    potion_type_scale: float = POTION_TYPE_SCALE
    # tables (read-only)
    #: (8, 3) int8: latent coordinates of each latent stone.
    stone_coords: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (8,) int8: reward indicator (sum of latent coordinates) of each latent stone.
    stone_reward_indicator: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (8 stone maps, 4 rotations, 8 latent, 3) int8: perceived coordinates.
    perceived_stone: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (48 potion maps, 6 latent) int8: perceived potion.
    perceived_potion: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (4096 edge masks, 8 × 6) int8: ``[mask, 6 * stone + potion]`` → the latent stone after dipping (§1.7).
    transitions: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (8 stone maps, 4 rotations, 8 latent, 4) float32: a stone's observation features.
    stone_features: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (48 potion maps, 6 latent) float32: a potion's observed colour.
    potion_features: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (5,) float32: an empty or used stone slot's features and used flag.
    stone_default: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: (2,) float32: an empty or used potion slot's colour and used flag.
    potion_default: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        tables = {
            "stone_coords": STONE_COORDS,
            "stone_reward_indicator": STONE_REWARD_INDICATOR,
            "perceived_stone": PERCEIVED_STONE,
            "perceived_potion": PERCEIVED_POTION,
            "transitions": graphs.TRANSITIONS,
            "stone_features": _stone_features(),
            "potion_features": (PERCEIVED_POTION / POTION_TYPE_SCALE - 1.0).astype(np.float32),
            "stone_default": np.array(STONE_DEFAULT, dtype=np.float32),
            "potion_default": np.array(POTION_DEFAULT, dtype=np.float32),
        }
        for name, table in tables.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, _frozen(table))

    # ------------------------------------------------------------ derived

    def action_offset(self, end_trial_action: bool) -> int:
        """``k`` of §4.2: the actions below it are the end-trial action (with it) and the no-op."""
        return -self.end_trial if end_trial_action else -self.no_op

    def num_actions(self, end_trial_action: bool) -> int:
        """40, or 41 with the end-trial action (§4.2)."""
        return self.max_stones * self.stone_block + self.action_offset(end_trial_action)

    def no_op_action(self, end_trial_action: bool) -> int:
        """The action that does nothing (0, or 1 with the end-trial action)."""
        return self.action_offset(end_trial_action) + self.no_op

    def action_table(self, end_trial_action: bool) -> ActionTable:
        """Every action's decoding (§4.2) as read-only arrays."""
        return _action_table(self, bool(end_trial_action))

    def stone_stride(self, observe_used: bool) -> int:
        """Observation floats per stone slot: 5, or 4 without the used flag."""
        return self.stone_feature_size + (1 if observe_used else 0)

    def potion_stride(self, observe_used: bool) -> int:
        """Observation floats per potion slot: 2, or 1 without the used flag."""
        return 2 if observe_used else 1

    def observation_size(self, observe_used: bool) -> int:
        """39, or 24 without the used flags (§4.4)."""
        return self.max_stones * self.stone_stride(observe_used) + self.max_potions * self.potion_stride(observe_used)

    def chem_size(self, part: str) -> int:
        """How many indices a part of the chemistry row has (``"potion_map"`` → 48, …)."""
        sizes = {
            "potion_map": self.num_potion_maps,
            "stone_map": self.num_stone_maps,
            "graph": self.num_graph_masks,
            "rotation": self.num_rotations,
        }
        return sizes[part]

    def chem_column(self, part: str) -> int:
        """Column of a part in the chemistry row (``"graph"`` → 2)."""
        return self.chem_layout.index(part)

    def compiled(self) -> dict[str, int]:
        """The integer fields the compiled game kernel is built with (``alchemy_gym/core/_spec.h``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if type(getattr(self, f.name)) is int}

    def describe(self) -> dict:
        """Every int, float and name of the description (the tables left out), e.g. for a peer to compare."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if not isinstance(getattr(self, f.name), np.ndarray)
        }


def _stone_features() -> np.ndarray:
    """(8 stone maps, 4 rotations, 8 latent stones, 4) float32: perceived coords, reward indicator / 3."""
    table = np.zeros((NUM_STONE_MAPS, NUM_ROTATIONS, NUM_LATENT_STONES, STONE_FEATURE_SIZE), dtype=np.float32)
    table[..., :NUM_DIMS] = PERCEIVED_STONE
    table[..., NUM_DIMS] = STONE_REWARD_INDICATOR / REWARD_SCALE
    return table


@cache
def _action_table(spec: GameSpec, end_trial_action: bool) -> ActionTable:
    a = np.arange(spec.num_actions(end_trial_action)) - spec.action_offset(end_trial_action)
    moves = a >= 0
    q = a % spec.stone_block
    stone = np.where(moves, a // spec.stone_block, 0)
    column = np.where(moves, np.where(q == 0, spec.cauldron, q - 1), a)  # a < 0: END_TRIAL or NO_OP itself
    return ActionTable(_frozen(stone.astype(np.int8)), _frozen(column.astype(np.int8)))


#: The description every implementation reads.
SPEC = GameSpec()


def c_header(values: dict[str, int], prefix: str, generator: str) -> str:
    """A C header of ``#define {prefix}{NAME} value`` lines, one per field: how a compiled kernel gets a
    description's numbers without anyone typing them (it is generated, a test checks it is current, and the
    kernel checks at start, field by field, that the description it is given has these values)."""
    guard = f"ALCHEMY_{prefix}H"
    lines = [
        f"/* Generated by `{generator}` from the description's fields: do not edit (a test checks it is current). */",
        f"#ifndef {guard}",
        f"#define {guard}",
    ]
    lines += [f"#define {prefix}{name.upper()} ({value})" for name, value in values.items()]
    lines += ["#endif", ""]
    return "\n".join(lines)


def header() -> str:
    """The compiled game kernel's header, ``alchemy_gym/core/_spec.h`` (``SPEC_MAX_STONES``, …), of :data:`SPEC`."""
    return c_header(SPEC.compiled(), "SPEC_", HEADER_COMMAND)


#: The command that writes the kernels' headers (``scripts/headers.py``).
HEADER_COMMAND = "python scripts/headers.py"
