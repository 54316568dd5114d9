"""A dm_env_rpc client connection that leaves no thread behind.

Same ``send``/``close`` contract as ``dm_env_rpc.v1.connection.Connection``
(requests are wrapped in an ``EnvironmentRequest``, error statuses raise
``DmEnvRpcError``), but :meth:`RpcConnection.close` ends the request stream, so
gRPC's request-consuming thread exits, and cancels the call.

With ``timeout`` set, a server that stays connected but does not answer a
request within ``timeout`` seconds has its stream cancelled and ``send`` raises
:class:`RequestTimeout`. The check costs nothing per call: a watchdog thread
looks at the call in flight a few times per ``timeout`` (and is joined by
:meth:`RpcConnection.close`).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref

_END = None


class RequestTimeout(TimeoutError):
    """The server did not answer a request in time (its stream has been cancelled)."""


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
        period = min(max(self.timeout / 4, 0.01), 1.0)
        while not self._stop.wait(period):
            # sequence first: if a new request starts while we look, the sequences differ and nothing fires
            sequence = self.sequence
            started = self.started
            if started is not None and time.monotonic() - started > self.timeout and sequence == self.sequence:
                self.fired = True
                self._cancel()
                return

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
        watchdog.started = time.monotonic()
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
