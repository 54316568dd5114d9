"""The Alchemy game itself: pure numpy, no Gymnasium, no I/O.

One concept a module:

* :mod:`~alchemy_gym.core.items` — latent stones and potions, stone/potion maps,
  rotations and what the agent perceives (spec §1.1–1.3, §2).
* :mod:`~alchemy_gym.core.graphs` — cube edges, bottleneck constraints, the
  109-graph prior and the transition tables (§1.4–1.7).
* :mod:`~alchemy_gym.core.chemistry` — a chemistry and the seeded sampling order
  of a level (§2, §4.7).
* :mod:`~alchemy_gym.core.spec` — the game's numbers and tables as one named
  description (``SPEC``), which every implementation (numpy, C, JAX) reads.
* :mod:`~alchemy_gym.core.checks` — one check per setting of the game, and of actions.
* :mod:`~alchemy_gym.core.batch` — many games as arrays and the rules of a step
  (numpy backend, compiled C kernel).
* :mod:`~alchemy_gym.core.game` — trials, steps, rewards, the symbolic
  observation and matrix events (§3, §4).
* :mod:`~alchemy_gym.core.belief` — the chemistry observations: ground truth
  and belief state (§4.9, §6.3).
"""

from alchemy_gym.core.chemistry import Chemistry, ChemistrySampler, LevelRules
from alchemy_gym.core.game import AlchemyGame, EpisodeOver, FixedEpisode, TrialItems

__all__ = [
    "AlchemyGame",
    "Chemistry",
    "ChemistrySampler",
    "EpisodeOver",
    "FixedEpisode",
    "LevelRules",
    "TrialItems",
]
