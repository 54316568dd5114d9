"""The dm_env_rpc ``Environment`` service and its limits, and the ``grpc.aio`` server that serves it.

:class:`AlchemyServicer` checks each stream's token (when it has tokens), admits streams within
the per-client and server limits of :mod:`alchemy_gym.server.clients`, hands each request of a
stream to its :class:`~alchemy_gym.server.session.Session`, and ends streams itself with a
status that says why (idle, closed to make room, server shutting down). The worlds are in its
:class:`~alchemy_gym.server.world.WorldRegistry`. :func:`start_server` serves it on the running
event loop.

Every request is handled on the one event loop in a bounded, small time; the one slow job (a
picture size's painter) runs in a worker thread. :class:`LoopStats` records the longest time any
request held the loop (CPU time of the loop's thread, so it does not depend on how busy the
machine is), which the tests check under attack.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent import futures

from alchemy_gym.levels import DEFAULT_LEVEL
from alchemy_gym.server.auth import METADATA_KEY, TokenSet
from alchemy_gym.server.clients import (
    DEFAULT_LOOP_SHARE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_PICTURE_BUILDS_PER_MINUTE,
    DEFAULT_REQUEST_RATE,
    Client,
    ClientTable,
    Limits,
    Stream,
)
from alchemy_gym.server.observations import PainterCache
from alchemy_gym.server.protocol import ServerError, codes, error_response, pb
from alchemy_gym.server.ratelimit import RateLimitedLog, shorten
from alchemy_gym.server.session import Offload, Session
from alchemy_gym.server.settings import DEFAULT_HEIGHT, DEFAULT_WIDTH
from alchemy_gym.server.world import (
    DEFAULT_MAX_WORLDS_PER_CLIENT,
    DEFAULT_MAX_WORLDS_PER_CONNECTION,
    MAX_WORLDS,
    WorldRegistry,
)

#: The server's log (the name it has always had, for users' logging configurations).
log = logging.getLogger("alchemy_gym.server.service")

#: Largest request message (bytes); gRPC ends the stream of a larger one with RESOURCE_EXHAUSTED.
#: Every request of the protocol fits in a few hundred bytes; 64 KiB bounds the cost of parsing one.
DEFAULT_MAX_REQUEST_BYTES = 1 << 16
#: Streams gRPC itself still accepts beyond ``max_connections`` (to be refused with our message).
_REFUSAL_HEADROOM = 16
#: Seconds a refused stream waits for the client's first request before its status is sent, and how many
#: refused streams may wait at once (beyond that, a refusal is sent at once).
_REFUSAL_READ_WAIT = 2.0
_REFUSALS_WAITING = 8
#: The start of the refusal message of a full server (the clients look for it).
SERVER_FULL = "alchemy-gym server is full"
#: The start of the status that ends a stream idle for longer than the server's ``idle_timeout``.
IDLE_CLOSED = "alchemy-gym server closed an idle connection"
#: The start of the status that ends a stream without a world to make room for a new stream.
MADE_ROOM = "alchemy-gym server closed a connection that held no world"
#: The start of the status of every stream when the server stops.
SHUTTING_DOWN = "alchemy-gym server is shutting down"
#: The start of the status of a stream without a valid token.
UNAUTHENTICATED = "alchemy-gym server needs a valid token"


def check_idle_timeout(idle_timeout: float | None) -> float | None:
    """``idle_timeout`` checked: ``None`` (never) or a positive, finite number of seconds; else ``ValueError``."""
    if idle_timeout is None:
        return None
    number = isinstance(idle_timeout, (int, float)) and not isinstance(idle_timeout, bool)
    if not number or not 0 < idle_timeout < math.inf:
        raise ValueError(
            f"idle_timeout must be None (never) or a positive, finite number of seconds, got {idle_timeout!r}"
        )
    return float(idle_timeout)


class LoopStats:
    """What the server's requests cost its event loop (CPU time of the loop's thread, seconds)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        #: the longest time one request (or one part of it, around an off-loop job) held the loop
        self.longest_hold = 0.0
        #: the kind of that request (``step``, ``join_world``, … or ``malformed``)
        self.longest_kind = ""
        self.requests = 0
        #: jobs run off the loop (painter builds) and streams closed to make room
        self.offloaded = 0
        self.evicted = 0

    def record(self, seconds: float, data: bytes, response=None) -> None:
        """Count ``seconds`` of the request ``data`` (answered with ``response``; ``None``: the part before an
        off-loop job) if it is the longest yet."""
        if seconds > self.longest_hold:
            self.longest_hold = seconds
            if response is None:
                self.longest_kind = "join_world (before its painter build)"
            else:
                kind = response.WhichOneof("payload")
                self.longest_kind = (
                    kind if kind != "error" else f"error ({len(data)} bytes: {response.error.message[:60]})"
                )


