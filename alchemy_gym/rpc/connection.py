"""dm_env_rpc client connections that leave no thread behind.

:class:`RpcConnection` (blocking) has the ``send``/``close`` contract of
``dm_env_rpc.v1.connection.Connection`` (requests are wrapped in an
``EnvironmentRequest``, error statuses raise ``DmEnvRpcError``), but
:meth:`RpcConnection.close` ends the request stream, so gRPC's request-consuming
thread exits, and cancels the call. With ``timeout`` set, a server that stays
connected but does not answer a request within ``timeout`` seconds has its stream
cancelled and ``send`` raises :class:`RequestTimeout`; a watchdog thread looks at
the call in flight (see *Request timeouts*; it is joined by :meth:`RpcConnection.close`).

:class:`AsyncRpcConnection` is the same over ``grpc.aio`` (``await send(request)``),
with the timeout checked by a callback on the loop. The envs use it (through
:class:`AioTransport`), each env on a :class:`PrivateLoop` that runs only inside its
calls: against our server a single env steps a little faster than on the blocking
stream, with less client CPU (no hand-off to gRPC's request thread, no watchdog
thread), and the vector env has one request in flight on each of its streams at
once, which shares gRPC's cost per wake-up among them.

## Request timeouts

Neither connection arms a timer per request (that would cost more than the rest of a
``send``). One check, a thread (:class:`RpcConnection`) or a loop callback
(:class:`AsyncRpcConnection`), looks at the request in flight every ``period`` =
:func:`check_period` (``timeout / 4``, within 0.01..1 s) and, once the request's deadline
(its start + ``timeout``) is nearer than a period, sleeps until exactly that deadline
(:func:`next_check_delay`). A request that gets no answer is therefore cancelled at its
deadline plus the wake-up latency of the thread or loop (milliseconds), well within 10 % of
``timeout``, not up to a whole period late; it is never cancelled early. The tests check the
computation step by step on a simulated clock, and once against a server that never answers.

## A full server, a wrong token

A server that refuses a stream because it serves its limit of connections ends it at once with
RESOURCE_EXHAUSTED; :func:`is_server_full` recognizes that status (ours says ``alchemy-gym server
is full: it serves at most N connections …``, plain gRPC ``Concurrent RPC limit exceeded``), and
the launchers and envs raise at once, saying so, instead of retrying. So do they for a stream
refused with UNAUTHENTICATED (a server that needs a token: :func:`is_refused`).

## Tokens

A connection made with ``token`` presents it on its stream as the call metadata
``authorization: Bearer TOKEN`` (:func:`alchemy_gym.rpc.names.token_metadata`), which our server
checks; servers without tokens (the Unity one) ignore it.

## The server's own reason

A server may end a stream while the client is between requests (idle, closed to make room, shut
down). An env's event loop runs only inside its calls, so the stream's status may not have reached
the call yet when the next request goes out, and gRPC would then report the write's failure as
"INTERNAL: Internal error from Core" instead of the status. After a pause between requests
(:data:`PAUSE` or more) :meth:`AsyncRpcConnection.send` therefore turns the loop a few times
first, which delivers a status that arrived meanwhile (two turns, measured), and the request
fails with the server's reason (:class:`StreamClosed`). Back-to-back requests do not pay for it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import weakref

_END = None
_monotonic = time.monotonic  # the clock of the timeout checks (replaced in tests)
#: Seconds between an answer and the next request after which ``send`` first lets a status that
#: arrived meanwhile reach the call (see *The server's own reason*), and the loop turns it allows.
PAUSE = 0.002
_STATUS_TURNS = 4


class RequestTimeout(TimeoutError):
    """The server did not answer a request in time (its stream has been cancelled)."""


def check_period(timeout: float) -> float:
    """Seconds between two looks at the request in flight: ``timeout / 4``, kept within 0.01..1 s."""
    return min(max(timeout / 4, 0.01), 1.0)


def next_check_delay(now: float, started: float | None, timeout: float, period: float) -> float | None:
    """Seconds until the timeout check looks again, or ``None`` if the request in flight is overdue.

    No request in flight (``started`` None): a period. Otherwise the time left to its deadline
    ``started + timeout`` if that is less than a period, so that the check wakes at the deadline.
    """
    if started is None:
        return period
    remaining = started + timeout - now
    if remaining <= 0:
        return None
    return min(period, remaining)


def is_server_full(code, details: str | None) -> bool:
    """Whether a stream's status says the server refused it for having all its connections in use.

    ``code`` is a ``grpc.StatusCode`` or its name.
    """
    name = getattr(code, "name", code)
    details = details or ""
    return name == "RESOURCE_EXHAUSTED" and ("server is full" in details or "Concurrent RPC limit" in details)


def is_refused(code, details: str | None) -> bool:
    """Whether a stream's status says the server refused it: full (:func:`is_server_full`) or UNAUTHENTICATED
    (no token, or not one of the server's)."""
    return getattr(code, "name", code) == "UNAUTHENTICATED" or is_server_full(code, details)


class _Watchdog:
    """Cancels the stream when one request stays unanswered for longer than ``timeout`` seconds."""

    def __init__(self, timeout: float, cancel) -> None:
        self.timeout = timeout
        self.fired = False
        # written by the caller around each request (no lock: the watchdog only compares snapshots)
        self.sequence = 0
        self.started: float | None = None
        self._cancel = cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alchemy-gym-rpc-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = check_period(self.timeout)
        delay = period
        while not self._stop.wait(delay):
            # sequence first: if a new request starts while we look, the sequences differ and nothing fires
            sequence = self.sequence
            started = self.started
            delay = next_check_delay(_monotonic(), started, self.timeout, period)
            if delay is None:
                if sequence == self.sequence:
                    self.fired = True
                    self._cancel()
                    return
                delay = period  # that request was answered meanwhile; the next one is new

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class RpcConnection:
    """One ``Process`` stream on a gRPC channel (the channel stays the caller's to close).

    Args:
        channel: a gRPC channel.
        metadata: call metadata.
        timeout: seconds one request may wait for its answer (None: forever).
    """

    def __init__(self, channel, metadata=None, timeout: float | None = None) -> None:
        from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc

        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = dm_env_rpc_pb2_grpc.EnvironmentStub(channel)
        self._stream = stub.Process(iter(self._requests.get, _END), metadata=metadata)
        self.timeout = timeout
        self._watchdog = None if timeout is None else _Watchdog(float(timeout), self._stream.cancel)
        # if the connection is dropped without close(), still end the request stream (and its threads)
        self._finalizer = weakref.finalize(self, _finish, self._requests, self._watchdog)

    def send(self, request):
        """Send one request (e.g. ``StepRequest``) and return the matching response message."""
        from dm_env_rpc.v1 import message_utils

        if self._stream is None:
            raise ValueError("cannot send a request on a closed connection")
        environment_request, field_name = message_utils.pack_environment_request(request)
        watchdog = self._watchdog
        if watchdog is None:
            self._requests.put(environment_request)
            return message_utils.unpack_environment_response(next(self._stream), field_name)
        if watchdog.fired:
            raise RequestTimeout(f"an earlier request got no answer within {self.timeout:g} s; the stream is closed")
        watchdog.sequence += 1
        watchdog.started = _monotonic()
        try:
            self._requests.put(environment_request)
            response = next(self._stream)
        except Exception as exc:
            if watchdog.fired:
                raise RequestTimeout(
                    f"the server did not answer {type(request).__name__} within {self.timeout:g} s"
                ) from exc
            raise
        finally:
            watchdog.started = None
        return message_utils.unpack_environment_response(response, field_name)

    def close(self) -> None:
        """End the stream and stop the watchdog (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._finalizer()
            stream.cancel()

    def __enter__(self) -> RpcConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finish(requests: queue.SimpleQueue, watchdog: _Watchdog | None) -> None:
    requests.put(_END)
    if watchdog is not None:
        watchdog.stop()


# ----------------------------------------------------------------------------------- asyncio


class StreamClosed(ConnectionError):
    """The stream ended before answering (the server closed it or went away); the message gives its status.

    ``code`` (a ``grpc.StatusCode`` name, or None if unknown) and ``details`` are the stream's status.
    """

    def __init__(self, message: str, code: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class AsyncRpcConnection:
    """One ``Process`` stream on a ``grpc.aio`` channel: ``await send(request)`` returns the response message.

    Same contract as :class:`RpcConnection` (``EnvironmentRequest`` wrapping, error statuses raise
    ``DmEnvRpcError``), for an event loop: several connections (one stream each, on one channel
    or several) can have requests in flight at once, e.g. under ``asyncio.gather``. Make it, and
    use it, inside coroutines run by one loop.

    With ``timeout`` set, a request that gets no answer within ``timeout`` seconds cancels the
    stream and ``send`` raises :class:`RequestTimeout`. As in :class:`RpcConnection` the check
    costs nothing per request: a callback on the loop looks at the request in flight once a
    period and wakes at its deadline (module docstring, *Request timeouts*; no thread).
    If ``send`` itself is cancelled mid-request (an interrupted caller), the stream's order is lost:
    it is cancelled too and later sends raise :class:`StreamClosed`.

    Args:
        channel: a ``grpc.aio`` channel (the caller's to close).
        metadata: call metadata.
        timeout: seconds one request may wait for its answer (None: forever).
    """

    def __init__(self, channel, metadata=None, timeout: float | None = None) -> None:
        import grpc
        from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc, message_utils

        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self._loop = asyncio.get_running_loop()
        self._call = dm_env_rpc_pb2_grpc.EnvironmentStub(channel).Process(metadata=metadata)
        self._pack, self._unpack = message_utils.pack_environment_request, message_utils.unpack_environment_response
        self._eof = grpc.aio.EOF
        self.timeout = timeout
        self._timed_out = False
        self._lost: str | None = None  # why the stream can no longer be used
        self._status: tuple[str | None, str | None] = (None, None)  # the ended stream's code name, details
        self._started: float | None = None  # when the request in flight went out
        self._answered = time.monotonic()  # when the last answer came (see *The server's own reason*)
        self._watch = None
        if timeout is not None:
            self._period = check_period(timeout)
            self._watch = self._loop.call_later(self._period, self._check)

    def _check(self) -> None:
        """Cancel the stream if the request in flight is overdue; else look again at the next period
        or at its deadline, whichever comes first."""
        call = self._call
        if call is None:
            return
        delay = next_check_delay(_monotonic(), self._started, self.timeout, self._period)
        if delay is None:
            self._timed_out = True
            call.cancel()
            return
        self._watch = self._loop.call_later(delay, self._check)

    async def send(self, request):
        """Send one request (e.g. ``StepRequest``) and return the matching response message."""
        call = self._call
        if call is None:
            raise ValueError("cannot send a request on a closed connection")
        if self._lost is not None:
            raise StreamClosed(self._lost, *self._status)
        if self._timed_out:
            raise RequestTimeout(f"an earlier request got no answer within {self.timeout:g} s; the stream is closed")
        environment_request, field_name = self._pack(request)
        # turns of the loop first: what gRPC delivered while the loop was not running (the server ending
        # the stream, e.g. for idleness) is seen, so that the stream's own status is reported, not the
        # generic "Internal error from Core" of a write on an ended stream (module docstring)
        await asyncio.sleep(0)
        if time.monotonic() - self._answered >= PAUSE:
            for _ in range(_STATUS_TURNS):
                if call.done():
                    break
                await asyncio.sleep(0)
        self._started = _monotonic()
        try:
            await call.write(environment_request)
            response = await call.read()
        except asyncio.CancelledError:
            if self._timed_out:
                raise RequestTimeout(
                    f"the server did not answer {type(request).__name__} within {self.timeout:g} s"
                ) from None
            self._lost = f"a {type(request).__name__} was interrupted before its answer arrived; the stream is closed"
            call.cancel()
            raise
        except asyncio.InvalidStateError:  # the call had already ended: report its status
            raise await self._ended() from None
        except Exception as exc:
            code = getattr(exc, "code", None)
            if callable(code) and code().name == "INTERNAL" and "Internal error from Core" in (exc.details() or ""):
                # the write met a stream the server had ended, whose status never reached this call
                self._lost = (
                    "the server had ended the stream before this request, and its status did not reach the "
                    "client (gRPC reports INTERNAL: Internal error from Core)"
                )
                raise StreamClosed(self._lost) from None
            raise
        finally:
            self._started = None
        self._answered = time.monotonic()
        if response is self._eof:
            raise await self._ended()
        return self._unpack(response, field_name)

    async def _ended(self) -> StreamClosed:
        call = self._call
        code, details = await call.code(), await call.details()
        self._lost = f"the server ended the stream ({code.name}: {details or 'no details'})"
        self._status = (code.name, details)
        return StreamClosed(self._lost, *self._status)

    async def close(self, grace: float = 0.5) -> None:
        """End the stream and wait for its status, so that no gRPC work for this loop is left (idempotent).

        A healthy stream is half-closed and the server has ``grace`` seconds to end it (as dm_env_rpc
        servers do at the end of the requests); otherwise, or if the stream is already broken, it is
        cancelled.
        """
        call, self._call = self._call, None
        if call is None:
            return
        if self._watch is not None:
            self._watch.cancel()
        status = asyncio.ensure_future(call.code())
        if not call.done() and self._lost is None and not self._timed_out:
            try:
                await call.done_writing()
            except Exception:  # the call ended meanwhile
                pass
            await asyncio.wait({status}, timeout=grace)
        if not call.done():
            call.cancel()
            await status
            # the cancelled operations complete through gRPC's poller thread: let them reach this loop
            await asyncio.sleep(0.01)
        await status


class PrivateLoop:
    """An asyncio event loop that runs only inside :meth:`run` (no thread), owned by one object.

    ``run(coro)`` works from plain code and also from code that is itself called by a running
    loop (a notebook cell, an ``async`` trainer calling a blocking env): that loop is set aside
    while ours runs, exactly as any blocking call would hold it. If ``run`` is interrupted
    (``KeyboardInterrupt``), the coroutine is cancelled before the exception propagates, so no
    half-finished request is left to run at the next call.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def run(self, awaitable):
        """Run a coroutine (or future) to completion on this loop and return its result (or raise its error).

        An error is caught inside the loop and raised here, not through ``run_until_complete``, whose
        frame would keep it (and every object its traceback holds: calls, channels) in a reference
        cycle until the next garbage collection: a failed env's gRPC objects are freed at once.
        """
        loop = self._loop
        task = loop.create_task(_outcome(awaitable))
        outer = asyncio._get_running_loop()  # documented as the fast get_running_loop() that returns None
        if outer is not None:
            asyncio._set_running_loop(None)
        try:
            try:
                ok, value = loop.run_until_complete(task)
            except BaseException:  # interrupted (KeyboardInterrupt …) while the loop ran
                if not task.done():
                    task.cancel()
                    try:
                        loop.run_until_complete(task)
                    except BaseException:
                        pass
                raise
        finally:
            task = None
            if outer is not None:
                asyncio._set_running_loop(outer)
        if ok:
            return value
        try:
            raise value
        finally:
            value = None  # no cycle through this frame

    def close(self) -> None:
        """Cancel what is left on the loop, finish async generators, close it (idempotent)."""
        loop = self._loop
        if loop.is_closed():
            return
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            self.run(asyncio.wait(pending, timeout=5))
        self.run(loop.shutdown_asyncgens())
        loop.close()


async def _outcome(awaitable) -> tuple[bool, object]:
    """``(True, result)`` or ``(False, exception)`` of an awaitable (``BaseException``s other than
    ``Exception`` propagate)."""
    try:
        return True, await awaitable
    except Exception as exc:
        return False, exc


# --------------------------------------------------------------------------------- transport


class AioTransport:
    """A ``grpc.aio`` stream (:class:`AsyncRpcConnection`) on its own channel to ``address``: what an env uses.

    Make it, and use it, on one loop (it opens the channel, which binds to the running loop).
    ``token``: presented to the server on the stream (module docstring, *Tokens*).
    """

    def __init__(self, address: str, timeout: float | None = None, token: str | None = None) -> None:
        from alchemy_gym.rpc.launchers import open_aio_channel
        from alchemy_gym.rpc.names import token_metadata

        self._channel = open_aio_channel(address)
        self._connection = AsyncRpcConnection(self._channel, metadata=token_metadata(token), timeout=timeout)

    async def send(self, request):
        """Send one request and return the matching response message."""
        return await self._connection.send(request)

    async def close(self) -> None:
        """End the stream and close the channel (idempotent)."""
        await self._connection.close()
        await self._channel.close()
