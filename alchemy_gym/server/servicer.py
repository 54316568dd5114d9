"""The dm_env_rpc ``Environment`` service and its limits, and the ``grpc.aio`` server that serves it.

:class:`AlchemyServicer` admits streams (at most ``max_connections`` at once, refusing one more
with a message that names the limit), ends idle ones, and hands each request of a stream to its
:class:`~alchemy_gym.server.session.Session`; the worlds are in its
:class:`~alchemy_gym.server.world.WorldRegistry`. :func:`start_server` serves it on the running
event loop.
"""

from __future__ import annotations

import logging
import math
import threading

from alchemy_gym.server.protocol import pb
from alchemy_gym.server.ratelimit import RateLimitedLog
from alchemy_gym.server.session import Session
from alchemy_gym.server.world import DEFAULT_MAX_WORLDS_PER_CONNECTION, MAX_WORLDS, WorldRegistry

#: The server's log (the name it has always had, for users' logging configurations).
log = logging.getLogger("alchemy_gym.server.service")

#: Concurrent streams a server accepts (a stream costs no thread: a vector env may open one per sub-env).
DEFAULT_MAX_CONNECTIONS = 64
#: Largest request message (bytes); gRPC ends the stream of a larger one with RESOURCE_EXHAUSTED.
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
#: Streams gRPC itself still accepts beyond ``max_connections`` (to be refused with our message).
_REFUSAL_HEADROOM = 16
#: Seconds a refused stream waits for the client's first request before its status is sent.
_REFUSAL_READ_WAIT = 2.0
#: The start of the refusal message of a full server (the clients look for it).
SERVER_FULL = "alchemy-gym server is full"
#: The start of the status that ends a stream idle for longer than the server's ``idle_timeout``.
IDLE_CLOSED = "alchemy-gym server closed an idle connection"


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
        max_connections: streams served at once; one more is refused at once (RESOURCE_EXHAUSTED).
        max_worlds_per_connection: worlds one stream may hold at once.
        idle_timeout: seconds without a request after which a stream is ended (DEADLINE_EXCEEDED)
            and its worlds destroyed; ``None`` (the default) never ends a stream for idleness.
    """

    def __init__(
        self,
        max_worlds: int = MAX_WORLDS,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_worlds_per_connection: int = DEFAULT_MAX_WORLDS_PER_CONNECTION,
        idle_timeout: float | None = None,
    ) -> None:
        self.idle_timeout = check_idle_timeout(idle_timeout)
        #: the server's worlds
        self.worlds = WorldRegistry(max_worlds, max_worlds_per_connection)
        self._lock = threading.Lock()
        self.max_connections = max_connections
        self.connections = 0  # streams being served
        # one short line per event, at most 5 a minute per kind (then a count of the others)
        self.malformed_log = RateLimitedLog(log)
        self.internal_log = RateLimitedLog(log)
        self.refusal_log = RateLimitedLog(log)
        self.idle_log = RateLimitedLog(log)

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

    def rpc_handlers(self):
        """``(service name, {method: handler})`` of the dm_env_rpc service, served by this servicer."""
        import grpc

        handler = grpc.stream_stream_rpc_method_handler(
            self.Process,
            request_deserializer=None,  # bytes: parsed by the session (see Session.handle_bytes)
            response_serializer=pb().EnvironmentResponse.SerializeToString,
        )
        return "dm_env_rpc.v1.Environment", {"Process": handler}

    def full_message(self) -> str:
        """The details of the RESOURCE_EXHAUSTED status a stream beyond ``max_connections`` gets."""
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

    async def Process(self, request_iterator, context) -> None:  # noqa: N802 (gRPC's name)
        import asyncio

        import grpc

        with self._lock:
            admitted = self.connections < self.max_connections
            if admitted:
                self.connections += 1
        if not admitted:
            self.refusal_log.warning(
                "refused a connection from %s: all %d connections are in use", context.peer(), self.max_connections
            )
            await self._refuse(context)
            return
        try:
            session = Session(self, context.peer())
            try:
                while True:
                    if self.idle_timeout is None:
                        data = await context.read()
                    else:
                        try:
                            data = await asyncio.wait_for(context.read(), self.idle_timeout)
                        except asyncio.TimeoutError:
                            self.idle_log.warning(
                                "closed the connection from %s: no request for %g s", context.peer(), self.idle_timeout
                            )
                            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
                            context.set_details(self.idle_message())
                            return
                    if data is grpc.aio.EOF:
                        return
                    await context.write(session.handle_bytes(data))
            finally:  # also when the client cancels the stream or goes away
                session.close()
        finally:
            with self._lock:
                self.connections -= 1

    async def _refuse(self, context) -> None:
        """End a stream beyond ``max_connections`` with RESOURCE_EXHAUSTED and :meth:`full_message`.

        The client's first request is awaited first (for at most :data:`_REFUSAL_READ_WAIT` s): a
        ``grpc.aio`` client whose first write is still going out when the status arrives reports
        "INTERNAL: Internal error from Core" instead of the status (about one time in six here).
        The status is set and the handler returns: ``context.abort`` would raise, and its traceback
        would keep the server's objects in a reference cycle until the next garbage collection.
        """
        import asyncio

        import grpc

        try:
            await asyncio.wait_for(context.read(), _REFUSAL_READ_WAIT)
        except Exception:  # no request in time, or the client went away: refuse all the same
            pass
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(self.full_message())

    def flush_logs(self) -> None:
        """Log the counts of suppressed lines (at shutdown)."""
        for rate_limited in (self.malformed_log, self.internal_log, self.refusal_log, self.idle_log):
            rate_limited.flush()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    idle_timeout: float | None = None,
):
    """Start a ``grpc.aio`` server of :class:`AlchemyServicer` on the running loop; returns ``(server, bound_port)``.

    ``port=0`` picks a free port. At most ``max_connections`` streams are served at once; one more
    is refused at once with RESOURCE_EXHAUSTED (``alchemy-gym server is full: …``). A request
    message larger than ``max_request_bytes`` ends its stream with RESOURCE_EXHAUSTED. With
    ``idle_timeout`` (seconds), a stream without a request for that long is ended and its worlds
    destroyed. ``OSError`` if the address cannot be bound.
    """
    import grpc

    servicer = AlchemyServicer(max_connections=max_connections, idle_timeout=idle_timeout)
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
