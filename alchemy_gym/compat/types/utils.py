"""dm_alchemy's ``types.utils``: what a chemistry observation shows, chemistries and episode items.

:class:`ChemistrySeen` takes dm_alchemy's arguments (``groups``, ``content``, the four elements,
``precomputed``) and becomes alchemy-gym's :class:`alchemy_gym.core.belief.ChemistrySeen`; the
belief state is computed by alchemy-gym, so ``precomputed`` only names the level whose maps and
graphs form the prior. :class:`Chemistry` and :class:`TrialItems` are alchemy-gym's own types
(indices, not dm_alchemy's map objects); :class:`EpisodeItems` holds a :class:`TrialItems` per trial.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

from alchemy_gym.core import belief
from alchemy_gym.core.belief import ELEMENT_SIZES, ElementContent, ElementType
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import TrialItems
from alchemy_gym.levels import check_level_name, prior_level

__all__ = [
    "Chemistry",
    "ChemistrySeen",
    "Element",
    "ElementContent",
    "ElementType",
    "EpisodeItems",
    "GraphElement",
    "GroupInChemistry",
    "PotionMapElement",
    "RotationElement",
    "SeeChemistry",
    "StoneMapElement",
    "TrialItems",
]

_CONTENTS = "ElementContent.GROUND_TRUTH, ElementContent.BELIEF_STATE or ElementContent.UNKNOWN"


def _content(value, what: str) -> ElementContent:
    if isinstance(value, ElementContent):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < len(ElementContent):
        return ElementContent(int(value))
    raise ValueError(f"{what} must be one of {_CONTENTS}, got {value!r}")


def _element_type(value, what: str) -> ElementType:
    if isinstance(value, ElementType):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < len(ElementType):
        return ElementType(int(value))
    allowed = ", ".join(f"ElementType.{e.name}" for e in ElementType)
    raise ValueError(f"{what} must be one of {allowed}, got {value!r}")


def _prior_level(name: str) -> str:
    """The level whose rules form the belief prior of ``precomputed=name`` (a level dm_alchemy knows)."""
    try:
        check_level_name(name)
    except ValueError as e:
        raise ValueError(f"precomputed: {e}") from None
    return prior_level(name)


class GroupInChemistry:
    """Dimensions of the chemistry observation that get the same content, drawn each episode.

    Args:
        group: ``{ElementType: set of dimension indices}`` (graph 0..11, potion map 0..8, stone map 0..2,
            rotation 0..3).
        distr: probabilities of (ground truth, belief state, unknown); they must sum to 1.
    """

    def __init__(self, group: Mapping, distr: Sequence[float]) -> None:
        if not isinstance(group, Mapping):
            raise TypeError(f"group must be a dict {{ElementType: set of dimensions}}, got {type(group).__name__}")
        checked = {}
        for element, dims in group.items():
            element = _element_type(element, "a group's key")
            try:
                dims = {int(d) for d in dims}
            except (TypeError, ValueError):
                raise TypeError(f"group[{element.name}] must be a set of ints, got {dims!r}") from None
            size = ELEMENT_SIZES[element]
            if any(not 0 <= d < size for d in dims):
                raise ValueError(f"group[{element.name}] dimensions must be in 0..{size - 1}, got {sorted(dims)}")
            checked[element] = dims
        try:
            distr = [float(p) for p in distr]
        except (TypeError, ValueError):
            raise TypeError(f"distr must be 3 probabilities, got {distr!r}") from None
        if len(distr) != len(ElementContent):
            raise ValueError(
                f"distr must give a probability for each content type (ground truth, belief state, unknown): "
                f"3 values, got {len(distr)}"
            )
        if any(p < 0 for p in distr) or abs(sum(distr) - 1.0) > 1e-4:
            raise ValueError(f"distr must be non-negative probabilities summing to 1, got {distr}")
        self.group = checked
        self.distr = distr

    def __repr__(self) -> str:
        return f"GroupInChemistry(group={self.group!r}, distr={self.distr!r})"


class Element:
    """One element of a chemistry observation and whether the observation shows it."""

    def __init__(self, element_type: ElementType, expected_obs_length: int, present: bool = True) -> None:
        if not isinstance(present, bool):
            raise TypeError(f"present must be a bool, got {present!r}")
        self.element_type = element_type
        self.expected_obs_length = expected_obs_length
        self.present = present

    def all_dims(self) -> set[int]:
        return set(range(self.expected_obs_length))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(present={self.present!r})"


class PotionMapElement(Element):
    """The potion map: 6 dimension-map entries and 3 direction-map entries."""

    def __init__(self, present: bool = True) -> None:
        super().__init__(ElementType.POTION_MAP, ELEMENT_SIZES[ElementType.POTION_MAP], present)


class StoneMapElement(Element):
    """The stone map: 3 entries."""

    def __init__(self, present: bool = True) -> None:
        super().__init__(ElementType.STONE_MAP, ELEMENT_SIZES[ElementType.STONE_MAP], present)


class GraphElement(Element):
    """The graph: one entry per cube edge (12)."""

    def __init__(self, present: bool = True) -> None:
        super().__init__(ElementType.GRAPH, ELEMENT_SIZES[ElementType.GRAPH], present)


class RotationElement(Element):
    """The rotation: one entry per possible rotation (4)."""

    def __init__(self, present: bool = True) -> None:
        super().__init__(ElementType.ROTATION, ELEMENT_SIZES[ElementType.ROTATION], present)


_ELEMENT_CLASSES = {
    "graph": GraphElement,
    "potion_map": PotionMapElement,
    "stone_map": StoneMapElement,
    "rotation": RotationElement,
}


class ChemistrySeen:
    """What one chemistry observation shows (dm_alchemy's ``ChemistrySeen``, also ``SeeChemistry``).

    Args:
        groups: :class:`GroupInChemistry` list; one content is drawn per group at each reset.
        content: the content of every dimension when ``groups`` is not given (default unknown).
        potion_map, stone_map, graph, rotation: the elements (e.g. ``GraphElement(present=False)`` leaves
            the graph out); all present by default, emitted in the order graph, potion map, stone map,
            rotation.
        precomputed: the level name whose maps and graphs form the belief-state prior (default: the
            env's level). dm_alchemy's precomputed-map objects are not used: alchemy-gym computes the
            belief itself.
    """

    def __init__(
        self,
        groups: Sequence[GroupInChemistry] | None = None,
        content: ElementContent | None = None,
        potion_map: PotionMapElement | None = None,
        stone_map: StoneMapElement | None = None,
        graph: GraphElement | None = None,
        rotation: RotationElement | None = None,
        precomputed: str | None = None,
    ) -> None:
        given = {"potion_map": potion_map, "stone_map": stone_map, "graph": graph, "rotation": rotation}
        for name, element in given.items():
            cls = _ELEMENT_CLASSES[name]
            if element is None:
                element = cls()
            elif not isinstance(element, cls):
                raise TypeError(f"{name} must be a {cls.__name__} (or None), got {element!r}")
            setattr(self, name, element)
        if precomputed is not None and not isinstance(precomputed, str):
            raise TypeError(
                "precomputed must be a level name (str) or None: alchemy-gym computes the belief state itself "
                f"and takes no precomputed maps; got {type(precomputed).__name__}"
            )
        self.precomputed = precomputed
        self._prior_level = None if precomputed is None else _prior_level(precomputed)
        if groups:
            if content is not None:
                raise ValueError("pass groups or content to ChemistrySeen, not both (content is for one group)")
            groups = list(groups)
            for i, group in enumerate(groups):
                if not isinstance(group, GroupInChemistry):
                    raise TypeError(f"groups[{i}] must be a GroupInChemistry, got {group!r}")
            self.groups = groups
        else:
            content = ElementContent.UNKNOWN if content is None else _content(content, "content")
            distr = [0.0] * len(ElementContent)
            distr[content] = 1.0
            self.groups = [GroupInChemistry({e: self.element(e).all_dims() for e in ElementType}, distr)]
        if not any(self.element(e).present for e in ElementType):
            raise ValueError("a ChemistrySeen must show at least one of graph, potion_map, stone_map, rotation")

    def element(self, element_type: ElementType) -> Element:
        """The element of one type."""
        return {
            ElementType.GRAPH: self.graph,
            ElementType.POTION_MAP: self.potion_map,
            ElementType.STONE_MAP: self.stone_map,
            ElementType.ROTATION: self.rotation,
        }[_element_type(element_type, "element_type")]

    def obs_size(self) -> int:
        """Length of the observation vector (28 with every element)."""
        return sum(self.element(e).expected_obs_length for e in ElementType if self.element(e).present)

    def uses_content_type(self, content: ElementContent) -> bool:
        """Whether some group may draw this content."""
        return any(g.distr[_content(content, "content")] > 1e-4 for g in self.groups)

    def to_core(self) -> belief.ChemistrySeen:
        """The same observation as alchemy-gym's :class:`~alchemy_gym.core.belief.ChemistrySeen`."""
        groups = tuple(belief.ContentGroup(dict(g.group), tuple(g.distr)) for g in self.groups)
        return belief.ChemistrySeen(
            elements=tuple(e for e in ElementType if self.element(e).present),
            groups=groups,
            prior_level=self._prior_level,
        )

    def __repr__(self) -> str:
        return (
            f"ChemistrySeen(groups={self.groups!r}, potion_map={self.potion_map!r}, stone_map={self.stone_map!r}, "
            f"graph={self.graph!r}, rotation={self.rotation!r}, precomputed={self.precomputed!r})"
        )


#: dm_alchemy's other name for :class:`ChemistrySeen`.
SeeChemistry = ChemistrySeen


class EpisodeItems:
    """The items of every trial of an episode, as dm_alchemy's ``EpisodeItems``.

    Args:
        potions: per trial, the latent potion indices (0..5) in slot order.
        stones: per trial, the latent stone indices (0..7) in slot order.
    """

    def __init__(self, potions: Sequence[Sequence[int]], stones: Sequence[Sequence[int]]) -> None:
        potions, stones = list(potions), list(stones)
        if len(potions) != len(stones):
            raise ValueError(f"potions and stones must list the same trials: got {len(potions)} and {len(stones)}")
        trials = []
        for t, (p, s) in enumerate(zip(potions, stones)):
            try:
                trials.append(TrialItems(tuple(int(i) for i in s), tuple(int(i) for i in p)))
            except (TypeError, ValueError) as e:
                raise ValueError(f"trial {t}: {e}") from None
        self.trials: list[TrialItems] = trials

    @classmethod
    def from_trials(cls, trials: Sequence[TrialItems]) -> EpisodeItems:
        """Episode items from alchemy-gym's :class:`TrialItems` (one per trial)."""
        trials = list(trials)
        for t, trial in enumerate(trials):
            if not isinstance(trial, TrialItems):
                raise TypeError(f"trials[{t}] must be a TrialItems, got {trial!r}")
        return cls([t.potions for t in trials], [t.stones for t in trials])

    @property
    def num_trials(self) -> int:
        return len(self.trials)

    @property
    def stones(self) -> list[tuple[int, ...]]:
        return [t.stones for t in self.trials]

    @property
    def potions(self) -> list[tuple[int, ...]]:
        return [t.potions for t in self.trials]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EpisodeItems) and self.trials == other.trials

    def __repr__(self) -> str:
        return f"EpisodeItems(trials={self.trials!r})"
