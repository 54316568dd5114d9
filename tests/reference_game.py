"""A plain, slow reference of the symbolic game for tests: one game, Python ints, one ``RandomState``.

Written straight from the task spec (§3 trial structure, §4.2 actions, §4.3 steps, §4.4 the
observation, §4.7 the draw order) and kept deliberately simple: the batched core
(:mod:`alchemy_gym.core.batch`, both backends) must give exactly what this gives.

It is the oracle, so the rules here are its own statement of the spec, not the core's tables: the
action arithmetic, the step and trial rules, what an empty slot shows and the observation's scales
are written out again from §4.2–§4.4 (a table of the core edited by mistake then fails the
equivalence tests). The *sizes* are not rules and are read by name from the game's description
(:mod:`alchemy_gym.core.spec`): the slots, the latent stones and potions, a stone's block of actions.
The perceptual tables (``PERCEIVED_STONE``, ``PERCEIVED_POTION``, transitions) come from the core's
items and graphs, which their own tests check against the spec (§1, §2).
"""

from __future__ import annotations

import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry, ChemistrySampler, LevelRules
from alchemy_gym.core.items import PERCEIVED_POTION, PERCEIVED_STONE, STONE_REWARD_INDICATOR, stone_values
from alchemy_gym.core.spec import SPEC

STONES, POTIONS, BLOCK = SPEC.max_stones, SPEC.max_potions, SPEC.stone_block


class ReferenceGame:
    """dm_alchemy's symbolic game for one level and seed (chemistry and items from one ``RandomState``)."""

    def __init__(
        self,
        level: str,
        seed,
        *,
        num_trials=10,
        max_steps_per_trial=20,
        end_trial_action=False,
        observe_used=True,
        reward_weights=((1.0, 1.0, 1.0), 0.0, 12.0),
        num_stones_per_trial=STONES,
        num_potions_per_trial=POTIONS,
    ):
        self.rs = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
        self.sampler = ChemistrySampler(LevelRules.from_level_name(level)) if level else None
        self.num_trials, self.max_steps = num_trials, max_steps_per_trial
        self.k = 2 if end_trial_action else 1
        self.observe_used = observe_used
        self.values = stone_values(reward_weights)
        self.n_stones, self.n_potions = num_stones_per_trial, num_potions_per_trial
        self.trial = -1

    # ----------------------------------------------------------- episodes

    def new_episode(self, chemistry: Chemistry | None = None, trials=None):
        self.chemistry = chemistry if chemistry is not None else self.sampler.sample(self.rs)
        self.fixed = trials
        self.trial_rewards = [0.0] * self.num_trials
        self.matrix_events = np.full((self.num_trials, STONES, BLOCK), -1, dtype=np.int8)
        self.items = np.full((self.num_trials, STONES + POTIONS), -1, dtype=np.int8)
        self._start_trial(0)

    def _start_trial(self, t):
        if self.fixed is not None:
            stones, potions = list(self.fixed[t].stones), list(self.fixed[t].potions)
        else:
            stones = [int(self.rs.randint(0, SPEC.num_latent_stones)) for _ in range(self.n_stones)]
            potions = [int(self.rs.randint(0, SPEC.num_potion_types)) for _ in range(self.n_potions)]
        self.items[t, : len(stones)] = stones
        self.items[t, STONES : STONES + len(potions)] = potions
        self.stones = stones + [-1] * (STONES - len(stones))
        self.potions = potions + [-1] * (POTIONS - len(potions))
        self.trial, self.steps, self.events = t, 0, 0

    # -------------------------------------------------------------- steps

    def step(self, action):
        """``(reward, trial ended (bool), episode over (bool))``."""
        a = action - self.k
        self.steps += 1
        reward = 0.0
        if a >= 0:  # stone s into the cauldron (q = 0) or into potion slot q - 1 (§4.2)
            s, q = divmod(a, BLOCK)
            stone = self.stones[s]
            if stone >= 0 and q == 0:
                reward = self.values[stone]
                self.stones[s] = -1
                self.trial_rewards[self.trial] += reward
                self.matrix_events[self.trial, s, POTIONS] = self.events  # the cauldron's column: after the potions
                self.events += 1
            elif stone >= 0 and self.potions[q - 1] >= 0:
                potion = self.potions[q - 1]
                self.stones[s] = graphs.transition_table(self.chemistry.graph)[SPEC.num_potion_types * stone + potion]
                self.potions[q - 1] = -1
                self.matrix_events[self.trial, s, q - 1] = self.events
                self.events += 1
        if a == -2 or self.steps >= self.max_steps:  # a = -2: the end-trial action (§4.2)
            if self.trial == self.num_trials - 1:
                self.trial = -1
                return reward, True, True
            self._start_trial(self.trial + 1)
            return reward, True, False
        return reward, False, False

    # -------------------------------------------------------- observation

    def observation(self) -> np.ndarray:
        c = self.chemistry
        out = []
        for stone in self.stones:
            if stone < 0:
                out += [2.0, 2.0, 2.0, 2.0] + ([1.0] if self.observe_used else [])
            else:
                coords = [float(v) for v in PERCEIVED_STONE[c.stone_map, c.rotation, stone]]
                out += coords + [float(STONE_REWARD_INDICATOR[stone]) / 3.0] + ([0.0] if self.observe_used else [])
        for potion in self.potions:
            if potion < 0:
                out += [1.0] + ([1.0] if self.observe_used else [])
            else:
                out += [float(PERCEIVED_POTION[c.potion_map, potion]) / 3.0 - 1.0] + (
                    [0.0] if self.observe_used else []
                )
        return np.array(out, dtype=np.float32)
