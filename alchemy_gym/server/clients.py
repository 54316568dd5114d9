"""Who the server's clients are, what each may hold, and the streams they have open.

A *client* is whoever holds one token (when the server has tokens: :mod:`alchemy_gym.server.auth`)
at one peer address: ``(token label, peer host)``. Clients of one shared token on different
hosts are different clients; streams with the same token from the same host are one client
(give each user a token of their own to tell them apart). Every limit a client can exhaust is
counted per client, not per stream, so opening more streams gains nothing:

* connections: at most ``max_connections_per_client`` of the server's ``max_connections``;
* worlds: at most ``max_worlds_per_client`` (:class:`~alchemy_gym.server.world.WorldRegistry`);
* requests: at most ``request_rate`` a second (a token bucket holding one second's worth); a
  request beyond it waits until its turn, without holding the event loop;
* the event loop's time: while other clients are active (a request in the last
  :data:`ACTIVE_WINDOW` seconds), at most ``loop_share`` of it (a bucket of 50 ms); a client over
  its share waits before its next request. Alone on the server a client may use all of it;
* new picture sizes (each builds a renderer, about 0.1 s of CPU at 640×480, off the event loop):
  at most ``picture_builds_per_minute``; more are refused with RESOURCE_EXHAUSTED.

*Keep-alive traffic* cannot hold connections that others need: when a new stream finds the
server (or its own client) at its connection limit, the stream that holds no world and has been
open for at least :data:`EVICTION_GRACE` seconds is closed to make room (RESOURCE_EXHAUSTED,
saying so), taken from the client with the most connections, least recently active first.
Streams that hold worlds are bounded by the world quotas.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass

from alchemy_gym.server.world import DEFAULT_MAX_WORLDS_PER_CLIENT, DEFAULT_MAX_WORLDS_PER_CONNECTION, MAX_WORLDS

#: Defaults of :class:`Limits`.
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 32
DEFAULT_REQUEST_RATE = 10_000.0
DEFAULT_PICTURE_BUILDS_PER_MINUTE = 10
DEFAULT_LOOP_SHARE = 0.5
#: Seconds of loop time a client may take at once beyond its share.
LOOP_BURST = 0.05
#: A client with a request this recently is active (its requests compete with others').
ACTIVE_WINDOW = 0.1
#: Seconds a stream without a world is safe from being closed to make room for a new one.
EVICTION_GRACE = 1.0
#: Clients without connections or worlds remembered (with their rate buckets) at most.
_REMEMBERED_CLIENTS = 1024


#: The limits of :class:`Limits` that are counts (positive ints).
COUNT_LIMITS = (
    "max_connections",
    "max_connections_per_client",
    "max_worlds",
    "max_worlds_per_client",
    "max_worlds_per_connection",
    "picture_builds_per_minute",
)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """A server's limits per client (the module docstring says how each is counted).

    Args:
        max_connections: streams served at once.
        max_connections_per_client: streams one client may have open at once.
        max_worlds: worlds at once.
        max_worlds_per_client: worlds one client may hold at once.
        max_worlds_per_connection: worlds one stream may hold at once.
        request_rate: requests a second per client (0: no limit).
        picture_builds_per_minute: picture sizes not yet cached that one client may ask for a minute.
        loop_share: the share of the event loop's time one client may take while others are active (1: no limit).
        idle_timeout: seconds without a request after which a stream is ended (``None``: never).
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    max_worlds: int = MAX_WORLDS
    max_worlds_per_client: int = DEFAULT_MAX_WORLDS_PER_CLIENT
    max_worlds_per_connection: int = DEFAULT_MAX_WORLDS_PER_CONNECTION
    request_rate: float = DEFAULT_REQUEST_RATE
    picture_builds_per_minute: int = DEFAULT_PICTURE_BUILDS_PER_MINUTE
    loop_share: float = DEFAULT_LOOP_SHARE
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in COUNT_LIMITS:
            _positive_int(name, getattr(self, name))
        rate = self.request_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < math.inf:
            raise ValueError(f"request_rate must be a number >= 0 (0: no limit), got {rate!r}")
        share = self.loop_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(f"loop_share must be a number in (0, 1] (1: no limit), got {share!r}")
        idle = self.idle_timeout
        if idle is not None:
            number = isinstance(idle, (int, float)) and not isinstance(idle, bool)
            if not number or not 0 < idle < math.inf:
                raise ValueError(
                    f"idle_timeout must be None (never) or a positive, finite number of seconds, got {idle!r}"
                )


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string: ``ipv4:10.0.0.5:51234`` → ``10.0.0.5``,
    ``ipv6:[::1]:51234`` (or ``%5B::1%5D``) → ``::1``; anything else as it is."""
    peer = urllib.parse.unquote(peer or "?")
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return peer


class TokenBucket:
    """``rate`` events a second with a burst of ``burst``: :meth:`take` says how long the caller must wait.

    A taker over the rate goes into debt and waits it off, so a steady stream of requests is
    spread out to the rate rather than refused. ``rate`` 0: no limit.
    """

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` (at ``now``, default the clock's time); returns the seconds to wait before acting
        (0.0: at once)."""
        if not self.rate:
            return 0.0
        if now is None:
            now = self._clock()
        tokens = min(self.burst, self.tokens + (now - self._last) * self.rate) - cost
        self._last = now
        self.tokens = tokens
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def refund(self, cost: float = 1.0) -> None:
        """Give back what :meth:`take` took (an action that did not happen)."""
        self.tokens = min(self.burst, self.tokens + cost)


