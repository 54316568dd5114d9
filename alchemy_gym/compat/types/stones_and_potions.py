"""The part of dm_alchemy's ``types.stones_and_potions`` that configures an env: :class:`RewardWeights`."""

from __future__ import annotations

from typing import NamedTuple

from alchemy_gym.core.items import DEFAULT_REWARD_WEIGHTS

__all__ = ["RewardWeights", "default_reward_weights"]


class RewardWeights(NamedTuple):
    """How much a stone is worth when it goes into the cauldron (spec §1.2).

    ``value = coefficients · latent coords + offset``, plus ``bonus`` at (1, 1, 1). Pass one as
    ``reward_weights=`` to :func:`~alchemy_gym.compat.symbolic_alchemy.get_symbolic_alchemy_level`.
    """

    coefficients: tuple[float, float, float]
    offset: float
    bonus: float


def default_reward_weights() -> RewardWeights:
    """dm_alchemy's default weights: coefficients (1, 1, 1), offset 0, bonus 12."""
    coefficients, offset, bonus = DEFAULT_REWARD_WEIGHTS
    return RewardWeights(tuple(coefficients), offset, bonus)
