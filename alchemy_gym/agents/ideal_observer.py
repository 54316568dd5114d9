"""The Bayes-optimal ideal observer, the ideal explorer and the search oracle (spec §6.2–6.4).

How it works
------------
A *world state* is one hypothesis ``(potion map, stone map, graph, rotation)``
allowed by the level; the prior is uniform over maps and rotations times the
graph prior of §1.6. Every observation is a deterministic function of the
world state, so the posterior is simply the prior restricted to the world
states consistent with everything seen. The belief is therefore a **set** of
world states, stored as a Python ``int`` bitset over the trial's *frame* (the
world states still possible when the trial starts, a world state of prior
weight ``k`` getting ``k`` bits), so a belief's probability mass is its
``bit_count``.

Stones are planned in the *perceived* frame: a stone is the pair (perceived
coordinates, reward indicator), a potion its perceived colour. Under a world
state, dipping a perceived stone into a perceived potion gives a known
perceived stone; the world states are partitioned by that outcome once per
(stone, potion) pair. Rotations need no special handling: a world state whose
rotation does not align a stone is simply inconsistent.

The search is dm_alchemy's: expectimax over the actions "stone type into potion
colour" and "end the trial" (cash every positive stone), objective ``(expected
reward, -expected number of potions used)``, ties (within ``TIE_TOLERANCE``)
resolved in favour of ending the trial and then of the first action in
dm_alchemy's order (stones in the order of its ``Counter``, colours by first
potion slot). The ideal explorer's objective is instead minus the expected
number of world states left at the trial's end.

The search runs in a C kernel (``alchemy_gym/agents/_search.c``, the extension
``alchemy_gym.agents._search`` built by ``setup.py``). Its values and decisions
are those of the plain expectimax (:func:`reference_search`, which the tests
compare it with on small states); it gets there with far fewer nodes:

* nodes are memoised for the trial in one table (exact values and fail-low
  upper bounds) within a memory budget; once full, the entries of the nodes
  with the fewest potions left make room;
* the prior is invariant under the 48 symmetries of the perceived stone cube
  and the 48 colour relabellings (checked on the level's world states, which
  the group permutes, see :class:`Symmetry`): a node is keyed by its image
  under one group element chosen from the node alone, so nodes that a
  symmetry maps onto each other, or that reach the same belief by different
  observations, are searched once (the root is always searched: a stored
  action belongs to the representative);
* colours of pairs never observed are interchangeable when their (count,
  partner count) agree: only the first of each class is searched;
* branch and bound: an action is skipped (or its outcomes cut short) when an
  upper bound cannot beat the best action found so far. The static bound is the
  expected value with the chemistry known, every colour reusable, at most as
  many moves as potions left, and at most what that many moves can add to the
  stones under any chemistry (a move changes one indicator by 2). The
  *perfect-information bound* tightens it: Σ over the outcome's world states
  of prior weight × the trial's value with the world state known, the potions
  counted and shared by the stones (a small deterministic game tabulated per
  world model in a ``_search.PiTable``, see :meth:`WorldModel.pi_cache`). It
  is computed with the candidates for outcomes with at least ``PI_EAGER``
  potions left, only when a candidate is about to be searched from
  ``PI_LAZY`` potions left, and not below (nor for the search oracle: one
  world state);
* floors (expectimax "fail low"): an outcome is searched with the value it
  must reach for its action to matter; a node that provably stays below its
  floor returns an upper bound instead of its value; if that bound cannot cut
  the action the outcome is searched exactly, so values and decisions are
  those of the plain search;
* actions are tried in the order of the midpoint between their bound and the
  value of cashing right after them, and just before an action is searched its
  outcomes' bounds are replaced by what the memo already knows of them;
* nodes with one potion left are solved in closed form, and so is an outcome
  whose value of cashing now already reaches its bound.

The first trial of an episode (nothing known, 3 stones, 12 potions) is the
expensive part: it is heavy-tailed, from thousands to millions of nodes (see
``benchmarks/bench_ideal_observer.py``); later trials are quick.

The kernel is required: without it (no C compiler at install time) the
ideal-observer agents raise :class:`KernelMissingError`, which says how to
get it; the rest of the package works without it. ``backend="reference"``
runs :func:`reference_search` instead, which is exponential: for tests on a
few stones and potions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from alchemy_gym.agents.base import SimplifiedActionAgent, as_game
from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.game import AlchemyGame, encode_action, slot_action
from alchemy_gym.core.items import (
    NUM_DIMS,
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_POTION_TYPES,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_REWARD_INDICATOR,
)
from alchemy_gym.core.spec import HEADER_COMMAND, SPEC, c_header
from alchemy_gym.levels import EVALUATION_PRIOR, level_rules

try:  # the C search kernel (built by setup.py when a C compiler is available)
    from alchemy_gym.agents import _search as _search_ext
except ImportError:  # pragma: no cover - depends on the build
    _search_ext = None

#: Reward levels of a perceived stone: indicators -3, -1, 1, 3 (the last base-4 digit of its index).
REWARD_LEVELS = 4
#: Number of distinct perceived stones: 27 coordinate triples × 4 reward indicators.
NUM_STONE_OBS = 3**NUM_DIMS * REWARD_LEVELS
#: The action "end the trial" (cash every positive stone).
END = (-1, -1)
#: Relative tolerance under which two expected values count as a tie.
TIE_TOLERANCE = 1e-9
#: Absolute tolerance under which two expected numbers of potions count as a tie.
DEPTH_TOLERANCE = 1e-9
#: Byte budget of the kernel's table of perfect-information values of a world model (all of it is dropped when it
#: is exceeded; the evaluation level needs at most about 162 MB: 109 graphs × 120 stone triples × 12376 counts).
PI_TABLE_BYTES = 256 << 20
#: The perfect-information bound of an outcome with at least PI_EAGER potions left is computed with its candidate
#: (it orders the candidates); with PI_LAZY to PI_EAGER - 1 left only when its candidate is about to be searched;
#: below PI_LAZY never (cheaper to search). The kernel reads them (:data:`SEARCH_SPEC`).
PI_EAGER, PI_LAZY = 8, 3
#: Search backends: the C kernel, or the plain reference expectimax (small states only).
Backend = Literal["c", "reference"]
BACKENDS: tuple[Backend, ...] = ("c", "reference")

KERNEL_MISSING = (
    "the ideal observer needs its compiled search kernel, alchemy_gym.agents._search, which was not built "
    "(no C compiler when alchemy-gym was installed). Install a C compiler (e.g. gcc) and reinstall from source: "
    "`pip install --force-reinstall --no-binary alchemy-gym alchemy-gym`, or `pip install -e .` in a checkout"
)


class KernelMissingError(ImportError):
    """The compiled search kernel ``alchemy_gym.agents._search`` is not built; the message says how to get it."""


def kernel_available() -> bool:
    """Whether the compiled search kernel is built (the ideal-observer agents need it)."""
    return _search_ext is not None


def require_kernel() -> None:
    """Raise :class:`KernelMissingError` (saying how to get the kernel) if it is not built."""
    if _search_ext is None:
        raise KernelMissingError(KERNEL_MISSING)


def _check_backend(backend: Backend) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "c":
        require_kernel()


def counter_order(stones) -> tuple[int, ...]:
    """Stones grouped by type in order of first appearance (the order of dm_alchemy's ``Counter``)."""
    order = list(dict.fromkeys(stones))
    return tuple(o for t in order for o in stones if o == t)


def replace_stone(stones: tuple[int, ...], i: int, new: int) -> tuple[int, ...]:
    """The stone at ``i`` became ``new``: dm_alchemy's ``Counter`` update (a new type goes last)."""
    rest = stones[:i] + stones[i + 1 :]
    if new in rest:
        j = len(rest) - rest[::-1].index(new)
        return rest[:j] + (new,) + rest[j:]
    return rest + (new,)


def stone_obs(coords, reward_indicator: int) -> int:
    """Index 0..107 of a perceived stone: base-3 coordinates (coord 0 most significant) × 4 + reward index."""
    c = (int(coords[0]) + 1) * 9 + (int(coords[1]) + 1) * 3 + (int(coords[2]) + 1)
    return c * 4 + (int(reward_indicator) + 3) // 2


def obs_reward(o: int) -> int:
    """Reward indicator (-3, -1, 1, 3) of a perceived stone index."""
    return 2 * (o % 4) - 3


def _obs_table() -> np.ndarray:
    """(8 stone maps, 4 rotations, 8 latent) → perceived stone index."""
    coords = PERCEIVED_STONE.astype(np.int64) + 1
    c = coords[..., 0] * 9 + coords[..., 1] * 3 + coords[..., 2]
    ridx = (STONE_REWARD_INDICATOR.astype(np.int64) + 3) // 2
    return c * 4 + ridx[None, None, :]


_OBS_OF_LATENT = _obs_table()
#: (48, 6): latent potion of each perceived colour under each potion map.
_LATENT_POTION = np.argsort(PERCEIVED_POTION, axis=1).astype(np.int64)


def _to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def _to_bits(mask: int, n: int) -> np.ndarray:
    """The first ``n`` bits of an int bitset as a bool array (the inverse of ``_to_int``)."""
    raw = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


#: Longest useful path of a stone (a Hamiltonian path of the cube has 7 edges).
MAX_PATH = NUM_LATENT_STONES - 1


@dataclass(frozen=True)
class SearchSpec:
    """The game's shape and the search's tuning as the C kernel reads them, by name: ``_search.Kernel`` (through
    :attr:`KernelTables.spec`) and ``_search.PiTable`` refuse a shape other than the one they are compiled for."""

    num_latent_stones: int
    num_potion_types: int  #: (perceived colours too)
    num_perceived_stones: int  #: :func:`stone_obs` indices
    num_symmetries: int  #: of the perceived stone cube, and of the colours
    max_path: int
    reward_levels: int  #: a perceived stone's index modulo this is its reward level
    pi_eager: int  #: :data:`PI_EAGER`
    pi_lazy: int  #: :data:`PI_LAZY`

    def compiled(self) -> dict[str, int]:
        """The game's shape the search kernel is built with (``alchemy_gym/agents/_search_spec.h``)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("pi_")}


#: The description the search kernel reads (built from the game's, :data:`alchemy_gym.core.spec.SPEC`).
SEARCH_SPEC = SearchSpec(
    num_latent_stones=SPEC.num_latent_stones,
    num_potion_types=SPEC.num_potion_types,
    num_perceived_stones=NUM_STONE_OBS,
    num_symmetries=2**SPEC.num_dims * math.factorial(SPEC.num_dims),
    max_path=MAX_PATH,
    reward_levels=REWARD_LEVELS,
    pi_eager=PI_EAGER,
    pi_lazy=PI_LAZY,
)


def search_header() -> str:
    """The search kernel's header, ``alchemy_gym/agents/_search_spec.h`` (``SEARCH_NUM_POTION_TYPES``, …)."""
    return c_header(SEARCH_SPEC.compiled(), "SEARCH_", HEADER_COMMAND)


def _reach_values(masks) -> np.ndarray:
    """(graphs, 8 latent, 64 potion sets, steps 0..7) int8 → highest reward indicator reachable in at most that
    many moves using only the given latent potions (each any number of times): the kernel's static bound."""
    out = np.zeros((len(masks), NUM_LATENT_STONES, 1 << NUM_POTION_TYPES, MAX_PATH + 1), dtype=np.int8)
    indicator = STONE_REWARD_INDICATOR.astype(np.int64)
    for gi, mask in enumerate(masks):
        trans = np.array(graphs.transition_table(mask), dtype=np.int64).reshape(NUM_LATENT_STONES, NUM_POTION_TYPES)
        for s in range(1 << NUM_POTION_TYPES):
            pots = [p for p in range(NUM_POTION_TYPES) if s >> p & 1]
            reach = np.eye(NUM_LATENT_STONES, dtype=bool)  # reach[c, n]: n reachable from c
            step = np.zeros((NUM_LATENT_STONES, NUM_LATENT_STONES), dtype=bool)
            step[np.arange(NUM_LATENT_STONES), np.arange(NUM_LATENT_STONES)] = True
            for p in pots:
                step[np.arange(NUM_LATENT_STONES), trans[:, p]] = True
            best = np.where(reach, indicator[None, :], -99).max(axis=1)
            out[gi, :, s, 0] = best
            for k in range(1, MAX_PATH + 1):
                reach = (reach.astype(np.int64) @ step.astype(np.int64)) > 0
                out[gi, :, s, k] = np.where(reach, indicator[None, :], -99).max(axis=1)
    return out


# ------------------------------------------------------------------ the symmetry group of the prior


@dataclass(frozen=True, eq=False)
class Symmetry:
    """The symmetry group of a prior: 48 stone-cube symmetries × 48 colour relabellings (read by the kernel).

    World states with the same outcome table and prior weight form a *class* (no observation ever separates
    them); each group element permutes the classes, and a belief's image is the union of its classes' images.
    """

    #: (48, 108) int32: image of each perceived stone under each stone-cube symmetry (element 0 the identity).
    stone_maps: np.ndarray
    #: (48, 6) int32: image of each colour under each relabelling that keeps the colour pairs.
    colour_maps: np.ndarray
    #: (N,) int32: class of each world state of the model.
    world_class: np.ndarray
    #: (48, C) int32: the class permutation of each stone-cube symmetry.
    stone_class_perm: np.ndarray
    #: (48, C) int32: the class permutation of each colour relabelling.
    colour_class_perm: np.ndarray


def _stone_symmetries() -> list[np.ndarray]:
    """The 48 symmetries of the perceived stone cube (permute coordinates, flip signs) as maps of the 108
    perceived stone indices; the reward indicator is kept. Element 0 is the identity."""
    from itertools import permutations, product

    out = []
    for perm in permutations(range(3)):
        for flips in product((1, -1), repeat=3):
            table = np.empty(NUM_STONE_OBS, dtype=np.int64)
            for o in range(NUM_STONE_OBS):
                c, r = divmod(o, 4)
                coords = ((c // 9) - 1, (c // 3) % 3 - 1, c % 3 - 1)
                new = [flips[i] * coords[perm[i]] for i in range(3)]
                table[o] = ((new[0] + 1) * 9 + (new[1] + 1) * 3 + new[2] + 1) * 4 + r
            out.append(table)
    return out


def _colour_symmetries() -> list[np.ndarray]:
    """The 48 relabellings of the perceived potion colours that keep the colour pairs (permute the pairs, swap
    within pairs). Element 0 is the identity."""
    from itertools import permutations, product

    out = []
    for perm in permutations(range(3)):
        for flips in product((0, 1), repeat=3):
            out.append(np.array([2 * perm[p >> 1] + ((p & 1) ^ flips[p >> 1]) for p in range(NUM_POTION_TYPES)]))
    return out


def _fingerprints(table: np.ndarray) -> np.ndarray:
    """(N, 2) int64: two independent random projections of each world state's outcome table (equal rows, equal
    fingerprints; distinct rows collide with probability about 2**-128)."""
    flat = table.reshape(table.shape[0], -1).astype(np.int64) + 1
    keys = np.random.RandomState(0).randint(1, 1 << 62, size=(flat.shape[1], 2), dtype=np.int64)
    return np.concatenate([flat[i : i + 4096] @ keys for i in range(0, len(flat), 4096)])


def _moved(table: np.ndarray, stones: np.ndarray, smap: np.ndarray, cmap: np.ndarray) -> np.ndarray | None:
    """The outcome table of the image of each world state under relabelling stones by ``smap`` and colours by
    ``cmap`` (``table[w, i, p]``: what stone ``stones[i]`` becomes in colour ``p``, -1 impossible), or None when
    the relabelling does not map the possible stones onto themselves."""
    if set(smap[stones].tolist()) != set(stones.tolist()):
        return None
    column = np.full(NUM_STONE_OBS, -1, dtype=np.int64)
    column[stones] = np.arange(stones.size)
    sinv = column[np.argsort(smap)[stones]]  # column of the stone that lands on stones[i]
    moved = table[:, sinv][:, :, np.argsort(cmap)]
    relabel = np.append(smap, -1).astype(np.int16)  # index -1 (impossible) stays -1
    return relabel[moved]


def _class_perm(classes: dict, moved_fp: np.ndarray, cls: np.ndarray, weight: np.ndarray):
    """The permutation of world-state classes induced by a relabelling (None if it is not a symmetry of the
    prior: some image is no world state, two classes meet, or a prior weight changes)."""
    n = len(classes)
    perm = np.full(n, -1, dtype=np.int64)
    for w in range(moved_fp.shape[0]):
        c = cls[w]
        if perm[c] >= 0:
            continue
        target = classes.get((int(moved_fp[w, 0]), int(moved_fp[w, 1]), int(weight[w])))
        if target is None:
            return None
        perm[c] = target
    if len(set(perm.tolist())) != n:
        return None
    return perm


def _closure(generators: list[int], tables: list[np.ndarray], perms: dict) -> list[np.ndarray] | None:
    """Class permutations of every element of a group (elements given by their ``tables``, element 0 the
    identity) from those of its generators: breadth first over compositions."""
    index = {tuple(t.tolist()): i for i, t in enumerate(tables)}
    out: dict[int, np.ndarray] = {0: np.arange(len(next(iter(perms.values()))))}
    frontier = [0]
    while frontier:
        nxt = []
        for a in frontier:
            for g in generators:
                i = index.get(tuple(tables[g][tables[a]].tolist()))  # apply a, then g
                if i is None:
                    return None
                perm = perms[g][out[a]]
                if i in out:
                    if not np.array_equal(out[i], perm):
                        return None
                    continue
                out[i] = perm
                nxt.append(i)
        frontier = nxt
    if len(out) != len(tables):
        return None
    return [out[i] for i in range(len(tables))]


def _symmetry_group(model: WorldModel) -> Symmetry | None:
    """The symmetry group of the prior (stone cube × colour relabelling), or None when some generator is not a
    symmetry (levels with rotations, restricted maps, one chemistry)."""
    if model.size < 2 or len(set(model.rotation.tolist())) > 1 or not model.all_potion_maps:
        return None
    stones, colours = _stone_symmetries(), _colour_symmetries()
    possible = np.flatnonzero((model.latent >= 0).any(axis=0))
    index = np.arange(model.size)
    table = np.empty((model.size, possible.size, NUM_POTION_TYPES), dtype=np.int16)
    for i, o in enumerate(possible):
        for p in range(NUM_POTION_TYPES):
            table[:, i, p] = model.outcomes(index, int(o), p)
    fp = _fingerprints(table)
    keys = list(zip(fp[:, 0].tolist(), fp[:, 1].tolist(), model.weight.tolist()))
    classes: dict = {}
    cls = np.empty(model.size, dtype=np.int64)
    for w, key in enumerate(keys):
        cls[w] = classes.setdefault(key, len(classes))
    # generators: one flip, a transposition and a 3-cycle of the axes (elements 1, 8 and 24 of the lists)
    generators = (1, 8, 24)
    sperm, cperm = {}, {}
    for g in generators:
        for perms, smap, cmap in ((sperm, stones[g], colours[0]), (cperm, stones[0], colours[g])):
            moved = _moved(table, possible, smap, cmap)
            perm = None if moved is None else _class_perm(classes, _fingerprints(moved), cls, model.weight)
            if perm is None:
                return None
            perms[g] = perm
    stone_perms = _closure(list(generators), stones, sperm)
    colour_perms = _closure(list(generators), colours, cperm)
    if stone_perms is None or colour_perms is None:
        return None
    return Symmetry(
        stone_maps=np.array(stones, dtype=np.int32),
        colour_maps=np.array(colours, dtype=np.int32),
        world_class=cls.astype(np.int32),
        stone_class_perm=np.array(stone_perms, dtype=np.int32),
        colour_class_perm=np.array(colour_perms, dtype=np.int32),
    )


# ------------------------------------------------------------------ world model


class WorldModel:
    """All world states a level allows, with their prior and how stones react under each.

    Args:
        rules: the level (which maps, graphs and rotations are possible).
        chemistry: if given, the prior is this single chemistry (the search oracle).
    """

    def __init__(self, rules: LevelRules, chemistry: Chemistry | None = None) -> None:
        if chemistry is not None:
            pms, sms, rots = [chemistry.potion_map], [chemistry.stone_map], [chemistry.rotation]
            masks, prior = [chemistry.graph], np.ones(1)
        else:
            pms, sms, rots = list(rules.potion_maps), list(rules.stone_maps), list(rules.rotations)
            masks = list(rules.graph_masks)
            prior = graphs.graph_prior([[list(r) for r in c] for c in rules.constraints]).astype(np.float64)
        # Integer prior weights (the prior takes few distinct rational values).
        fracs = [Fraction(float(p)).limit_denominator(1 << 20) for p in prior]
        denominator = 1
        for f in fracs:
            denominator = denominator * f.denominator // np.gcd(denominator, f.denominator)
        gweights = np.array([int(f * denominator) for f in fracs], dtype=np.int64)
        g = np.arange(len(masks))
        pm_a, sm_a, g_a, rot_a = (a.ravel() for a in np.meshgrid(pms, sms, g, rots, indexing="ij"))
        self.size = pm_a.size
        #: The prior is symmetric under relabelling colours (every potion map possible, uniformly).
        self.all_potion_maps = len(set(pms)) == NUM_POTION_MAPS
        self.potion_map, self.stone_map, self.graph, self.rotation = pm_a, sm_a, g_a, rot_a
        self.weight = gweights[g_a]
        self.graph_masks = masks
        #: (G, 8, 6) int8: latent stone after each latent potion type, per graph.
        self.trans = np.array([graphs.transition_table(m) for m in masks], dtype=np.int8).reshape(
            len(masks), NUM_LATENT_STONES, NUM_POTION_TYPES
        )
        #: (N, 8) perceived stone index of each latent stone.
        self.obs = _OBS_OF_LATENT[sm_a, rot_a]
        #: (N, 108) latent stone of each perceived stone, -1 where inconsistent.
        lat = np.full((self.size, NUM_STONE_OBS), -1, dtype=np.int8)
        rows = np.repeat(np.arange(self.size), NUM_LATENT_STONES)
        lat[rows, self.obs.ravel()] = np.tile(np.arange(NUM_LATENT_STONES, dtype=np.int8), self.size)
        self.latent = lat
        self.latent_potion = _LATENT_POTION[pm_a]  # (N, 6)
        self.full = (1 << self.size) - 1
        #: (G, 8, 64, 8) int8: see _reach_values (the kernel's static bound).
        self.reach_value = _reach_values(masks)
        self._symmetry: tuple[Symmetry | None] | None = None
        self._pi_caches: dict = {}  # bonus -> _search.PiTable
        #: Value of cashing each latent stone coded ``(stones worth 1) | (stones worth gold) << 4``, or None if it
        #: is not the same in every world state (the perfect-information bound is then not used).
        codes = np.where(self.obs % 4 == 3, 16, np.where(self.obs % 4 == 2, 1, 0))
        self.latent_codes = tuple(int(c) for c in codes[0]) if (codes == codes[0]).all() else None

    def symmetries(self) -> Symmetry | None:
        """The prior's symmetry group, or None where the prior has none that the kernel uses (computed once)."""
        if self._symmetry is None:
            self._symmetry = (_symmetry_group(self),)
        return self._symmetry[0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pi_caches"] = {}  # tables of up to PI_TABLE_BYTES: a copy fills its own
        return state

    def pi_cache(self, bonus: float):
        """The kernel's table of perfect-information values (``_search.PiTable``), one per bonus, shared by every
        search on this model: its values depend only on the graph, the latent stones and the potion counts.
        Filled block by block as searches need them, within ``PI_TABLE_BYTES``; None without the kernel or when
        the bound does not apply (the value of a latent stone differs between world states)."""
        if _search_ext is None or self.latent_codes is None:
            return None
        table = self._pi_caches.get(bonus)
        if table is None:
            table = self._pi_caches[bonus] = _search_ext.PiTable(
                trans=self.trans,
                codes=np.array(self.latent_codes, dtype=np.uint8),
                bonus=float(bonus),
                budget=PI_TABLE_BYTES,
                spec=SEARCH_SPEC,
            )
        return table

    def outcomes(self, index: np.ndarray, o: int, p: int) -> np.ndarray:
        """Perceived stone after dipping stone ``o`` in colour ``p`` for world states ``index`` (-1: inconsistent)."""
        lat = self.latent[index, o].astype(np.int64)
        ok = lat >= 0
        lp = self.latent_potion[index, p]
        new = self.trans[self.graph[index], np.where(ok, lat, 0), lp]
        res = self.obs[index, new]
        return np.where(ok, res, -1)


_MODELS: dict = {}


def world_model(rules: LevelRules) -> WorldModel:
    """The (cached) world model of a level's rules."""
    key = (rules.potion_maps, rules.stone_maps, rules.graph_masks, rules.rotations)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = WorldModel(rules)
    return model


# ------------------------------------------------------------------ what the kernel reads


@dataclass(frozen=True, eq=False)
class KernelTables:
    """One trial's world model as ``_search.Kernel(tables)`` reads it, attribute by attribute.

    The rows are the *bits* of the trial's frame (``n`` of them: a world state of prior weight ``k`` has ``k``
    consecutive bits); ``G`` is the number of graphs.
    """

    graph: np.ndarray  #: (n,) int32: graph index of each bit
    latent_potion: np.ndarray  #: (n, 6) uint8: latent potion of each perceived colour
    latent: np.ndarray  #: (n, 108) int8: latent stone of each perceived stone, -1 where inconsistent
    obs: np.ndarray  #: (n, 8) uint8: perceived stone of each latent stone
    first: bytes  #: bitset (little endian, 8 bytes a 64-bit word) of the first bit of each world state
    trans: np.ndarray  #: (G, 8, 6) int8: latent stone after each latent potion type
    reach: np.ndarray  #: (G, 8, 64, 8) int8: the static bound's table (see _reach_values)
    bonus: float  #: extra reward of a stone of indicator 3
    memo_bytes: int  #: memory budget of the memo table
    seen: tuple[int, ...]  #: perceived stones seen in the episode so far (part of the symmetry keys)
    minimise: bool  #: the ideal explorer's objective
    symmetry: Symmetry | None  #: the prior's symmetry group (None: keys on the belief itself)
    bit_class: np.ndarray | None  #: (n,) int32: world-state class of each bit (with ``symmetry``)
    pi_table: object | None  #: the world model's ``_search.PiTable`` (None: no perfect-information bound)
    spec: SearchSpec = SEARCH_SPEC  #: the game's shape the kernel checks, and the search's tuning


@dataclass(frozen=True)
class SearchRequest:
    """One search from a node, as ``Kernel.search(request)`` reads it."""

    stones: tuple[int, ...]  #: present perceived stones, in the order actions are tried
    potions: tuple[int, ...]  #: count of each colour
    belief: bytes  #: bitset over the frame's bits (little endian, 8 bytes a word); its weight is its bit count
    touched: int  #: colour pairs (bit k: colours 2k, 2k + 1) about which something has been observed
    root: bool  #: search the node itself, never answer from the memo (the action is then the node's own)
    symmetric: bool  #: key nodes by their symmetry class (needs ``KernelTables.symmetry``)
    colour_order: tuple[int, ...]  #: the order colours are tried (ties go to the first)


@dataclass
class _Frame:
    """World states still possible at the start of a trial, re-indexed 0..n-1 for small bitsets."""

    index: np.ndarray  # global world state of each bit; a world state of prior weight k has k copies
    first: int  # one bit per distinct world state (to count world states)


# ------------------------------------------------------------------ planner


class Planner:
    """Expectimax over one trial on a set-of-world-states belief (dm_alchemy's search, exact and memoised).

    Args:
        model: the world states and the prior.
        bonus: extra reward of the best stone (the value of indicator 3 is ``3 + bonus``).
        minimise_world_states: objective of the ideal explorer (fewest world states at trial end).
        memo_mb: memory budget of the kernel's memo in MB (once full, the entries of nodes with the fewest
            potions left make room; values and decisions never depend on it, only speed does).
        pi_bound: tighten outcome bounds with the perfect-information value; values and decisions never depend
            on it, only the nodes searched do.
        backend: ``"c"`` (the kernel) or ``"reference"`` (:func:`reference_search`: small states only).
    """

    def __init__(
        self,
        model: WorldModel,
        bonus: float = 12.0,
        minimise_world_states: bool = False,
        memo_mb: int = 256,
        pi_bound: bool = True,
        backend: Backend = "c",
    ) -> None:
        if isinstance(memo_mb, bool) or not isinstance(memo_mb, int) or memo_mb < 1:
            raise ValueError(f"memo_mb must be a positive int (MB), got {memo_mb!r}")
        _check_backend(backend)
        self.model = model
        self.bonus = float(bonus)
        self.minimise = minimise_world_states
        self.memo_mb = memo_mb
        self.pi_bound = pi_bound
        self.backend = backend
        self.belief_global = model.full
        self.frame: _Frame | None = None
        self.belief = 0
        #: Nodes the kernel searched (all searches of this planner).
        self.nodes = 0
        #: Colour pairs (bit k = colours 2k, 2k+1) about which something has been observed. Colour relabelling
        #: is a symmetry of the prior only when every potion map is possible.
        self.touched = 0 if model.all_potion_maps else 0b111
        self.colour_order: tuple[int, ...] = tuple(range(NUM_POTION_TYPES))
        #: Whether the kernel keys nodes by their symmetry class (when the prior has its symmetry group).
        self.sym_mode = False
        self._seen: set[int] = set()
        self._outcome_cache: dict = {}
        self._consistent_cache: dict = {}
        self._end_cache: dict = {}
        self._nbytes = 8
        #: The trial's kernel (created at the trial's first search; its memo lives for the trial).
        self._kernel = None

    # ---------------------------------------------------------------- belief

    def consistent_global(self, o: int) -> int:
        """World states (global bitset) under which perceived stone ``o`` can exist."""
        mask = self._consistent_cache.get(o)
        if mask is None:
            mask = self._consistent_cache[o] = _to_int(self.model.latent[:, o] >= 0)
        return mask

    def new_trial(self, stones: list[int]) -> None:
        """A trial starts with these perceived stones: restrict the belief and re-index."""
        for o in stones:
            self.belief_global &= self.consistent_global(o)
        if not self.belief_global:
            raise RuntimeError("the stones seen are impossible under the level's prior")
        index = np.flatnonzero(_to_bits(self.belief_global, self.model.size))
        weights = self.model.weight[index]
        copies = weights // np.gcd.reduce(weights)
        # Each world state gets as many bits as its prior weight: a belief's mass is one bit_count().
        first = np.zeros(int(copies.sum()), dtype=bool)
        first[np.concatenate(([0], np.cumsum(copies)[:-1]))] = True
        self.frame = _Frame(np.repeat(index, copies), _to_int(first))
        self.belief = (1 << first.size) - 1
        self._nbytes = (first.size + 63) // 64 * 8
        self._outcome_cache.clear()
        self._seen.update(stones)
        self.sym_mode = self.model.symmetries() is not None
        self._kernel = None

    def _local_to_global(self, local: int) -> int:
        index = self.frame.index
        full = np.zeros(self.model.size, dtype=bool)
        full[index[_to_bits(local, index.size)]] = True
        return _to_int(full)

    def observe(self, o: int, p: int, result: int) -> None:
        """Stone ``o`` went into colour ``p`` and became ``result``."""
        for res, mask in self._outcomes(o, p):
            if res == result:
                if self.belief & mask != self.belief:
                    self.touched |= 1 << (p >> 1)
                self.belief &= mask
                break
        else:
            self.belief = 0
        if not self.belief:
            raise RuntimeError(f"observation stone {o} + potion {p} -> {result} is impossible under the belief")
        self.belief_global = self._local_to_global(self.belief)

    def _outcomes(self, o: int, p: int) -> list[tuple[int, int]]:
        """``(resulting stone, frame bitset of the world states giving it)`` of dipping ``o`` into ``p``: the
        unchanged stone first, then by index."""
        key = o * NUM_POTION_TYPES + p
        out = self._outcome_cache.get(key)
        if out is None:
            res = self.model.outcomes(self.frame.index, o, p)
            out = [(int(r), _to_int(res == r)) for r in np.unique(res) if r >= 0]
            out.sort(key=lambda t: (t[0] != o, t[0]))
            self._outcome_cache[key] = out
        return out

    def weight(self, mask: int) -> int:
        """Prior mass of a belief (in units of the smallest prior weight)."""
        return mask.bit_count()

    def num_world_states(self, mask: int | None = None) -> int:
        """Number of distinct world states in a belief (default the current one)."""
        return ((self.belief if mask is None else mask) & self.frame.first).bit_count()

    def end_value(self, stones: tuple[int, ...]) -> float:
        """Value of ending the trial now (cash every positive stone)."""
        value = self._end_cache.get(stones)
        if value is None:
            value = 0.0
            for o in stones:
                r = obs_reward(o)
                if r == 3:
                    value += 3.0 + self.bonus
                elif r > 0:
                    value += r
            self._end_cache[stones] = value
        return value

    def end_objective(self, stones: tuple[int, ...], belief: int) -> float:
        """The objective of ending the trial now: its value, or minus the world states left (the explorer)."""
        return -float(self.num_world_states(belief)) if self.minimise else self.end_value(stones)

    # ---------------------------------------------------------------- search

    def best_action(
        self, stones: tuple[int, ...], potions: tuple[int, ...], colour_order: tuple[int, ...] | None = None
    ) -> tuple[tuple[int, int], float, float]:
        """``((stone obs, colour) or END, expected objective, expected potions used)`` from the current belief.

        ``stones`` are the present stones in :func:`counter_order` (ties go to the first); ``potions`` the
        count of each colour; ``colour_order`` the order in which colours are tried (ties go to the first;
        default 0..5).
        """
        if colour_order is not None:
            self.colour_order = tuple(colour_order) + tuple(c for c in range(NUM_POTION_TYPES) if c not in colour_order)
        value, depth, action = self._search(tuple(stones), tuple(potions), self.belief, self.touched, root=True)
        return action, value, depth

    def action_values(
        self, stones: tuple[int, ...], potions: tuple[int, ...]
    ) -> dict[tuple[int, int], tuple[float, float]]:
        """``(expected objective, expected potions used)`` of every action with an effect (for analysis: each
        outcome is searched exactly, none is pruned)."""
        stones, potions = tuple(stones), tuple(potions)
        total = self.weight(self.belief)
        out = {END: (self.end_objective(stones, self.belief), 0.0)}
        for i, o in enumerate(stones):
            if o in stones[:i]:
                continue
            for p in range(NUM_POTION_TYPES):
                if not potions[p]:
                    continue
                children = [(res, self.belief & mask) for res, mask in self._outcomes(o, p)]
                children = [(res, child) for res, child in children if child]
                if len(children) == 1 and children[0][0] == o:
                    continue
                new_potions = potions[:p] + (potions[p] - 1,) + potions[p + 1 :]
                touched = self.touched if len(children) == 1 else self.touched | 1 << (p >> 1)
                value = depth = 0.0
                for res, child in children:
                    w = child.bit_count()
                    new_stones = stones if res == o else replace_stone(stones, i, res)
                    v, d, _ = self._search(new_stones, new_potions, child, touched)
                    value += w / total * v
                    depth += w / total * (d + 1.0)
                out[(o, p)] = (value, depth)
        return out

    def _search(self, stones, potions, belief: int, touched: int, root: bool = False):
        """``(value, expected potions used, action)`` of a node, by the planner's backend. ``action`` may be
        None for a node answered from the kernel's memo (never for the root)."""
        if self.backend == "reference":
            return reference_search(self, stones, potions, belief)
        if self._kernel is None:
            self._kernel = _search_ext.Kernel(self.kernel_tables())
        result = self._kernel.search(
            SearchRequest(
                stones=stones,
                potions=potions,
                belief=belief.to_bytes(self._nbytes, "little"),
                touched=touched,
                root=root,
                symmetric=self.sym_mode,
                colour_order=self.colour_order,
            )
        )
        self.nodes += result.nodes
        return result.value, result.depth, result.action

    def pi_active(self) -> bool:
        """Whether the perfect-information bound is used: not for the explorer, nor for a model of one world
        state (the search oracle), where it is about the static bound and costs more than it saves."""
        return (
            self.pi_bound
            and not self.minimise
            and self.model.size > 1
            and self.model.latent_codes is not None
            and len(self.model.graph_masks) <= 65536
        )

    def kernel_tables(self) -> KernelTables:
        """The current trial's tables for the kernel (per bit of the frame)."""
        model, index = self.model, self.frame.index
        sym = model.symmetries()
        return KernelTables(
            graph=np.ascontiguousarray(model.graph[index], dtype=np.int32),
            latent_potion=np.ascontiguousarray(model.latent_potion[index], dtype=np.uint8),
            latent=np.ascontiguousarray(model.latent[index], dtype=np.int8),
            obs=np.ascontiguousarray(model.obs[index], dtype=np.uint8),
            first=self.frame.first.to_bytes(self._nbytes, "little"),
            trans=model.trans,
            reach=model.reach_value,
            bonus=self.bonus,
            memo_bytes=self.memo_mb << 20,
            seen=tuple(sorted(self._seen)),
            minimise=self.minimise,
            symmetry=sym,
            bit_class=None if sym is None else np.ascontiguousarray(sym.world_class[index], dtype=np.int32),
            pi_table=model.pi_cache(self.bonus) if self.pi_active() else None,
        )

    def kernel_stats(self) -> dict | None:
        """Sizes of the trial kernel's memo (``memo``, ``memo_shallow``: exact values with more than two and
        with two potions left; ``upper``: upper bounds; ``replaced``) and its nodes; None before its search."""
        return None if self._kernel is None else self._kernel.stats()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_kernel"] = None  # a C object: a copy builds its own (with an empty memo) when it next searches
        return state


def _better(value: float, depth: float, best_value: float, best_depth: float) -> bool:
    """The search's comparison: a higher objective beyond the tie tolerance, or a tie and fewer potions."""
    tol = TIE_TOLERANCE * max(1.0, abs(best_value))
    return value > best_value + tol or (abs(value - best_value) <= tol and depth < best_depth - DEPTH_TOLERANCE)


def reference_search(planner: Planner, stones, potions, belief: int | None = None):
    """The plain expectimax over one trial: ``(value, expected potions used, action)`` of a node.

    The reference the tests compare the kernel with, on small states: no bounds, floors, symmetry keys or
    colour classes. Every action with an effect is tried in dm_alchemy's order (end the trial first, then each
    stone type in the order of ``stones``, each colour in ``planner.colour_order``); each outcome is weighted by
    its prior mass; an action replaces the best so far only if :func:`_better`, so ties go to the earlier
    action. Nodes are memoised within the call only. Exponential: for a few stones and potions.
    """
    belief = planner.belief if belief is None else belief
    memo: dict = {}

    def search(stones: tuple[int, ...], potions: tuple[int, ...], belief: int):
        key = (tuple(sorted(stones)), potions, belief)
        hit = memo.get(key)
        if hit is not None:
            return hit
        total = belief.bit_count()
        best = (planner.end_objective(stones, belief), 0.0, END)
        for i, o in enumerate(stones):
            if o in stones[:i]:
                continue  # each stone type once, at its first slot
            for p in planner.colour_order:
                if not potions[p]:
                    continue
                children = [(res, belief & mask) for res, mask in planner._outcomes(o, p) if belief & mask]
                if len(children) == 1 and children[0][0] == o:
                    continue  # certainly no effect
                rest = potions[:p] + (potions[p] - 1,) + potions[p + 1 :]
                value = depth = 0.0
                for res, child in children:
                    v, d, _ = search(stones if res == o else replace_stone(stones, i, res), rest, child)
                    prob = child.bit_count() / total
                    value += prob * v
                    depth += prob * (d + 1.0)
                if _better(value, depth, best[0], best[1]):
                    best = (value, depth, (o, p))
        memo[key] = best
        return best

    return search(tuple(stones), tuple(potions), belief)


# ------------------------------------------------------------------------ agent


class IdealObserver(SimplifiedActionAgent):
    """The Bayes-optimal ideal observer of §6.2 (and its variants).

    It plans each trial with :class:`Planner` from what it has seen (perceived
    stones, potion colours, the outcome of each potion it used), acts on the
    lowest-numbered slots of the chosen types, and ends a trial through
    ``use_positive_stones`` (cash positive stones, then burn the trial).

    Args:
        level: the level whose prior the observer assumes (default the evaluation episodes' distribution; the
            evaluation level, its episodes and its IDs mean that one too).
        bonus: value of the best stone minus 3 (12 with the default reward weights).
        minimise_world_states: the ideal explorer (aims to learn, not to score).
        oracle: the search oracle: its prior is the episode's true chemistry.
        backend: ``"c"``, the compiled kernel (:class:`KernelMissingError` if it is not built), or
            ``"reference"``, the plain search (:func:`reference_search`: a few stones and potions only).
    """

    def __init__(
        self,
        level: str = EVALUATION_PRIOR,
        *,
        bonus: float = 12.0,
        minimise_world_states: bool = False,
        oracle: bool = False,
        backend: Backend = "c",
    ) -> None:
        _check_backend(backend)
        super().__init__()
        self.rules = level_rules(level)
        self.bonus = float(bonus)
        self.minimise_world_states = minimise_world_states
        self.oracle = oracle
        self.backend = backend
        self.name = "search-oracle" if oracle else ("ideal-explorer" if minimise_world_states else "ideal-observer")
        self.planner: Planner | None = None
        self._pending: tuple[int, int, int] | None = None
        self._colour_order: tuple[int, ...] = ()
        self._stone_order: tuple[int, ...] = ()
        #: Expected objective of the last decision (for tests and analysis).
        self.last_value: float | None = None

    def reset(self, game, episode: int | None = None) -> None:
        super().reset(game, episode)
        game = as_game(game)
        if self.oracle:
            if game.chemistry is None:
                raise ValueError("the search oracle needs a started episode (it reads the true chemistry)")
            model = WorldModel(self.rules, chemistry=game.chemistry)
        else:
            model = world_model(self.rules)
        self.planner = Planner(
            model, bonus=self.bonus, minimise_world_states=self.minimise_world_states, backend=self.backend
        )
        self._pending = None

    def _observation(self, game: AlchemyGame) -> tuple[list[int], list[int]]:
        stones = [stone_obs(*game.perceived_stone(s)) if s >= 0 else -1 for s in game.stones]
        potions = [game.perceived_potion(p) if p >= 0 else -1 for p in game.potions]
        return stones, potions

    def _sync(self, game: AlchemyGame) -> tuple[list[int], list[int]]:
        """Bring the belief up to date with what the game shows; returns the perceived stones and potions."""
        if self.planner is None:
            raise RuntimeError("call reset(game) before act()")
        stones, potions = self._observation(game)
        if self._new_trial(game):
            self._pending = None
            self.planner.new_trial([o for o in stones if o >= 0])
            self._colour_order = tuple(dict.fromkeys(p for p in potions if p >= 0))
            self._stone_order = counter_order([o for o in stones if o >= 0])
        elif self._pending is not None:
            slot, o, p = self._pending
            self.planner.observe(o, p, stones[slot])
            if stones[slot] != o:
                self._stone_order = replace_stone(self._stone_order, self._stone_order.index(o), stones[slot])
            self._pending = None
        return stones, potions

    def follow(self, game, action: int) -> None:
        """Record an action chosen by someone else (before it is stepped) so the belief keeps track."""
        game = as_game(game)
        stones, potions = self._sync(game)
        s, q = slot_action(action, game.end_trial_action)
        if s >= 0 and q >= 0 and stones[s] >= 0 and potions[q] >= 0:
            self._pending = (s, stones[s], potions[q])

    def act(self, game) -> int:
        game = as_game(game)
        stones, potions = self._sync(game)
        if self._ending:
            return self._end_trial_step(game)
        counts = [0] * NUM_POTION_TYPES
        for p in potions:
            if p >= 0:
                counts[p] += 1
        action, value, _ = self.planner.best_action(self._stone_order, tuple(counts), self._colour_order)
        self.last_value = value
        if action == END:
            return self._end_trial_step(game)
        o, p = action
        slot = stones.index(o)
        self._pending = (slot, o, p)
        return encode_action(slot, potions.index(p), game.end_trial_action)


def ideal_explorer(level: str = EVALUATION_PRIOR, *, backend: Backend = "c") -> IdealObserver:
    """The ideal explorer: the ideal observer minimising the world states left at each trial's end."""
    return IdealObserver(level, minimise_world_states=True, backend=backend)


def search_oracle(level: str = EVALUATION_PRIOR, *, backend: Backend = "c") -> IdealObserver:
    """The search oracle: the ideal observer whose prior is the true chemistry."""
    return IdealObserver(level, oracle=True, backend=backend)


@dataclass
class Decision:
    """One decision along someone else's trial (see :func:`follow_trial`)."""

    ours: tuple[int, int]  # (perceived stone, colour) or END
    value: float  # our expected objective
    potions: float  # our expected number of potions still used
    theirs: tuple[int, int]  # what they did, in the same terms
    #: (expected objective, expected potions) of their action: only where it differs from ours
    their_value: tuple[float, float] | None = None


def follow_trial(agent: IdealObserver, game: AlchemyGame, actions) -> list[Decision]:
    """Play one trial's ``(stone slot, potion slot or -1 for the cauldron)`` actions (e.g.
    ``alchemy_gym.data.events_to_actions`` of published matrix events) on ``game`` while ``agent`` watches,
    comparing each with the agent's own choice at that point. Their first cauldron action (or the end of the
    list) counts as ending the trial; the game is left just before it."""
    out = []
    for stone, potion in list(actions) + [(None, None)]:
        stones, potions = agent._sync(game)
        counts = tuple(sum(1 for q in potions if q == p) for p in range(NUM_POTION_TYPES))
        planner = agent.planner
        ours, value, depth = planner.best_action(agent._stone_order, counts, agent._colour_order)
        ended = stone is None or potion == -1
        theirs = END if ended else (stones[stone], potions[potion])
        decision = Decision(ours, value, depth, theirs)
        if theirs != ours:
            decision.their_value = planner.action_values(agent._stone_order, counts)[theirs]
        out.append(decision)
        if ended:
            break
        action = encode_action(stone, potion, game.end_trial_action)
        agent.follow(game, action)
        game.step(action)
    return out
