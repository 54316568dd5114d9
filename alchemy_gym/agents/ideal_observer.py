"""The Bayes-optimal ideal observer, the ideal explorer and the search oracle (spec §6.2–6.4).

How it works
------------
A *world state* is one hypothesis ``(potion map, stone map, graph, rotation)``
allowed by the level; the prior is uniform over maps and rotations times the
graph prior of §1.6. Every observation is a deterministic function of the
world state, so the posterior is simply the prior restricted to the world
states consistent with everything seen. The belief is therefore a **set** of
world states, stored as a Python ``int`` bitset; its probability mass is a few
``bit_count`` calls (the prior takes only a handful of distinct values).

Stones are planned in the *perceived* frame: a stone is the pair (perceived
coordinates, reward indicator), a potion its perceived colour. Under a world
state, dipping a perceived stone into a perceived potion gives a known
perceived stone; the world states are partitioned by that outcome once per
(stone, potion) pair and kept as bitsets. Rotations need no special handling:
a world state whose rotation does not align a stone is simply inconsistent.

The search is dm_alchemy's: expectimax over the actions "stone type into potion
colour" and "end the trial" (cash every positive stone), objective ``(expected
reward, -expected number of potions used)``, ties resolved in favour of ending
the trial and then of the first action in dm_alchemy's order (stones in the
order of its ``Counter``, colours by first potion slot). What makes it exact
*and* cheaper than dm_alchemy's:

* states are canonical (sorted stones, potion counts per colour, the belief
  bitset) and memoised for the current trial in bounded dicts;
* the prior is invariant under the 48 symmetries of the perceived stone cube
  and the 48 colour relabellings (checked on the level's world states, which
  the group permutes): a node is keyed by its image under one group element
  chosen from the node alone — among the elements giving the least image of
  its stones (then of the stones seen in the episode) and of its potion
  counts, the one whose image of the belief has the least 128-bit digest — so
  nodes that a symmetry maps onto each other, or that reach the same belief
  by different observations, are searched once (on hard first trials about
  40 % fewer nodes than keying by the belief and by the observations made).
  The root is always searched (a stored action belongs to the representative);
* bitsets are re-indexed at each trial start over the world states still
  possible, a world state of prior weight ``k`` getting ``k`` bits, so a
  belief's mass is one ``bit_count``;
* colours of pairs never observed are interchangeable when their (count,
  partner count) agree: only the first of each class is searched;
* branch and bound: an action is skipped (or its outcomes cut short) when an
  upper bound — the expected value with perfect knowledge of the chemistry,
  every colour reusable, at most as many moves as potions left, and at most
  what that many moves can add to the stones under any chemistry (a move
  changes one indicator by 2) — cannot beat the best action found so far;
* the *perfect-information bound* tightens that: Σ over the outcome's world
  states of prior weight × the value of the trial with the world state known,
  the potions counted and shared by the stones (a small deterministic game,
  ``_pi_value``, memoised per world model: its states are graph × latent stones
  × potion counts; tabulated in the kernel). It costs a lookup per world state,
  so it is computed with the candidates for outcomes with at least ``PI_EAGER``
  potions left, only when a candidate is about to be searched from ``PI_LAZY``
  potions left (then kept as the outcome's upper bound in the memo: once per
  node), and not below (nor for the search oracle: one world state). On hard
  first trials it cuts the nodes 3–6 fold (episode 13: 7.1M -> 1.3M), on the
  easiest it costs a little;
* floors (expectimax "fail low"): an outcome is searched with the value it
  must reach for its action to matter; a node that provably stays below its
  floor returns an upper bound instead of its value (kept in a bounded dict);
  if that bound cannot cut the action the outcome is searched exactly, so the
  values and decisions are those of the plain search;
* actions are tried in the order of the midpoint between their bound and the
  value of cashing right after them (fewer actions are searched exactly only to
  be overtaken later), and just before an action is searched its outcomes'
  bounds are replaced by what the memos already know of them (an exact value,
  or the upper bound an outcome returned under an earlier floor), which often
  refutes the action at once: 15–30 % fewer nodes on hard first trials;
* nodes with one potion left are solved in closed form, and so is an outcome whose value of cashing now
  already reaches its bound (its value is that, with no potion used): it is never searched nor keyed.

The first trial of an episode (nothing known, 3 stones, 12 potions) is the
expensive part (see ``benchmarks/bench_ideal_observer.py``); later trials take
milliseconds to a few seconds. The tree is what costs: in pure Python (about
200 µs a node) the first decision of evaluation episodes 1 and 4 takes about
5 s and 25 s, the hard ones many minutes.

The search runs in an optional C kernel (``alchemy_gym/agents/_search.c``, built by ``setup.py`` when a
compiler is available), for the ideal observer, the search oracle and the ideal explorer: a port of
``Planner._search`` with bit-identical values and expected depths, the same decisions and the same nodes
(see ``tests/test_search_kernel.py``), many times faster per node. Its memo is one table (exact values
and upper bounds: one probe finds a node's entry) with a memory budget (``memo_mb``, default 256 MB) and,
once full, replaces the entries of the nodes with the fewest potions left instead of clearing everything as
the Python memos do: the hard first trials stop searching the same subtrees again. Its perfect-information
values are tabulated per world model (``WorldModel.pi_cache``: a ``_search.PiTable`` kept across trials and
episodes, within ``PI_TABLE_BYTES``): one block of codes per (stones, count vector of the latent potion types),
laid out latent-stone multiset × graph and computed on first use from the blocks one potion smaller, so a world
state's value in a bound is one byte read (its potion map picks the block, its stone map the row, its graph the
byte; the frame's consecutive bits differ by graph, so the reads are adjacent). First decision of evaluation
episodes 3, 0, 13 and 16 with the kernel, in that order in one process: 2.4, 2.8, 12.5, 10.3 s (0.42M nodes for
episode 0, 1.3M for episode 13; 2.9, 5.2, 22 and 24 s with the hashed cache of values that the table replaced,
and without the perfect-information bound 2.2 s, 4.6 s, 40 s for the first three, from 0.67M, 1.39M and 7.1M
nodes).
``ALCHEMY_GYM_PURE_PYTHON=1`` selects the Python search.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from alchemy_gym.agents.base import SimplifiedActionAgent, as_game
from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.game import AlchemyGame, encode_action, slot_action
from alchemy_gym.core.items import (
    NUM_LATENT_STONES,
    NUM_POTION_MAPS,
    NUM_POTION_TYPES,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    STONE_REWARD_INDICATOR,
)

try:  # the C kernel of the search (optional: built by setup.py when a compiler is available)
    from alchemy_gym.agents import _search as _search_ext
except ImportError:  # pragma: no cover - depends on the build
    _search_ext = None

#: Number of distinct perceived stones: 27 coordinate triples × 4 reward indicators.
NUM_STONE_OBS = 27 * 4
END = (-1, -1)
#: Relative tolerance under which two expected values count as a tie.
TIE_TOLERANCE = 1e-9
INF = float("inf")
#: Byte budget of the C kernel's table of perfect-information values of a world model (all of it is dropped when
#: it is exceeded; the evaluation level needs at most about 162 MB: 109 graphs × 120 stone triples × 12376 counts).
PI_TABLE_BYTES = 256 << 20
#: The perfect-information bound of an outcome with at least PI_EAGER potions left is computed with its candidate
#: (it orders the candidates); with PI_LAZY to PI_EAGER - 1 left only when its candidate is about to be searched;
#: below PI_LAZY never (cheaper to search). The same in the C kernel.
PI_EAGER, PI_LAZY = 8, 3
#: Bound on the Python search's memo of perfect-information values (cleared when full; about 100 bytes each).
PI_MEMO_ENTRIES = 4_000_000


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


def _node_key(stones, potions, belief: int, nbytes: int) -> int:
    """A 128-bit digest of (stone multiset, potion counts, belief): small memo entries whatever the bitset size."""
    h = hashlib.blake2b(belief.to_bytes(nbytes, "little"), digest_size=16)
    h.update(bytes(sorted(stones)))
    h.update(bytes(potions))  # always 6 bytes: the concatenation is unambiguous
    return int.from_bytes(h.digest(), "little")


_MASK64 = (1 << 64) - 1


def _pi_search(memo: dict, codes, trans: list, g: int, st: tuple[int, ...], cnt: list[int], value: list) -> int:
    """Planner._pi_value's recursion (``trans[s][k]``: latent stone after potion type ``k``; keys as _pi_keys)."""
    key = len(st) << 16 | g
    for c in cnt:
        key = key << 4 | c
    for s in st:
        key = key << 3 | s
    best = memo.get(key)
    if best is not None:
        return best
    best = 0
    for s in st:
        best += codes[s]
    top = len(st) << 4
    for k in range(NUM_POTION_TYPES):
        if best >= top:
            break
        if not cnt[k]:
            continue
        cnt[k] -= 1
        prev = -1
        for j, s in enumerate(st):
            if s == prev:
                continue
            prev = s
            ns = trans[s][k]
            if ns == s:
                continue
            v = _pi_search(memo, codes, trans, g, tuple(sorted(st[:j] + st[j + 1 :] + (ns,))), cnt, value)
            if v != best and value[v] > value[best]:
                best = v
                if best >= top:
                    break
        cnt[k] += 1
    memo[key] = best
    return best


