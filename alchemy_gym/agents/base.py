"""The common agent interface and the loop that runs an agent on the symbolic game.

An agent acts on an :class:`~alchemy_gym.core.game.AlchemyGame` (``env.unwrapped.game``
of a symbolic env): :meth:`Agent.reset` at the start of every episode,
:meth:`Agent.act` for every step, returning an integer action in the game's own
encoding (§4.2). Agents only read what the observation shows (perceived stones
and potions) unless documented otherwise (the bots of §6.1 read true stone
values, as dm_alchemy's do).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from alchemy_gym.core.game import AlchemyGame, encode_action


def as_game(env_or_game: Any) -> AlchemyGame:
    """The :class:`AlchemyGame` behind a symbolic env (or the game itself)."""
    if isinstance(env_or_game, AlchemyGame):
        return env_or_game
    game = getattr(getattr(env_or_game, "unwrapped", env_or_game), "game", None)
    if not isinstance(game, AlchemyGame):
        raise TypeError(
            f"agents play symbolic Alchemy: expected a SymbolicAlchemyEnv or an AlchemyGame, got {type(env_or_game)}"
        )
    return game


class Agent(ABC):
    """An agent for symbolic Alchemy.

    Subclasses implement :meth:`act`; :meth:`reset` is called at the start of
    every episode with the episode's index when it is an evaluation episode.
    """

    #: Short name used in tables and JSON.
    name: str = "agent"

    def reset(self, game: AlchemyGame | Any, episode: int | None = None) -> None:  # noqa: B027 (optional hook)
        """Start of an episode (``game`` may be an env)."""

    @abstractmethod
    def act(self, game: AlchemyGame | Any) -> int:
        """The next integer action for the game's current state."""

    @property
    def ending_trial(self) -> bool:
        """True while the agent only burns the rest of the trial (no-ops): runners may end the trial at once."""
        return False


class SimplifiedActionAgent(Agent):
    """Helpers for agents that act through dm_alchemy's simplified actions (§4.8).

    ``end trial`` means ``use_positive_stones``: cash every stone whose true
    value is > 0 in slot order, then finish the trial (end-trial action if the
    game has one, else no-ops until the step limit).
    """

    def __init__(self) -> None:
        self._ending = False
        self._trial = -1

    def reset(self, game, episode: int | None = None) -> None:
        self._ending = False
        self._trial = -1

    @property
    def ending_trial(self) -> bool:
        return self._ending

    def _new_trial(self, game: AlchemyGame) -> bool:
        """True (and the ending state cleared) if a trial started since the last call."""
        if game.trial_number != self._trial:
            self._trial = game.trial_number
            self._ending = False
            return True
        return False

    def _end_trial_step(self, game: AlchemyGame) -> int:
        """One step of ``use_positive_stones``: cash the next positive stone, else end or burn the trial."""
        self._ending = True
        positive = game.stones_above(0)
        if positive:
            return encode_action(positive[0], -1, game.end_trial_action)
        return 0  # the end-trial action with end_trial_action=True, else the no-op


def type_slots(game: AlchemyGame, stone_slot: int, potion_slot: int) -> tuple[int, int]:
    """Type-based action matching (§4.2): the lowest slot holding the same stone and the lowest unused slot
    holding the same potion."""
    stone = game.stones[stone_slot]
    potion = game.potions[potion_slot]
    return game.stones.index(stone), game.potions.index(potion)


def run_episode(agent: Agent, game: AlchemyGame, episode: int | None = None) -> list[float]:
    """Play the started episode of ``game`` to its end with ``agent``; returns the trial rewards.

    The caller starts the episode (``game.start_episode``); when the agent only
    burns the rest of a trial with no-ops, the trial is ended at once (same
    result, fewer steps).
    """
    agent.reset(game, episode)
    noop = 1 if game.end_trial_action else 0
    while not game.episode_over:
        action = agent.act(game)
        if action == noop and agent.ending_trial:
            game.end_trial()
        else:
            game.step(action)
    return list(game.trial_rewards)