class AlchemyServicer:
    """The dm_env_rpc ``Environment`` service over symbolic Alchemy worlds, for a ``grpc.aio`` server.

    :meth:`rpc_handlers` registers its one method (``Process``) with a server; it imports ``grpc``
    only then, so that importing this module does not: :func:`alchemy_gym.server.cli.main` first
    chooses gRPC's transport (:mod:`alchemy_gym.rpc.tuning`), which gRPC reads at its import.
    ``Process`` takes the raw request bytes and parses them itself, so that a malformed message
    gets an error status (and one short log line) instead of a gRPC traceback and a dead stream.

    Every stream is a coroutine on the server's one event loop: a request is handled to the end
    before the next one starts (the game is pure Python; threads would only take turns on the
    GIL), and many streams cost no threads. The world registry is also safe to use from threads.

    Args:
        max_worlds: worlds on the server at once.
        max_connections: streams served at once; one more is refused at once (RESOURCE_EXHAUSTED),
            unless a stream that holds no world can be closed to make room.
        max_worlds_per_connection: worlds one stream may hold at once.
        idle_timeout: seconds without a request after which a stream is ended (DEADLINE_EXCEEDED)
            and its worlds destroyed; ``None`` (the default) never ends a stream for idleness.
        max_connections_per_client: streams one client may have open (default 32, or half of
            ``max_connections`` if more; :class:`~alchemy_gym.server.clients.Limits` has the others' meaning).
        max_worlds_per_client: worlds one client may hold (default 32, or half of ``max_worlds`` if more).
        request_rate: requests a second per client (0: no limit).
        picture_builds_per_minute: picture sizes new to the server one client may ask for a minute.
        loop_share: the share of the event loop's time one client may take while others are active.
        tokens: the tokens it accepts (``None``: every stream is served).
    """

    def __init__(
        self,
        max_worlds: int = MAX_WORLDS,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_worlds_per_connection: int = DEFAULT_MAX_WORLDS_PER_CONNECTION,
        idle_timeout: float | None = None,
        max_connections_per_client: int | None = None,
        max_worlds_per_client: int | None = None,
        request_rate: float = DEFAULT_REQUEST_RATE,
        picture_builds_per_minute: int = DEFAULT_PICTURE_BUILDS_PER_MINUTE,
        loop_share: float = DEFAULT_LOOP_SHARE,
        tokens: TokenSet | None = None,
    ) -> None:
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self.limits = Limits(
            max_connections=max_connections,
            max_connections_per_client=per_client_limit(
                max_connections_per_client, max_connections, DEFAULT_MAX_CONNECTIONS_PER_CLIENT
            ),
            max_worlds=max_worlds,
            max_worlds_per_client=per_client_limit(max_worlds_per_client, max_worlds, DEFAULT_MAX_WORLDS_PER_CLIENT),
            max_worlds_per_connection=max_worlds_per_connection,
            request_rate=request_rate,
            picture_builds_per_minute=picture_builds_per_minute,
            loop_share=loop_share,
            idle_timeout=self.idle_timeout,
        )
        self.tokens = tokens
        #: the server's worlds
        self.worlds = WorldRegistry(
            max_worlds, max_worlds_per_connection, max_worlds_per_client=self.limits.max_worlds_per_client
        )
        #: the painters of the picture sizes asked for, the last few
        self.painters = PainterCache()
        self.painters.build((DEFAULT_WIDTH, DEFAULT_HEIGHT))
        self.clients = ClientTable(self.limits)
        self.stats = LoopStats()
        self._lock = threading.Lock()
        self.max_connections = max_connections
        self._pool: futures.ThreadPoolExecutor | None = None
        self._jobs: dict = {}  # Offload key → future of the job in flight (streams share it)
        self._sweeper: asyncio.TimerHandle | None = None
        self._refusals = 0
        self.closing = False
        # one short line per event, at most 5 a minute per kind (then a count of the others)
        self.malformed_log = RateLimitedLog(log)
        self.internal_log = RateLimitedLog(log)
        self.refusal_log = RateLimitedLog(log)
        self.idle_log = RateLimitedLog(log)
        self.auth_log = RateLimitedLog(log)

    @property
    def max_worlds(self) -> int:
        """Worlds on the server at once."""
        return self.worlds.max_worlds

    @property
    def max_worlds_per_connection(self) -> int:
        """Worlds one stream may hold at once."""
        return self.worlds.max_worlds_per_owner

    @property
    def num_worlds(self) -> int:
        """Worlds on the server now."""
        return len(self.worlds)

    @property
    def connections(self) -> int:
        """Streams being served."""
        return self.clients.connections

    def rpc_handlers(self):
        """``(service name, {method: handler})`` of the dm_env_rpc service, served by this servicer."""
        import grpc

        handler = grpc.stream_stream_rpc_method_handler(
            self.Process,
            request_deserializer=None,  # bytes: parsed by the session (see Session.handle_bytes)
            response_serializer=None,  # bytes: serialized by Process (its time counts in LoopStats)
        )
        return "dm_env_rpc.v1.Environment", {"Process": handler}

    # ------------------------------------------------------------------------------ messages

    def full_message(self, client: Client | None = None) -> str:
        """The details of the RESOURCE_EXHAUSTED status a stream beyond the connection limits gets."""
        if client is not None:
            limit = self.limits.max_connections_per_client
            return (
                f"{SERVER_FULL} for this client ({client.label}): a client may have at most {limit} connections "
                "open at once, and none of this client's can be closed to make room (each holds a world or is "
                "new); close one, or start the server with a larger --max-connections-per-client (clients with "
                "tokens of their own count apart)"
            )
        return (
            f"{SERVER_FULL}: it serves at most {self.max_connections} connections at once and all are in use; "
            "try again later, or start a server with a larger --max-connections"
        )

    def idle_message(self) -> str:
        """The details of the DEADLINE_EXCEEDED status that ends an idle stream."""
        return (
            f"{IDLE_CLOSED}: no request for {self.idle_timeout:g} s (the server's idle timeout); "
            "its worlds were destroyed"
        )

    def made_room_message(self, scope: str, client: Client) -> str:
        """The details of the RESOURCE_EXHAUSTED status of a stream closed to make room for a new one."""
        if scope == "client":
            limit = f"all {self.limits.max_connections_per_client} connections of its client ({client.label})"
        else:
            limit = f"all {self.max_connections} connections of the server"
        return f"{MADE_ROOM} to make room for a new one: {limit} were in use"

    def unauthenticated_message(self, presented: bool) -> str:
        what = "the token presented is not one of its tokens" if presented else "no token was presented"
        return (
            f"{UNAUTHENTICATED}: {what}; send it in the call metadata as 'authorization: Bearer TOKEN' "
            "(gym.make(..., token=TOKEN))"
        )

    # ---------------------------------------------------------------------------- per client

    def charge_picture_build(self, client: Client | None, size: tuple[int, int]) -> None:
        """RESOURCE_EXHAUSTED if ``client`` asked for more new picture sizes than its limit allows."""
        if client is None:
            return
        wait = client.picture_builds.take()
        if wait > 0:
            client.picture_builds.refund()
            limit = self.limits.picture_builds_per_minute
            raise ServerError(
                codes().RESOURCE_EXHAUSTED,
                f"picture size {size[0]} x {size[1]} is new to the server, and a client may ask for at most "
                f"{limit} new picture sizes a minute (each builds a renderer); retry in {wait:.1f} s, "
                "or use a size asked for before",
            )

    # ------------------------------------------------------------------------------- streams

    async def Process(self, request_iterator, context) -> None:  # noqa: N802 (gRPC's name)
        import grpc

        if self.closing:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(f"{SHUTTING_DOWN}: try again with a new server")
            return
        token_label = None
        if self.tokens is not None:
            metadata = context.invocation_metadata()
            token_label = self.tokens.match(metadata)
            if token_label is None:
                presented = any(key == METADATA_KEY for key, _ in metadata or ())
                self.auth_log.warning(
                    "refused a stream from %s: %s", context.peer(), "wrong token" if presented else "no token"
                )
                await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, self.unauthenticated_message(presented))
                return
        client = self.clients.client(token_label, context.peer())
        refusal = self.clients.room(client)
        if refusal is not None:
            scope, victim = refusal
            if victim is None:
                self.refusal_log.warning(
                    "refused a connection from %s (client %s): %s",
                    context.peer(),
                    client.label,
                    "all its connections are in use" if scope == "client" else "all connections are in use",
                )
                message = self.full_message(client if scope == "client" else None)
                await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message)
                return
            self._close_stream(victim, "RESOURCE_EXHAUSTED", self.made_room_message(scope, victim.client))
            self.stats.evicted += 1
        stream = self.clients.open(client, asyncio.current_task())
        session = Session(self, context.peer(), client)
        stream.session = session
        if self.idle_timeout is not None:
            self._arm_sweeper()
        try:
            await self._serve(stream, session, context)
        except asyncio.CancelledError:
            if stream.reason is None:  # the client went away, or the server is stopping
                raise
            code, details = stream.reason
            context.set_code(getattr(grpc.StatusCode, code))
            context.set_details(details)
        finally:  # also when the client cancels the stream or goes away
            session.close()
            self.clients.release(stream)

    async def _serve(self, stream: Stream, session: Session, context) -> None:
        """The read loop of one admitted stream."""
        import grpc

        eof = grpc.aio.EOF
        stats = self.stats
        client = stream.client
        requests, loop_time = client.requests, client.loop_time
        thread_time = time.thread_time
        monotonic = time.monotonic
        while True:
            data = await context.read()
            if data is eof:
                return
            now = stream.last = client.last_request = monotonic()
            stream.busy = True
            wait = requests.take(1.0, now)
            if wait > 0:  # over the client's request rate: its turn comes later
                await asyncio.sleep(wait)
            start = thread_time()
            response = session.handle_bytes(data)
            if type(response) is Offload:
                stats.record(thread_time() - start, data)
                try:
                    result = await self._offload(response)
                except Exception as exc:  # a bug or no memory: report it, keep serving
                    text = f"{type(exc).__name__}: {shorten(exc, 200)}"
                    self.internal_log.error("internal error in off-loop work %s: %s", response.key, text, exc_info=exc)
                    result = None
                    response = error_response(codes().INTERNAL, f"internal error handling join_world: {text}")
                start = thread_time()
                if result is not None:
                    response = response.finish(result)
            payload = response.SerializeToString()
            held = thread_time() - start
            stats.requests += 1
            if held > stats.longest_hold:
                stats.record(held, data, response)
            await context.write(payload)
            wait = loop_time.take(held, now)
            if wait > 0 and self.clients.others_active(client):  # over its share of the loop: others first
                await asyncio.sleep(wait)
            stream.busy = False

    async def _offload(self, offload: Offload):
        """Run ``offload.work`` in the worker thread (sharing the job with streams that wait for the same)."""
        job = self._jobs.get(offload.key)
        if job is None:
            if self._pool is None:
                self._pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alchemy-server-work")
            job = asyncio.wrap_future(self._pool.submit(offload.work))
            self._jobs[offload.key] = job
            job.add_done_callback(lambda _: self._jobs.pop(offload.key, None))
            self.stats.offloaded += 1
        return await asyncio.shield(job)

    def _close_stream(self, stream: Stream, code: str, details: str) -> None:
        """End ``stream`` with a status; it stops counting against the limits at once."""
        if stream.close(code, details):
            self.clients.release(stream)

    def _arm_sweeper(self) -> None:
        """Look for idle streams a quarter of ``idle_timeout`` from now (while there are streams)."""
        if self._sweeper is None:
            period = min(max(self.idle_timeout / 4, 0.01), 1.0)
            self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        for stream in self.clients.idle(self.idle_timeout):
            self.idle_log.warning(
                "closed the connection from %s: no request for %g s", stream.client.label, self.idle_timeout
            )
            self._close_stream(stream, "DEADLINE_EXCEEDED", self.idle_message())
        if self.clients.streams and not self.closing:
            self._arm_sweeper()

    async def _refuse(self, context, code, details: str) -> None:
        """End a stream that is not admitted with ``code`` and ``details``.

        The client's first request is awaited first (for at most :data:`_REFUSAL_READ_WAIT` s): a
        ``grpc.aio`` client whose first write is still going out when the status arrives reports
        "INTERNAL: Internal error from Core" instead of the status (about one time in six here).
        At most :data:`_REFUSALS_WAITING` refused streams wait at once (a flood of them would hold
        gRPC's slots); the others are refused at once.
        The status is set and the handler returns: ``context.abort`` would raise, and its traceback
        would keep the server's objects in a reference cycle until the next garbage collection.
        """
        if self._refusals < _REFUSALS_WAITING:
            self._refusals += 1
            try:
                await asyncio.wait_for(context.read(), _REFUSAL_READ_WAIT)
            except Exception:  # no request in time, or the client went away: refuse all the same
                pass
            finally:
                self._refusals -= 1
        context.set_code(code)
        context.set_details(details)

    async def shutdown(self) -> None:
        """End every stream with UNAVAILABLE (``alchemy-gym server is shutting down``) and stop the worker
        thread; new streams are refused the same way. Call it before the gRPC server's ``stop``."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        streams = list(self.clients.streams)
        for stream in streams:
            self._close_stream(stream, "UNAVAILABLE", f"{SHUTTING_DOWN}: its worlds are gone")
        tasks = [s.task for s in streams if s.task is not None]
        if tasks:  # let the handlers send their statuses
            await asyncio.wait(tasks, timeout=2.0)
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    def flush_logs(self) -> None:
        """Log the counts of suppressed lines (at shutdown)."""
        for rate_limited in (self.malformed_log, self.internal_log, self.refusal_log, self.idle_log, self.auth_log):
            rate_limited.flush()

    def warm_up(self) -> None:
        """Play a few steps of a private world with every observation, so that no client's first request
        pays for the server's first imports and caches (tens of milliseconds)."""
        from dm_env_rpc.v1 import tensor_utils

        session = Session(self, "warm-up")
        request = pb().EnvironmentRequest
        settings = {
            "seed": tensor_utils.pack_tensor(0),
            "levelName": tensor_utils.pack_tensor(DEFAULT_LEVEL),
            "EventSubscriptionRegex": tensor_utils.pack_tensor(".*"),
        }
        try:
            name = session.handle(
                request(create_world=pb().CreateWorldRequest(settings=settings))
            ).create_world.world_name
            session.handle(request(join_world=pb().JoinWorldRequest(world_name=name)))
            for action in (0, 1, 5, 13, 0):
                step = pb().StepRequest(
                    actions={1: tensor_utils.pack_tensor(action)}, requested_observations=[1, 2, 3, 4, 5, 6]
                )
                session.handle(request(step=step)).SerializeToString()
        finally:
            session.close()
            self.worlds.drop_owned(session)