def _pi_keys(g: np.ndarray, st: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """The memo keys of _pi_search for many states at once (rows of ``st`` and ``cnt``)."""
    key = st.shape[1] << 16 | g
    for k in range(cnt.shape[1]):
        key = key << 4 | cnt[:, k]
    for s in range(st.shape[1]):
        key = key << 3 | st[:, s]
    return key


def _fmix64(k: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser on uint64 arrays (wrapping arithmetic, as in the C kernel)."""
    k = k ^ (k >> np.uint64(33))
    k = k * np.uint64(0xFF51AFD7ED558CCD)
    k = k ^ (k >> np.uint64(33))
    k = k * np.uint64(0xC4CEB9FE1A85EC53)
    return k ^ (k >> np.uint64(33))


def _class_mixes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit mixes of each class id 0..n-1 whose sums (mod 2**64) digest a set of classes, order-free
    (the same values as the C kernel's)."""
    c = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        a = _fmix64(c * np.uint64(0x9E3779B185EBCA87) + np.uint64(0x165667B19E3779F9))
        b = _fmix64(c * np.uint64(0xC2B2AE3D27D4EB4F) + np.uint64(0xD6E8FEB86659FD93))
    return a, b


def _to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def _to_bits(mask: int, n: int) -> np.ndarray:
    """The first ``n`` bits of an int bitset as a bool array (the inverse of ``_to_int``)."""
    raw = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


#: Longest useful path of a stone (a Hamiltonian path of the cube has 7 edges).
MAX_PATH = 7


def _reach_values(masks) -> np.ndarray:
    """(graphs, 8 latent, 64 potion sets, steps 0..7) → highest reward indicator reachable in at most that
    many moves using only the given latent potions (each any number of times)."""
    out = np.zeros((len(masks), NUM_LATENT_STONES, 1 << NUM_POTION_TYPES, MAX_PATH + 1), dtype=np.int64)
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


def _symmetry_tables(model: WorldModel):
    """The symmetry group of the prior (stone cube × colour relabelling), or None when some generator is not a
    symmetry (levels with rotations, restricted maps, one chemistry): ``(stone maps, colour maps, class of each
    world state, class permutation of each stone map, of each colour map)``. World states with the same outcome
    table and weight form a class (no observation ever separates them); each symmetry permutes the classes."""
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
    return stones, colours, cls, np.array(stone_perms, dtype=np.int32), np.array(colour_perms, dtype=np.int32)


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
        trans = np.array([graphs.transition_table(m) for m in masks], dtype=np.int64)
        self._trans = trans.reshape(len(masks), NUM_LATENT_STONES, NUM_POTION_TYPES)
        #: (N, 8) perceived stone index of each latent stone.
        self.obs = _OBS_OF_LATENT[sm_a, rot_a]
        #: (N, 108) latent stone of each perceived stone, -1 where inconsistent.
        lat = np.full((self.size, NUM_STONE_OBS), -1, dtype=np.int8)
        rows = np.repeat(np.arange(self.size), NUM_LATENT_STONES)
        lat[rows, self.obs.ravel()] = np.tile(np.arange(NUM_LATENT_STONES, dtype=np.int8), self.size)
        self.latent = lat
        self.latent_potion = _LATENT_POTION[pm_a]  # (N, 6)
        self.full = (1 << self.size) - 1
        self.reach_value = _reach_values(masks)
        self._symmetries: tuple | None = None
        self._group_bytes: tuple | None = None  # the group as the C kernel takes it (see Planner._get_kernel)
        self._pi_caches: dict = {}  # bonus -> _search.PiTable
        #: The Python search's perfect-information values per bonus (see Planner._pi_value), shared like the
        #: kernel's cache.
        self.pi_values: dict[float, dict[int, int]] = {}
        self.trans_lists = self._trans.tolist()
        #: Value of cashing each latent stone coded ``(stones worth 1) | (stones worth gold) << 4``, or None if it
        #: is not the same in every world state (the perfect-information bound is then not used).
        codes = np.where(self.obs % 4 == 3, 16, np.where(self.obs % 4 == 2, 1, 0))
        self.latent_codes = tuple(int(c) for c in codes[0]) if (codes == codes[0]).all() else None

    def symmetries(self):
        """The prior's symmetry group, or None (computed once): ``(stone maps, colour maps, the same as lists,
        class of each world state, class permutations of the stone maps (48, C), of the colour maps (48, C),
        the two mixes of each class summed by a belief's digest)``."""
        if self._symmetries is None:
            tables = _symmetry_tables(self)
            if tables is None:
                self._symmetries = (None,)
            else:
                stones, colours, cls, sperm, cperm = tables
                self._symmetries = (
                    stones,
                    colours,
                    [t.tolist() for t in stones],
                    [t.tolist() for t in colours],
                    cls,
                    sperm,
                    cperm,
                    _class_mixes(sperm.shape[1]),
                )
        return None if self._symmetries[0] is None else self._symmetries

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pi_caches"], state["pi_values"] = {}, {}  # tables (up to PI_TABLE_BYTES): a copy refills its own
        return state

    def pi_cache(self, bonus: float):
        """The C kernel's table of perfect-information values (``_search.PiTable``), one per bonus, shared by every
        search on this model: its values depend only on the graph, the latent stones and the potion counts.
        Filled block by block as searches need them, within ``PI_TABLE_BYTES``; None without the kernel or when
        the bound does not apply (see ``Planner.pi_active``)."""
        if _search_ext is None or self.latent_codes is None:
            return None
        table = self._pi_caches.get(bonus)
        if table is None:
            table = self._pi_caches[bonus] = _search_ext.PiTable(
                len(self.graph_masks),
                np.ascontiguousarray(self._trans, dtype=np.int8).tobytes(),
                bytes(self.latent_codes),
                float(bonus),
                PI_TABLE_BYTES,
            )
        return table

    def available_latent(self, index: np.ndarray, colours: int) -> np.ndarray:
        """Bitmask of latent potions that the perceived colours in ``colours`` are, per world state."""
        out = np.zeros(index.size, dtype=np.int64)
        for p in range(NUM_POTION_TYPES):
            if colours >> p & 1:
                out |= 1 << self.latent_potion[index, p]
        return out

    def stone_bound(self, index: np.ndarray, o: int, colours: int, steps: int) -> np.ndarray:
        """Per world state: the best reward indicator stone ``o`` could reach in ``steps`` moves using any of
        ``colours`` any number of times (an upper bound on what it can really reach)."""
        lat = self.latent[index, o].astype(np.int64)
        ok = lat >= 0
        s = self.available_latent(index, colours)
        v = self.reach_value[self.graph[index], np.where(ok, lat, 0), s, min(steps, MAX_PATH)]
        return np.where(ok, v, 0)

    def outcomes(self, index: np.ndarray, o: int, p: int) -> np.ndarray:
        """Perceived stone after dipping stone ``o`` in colour ``p`` for world states ``index`` (-1: inconsistent)."""
        lat = self.latent[index, o].astype(np.int64)
        ok = lat >= 0
        lp = self.latent_potion[index, p]
        new = self._trans[self.graph[index], np.where(ok, lat, 0), lp]
        res = self.obs[index, new]
        return np.where(ok, res, -1)


@dataclass
class _Frame:
    """World states still possible at the start of a trial, re-indexed 0..n-1 for small bitsets."""

    index: np.ndarray  # global world state of each bit; a world state of prior weight k has k copies
    first: int  # one bit per distinct world state (to count world states)


def kernel_available() -> bool:
    """Whether the C search kernel is built and not disabled by ``ALCHEMY_GYM_PURE_PYTHON``."""
    return _search_ext is not None and not os.environ.get("ALCHEMY_GYM_PURE_PYTHON")


class Planner:
    """Expectimax over one trial on a set-of-world-states belief (dm_alchemy's search, exact and memoised).

    Args:
        model: the world states and the prior.
        bonus: extra reward of the best stone (the value of indicator 3 is ``3 + bonus``).
        minimise_world_states: objective of the ideal explorer (fewest world states at trial end).
        max_memo: bound on the memoised states of a trial in the Python search (a memo is cleared when full).
        memo_mb: memory budget of the C kernel's memos in MB (once full, the entries of nodes with the fewest
            potions left make room; values and decisions never depend on it, only speed does).
        pi_bound: tighten outcome bounds with the perfect-information value (see ``_pi_bound``); values and
            decisions never depend on it, only the nodes searched do.
    """

    def __init__(
        self,
        model: WorldModel,
        bonus: float = 12.0,
        minimise_world_states: bool = False,
        max_memo: int = 2_000_000,
        memo_mb: int = 256,
        pi_bound: bool = True,
    ) -> None:
        if isinstance(memo_mb, bool) or not isinstance(memo_mb, int) or memo_mb < 1:
            raise ValueError(f"memo_mb must be a positive int (MB), got {memo_mb!r}")
        self.model = model
        self.bonus = float(bonus)
        self.minimise = minimise_world_states
        self.belief_global = model.full
        self.frame: _Frame | None = None
        self.belief = 0
        #: Memoised states with more than two potions left, and (cleared first, being cheap to redo) with two.
        self.memo: dict = {}
        self._memo_shallow: dict = {}
        #: Each memo is cleared when it holds this many entries (about 130 bytes each).
        self.max_memo = max_memo
        self.memo_mb = memo_mb
        self._nbytes = 1
        self._outcome_cache: dict = {}
        self._consistent_cache: dict = {}
        self._bound_cache: dict = {}
        self._gain_cache: dict = {}
        self._joint_cache: dict = {}
        self._end_cache: dict = {}
        #: Upper bounds of nodes searched with a floor they did not reach (same keys as the memo).
        self._upper: dict = {}
        #: Keys whose upper bound is their perfect-information bound (see _refine): not computed again.
        self._pi_upper: set = set()
        self.nodes = 0
        #: Colour pairs (bit k = colours 2k, 2k+1) about which something has been observed. Colour relabelling
        #: is a symmetry of the prior only when every potion map is possible.
        self.touched = 0 if model.all_potion_maps else 0b111
        self.colour_order: tuple[int, ...] = tuple(range(NUM_POTION_TYPES))
        # Symmetry keys (see _canonical): nodes are keyed by an image of (stones, potion counts, belief) under the
        # symmetry group of the prior, chosen from the node alone.
        self.sym_mode = False
        self._bit_class = np.zeros(0, dtype=np.int64)  # class (see WorldModel.symmetries) of each first-copy bit
        self._seen: set[int] = set()
        self._s0: tuple[int, ...] = ()
        self._canon_stones: dict = {}
        self._canon_potions: dict = {}
        #: The trial's C search kernel (created lazily, dropped at each new trial; see _search_entry).
        self._kernel = None
        #: Whether outcome bounds are tightened with the perfect-information value (see _pi_bound): same values
        #: and decisions either way, only the nodes searched differ.
        self.pi_bound = pi_bound
        self._pi_rows: tuple | None = None
        self._pi_code_values: list[float] | None = None

    # ---------------------------------------------------------------- frames

    def _global_to_local(self, mask: int) -> tuple[np.ndarray, int]:
        index = np.flatnonzero(_to_bits(mask, self.model.size))
        return index, (1 << index.size) - 1

    def consistent_global(self, o: int) -> int:
        """World states (global bitset) under which perceived stone ``o`` can exist."""
        mask = self._consistent_cache.get(o)
        if mask is None:
            mask = _to_int(self.model.latent[:, o] >= 0)
            self._consistent_cache[o] = mask
        return mask

    def new_trial(self, stones: list[int]) -> None:
        """A trial starts with these perceived stones: restrict the belief and re-index."""
        for o in stones:
            self.belief_global &= self.consistent_global(o)
        if not self.belief_global:
            raise RuntimeError("the stones seen are impossible under the level's prior")
        index, _ = self._global_to_local(self.belief_global)
        weights = self.model.weight[index]
        copies = weights // np.gcd.reduce(weights)
        # Each world state gets as many bits as its prior weight: a belief's mass is one bit_count().
        first = np.zeros(int(copies.sum()), dtype=bool)
        first[np.concatenate(([0], np.cumsum(copies)[:-1]))] = True
        self.frame = _Frame(np.repeat(index, copies), _to_int(first))
        self.belief = (1 << first.size) - 1
        self._nbytes = (first.size + 7) // 8
        self.memo.clear()
        self._memo_shallow.clear()
        self._upper.clear()
        self._pi_upper.clear()
        self._outcome_cache.clear()
        self._seen.update(stones)
        sym = self.model.symmetries()
        self.sym_mode = sym is not None
        if self.sym_mode:
            self._bit_class = sym[4][self.frame.index]
        self._s0 = tuple(sorted(self._seen))
        self._canon_stones.clear()
        self._canon_potions.clear()
        self._bound_cache.clear()
        self._pi_rows = None
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

    # ---------------------------------------------------------------- search

    def _outcomes(self, o: int, p: int) -> list[tuple[int, int]]:
        key = o * NUM_POTION_TYPES + p
        out = self._outcome_cache.get(key)
        if out is None:
            res = self.model.outcomes(self.frame.index, o, p)
            out = [(int(r), _to_int(res == r)) for r in np.unique(res) if r >= 0]
            # the unchanged stone first, then by index (a fixed, readable order)
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
            value = self._end_cache[stones] = self._end_value(stones)
        return value

    def _end_value(self, stones: tuple[int, ...]) -> float:
        total = 0.0
        for o in stones:
            r = obs_reward(o)
            if r == 3:
                total += 3.0 + self.bonus
            elif r > 0:
                total += r
        return total

    def best_action(
        self, stones: tuple[int, ...], potions: tuple[int, ...], colour_order: tuple[int, ...] | None = None
    ) -> tuple[tuple[int, int], float, float]:
        """``((stone obs, colour) or END, expected objective, expected potions used)`` from the current belief.

        ``stones`` are the present stones in :func:`counter_order` (ties go to the first); ``potions`` the
        count of each colour;
        ``colour_order`` the order in which colours are tried (ties go to the first; default 0..5).
        """
        if colour_order is not None:
            self.colour_order = tuple(colour_order) + tuple(c for c in range(NUM_POTION_TYPES) if c not in colour_order)
        value, depth, action = self._search_entry(
            tuple(stones), tuple(potions), self.belief, self.weight(self.belief), self.touched, True
        )
        return action, value, depth

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_kernel"] = None  # a C object: a copy builds its own (with empty memos) when it next searches
        return state

    def kernel_active(self) -> bool:
        """Whether searches run in the C kernel: built and ``ALCHEMY_GYM_PURE_PYTHON`` unset."""
        return kernel_available()

    def _get_kernel(self):
        """The trial's C kernel: the frame's per-bit tables, the symmetry tables; its memos live for the trial."""
        if self._kernel is None:
            model, index = self.model, self.frame.index
            sym = model.symmetries()
            if sym is not None:
                maps = model._group_bytes
                if maps is None:  # the same for every trial: converted once
                    maps = model._group_bytes = tuple(
                        np.ascontiguousarray(a, dtype=np.int32).tobytes()
                        for a in (np.array(sym[0]), np.array(sym[1]), sym[5], sym[6])
                    )
                bit_class = np.ascontiguousarray(self._bit_class, dtype=np.int32).tobytes()
                group = (maps[0], maps[1], bit_class, maps[2], maps[3])
            else:
                group = (b"",) * 5
            self._kernel = _search_ext.Kernel(
                int(index.size),
                np.ascontiguousarray(model.graph[index], dtype=np.int32).tobytes(),
                np.ascontiguousarray(model.latent_potion[index], dtype=np.uint8).tobytes(),
                np.ascontiguousarray(model.latent[index], dtype=np.int8).tobytes(),
                np.ascontiguousarray(model.obs[index], dtype=np.uint8).tobytes(),
                len(model.graph_masks),
                np.ascontiguousarray(model._trans, dtype=np.int8).tobytes(),
                np.ascontiguousarray(model.reach_value, dtype=np.int8).tobytes(),
                self.bonus,
                self.memo_mb << 20,
                bytes(self._s0),
                *group,
                self.frame.first.to_bytes((index.size + 63) // 64 * 8, "little"),
                self.minimise,
                model.pi_cache(self.bonus) if self.pi_active() else None,
            )
            self._kernel_nbytes = (index.size + 63) // 64 * 8
        return self._kernel

    def _search_entry(self, stones, potions, belief, total, touched, root=False):
        """``_search`` from outside the search: in the C kernel when active (same values, depths, actions and
        node semantics), else in Python (also when the kernel declines the state, e.g. too many stones)."""
        if self.kernel_active():
            kernel = self._get_kernel()
            try:
                value, depth, action, nodes = kernel.search(
                    stones,
                    potions,
                    belief.to_bytes(self._kernel_nbytes, "little"),
                    total,
                    touched,
                    root,
                    -INF,
                    self.sym_mode,
                    self.colour_order,
                )
            except ValueError:
                pass
            else:
                self.nodes += nodes
                return value, depth, action
        return self._search(stones, potions, belief, total, touched, root)

    def _bound_masks(self, o: int, colours: int, steps: int) -> tuple[int, int]:
        key = (o, colours, steps)
        masks = self._bound_cache.get(key)
        if masks is None:
            r = self.model.stone_bound(self.frame.index, o, colours, steps)
            masks = (_to_int(r == 1), _to_int(r == 3))
            self._bound_cache[key] = masks
        return masks

    def _joint_gain(self, stones, moves: int) -> float:
        """Most that ``moves`` potions can add to the value of cashing ``stones`` under any chemistry: a move
        changes one stone's reward indicator by 2, and the moves are shared among the stones."""
        rewards = tuple(sorted(obs_reward(o) for o in stones))
        key = (rewards, moves)
        gain = self._gain_cache.get(key)
        if gain is None:
            gold = 3.0 + self.bonus

            def cash(r):
                return gold if r >= 3 else (1.0 if r == 1 else 0.0)

            best = [0.0] * (moves + 1)  # best[k]: most gain with k moves over the stones so far
            for r in rewards:
                gains = [cash(min(r + 2 * k, 3)) - cash(r) for k in range(moves + 1)]
                best = [max(best[k - j] + gains[j] for j in range(k + 1)) for k in range(moves + 1)]
            gain = self._gain_cache[key] = best[moves]
        return gain

    def pi_active(self) -> bool:
        """Whether the perfect-information bound is used (see _pi_bound): not for the explorer, nor for a model of
        one world state (the search oracle), where it is about the static bound and costs more than it saves."""
        return (
            self.pi_bound
            and not self.minimise
            and self.model.size > 1
            and self.model.latent_codes is not None
            and len(self.model.graph_masks) <= 65536
        )

    def _pi_value(self, g: int, st: tuple[int, ...], cnt: list[int]) -> int:
        """The most a trial can still pay with the world state known: graph ``g``, latent stones ``st`` (sorted),
        ``cnt[k]`` potions of latent type ``k`` (the best of cashing now and of every move: a deterministic game);
        coded ``(stones worth 1) | (stones worth gold) << 4``. Memoised per world model and bonus (bounded)."""
        memo = self.model.pi_values.setdefault(self.bonus, {})
        if len(memo) >= PI_MEMO_ENTRIES:
            memo.clear()
        return _pi_search(memo, self.model.latent_codes, self.model.trans_lists[g], g, st, cnt, self._code_values())

    def _code_values(self) -> list[float]:
        """The value of each perfect-information code (see _pi_value), computed as the kernel does."""
        if self._pi_code_values is None:
            gold = 3.0 + self.bonus
            self._pi_code_values = [float(c & 15) + gold * float(c >> 4) for c in range(256)]
        return self._pi_code_values

    def _pi_bound(self, stones, potions, belief: int) -> float:
        """Unnormalised upper bound on a node's value: Σ over its world states of prior weight × its value with
        the world state known (``_pi_value``: potions counted and shared by the stones, unlike ``_bound``)."""
        index, first = self.frame.index, self.frame.first
        if self._pi_rows is None:  # per world state of the frame (its first bit): graph, latent tables, weight
            model = self.model
            bits = np.flatnonzero(_to_bits(first, index.size))
            row = np.full(index.size, -1, dtype=np.int64)
            row[bits] = np.arange(bits.size)
            onehot = np.zeros((bits.size, NUM_POTION_TYPES, NUM_POTION_TYPES), dtype=np.int64)
            lp = model.latent_potion[index[bits]]
            onehot[np.arange(bits.size)[:, None], np.arange(NUM_POTION_TYPES), lp] = 1
            copies = np.diff(np.append(bits, index.size)).astype(np.float64)
            self._pi_rows = (
                row,
                model.graph[index[bits]].astype(np.int64),
                model.latent[index[bits]].astype(np.int64),
                onehot,
                copies,
            )
        row, graph, latent, onehot, copies = self._pi_rows
        rows = row[np.flatnonzero(_to_bits(belief & first, index.size))]
        st = np.sort(latent[rows[:, None], np.asarray(stones)], axis=1)
        cnt = onehot[rows].transpose(0, 2, 1) @ np.asarray(potions, dtype=np.int64)
        keys = _pi_keys(graph[rows], st, cnt)
        unique, at, inverse = np.unique(keys, return_index=True, return_inverse=True)
        memo = self.model.pi_values.setdefault(self.bonus, {})
        codes = []
        for key, i in zip(unique.tolist(), at.tolist()):
            code = memo.get(key)
            if code is None:
                code = self._pi_value(int(graph[rows[i]]), tuple(st[i].tolist()), cnt[i].tolist())
            codes.append(code)
        terms = copies[rows] * np.array(self._code_values())[codes][inverse.ravel()]
        total = 0.0
        for term in terms.tolist():  # in world-state order, as the kernel adds them (the same rounding)
            total += term
        return total

    def _bound(self, stones, colours: int, belief: int, steps: int) -> float:
        """Unnormalised upper bound: Σ over world states of weight × best cashable total with perfect knowledge."""
        total = 0.0
        gold = 3.0 + self.bonus
        cache = self._bound_cache
        for o in stones:
            masks = cache.get((o, colours, steps))
            if masks is None:
                masks = self._bound_masks(o, colours, steps)
            total += (belief & masks[0]).bit_count() + gold * (belief & masks[1]).bit_count()
        return total

    def action_values(
        self, stones: tuple[int, ...], potions: tuple[int, ...]
    ) -> dict[tuple[int, int], tuple[float, float]]:
        """``(expected objective, expected potions used)`` of every action with an effect (analysis; no pruning)."""
        stones, potions = tuple(stones), tuple(potions)
        total = self.weight(self.belief)
        out = {END: (self.end_value(stones) if not self.minimise else -float(self.num_world_states()), 0.0)}
        seen = set()
        for i, o in enumerate(stones):
            if o in seen:
                continue
            seen.add(o)
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
                    v, d, _ = self._search_entry(new_stones, new_potions, child, w, touched)
                    value += w / total * v
                    depth += w / total * (d + 1.0)
                out[(o, p)] = (value, depth)
        return out

    def _last_potion(self, stones, potions, belief, total):
        """One potion left: its value is the expected value of ending the trial after it (no recursion)."""
        best_value, best_depth, best_action = self.end_value(stones), 0.0, END
        p = potions.index(1)
        tol = TIE_TOLERANCE * max(1.0, abs(best_value))
        seen = set()
        for i, o in enumerate(stones):
            if o in seen:
                continue
            seen.add(o)
            value = 0.0
            moved = False
            for res, mask in self._outcomes(o, p):
                w = (belief & mask).bit_count()
                if w:
                    if res != o:
                        moved = True
                    value += w * self.end_value(replace_stone(stones, i, res) if res != o else stones)
            if not moved:
                continue
            value /= total
            if value > best_value + tol:
                best_value, best_depth, best_action = value, 1.0, (o, p)
                tol = TIE_TOLERANCE * max(1.0, abs(best_value))
        return best_value, best_depth, best_action

    def _key(self, stones, potions, belief: int) -> int:
        """Memo key of a node: its symmetry key (see _canonical) when the prior is symmetric, else a 128-bit
        digest of (stones, potion counts, belief)."""
        if self.sym_mode:
            return self._canonical(stones, potions, belief)
        return _node_key(stones, potions, belief, self._nbytes)

    def _canonical(self, stones, potions, belief: int) -> int:
        """A key shared by every node that a symmetry of the prior maps onto this one (their values are equal).

        The group is (stone cube symmetries) × (colour relabellings); it acts on the stones, the potion counts
        and the belief (world-state classes are permuted, see ``WorldModel.symmetries``). The key is the node's
        image under one element chosen from the node alone: among the elements giving the least image of the
        stones (then of the stones seen this episode) and the least image of the potion counts, the one whose
        image of the belief has the least digest (two sums of mixed class ids, 128 bits). Nodes with the same key
        are images of each other, so they have the same value; symmetric nodes usually get the same key."""
        stones = tuple(sorted(stones))
        sym = self.model.symmetries()
        hit = self._canon_stones.get(stones)
        if hit is None:
            best, elements = None, []
            for g, table in enumerate(sym[2]):
                image = (tuple(sorted([table[o] for o in stones])), tuple(sorted([table[o] for o in self._s0])))
                if best is None or image < best:
                    best, elements = image, [g]
                elif image == best:
                    elements.append(g)
            hit = self._canon_stones[stones] = (best, elements)
        phit = self._canon_potions.get(potions)
        if phit is None:
            best, elements = None, []
            for g, table in enumerate(sym[3]):
                image = [0] * NUM_POTION_TYPES
                for p in range(NUM_POTION_TYPES):
                    image[table[p]] = potions[p]
                image = tuple(image)
                if best is None or image < best:
                    best, elements = image, [g]
                elif image == best:
                    elements.append(g)
            phit = self._canon_potions[potions] = (best, elements)
        classes = self._bit_class[_to_bits(belief & self.frame.first, self.frame.index.size)]
        least = None
        mixa, mixb = sym[7]
        for g in hit[1]:
            moved = sym[5][g][classes]
            for h in phit[1]:
                image = sym[6][h][moved]
                digest = (int(mixa[image].sum(dtype=np.uint64)), int(mixb[image].sum(dtype=np.uint64)))
                if least is None or digest < least:
                    least = digest
        key = (hit[0], phit[0], least)
        return (hash(key) & _MASK64) << 64 | (hash((key, 0x5BD1E995)) & _MASK64)

    def _refine(self, kids, potions, left):
        """Kids with their bounds tightened from the memos (and with PI_LAZY to PI_EAGER - 1 potions left by the
        perfect-information bound), and the sum of those bounds (unnormalised)."""
        memo = self.memo if left > 2 else self._memo_shallow
        lazy = PI_LAZY <= left < PI_EAGER and self.pi_active() and len(kids[0][0]) <= 5
        out = []
        nub = 0.0
        for kid in kids:
            new_stones, child, w, b, _ = kid
            if child is None:  # solved: cashing now reaches the bound
                out.append(kid)
                nub += b
                continue
            key = self._key(new_stones, potions, child)
            hit = memo.get(key)
            if hit is not None:
                b = w * hit.real
            else:
                upper = self._upper.get(key)
                if upper is not None and w * upper < b:
                    b = w * upper
                if lazy and key not in self._pi_upper:
                    pb = self._pi_bound(new_stones, potions, child)
                    if pb < b:
                        b = pb
                    if w * self.end_value(new_stones) >= b:
                        child = None  # solved: cashing now reaches the bound
                    elif upper is None:  # kept as the node's upper bound: computed once per node
                        if len(self._upper) >= self.max_memo:
                            self._upper.clear()
                            self._pi_upper.clear()
                        self._upper[key] = pb / w
                        self._pi_upper.add(key)
            out.append((new_stones, child, w, b, key))  # the key is passed on to the child's search
            nub += b
        return out, nub

    def _search(self, stones, potions, belief, total, touched, root=False, floor=-float("inf"), key=None):
        left = sum(potions)
        if left <= 1 and not self.minimise:
            return self._last_potion(stones, potions, belief, total) if left else (self.end_value(stones), 0.0, END)
        if key is None:
            key = self._key(stones, potions, belief)
        memo = self.memo if left > 2 else self._memo_shallow
        # Symmetric nodes share values but the action stored is the representative's: the root (whose action is
        # played) is always searched, its children coming from the memo.
        # Entries are complex(value, expected potions used): the smallest Python object holding both (the action
        # of a memoised node is never needed, the root being always searched).
        hit = None if root else memo.get(key)
        if hit is not None:
            return (hit.real, hit.imag, None)
        if floor > -INF:
            upper = self._upper.get(key)
            if upper is not None and upper < floor:
                return (upper, None, None)
        self.nodes += 1
        if self.minimise:
            best_value = -float((belief & self.frame.first).bit_count())
        else:
            best_value = self.end_value(stones)
        best_depth, best_order, best_action = 0.0, -1, END
        candidates = []
        seen = set()
        order = 0
        # Colours of pairs never observed are interchangeable when their (count, partner count) agree:
        # relabelling them maps the belief onto itself, so only the first of each class is searched.
        classes = set()
        joint_cache = self._joint_cache
        eager = left - 1 >= PI_EAGER and left - 1 <= 15 and len(stones) <= 5 and self.pi_active()
        available = []
        for p in self.colour_order:
            if not potions[p]:
                continue
            if not touched >> (p >> 1) & 1:
                cls = (potions[p], potions[p ^ 1])
                if cls in classes:
                    continue
                classes.add(cls)
            available.append(p)
        for i, o in enumerate(stones):
            if o in seen:
                continue
            seen.add(o)
            for p in available:
                order += 1
                children = []
                for res, mask in self._outcomes(o, p):
                    child = belief & mask
                    if child:
                        children.append((res, child))
                if len(children) == 1 and children[0][0] == o:
                    continue  # certainly no effect
                new_potions = potions[:p] + (potions[p] - 1,) + potions[p + 1 :]
                steps = min(sum(new_potions), MAX_PATH)
                colours = sum(1 << q for q in range(NUM_POTION_TYPES) if new_potions[q])
                kids = []
                ub = my = 0.0
                for res, child in children:
                    new_stones = stones if res == o else replace_stone(stones, i, res)
                    w = total if len(children) == 1 else child.bit_count()
                    if self.minimise:
                        b = 0.0
                    else:
                        b = self._bound(new_stones, colours, child, steps)
                        # every move changes one stone's indicator by 2: a bound whatever the chemistry
                        jkey = (new_stones, left)
                        joint = joint_cache.get(jkey)
                        if joint is None:
                            joint = self.end_value(new_stones) + self._joint_gain(new_stones, left - 1)
                            joint_cache[jkey] = joint
                        joint *= w
                        if joint < b:
                            b = joint
                        cash = w * self.end_value(new_stones)
                        if eager and cash < b:  # the value with the world state known: often far tighter
                            pb = self._pi_bound(new_stones, new_potions, child)
                            if pb < b:
                                b = pb
                        my += cash
                        if cash >= b:  # cashing now reaches the bound: solved (value end_value, no potion)
                            child = None
                    kids.append((new_stones, child, w, b, None))  # the child's memo key, once computed
                    ub += b
                if len(kids) > 1:
                    kids.sort(key=lambda k: -k[2])  # likeliest outcome first: its value decides most cuts
                new_touched = touched if len(children) == 1 else touched | 1 << (p >> 1)
                neg_ub = -ub / total if not self.minimise else 0.0
                candidates.append((neg_ub - my / total, order, neg_ub, (o, p), new_potions, kids, new_touched))
        if not self.minimise:
            # the midpoint of the bound and of the value of cashing right after the move: the likeliest best first
            candidates.sort(key=lambda c: (c[0], c[1]))
        # ``floor``: the caller only needs this node's value if it reaches ``floor``; actions that provably stay
        # below it are skipped, and the node then returns an upper bound instead of its value (depth None).
        pruned_ub = -INF  # highest bound of an action skipped only thanks to the floor
        for _, order, neg_ub, action, new_potions, kids, new_touched in candidates:
            tol = TIE_TOLERANCE * max(1.0, abs(best_value))
            level = best_value if best_value >= floor else floor
            remaining = -neg_ub * total
            if not self.minimise:
                ub = -neg_ub
                if ub < level - tol:
                    if ub >= best_value - tol and ub > pruned_ub:
                        pruned_ub = ub
                    continue
                if ub <= best_value + tol and (
                    best_depth < 1.0 - 1e-9 or (best_depth <= 1.0 + 1e-9 and order > best_order)
                ):
                    continue  # at best a tie in reward, and never fewer potions (nor an earlier action)
                if left - 1 >= 2:
                    # Children already searched bound better than the static bound: their memoised value, or the
                    # upper bound they returned under an earlier floor. The action may then be refuted at once.
                    kids, remaining = self._refine(kids, new_potions, left - 1)
                    rub = remaining / total
                    if rub < level - tol:
                        if rub >= best_value - tol and rub > pruned_ub:
                            pruned_ub = rub
                        continue
            value = 0.0
            depth = 0.0
            cut = False
            target = (level - tol) * total  # unnormalised: the action is cut once it provably stays below
            for new_stones, child, w, b, kid_key in kids:
                if child is None:
                    v, d = self.end_value(new_stones), 0.0
                elif self.minimise:
                    v, d, _ = self._search(new_stones, new_potions, child, w, new_touched)
                else:
                    rest = remaining - b
                    v, d, _ = self._search(
                        new_stones,
                        new_potions,
                        child,
                        w,
                        new_touched,
                        False,
                        (target - value * total - rest) / w,
                        kid_key,
                    )
                    if d is None:  # an upper bound only
                        if value * total + w * v + rest < target:
                            bound = (value * total + w * v + rest) / total
                            cut = True
                            break
                        v, d, _ = self._search(new_stones, new_potions, child, w, new_touched, key=kid_key)
                prob = w / total
                value += prob * v
                depth += prob * (d + 1.0)
                if not self.minimise:
                    remaining -= b
                    if value * total + remaining < target:
                        bound = value + remaining / total
                        cut = True
                        break
            if cut:
                if bound >= best_value - tol and bound > pruned_ub:
                    pruned_ub = bound
                continue
            if value > best_value + tol or (
                abs(value - best_value) <= tol
                and (depth < best_depth - 1e-9 or (abs(depth - best_depth) <= 1e-9 and order < best_order))
            ):
                best_value, best_depth, best_order, best_action = value, depth, order, action
        if pruned_ub >= best_value - TIE_TOLERANCE * max(1.0, abs(best_value)):
            upper = max(best_value, pruned_ub)
            if len(self._upper) >= self.max_memo:
                self._upper.clear()
                self._pi_upper.clear()
            self._upper[key] = upper
            self._pi_upper.discard(key)
            return (upper, None, None)
        entry = complex(best_value, best_depth)
        if len(memo) >= self.max_memo:
            memo.clear()  # bounded memory: values are exact, only reuse is lost
        memo[key] = entry
        self._upper.pop(key, None)  # the exact value replaces an earlier upper bound (as in the kernel's one table)
        self._pi_upper.discard(key)
        return (best_value, best_depth, best_action)


# ------------------------------------------------------------------------ agent

_MODELS: dict = {}


def world_model(rules: LevelRules) -> WorldModel:
    """The (cached) world model of a level's rules."""
    key = (rules.potion_maps, rules.stone_maps, rules.graph_masks, rules.rotations)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = WorldModel(rules)
    return model


class IdealObserver(SimplifiedActionAgent):
    """The Bayes-optimal ideal observer of §6.2 (and its variants).

    It plans each trial with :class:`Planner` from what it has seen (perceived
    stones, potion colours, the outcome of each potion it used), acts on the
    lowest-numbered slots of the chosen types, and ends a trial through
    ``use_positive_stones`` (cash positive stones, then burn the trial).

    Args:
        level: dm_alchemy level name whose prior the observer assumes (default the evaluation distribution).
        bonus: value of the best stone minus 3 (12 with the default reward weights).
        minimise_world_states: the ideal explorer (aims to learn, not to score).
        oracle: the search oracle: its prior is the episode's true chemistry.
    """

    def __init__(
        self,
        level: str = "alchemy/perceptual_mapping_randomized_with_random_bottleneck",
        *,
        bonus: float = 12.0,
        minimise_world_states: bool = False,
        oracle: bool = False,
    ) -> None:
        super().__init__()
        self.rules = LevelRules.from_level_name(level)
        self.bonus = float(bonus)
        self.minimise_world_states = minimise_world_states
        self.oracle = oracle
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
        self.planner = Planner(model, bonus=self.bonus, minimise_world_states=self.minimise_world_states)
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


def ideal_explorer(level: str = "alchemy/perceptual_mapping_randomized_with_random_bottleneck") -> IdealObserver:
    """The ideal explorer: the ideal observer minimising the world states left at each trial's end."""
    return IdealObserver(level, minimise_world_states=True)


def search_oracle(level: str = "alchemy/perceptual_mapping_randomized_with_random_bottleneck") -> IdealObserver:
    """The search oracle: the ideal observer whose prior is the true chemistry."""
    return IdealObserver(level, oracle=True)


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
