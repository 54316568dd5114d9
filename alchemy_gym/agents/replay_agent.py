"""An agent that replays recorded matrix events (``agent_events`` files, spec §7.2) step by step."""

from __future__ import annotations

import os

import numpy as np

from alchemy_gym.agents.base import Agent, as_game
from alchemy_gym.core.game import encode_action
from alchemy_gym.data import AGENT_EVENT_NAMES, events_to_actions, load_agent_events


class ReplayAgent(Agent):
    """Replays one evaluation episode's recorded events (dm_alchemy's ``ReplayBot``).

    Each trial's events are issued in time order as slot actions (cauldron
    events included); once they are used up the agent burns the trial with
    no-ops. The episode index must be given to :meth:`reset`.

    Args:
        source: a packaged agent name (:data:`~alchemy_gym.data.AGENT_EVENT_NAMES`), a path, or an
            events array of shape (episodes, trials, 3, 13).
    """

    def __init__(self, source: str | os.PathLike | np.ndarray) -> None:
        if isinstance(source, np.ndarray):
            events, name = source, "replay"
        else:
            events = load_agent_events(source)
            base = os.path.basename(str(source))
            name = f"replay:{source}" if str(source) in AGENT_EVENT_NAMES else f"replay:{base}"
        if events.ndim != 4 or events.shape[2:] != (3, 13):
            raise ValueError(f"agent events must have shape (episodes, trials, 3, 13), got {events.shape}")
        self.events = events
        self.name = name
        self._queue: list[tuple[int, int]] = []
        self._trial = -1
        self._episode: int | None = None

    @property
    def num_episodes(self) -> int:
        return int(self.events.shape[0])

    def reset(self, game, episode: int | None = None) -> None:
        if episode is None:
            raise ValueError("a replay agent plays evaluation episodes: pass the episode index to reset()")
        if not 0 <= episode < self.num_episodes:
            raise ValueError(f"episode {episode} is not in the replayed events: allowed 0..{self.num_episodes - 1}")
        self._episode = int(episode)
        self._trial = -1

    @property
    def ending_trial(self) -> bool:
        return not self._queue

    def act(self, game) -> int:
        game = as_game(game)
        if self._episode is None:
            raise RuntimeError("call reset(game, episode) before act()")
        if game.trial_number != self._trial:
            self._trial = game.trial_number
            if self._trial < self.events.shape[1]:
                self._queue = events_to_actions(self.events[self._episode, self._trial])
            else:
                self._queue = []
        if self._queue:
            stone, potion = self._queue.pop(0)
            return encode_action(stone, potion, game.end_trial_action)
        return 1 if game.end_trial_action else 0  # no-op until the trial times out