def per_client_limit(given: int | None, total: int, default: int) -> int:
    """A per-client limit: ``given``, or by default ``default`` or half of ``total`` if that is more; never above
    ``total`` (a server of 3 connections lets one client use all 3)."""
    if given is None:
        given = max(default, total // 2)
    return min(given, total) if isinstance(given, int) and not isinstance(given, bool) and given > 0 else given


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    idle_timeout: float | None = None,
    tokens: TokenSet | None = None,
    **limits,
):
    """Start a ``grpc.aio`` server of :class:`AlchemyServicer` on the running loop; returns ``(server, bound_port)``.

    ``port=0`` picks a free port. At most ``max_connections`` streams are served at once; one more
    is refused at once with RESOURCE_EXHAUSTED (``alchemy-gym server is full: …``) unless a stream
    without a world can be closed for it. A request message larger than ``max_request_bytes`` ends
    its stream with RESOURCE_EXHAUSTED. With ``idle_timeout`` (seconds), a stream without a request
    for that long is ended and its worlds destroyed. With ``tokens``, only streams that present
    one are served. ``limits``: the other arguments of :class:`AlchemyServicer`
    (``max_connections_per_client``, ``max_worlds``, …). ``OSError`` if the address cannot be bound.

    Stop it with ``await server.servicer.shutdown()`` (every stream gets the server's reason) and
    then ``await server.stop(grace)``.
    """
    import grpc

    servicer = AlchemyServicer(max_connections=max_connections, idle_timeout=idle_timeout, tokens=tokens, **limits)
    servicer.warm_up()
    # gRPC's own limit is a backstop beyond ours (which answers with a message that names the limit)
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_connections + _REFUSAL_HEADROOM,
        options=[("grpc.max_receive_message_length", max_request_bytes)],
    )
    service, handlers = servicer.rpc_handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.63: looked up without the generic path
        server.add_registered_method_handlers(service, handlers)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc} (is the port in use?)") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address} (is the port in use?)")
    await server.start()
    server.servicer = servicer  # for tests and introspection
    return server, bound
