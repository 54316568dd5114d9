"""Simple bots of dm_alchemy (spec §6.1): the random action bot and the positive-stones bot."""

from __future__ import annotations

import numpy as np

from alchemy_gym.agents.base import SimplifiedActionAgent, as_game, type_slots
from alchemy_gym.core.game import encode_action


class PositiveStonesBot(SimplifiedActionAgent):
    """Cash every stone with a positive value at the start of each trial, then end the trial.

    This is ``use_positive_stones`` on every trial (67.42 on the evaluation episodes, §1.2).
    """

    name = "positive"

    def act(self, game) -> int:
        game = as_game(game)
        self._new_trial(game)
        return self._end_trial_step(game)


class RandomActionBot(SimplifiedActionAgent):
    """dm_alchemy's ``RandomActionBot`` (§6.1).

    Candidate stones are the existing stones whose true value is below
    ``threshold_for_leaving`` (2: every stone but the +15 one); candidate
    potions are the unused ones. If either set is empty the bot ends the trial
    (cashing the positive stones); otherwise it puts a uniformly chosen stone
    into a uniformly chosen potion, matched by type to the lowest slots.

    Args:
        threshold_for_leaving: stones of at least this value are left alone.
        seed: seed of the bot's own generator (dm_alchemy uses Python's global ``random``).
    """

    name = "random"

    def __init__(self, threshold_for_leaving: float = 2.0, seed: int | None = None) -> None:
        super().__init__()
        self.threshold = float(threshold_for_leaving)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, game, episode: int | None = None) -> None:
        super().reset(game, episode)
        if episode is not None and self.seed is not None:
            self.rng = np.random.default_rng([self.seed, episode])

    def act(self, game) -> int:
        game = as_game(game)
        self._new_trial(game)
        if not self._ending:
            stones = [s for s, st in enumerate(game.stones) if st >= 0 and game.values[st] < self.threshold]
            potions = [p for p, pt in enumerate(game.potions) if pt >= 0]
            if stones and potions:
                s = stones[int(self.rng.integers(len(stones)))]
                p = potions[int(self.rng.integers(len(potions)))]
                s, p = type_slots(game, s, p)
                return encode_action(s, p, game.end_trial_action)
        return self._end_trial_step(game)