class Client:
    """One client of the server: its streams and rate buckets."""

    def __init__(self, key: tuple[str | None, str], limits: Limits, clock=time.monotonic) -> None:
        self.key = key
        token, host = key
        #: how messages and logs name it (never the token itself)
        self.label = f"{token} at {host}" if token else host
        self.streams: set[Stream] = set()
        rate = limits.request_rate
        self.requests = TokenBucket(rate, max(rate, 1.0), clock)
        builds = limits.picture_builds_per_minute
        self.picture_builds = TokenBucket(builds / 60.0, builds, clock)
        share = limits.loop_share
        #: seconds of the event loop's time (charged after each request)
        self.loop_time = TokenBucket(0.0 if share >= 1 else share, LOOP_BURST, clock)
        #: when its last request arrived
        self.last_request = -math.inf

    @property
    def connections(self) -> int:
        return len(self.streams)

    def __repr__(self) -> str:
        return f"Client({self.label!r}, {self.connections} connections)"


class Stream:
    """One admitted ``Process`` stream: its client, session and task, and why the server closed it."""

    __slots__ = ("client", "session", "task", "opened", "last", "busy", "reason")

    def __init__(self, client: Client, task, now: float) -> None:
        self.client = client
        self.session = None
        self.task = task
        self.opened = now
        #: when its last request arrived
        self.last = now
        #: a request is being handled (the stream is not idle, however long that takes)
        self.busy = False
        #: ``(grpc.StatusCode name, details)`` once the server closes it
        self.reason: tuple[str, str] | None = None

    def holds_world(self) -> bool:
        session = self.session
        return session is not None and session.holds_world()

    def close(self, code: str, details: str) -> bool:
        """End the stream with status ``code`` (a ``grpc.StatusCode`` name) and ``details``; ``False`` if the
        server was already closing it."""
        if self.reason is not None:
            return False
        self.reason = (code, details)
        if self.task is not None:
            self.task.cancel()
        return True


class ClientTable:
    """The server's clients by ``(token label, peer host)`` and their open streams.

    Used on the server's event loop only.
    """

    def __init__(self, limits: Limits, clock=time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._clients: OrderedDict[tuple, Client] = OrderedDict()
        self.streams: set[Stream] = set()

    def client(self, token_label: str | None, peer: str) -> Client:
        """The client of a stream that presented ``token_label`` (``None``: the server has no tokens) from ``peer``."""
        key = (token_label, peer_host(peer))
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = Client(key, self.limits, self._clock)
            self._forget_some()
        else:
            self._clients.move_to_end(key)
        return client

    def _forget_some(self) -> None:
        """Forget the least recently seen clients that hold nothing, beyond :data:`_REMEMBERED_CLIENTS`."""
        excess = len(self._clients) - _REMEMBERED_CLIENTS
        if excess <= 0:
            return
        for key in list(self._clients):
            if excess <= 0:
                break
            if not self._clients[key].streams:
                del self._clients[key]
                excess -= 1

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def connections(self) -> int:
        return len(self.streams)

    def open(self, client: Client, task) -> Stream:
        """Count a new stream of ``client`` (the caller has checked :meth:`room`)."""
        stream = Stream(client, task, self._clock())
        client.streams.add(stream)
        self.streams.add(stream)
        return stream

    def release(self, stream: Stream) -> None:
        """The stream ended (or was closed to make room): it no longer counts (idempotent)."""
        self.streams.discard(stream)
        stream.client.streams.discard(stream)

    def room(self, client: Client) -> tuple[str, Stream | None] | None:
        """``None`` if ``client`` may open a stream now; else ``(scope, stream to close)``: ``scope`` is
        ``"client"`` or ``"server"`` (whose limit is reached) and the stream, if any, is one that holds
        no world and may be closed to make room (see the module docstring)."""
        limits = self.limits
        server_full = len(self.streams) >= limits.max_connections
        if client.connections >= limits.max_connections_per_client:
            # room only among its own streams; named the server's limit when that is the same
            same = server_full and limits.max_connections_per_client >= limits.max_connections
            return ("server" if same else "client"), self._idle_stream(client.streams)
        if server_full:
            return "server", self._idle_stream(self.streams)
        return None

    def _idle_stream(self, streams) -> Stream | None:
        """The stream to close for a newcomer: no world, open for :data:`EVICTION_GRACE` s, of the client with
        the most connections, the least recently active."""
        now = self._clock()
        best, best_key = None, None
        for stream in streams:
            if stream.reason is not None or now - stream.opened < EVICTION_GRACE or stream.holds_world():
                continue
            key = (stream.client.connections, -stream.last)
            if best_key is None or key > best_key:
                best, best_key = stream, key
        return best

    def others_active(self, client: Client) -> bool:
        """Whether a client other than ``client`` sent a request in the last :data:`ACTIVE_WINDOW` seconds."""
        since = self._clock() - ACTIVE_WINDOW
        return any(s.client is not client and s.client.last_request >= since for s in self.streams)

    def idle(self, timeout: float) -> list[Stream]:
        """The streams without a request for ``timeout`` seconds (not yet being closed)."""
        deadline = self._clock() - timeout
        return [s for s in self.streams if s.last <= deadline and not s.busy and s.reason is None]


__all__ = [
    "ACTIVE_WINDOW",
    "COUNT_LIMITS",
    "DEFAULT_LOOP_SHARE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "DEFAULT_PICTURE_BUILDS_PER_MINUTE",
    "DEFAULT_REQUEST_RATE",
    "EVICTION_GRACE",
    "Client",
    "ClientTable",
    "Limits",
    "Stream",
    "TokenBucket",
    "peer_host",
]
