"""Chemistry observations: ground truth, belief state, unknown (spec §4.9, §6.2–6.3).

A :class:`ChemistrySeen` describes one extra observation vector of up to 28
floats: the graph (12), the potion map (6 + 3), the stone map (3) and the
rotation (4), each element filled per dimension with ground truth, the
observer's belief, or 0.5 ("unknown").

Frames: the ground-truth graph is in latent space (edge ``e`` of the true
graph); the belief graph is in the *aligned* stone frame (what an observer can
learn from perceived stones), as in dm_alchemy.

The belief (:class:`BeliefState`) follows the update rules of §6.2–6.3: it
keeps, for every rotation still possible, the potion maps and stone maps
consistent with what was seen and a partial graph (edges known present or
absent, closed under "every graph still matching agrees on this edge").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.items import (
    NUM_DIMS,
    NUM_POTION_MAPS,
    NUM_ROTATIONS,
    NUM_STONE_MAPS,
    PERMUTATIONS,
    align_coords,
    coords_to_index,
    potion_map_parts,
    stone_map_pos_dir,
)
from alchemy_gym.core.spec import SPEC


class ElementType(IntEnum):
    GRAPH = 0
    POTION_MAP = 1
    STONE_MAP = 2
    ROTATION = 3


class ElementContent(IntEnum):
    GROUND_TRUTH = 0
    BELIEF_STATE = 1
    UNKNOWN = 2


#: Length of each element's vector.
ELEMENT_SIZES = {
    ElementType.GRAPH: graphs.NUM_EDGES,  # an edge present or not
    ElementType.POTION_MAP: len(PERMUTATIONS) + NUM_DIMS,  # the dimension permutation (one-hot), each direction
    ElementType.STONE_MAP: NUM_DIMS,  # each axis's direction
    ElementType.ROTATION: NUM_ROTATIONS,  # one-hot
}
ALL_ELEMENTS = tuple(ElementType)


def _member(enum: type[IntEnum], value, what: str):
    """An enum member from itself or its case-insensitive name, else a clear error."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str) and value.upper() in enum.__members__:
        return enum[value.upper()]
    allowed = ", ".join(repr(name.lower()) for name in enum.__members__)
    raise ValueError(f"unknown chemistry {what} {value!r}: allowed {allowed}")


def _content(value) -> ElementContent:
    return _member(ElementContent, value, "content")


def _element(value) -> ElementType:
    return _member(ElementType, value, "element")


@dataclass(frozen=True)
class ContentGroup:
    """Dimensions of some elements that share one randomly drawn content type.

    Attributes:
        dims: element → indices into that element's vector.
        distr: probabilities of (ground truth, belief state, unknown); must sum to 1.
    """

    dims: Mapping
    distr: tuple[float, float, float]

    def __post_init__(self) -> None:
        dims = {}
        for element, indices in dict(self.dims).items():
            element = _element(element)
            indices = frozenset(int(i) for i in indices)
            if any(not 0 <= i < ELEMENT_SIZES[element] for i in indices):
                limit = ELEMENT_SIZES[element] - 1
                raise ValueError(f"{element.name} dims must be in 0..{limit}, got {sorted(indices)}")
            dims[element] = indices
        distr = tuple(float(p) for p in self.distr)
        if len(distr) != 3 or any(p < 0 for p in distr) or abs(sum(distr) - 1.0) > 1e-6:
            raise ValueError(f"distr must be 3 non-negative probabilities summing to 1, got {self.distr}")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "distr", distr)


