"""The server's worlds: each a game of a level with its seed, event subscription and owner, and the
registry that holds them, gives each to its owner only and counts them against the limits.

A world is owned by what created it (the :class:`~alchemy_gym.server.session.Session` of one
stream), counted against that stream's client (a token holder or a peer address), and joined by
at most one session at a time. The registry is safe to use from threads.
"""

from __future__ import annotations

import secrets
import threading
import time

from alchemy_gym.core.episodes import EpisodeSource
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.levels import find_level, parse_evaluation_name
from alchemy_gym.server.events import EventRecorder
from alchemy_gym.server.protocol import ServerError, codes, precondition
from alchemy_gym.server.ratelimit import short_repr
from alchemy_gym.server.settings import check_world_name

#: Worlds a server holds at once.
MAX_WORLDS = 64
#: Worlds one connection may hold at once (a client needs one; the compliance tests two).
DEFAULT_MAX_WORLDS_PER_CONNECTION = 8
#: Worlds one client may hold at once over all its connections (half the server's).
DEFAULT_MAX_WORLDS_PER_CLIENT = 32
#: Seconds a destroyed world's slot stays reserved for the connection that destroyed it.
KEEP_SLOT_SECONDS = 10.0


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
        #: the client whose quota the world counts against (set by the registry)
        self.client: object = owner
        self.shareable = shareable
        self.joined_by: object | None = None
        self.episode = parse_evaluation_name(level_name)
        level = find_level(level_name)
        if level.is_evaluation:
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

    Worlds are counted against three limits: the server's (``max_worlds``), the owner's (a
    stream: ``max_worlds_per_owner``) and the owner's *client* (``max_worlds_per_client``; a
    client is whoever holds a token, or a peer address, see :mod:`alchemy_gym.server.clients`),
    so that one client cannot take every world however many streams it opens.

    A world destroyed by its owner leaves its slot reserved for that owner for
    :data:`KEEP_SLOT_SECONDS` (or until the owner creates a world or ends): a client that
    destroys and re-creates its world (the 3D env's ``reset(seed=…)``) cannot lose the slot
    to another client in between.

    Args:
        max_worlds: worlds at once in all.
        max_worlds_per_owner: worlds one owner (a connection) may hold at once.
        max_worlds_per_client: worlds one client may hold at once, over all its connections.
        clock: a monotonic clock (for tests).
    """

    def __init__(
        self,
        max_worlds: int = MAX_WORLDS,
        max_worlds_per_owner: int = DEFAULT_MAX_WORLDS_PER_CONNECTION,
        max_worlds_per_client: int | None = None,
        clock=time.monotonic,
    ):
        self.max_worlds = max_worlds
        self.max_worlds_per_owner = max_worlds_per_owner
        self.max_worlds_per_client = max_worlds if max_worlds_per_client is None else max_worlds_per_client
        self._clock = clock
        self._worlds: dict[str, World] = {}
        self._lock = threading.Lock()
        # worlds (plus kept slots) by owner and by client
        self._by_owner: dict[object, int] = {}
        self._by_client: dict[object, int] = {}
        # kept slots: owner -> expiry times (oldest first); their clients
        self._kept: dict[object, list[float]] = {}
        self._kept_client: dict[object, object] = {}
        self._kept_total = 0

    def create(
        self,
        level_name: str,
        seed: int,
        subscribed,
        owner: object,
        *,
        shareable: bool = False,
        client: object | None = None,
        client_label: str = "",
    ) -> str:
        """Build a world owned by ``owner`` (of ``client``; default: the owner is its own client); returns its
        new random name (RESOURCE_EXHAUSTED at a limit)."""
        client = owner if client is None else client
        with self._lock:
            self._check_room(owner, client, client_label)
        world = World("", level_name, seed, subscribed, owner, shareable)  # outside the lock: builds a game
        world.client = client
        with self._lock:
            kept = self._check_room(owner, client, client_label)  # again: another thread may have created one
            if kept:
                self._take_kept(owner)
            name = "world_" + secrets.token_hex(8)
            while name in self._worlds:
                name = "world_" + secrets.token_hex(8)
            world.name = name
            self._worlds[name] = world
            self._count(owner, client, +1)
        return name

    def _count(self, owner: object, client: object, delta: int) -> None:
        for counts, key in ((self._by_owner, owner), (self._by_client, client)):
            value = counts.get(key, 0) + delta
            if value:
                counts[key] = value
            else:
                counts.pop(key, None)

    def _expire_kept(self) -> None:
        """Forget kept slots whose time is up (lock held)."""
        if not self._kept_total:
            return
        now = self._clock()
        for owner in list(self._kept):
            times = self._kept[owner]
            while times and times[0] <= now:
                times.pop(0)
                self._kept_total -= 1
                self._count(owner, self._kept_client[owner], -1)
            if not times:
                del self._kept[owner], self._kept_client[owner]

    def _take_kept(self, owner: object) -> None:
        """Use up one of ``owner``'s kept slots (lock held): the new world takes its place in the counts."""
        times = self._kept[owner]
        times.pop(0)
        self._kept_total -= 1
        self._count(owner, self._kept_client[owner], -1)
        if not times:
            del self._kept[owner], self._kept_client[owner]

    def _check_room(self, owner: object, client: object, client_label: str = "") -> bool:
        """RESOURCE_EXHAUSTED unless ``owner`` may have one more world (lock held); ``True`` if it takes
        one of its kept slots."""
        self._expire_kept()
        if self._kept.get(owner):
            return True
        if len(self._worlds) + self._kept_total >= self.max_worlds:
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"this server holds at most {self.max_worlds} worlds and all exist: try again later",
            )
        if self._by_owner.get(owner, 0) >= self.max_worlds_per_owner:
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"a connection may hold at most {self.max_worlds_per_owner} worlds: destroy one first",
            )
        if self._by_client.get(client, 0) >= self.max_worlds_per_client:
            who = f" ({client_label})" if client_label else ""
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"a client{who} may hold at most {self.max_worlds_per_client} worlds over all its connections "
                "and this one holds them all: destroy one first",
            )
        return False

    def owned(self, owner: object) -> int:
        """Worlds (and kept slots) that ``owner`` holds."""
        with self._lock:
            return self._by_owner.get(owner, 0)

    def held_by_client(self, client: object) -> int:
        """Worlds (and kept slots) that ``client`` holds over all its owners."""
        with self._lock:
            self._expire_kept()
            return self._by_client.get(client, 0)

    def get(self, name: str, owner: object | None = None, action: str = "use") -> World:
        """The world named ``name``, if ``owner`` may ``action`` it (its owner, or any if shareable; ``None``:
        anyone). NOT_FOUND (naming only the caller's own worlds) or PERMISSION_DENIED otherwise."""
        check_world_name(name)
        with self._lock:
            world = self._worlds.get(name)
            if world is None:
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
        """Remove a world that no session has joined; its owner keeps the slot for a while (class docstring)."""
        world = self.get(name, owner, "destroy")
        with self._lock:
            if self._worlds.get(name) is not world:
                raise ServerError(codes().NOT_FOUND, f"no world named {name!r} (destroyed meanwhile)")
            if world.joined_by is not None:
                raise precondition(f"world {name!r} is joined: send LeaveWorld before DestroyWorld")
            del self._worlds[name]
            if world.owner is owner:  # the slot stays counted, as a kept slot
                self._kept.setdefault(owner, []).append(self._clock() + KEEP_SLOT_SECONDS)
                self._kept_client[owner] = world.client
                self._kept_total += 1
            else:  # a shareable world destroyed by another connection
                self._count(world.owner, world.client, -1)

    def drop_owned(self, owner: object) -> None:
        """Remove ``owner``'s worlds and kept slots (its stream ended); a shareable world joined elsewhere passes
        to its joiner."""
        with self._lock:
            for name in [n for n, w in self._worlds.items() if w.owner is owner and w.joined_by is None]:
                world = self._worlds.pop(name)
                self._count(owner, world.client, -1)
            for world in self._worlds.values():
                if world.owner is owner:  # a shareable world still in use elsewhere: hand it over
                    self._count(owner, world.client, -1)
                    world.owner = world.joined_by
                    world.client = getattr(world.owner, "client", None) or world.owner
                    self._count(world.owner, world.client, +1)
            times = self._kept.pop(owner, None)
            if times:
                client = self._kept_client.pop(owner)
                self._kept_total -= len(times)
                self._count(owner, client, -len(times))

    def __len__(self) -> int:
        with self._lock:
            return len(self._worlds)
