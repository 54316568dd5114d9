"""The server's worlds: each a game of a level with its seed, event subscription and owner, and the
registry that holds them, gives each to its owner only and counts them against the limits.

A world is owned by what created it (the :class:`~alchemy_gym.server.session.Session` of one
stream) and joined by at most one session at a time. The registry is safe to use from threads.
"""

from __future__ import annotations

import secrets
import threading

from alchemy_gym.core.episodes import EpisodeSource
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.levels import EVALUATION_PREFIX, find_level, parse_evaluation_name
from alchemy_gym.server.events import EventRecorder
from alchemy_gym.server.protocol import ServerError, codes, precondition
from alchemy_gym.server.ratelimit import short_repr
from alchemy_gym.server.settings import check_world_name

#: Worlds a server holds at once.
MAX_WORLDS = 64
#: Worlds one connection may hold at once (a client needs one; the compliance tests two).
DEFAULT_MAX_WORLDS_PER_CONNECTION = 8


class World:
    """One created world: a game of the level (the core's :class:`AlchemyGame`) plus its seed, subscriptions
    and owner."""

    def __init__(
        self,
        name: str,
        level_name: str,
        seed: int,
        subscribed: frozenset[str] | None,
        owner: object,
        shareable: bool = False,
    ) -> None:
        self.name = name
        self.level_name = level_name
        self.seed = seed
        self.owner = owner
        self.shareable = shareable
        self.joined_by: object | None = None
        self.episode = parse_evaluation_name(level_name)
        level = find_level(level_name)
        if level.name == EVALUATION_PREFIX:
            from alchemy_gym.data import evaluation_source

            source = evaluation_source()
        else:
            source = EpisodeSource.sampled(level.name)
        self.game = AlchemyGame(source=source)
        weights = self.game.config.reward_weights
        self.recorder = EventRecorder(self.game, subscribed, weights, seed) if subscribed else None
        self.episodes_started = 0
        self.num_actions = self.game.num_actions

    def start_episode(self) -> None:
        """The next episode: the first as the symbolic env's ``reset(seed=seed)``, later ones as ``reset()``."""
        self.game.new_episode(self.episode, seed=self.seed if self.episodes_started == 0 else None)
        self.episodes_started += 1

    def restart(self, seed: int | None = None) -> None:
        """``ResetWorld``: the next episode restarts the world's random stream (with ``seed`` if given)."""
        if seed is not None:
            self.seed = seed
            if self.recorder is not None:
                self.recorder.seed = seed
        self.episodes_started = 0

    @property
    def episode_return(self) -> float:
        """The current episode's reward so far (the ``Score`` observation)."""
        return sum(self.game.trial_rewards)


class WorldRegistry:
    """The worlds of a server by name, each used only by its owner unless created shareable.

    Args:
        max_worlds: worlds at once in all.
        max_worlds_per_owner: worlds one owner (a connection) may hold at once.
    """

    def __init__(self, max_worlds: int = MAX_WORLDS, max_worlds_per_owner: int = DEFAULT_MAX_WORLDS_PER_CONNECTION):
        self.max_worlds = max_worlds
        self.max_worlds_per_owner = max_worlds_per_owner
        self._worlds: dict[str, World] = {}
        self._lock = threading.Lock()

    def create(self, level_name: str, seed: int, subscribed, owner: object, *, shareable: bool = False) -> str:
        """Build a world owned by ``owner``; returns its new random name (RESOURCE_EXHAUSTED at a limit)."""
        with self._lock:
            self._check_room(owner)
        world = World("", level_name, seed, subscribed, owner, shareable)  # outside the lock: builds a game
        with self._lock:
            self._check_room(owner)  # again: another thread may have created one meanwhile
            name = "world_" + secrets.token_hex(8)
            while name in self._worlds:
                name = "world_" + secrets.token_hex(8)
            world.name = name
            self._worlds[name] = world
        return name

    def _check_room(self, owner: object) -> None:
        """RESOURCE_EXHAUSTED unless the server and ``owner`` may have one more world (lock held)."""
        if len(self._worlds) >= self.max_worlds:
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"this server holds at most {self.max_worlds} worlds and all exist: try again later",
            )
        owned = sum(1 for world in self._worlds.values() if world.owner is owner)
        if owned >= self.max_worlds_per_owner:
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"a connection may hold at most {self.max_worlds_per_owner} worlds: destroy one first",
            )

    def get(self, name: str, owner: object | None = None, action: str = "use") -> World:
        """The world named ``name``, if ``owner`` may ``action`` it (its owner, or any if shareable; ``None``:
        anyone). NOT_FOUND (naming only the caller's own worlds) or PERMISSION_DENIED otherwise."""
        check_world_name(name)
        with self._lock:
            world = self._worlds.get(name)
            own = sorted(n for n, w in self._worlds.items() if w.owner is owner)
        if world is None:
            mine = f"this connection's worlds are {own}" if own else "this connection has no world"
            raise ServerError(codes().NOT_FOUND, f"no world named {short_repr(name)}: {mine}")
        if owner is not None and world.owner is not owner and not world.shareable:
            raise ServerError(
                codes().PERMISSION_DENIED,
                f"cannot {action} world {name!r}: it belongs to another connection, "
                "which did not create it with the setting shareable=True",
            )
        return world

    def join(self, name: str, session: object) -> World:
        """Mark the world joined by ``session`` (FAILED_PRECONDITION if another session has joined it)."""
        world = self.get(name, session, "join")
        with self._lock:
            if world.joined_by is not None:
                raise precondition(f"world {name!r} is already joined by another connection")
            world.joined_by = session
        return world

    def leave(self, world: World, session: object) -> None:
        """``session`` no longer has ``world`` joined."""
        with self._lock:
            if world.joined_by is session:
                world.joined_by = None

    def destroy(self, name: str, owner: object) -> None:
        """Remove a world that no session has joined."""
        world = self.get(name, owner, "destroy")
        with self._lock:
            if self._worlds.get(name) is not world:
                raise ServerError(codes().NOT_FOUND, f"no world named {name!r} (destroyed meanwhile)")
            if world.joined_by is not None:
                raise precondition(f"world {name!r} is joined: send LeaveWorld before DestroyWorld")
            del self._worlds[name]

    def drop_owned(self, owner: object) -> None:
        """Remove ``owner``'s worlds (its stream ended); a shareable one joined elsewhere passes to its joiner."""
        with self._lock:
            for name in [n for n, w in self._worlds.items() if w.owner is owner and w.joined_by is None]:
                del self._worlds[name]
            for world in self._worlds.values():
                if world.owner is owner:
                    world.owner = world.joined_by  # a shareable world still in use elsewhere: hand it over

    def __len__(self) -> int:
        with self._lock:
            return len(self._worlds)