@dataclass(frozen=True)
class ChemistrySeen:
    """One chemistry observation (dm_alchemy's ``ChemistrySeen``).

    Args:
        content: content of every dimension when ``groups`` is not given
            (``"ground_truth"``, ``"belief_state"`` or ``"unknown"``).
        elements: which elements are present, emitted in the order graph,
            potion map, stone map, rotation.
        groups: optional :class:`ContentGroup`\\ s; one content is drawn per group
            at every reset from the env's ``np_random`` (dm_alchemy draws from
            numpy's global RNG, which its seed does not control).
        prior_level: level name whose maps and graphs form the belief prior
            (dm_alchemy's ``precomputed``); default the env's own level.
    """

    content: ElementContent | str = ElementContent.UNKNOWN
    elements: Sequence = ALL_ELEMENTS
    groups: Sequence[ContentGroup] | None = None
    prior_level: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "content", _content(self.content))
        elements = tuple(sorted({_element(e) for e in self.elements}))
        if not elements:
            raise ValueError("a ChemistrySeen needs at least one element")
        object.__setattr__(self, "elements", elements)
        if self.groups is not None:
            groups = tuple(self.groups)
            if not all(isinstance(g, ContentGroup) for g in groups):
                raise TypeError("groups must be ContentGroup instances")
            object.__setattr__(self, "groups", groups)

    @property
    def size(self) -> int:
        return sum(ELEMENT_SIZES[e] for e in self.elements)

    @property
    def needs_belief(self) -> bool:
        if self.groups is None:
            return self.content == ElementContent.BELIEF_STATE
        return any(g.distr[ElementContent.BELIEF_STATE] > 0 for g in self.groups)

    def sample_contents(self, rng: np.random.Generator) -> list[tuple[ElementContent, dict]]:
        """Draw one content per group: a list of ``(content, {element: dims})``."""
        if self.groups is None:
            return [(self.content, {e: range(ELEMENT_SIZES[e]) for e in ALL_ELEMENTS})]
        return [(ElementContent(int(rng.choice(3, p=g.distr))), g.dims) for g in self.groups]

    def ground_truth_mask(self, contents) -> np.ndarray:
        """Which dimensions of the observation show ground truth for drawn ``contents`` (bool, ``size``);
        the others are 0.5. Contents must not include the belief state."""
        mask = np.zeros(self.size, dtype=np.bool_)
        offset = {}
        start = 0
        for element in self.elements:
            offset[element] = start
            start += ELEMENT_SIZES[element]
        for content, dims in contents:
            if content == ElementContent.BELIEF_STATE:
                raise ValueError("ground_truth_mask: these contents include the belief state")
            if content != ElementContent.GROUND_TRUTH:
                continue
            for element, indices in dims.items():
                if element in offset:
                    mask[[offset[element] + i for i in indices]] = True
        return mask

    def observe_rows(self, chem: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The observations of many games without belief content: ``chem`` (m, 4) chemistry rows of a game
        batch (-1 before the first episode), ``masks`` (m, size) from :meth:`ground_truth_mask`."""
        truth = np.concatenate([ground_truth_rows(np.maximum(chem, 0), e) for e in self.elements], axis=1)
        shown = masks & (np.asarray(chem)[:, :1] >= 0)
        return np.where(shown, truth, np.float32(0.5)).astype(np.float32)

    def observe(self, contents, chemistry: Chemistry | None, belief: BeliefState | None) -> np.ndarray:
        """The observation vector for drawn ``contents`` (all 0.5 when ``chemistry`` is None)."""
        vectors = {e: np.full(ELEMENT_SIZES[e], 0.5, dtype=np.float32) for e in self.elements}
        if chemistry is not None:
            for wanted in (ElementContent.GROUND_TRUTH, ElementContent.BELIEF_STATE):
                for content, dims in contents:
                    if content != wanted:
                        continue
                    for element, indices in dims.items():
                        if element not in vectors:
                            continue
                        if wanted == ElementContent.GROUND_TRUTH:
                            source = ground_truth_vector(chemistry, element)
                        else:
                            source = belief.vector(element)
                        idx = list(indices)
                        vectors[element][idx] = source[idx]
        return np.concatenate([vectors[e] for e in self.elements])


def ground_truth_vector(chemistry: Chemistry, element: ElementType) -> np.ndarray:
    """The ground-truth vector of one element (graph in latent space)."""
    if element == ElementType.GRAPH:
        return graphs.graph_to_edge_vector(chemistry.graph)
    if element == ElementType.POTION_MAP:
        dim_map, dir_map = potion_map_parts(chemistry.potion_map)
        one_hot = np.zeros(len(PERMUTATIONS), dtype=np.float32)
        one_hot[PERMUTATIONS.index(dim_map)] = 1.0
        return np.concatenate([one_hot, (np.array(dir_map, dtype=np.float32) + 1) / 2])
    if element == ElementType.STONE_MAP:
        return (np.array(chemistry.pos_dir, dtype=np.float32) + 1) / 2
    one_hot = np.zeros(NUM_ROTATIONS, dtype=np.float32)
    one_hot[chemistry.rotation] = 1.0
    return one_hot


#: Column of each element's index in a chemistry row (the description's layout, :data:`~alchemy_gym.core.spec.SPEC`).
CHEM_COLUMN = {element: SPEC.chem_column(element.name.lower()) for element in ElementType}


def _ground_truth_tables() -> dict[ElementType, np.ndarray]:
    """Every element's ground-truth vector for every index (graph: all 4096 edge masks)."""
    masks = np.arange(SPEC.num_graph_masks)
    tables = {
        ElementType.GRAPH: ((masks[:, None] >> np.arange(graphs.NUM_EDGES)[None, :]) & 1).astype(np.float32),
        ElementType.POTION_MAP: np.stack(
            [ground_truth_vector(Chemistry(pm, 0, 0), ElementType.POTION_MAP) for pm in range(NUM_POTION_MAPS)]
        ),
        ElementType.STONE_MAP: np.stack(
            [ground_truth_vector(Chemistry(0, sm, 0), ElementType.STONE_MAP) for sm in range(NUM_STONE_MAPS)]
        ),
        ElementType.ROTATION: np.eye(NUM_ROTATIONS, dtype=np.float32),
    }
    for table in tables.values():
        table.setflags(write=False)
    return tables


#: ``GROUND_TRUTH_TABLES[element][index]``: the ground-truth vector of every index of an element (read-only).
GROUND_TRUTH_TABLES = _ground_truth_tables()


def ground_truth_rows(chem: np.ndarray, element: ElementType) -> np.ndarray:
    """Ground-truth vectors of ``element`` for many chemistries, ``chem`` (m, 4) as a game batch holds them."""
    return GROUND_TRUTH_TABLES[element][np.asarray(chem)[:, CHEM_COLUMN[element]].astype(np.intp)]


PerceivedStone = tuple[tuple[int, int, int], int]  # (perceived coords, reward indicator)


@dataclass
class _RotationBelief:
    """What is still possible if the stones are seen through one rotation."""

    rotation: int
    stone_maps: set[int]
    potion_maps: set[int]
    #: per axis +1 / -1 if known, 0 if not: the partial stone map. Projected from the possible
    #: stone maps when stones are shown, else learnt one axis at a time (as dm_alchemy does).
    partial_stone: list[int] = field(default_factory=lambda: [0, 0, 0])
    present: int = 0  # aligned-frame edges known present
    absent: int = 0  # aligned-frame edges known absent
    updated: bool = False  # closure applies only once something was learnt

    def project_stone_maps(self) -> None:
        for k in range(NUM_DIMS):
            values = {stone_map_pos_dir(sm)[k] for sm in self.stone_maps}
            self.partial_stone[k] = values.pop() if len(values) == 1 else 0

    def consistent_stone_maps(self, aligned: tuple[int, int, int], reward: int) -> set[int]:
        return {sm for sm in self.stone_maps if sum(a * d for a, d in zip(aligned, stone_map_pos_dir(sm))) == reward}


@dataclass
class BeliefState:
    """An observer's belief about the chemistry, learnt from perceived stones and potion uses.

    Args:
        rules: the level whose maps and graphs are possible a priori.
    """

    rules: LevelRules
    _per_rotation: list[_RotationBelief] = field(default_factory=list)
    _graphs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        aligned = set()
        for mask in self.rules.graph_masks:
            for sm in self.rules.stone_maps:
                aligned.add(graphs.flip_graph(mask, stone_map_pos_dir(sm)))
        self._graphs = tuple(sorted(aligned))
        self.reset()

    def reset(self) -> None:
        """Forget everything (new episode)."""
        self._per_rotation = [
            _RotationBelief(r, set(self.rules.stone_maps), set(self.rules.potion_maps)) for r in range(NUM_ROTATIONS)
        ]

    @property
    def rotations(self) -> tuple[int, ...]:
        return tuple(b.rotation for b in self._per_rotation)

    def new_trial(self, stones: Sequence[PerceivedStone]) -> None:
        """New stones are seen: drop rotations and stone maps they rule out."""
        survivors = []
        for belief in self._per_rotation:
            ok = True
            for coords, reward in stones:
                aligned = align_coords(coords, belief.rotation)
                if aligned is None:
                    ok = False
                    break
                belief.stone_maps = belief.consistent_stone_maps(aligned, reward)
            if ok and belief.stone_maps:
                belief.project_stone_maps()
                survivors.append(belief)
        self._per_rotation = survivors

    def observe_potion(self, before: PerceivedStone, potion: int, after: PerceivedStone) -> None:
        """Perceived stone ``before`` went into perceived potion ``potion`` and became ``after``."""
        survivors = []
        for belief in self._per_rotation:
            if self._update(belief, before, potion, after):
                survivors.append(belief)
        self._per_rotation = survivors

    def _update(self, belief: _RotationBelief, before: PerceivedStone, potion: int, after: PerceivedStone) -> bool:
        s = align_coords(before[0], belief.rotation)
        r = align_coords(after[0], belief.rotation)
        if s is None or r is None:
            return False
        belief.stone_maps = belief.consistent_stone_maps(r, after[1])
        if not belief.stone_maps:
            return False
        pd, pdir = potion // 2, 1 if potion % 2 else -1
        if s == r:
            dims = {potion_map_parts(pm)[0][pd] for pm in belief.potion_maps}
            if len(dims) == 1:
                latent_dim = dims.pop()
                dirs = {potion_map_parts(pm)[1][latent_dim] for pm in belief.potion_maps}
                sign = belief.partial_stone[latent_dim]
                if len(dirs) == 1 and sign:
                    aligned_dir = pdir * dirs.pop() * sign
                    if s[latent_dim] == -aligned_dir:
                        other = list(s)
                        other[latent_dim] = aligned_dir
                        edge = graphs.EDGE_INDEX[(coords_to_index(s), coords_to_index(other))]
                        belief.absent |= 1 << edge
                        belief.updated = True
            return True
        changed = [k for k in range(NUM_DIMS) if s[k] != r[k]]
        delta = after[1] - before[1]
        if len(changed) != 1 or abs(delta) != 2:
            return False
        axis, sign = changed[0], 1 if delta > 0 else -1
        belief.potion_maps = {
            pm
            for pm in belief.potion_maps
            if potion_map_parts(pm)[0][pd] == axis and potion_map_parts(pm)[1][axis] == pdir * sign
        }
        belief.stone_maps = {sm for sm in belief.stone_maps if stone_map_pos_dir(sm)[axis] == r[axis] * sign}
        belief.partial_stone[axis] = r[axis] * sign
        belief.present |= 1 << graphs.EDGE_INDEX[(coords_to_index(s), coords_to_index(r))]
        belief.updated = True
        return bool(belief.potion_maps and belief.stone_maps)

    def _partial_graph(self, belief: _RotationBelief) -> tuple[int, int]:
        present, absent = belief.present, belief.absent
        if not belief.updated:
            return present, absent
        matching = [g for g in self._graphs if g & present == present and not g & absent]
        if matching:
            all_have = graphs.FULL_GRAPH
            none_have = graphs.FULL_GRAPH
            for g in matching:
                all_have &= g
                none_have &= ~g
            present |= all_have
            absent |= none_have & graphs.FULL_GRAPH
        return present, absent

    def vector(self, element: ElementType) -> np.ndarray:
        """The belief vector of one element: 1/0 where known, 0.5 where not (all 0.5 while the
        rotation is ambiguous)."""
        out = np.full(ELEMENT_SIZES[element], 0.5, dtype=np.float32)
        if len(self._per_rotation) != 1:
            return out
        belief = self._per_rotation[0]
        if element == ElementType.GRAPH:
            present, absent = self._partial_graph(belief)
            for e in range(graphs.NUM_EDGES):
                if present >> e & 1:
                    out[e] = 1.0
                elif absent >> e & 1:
                    out[e] = 0.0
        elif element == ElementType.POTION_MAP:
            parts = [potion_map_parts(pm) for pm in belief.potion_maps]
            perms = {PERMUTATIONS.index(dims) for dims, _ in parts}
            for q in range(len(PERMUTATIONS)):
                out[q] = 0.0 if q not in perms else (1.0 if len(parts) == 1 else 0.5)
            for latent in range(NUM_DIMS):
                values = {dirs[latent] for _, dirs in parts}
                if len(values) == 1:
                    out[6 + latent] = (values.pop() + 1) / 2
        elif element == ElementType.STONE_MAP:
            for k, value in enumerate(belief.partial_stone):
                if value:
                    out[k] = (value + 1) / 2
        else:
            out[:] = 0.0
            out[belief.rotation] = 1.0
        return out


class ChemistryObserver:
    """The chemistry observations of one game: draws their contents each episode, keeps their belief
    states up to date by listening to the game, and gives the observation vectors.

    Args:
        game: the game observed (an :class:`~alchemy_gym.core.game.AlchemyGame`); the observer listens to it.
        seen: ``{name: ChemistrySeen}``.
        rules: the level's rules, the belief prior of entries without a ``prior_level``.
    """

    def __init__(self, game, seen: Mapping[str, ChemistrySeen], rules: LevelRules) -> None:
        self.game = game
        self.seen = dict(seen)
        self.contents: dict[str, list] = {}
        self.beliefs = {
            name: BeliefState(LevelRules.from_level_name(s.prior_level) if s.prior_level else rules)
            for name, s in self.seen.items()
            if s.needs_belief
        }
        if self.beliefs:
            game.add_listener(self._listen)

    def new_episode(self, rng: np.random.Generator) -> None:
        """Draw every observation's contents for a new episode (call after the game's episode started)."""
        self.contents = {name: s.sample_contents(rng) for name, s in self.seen.items()}

    def observe(self) -> dict[str, np.ndarray]:
        """``{name: vector}`` for the game's current state."""
        chemistry = self.game.chemistry
        return {
            name: s.observe(self.contents.get(name, ()), chemistry, self.beliefs.get(name))
            for name, s in self.seen.items()
        }

    def _listen(self, kind: str, *args) -> None:
        game = self.game
        if kind == "episode_start":
            for belief in self.beliefs.values():
                belief.reset()
        elif kind == "trial_start":
            stones = [game.perceived_stone(s) for s in game.stones if s >= 0]
            for belief in self.beliefs.values():
                belief.new_trial(stones)
        elif kind == "potion":
            _slot, _potion_slot, old, latent_potion, new = args
            before, after = game.perceived_stone(old), game.perceived_stone(new)
            potion = game.perceived_potion(latent_potion)
            for belief in self.beliefs.values():
                belief.observe_potion(before, potion, after)
