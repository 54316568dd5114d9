"""The server on its own event loop in a background thread: for in-process use (tests, notebooks).

``alchemy-gym serve`` (:mod:`alchemy_gym.server.cli`) runs the same server on its main thread.
"""

from __future__ import annotations

import threading

from alchemy_gym.server.auth import TokenSet
from alchemy_gym.server.servicer import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BYTES,
    AlchemyServicer,
    check_idle_timeout,
    start_server,
)


class BackgroundServer:
    """The server on its own event loop in a background thread (for in-process use: tests, notebooks).

    Made by :func:`make_server`. ``stop(grace)`` stops it, ends the thread and returns a set
    ``threading.Event`` (as ``grpc.Server.stop`` returns one to wait on).
    """

    def __init__(self, host: str, port: int, max_connections: int, **options) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._server = None
        self.servicer: AlchemyServicer | None = None
        self.port = 0
        self._thread = threading.Thread(
            target=self._run,
            args=(host, port, max_connections, options),
            name="alchemy-rpc-server",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self, host: str, port: int, max_connections: int, options: dict) -> None:
        import asyncio

        loop = self._loop
        try:
            try:
                self._server, self.port = loop.run_until_complete(
                    start_server(host, port, max_connections=max_connections, **options)
                )
                self.servicer = self._server.servicer
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()  # until _shutdown stops it
        finally:
            self._server = None  # freed here, with its loop still open
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

    async def _shutdown(self, grace: float | None) -> None:
        try:
            if self._server is not None:
                await self._server.servicer.shutdown()  # every stream gets the server's reason
                await self._server.stop(grace)
        finally:
            self._loop.stop()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop serving (after ``grace`` seconds for streams in flight) and end the thread (idempotent)."""
        loop = self._loop
        if not self._stopped.is_set():
            try:
                loop.call_soon_threadsafe(loop.create_task, self._shutdown(grace))
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._thread.join((grace or 0) + 10)
        return self._stopped


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    idle_timeout: float | None = None,
    tokens: TokenSet | None = None,
    **limits,
):
    """A started server of :class:`AlchemyServicer` on a background thread; returns ``(server, bound_port)``.

    The server is a :class:`BackgroundServer` (``server.stop(grace)``, ``server.servicer``); see
    :func:`start_server` for the arguments (``tokens``, and ``limits``: ``max_connections_per_client``,
    ``max_worlds_per_client``, ``request_rate`` …). ``alchemy-gym serve`` runs the same server on its
    main thread.
    """
    # checked here, before the thread starts (ValueError naming the argument)
    check_idle_timeout(idle_timeout)
    server = BackgroundServer(
        host,
        port,
        max_connections,
        max_request_bytes=max_request_bytes,
        idle_timeout=idle_timeout,
        tokens=tokens,
        **limits,
    )
    return server, server.port
