"""A dm_env_rpc client connection that leaves no thread behind.

Same ``send``/``close`` contract as ``dm_env_rpc.v1.connection.Connection``
(requests are wrapped in an ``EnvironmentRequest``, error statuses raise
``DmEnvRpcError``), but :meth:`RpcConnection.close` ends the request stream, so
gRPC's request-consuming thread exits, and cancels the call.
"""

from __future__ import annotations

import queue
import weakref

_END = None


class RpcConnection:
    """One ``Process`` stream on a gRPC channel (the channel stays the caller's to close)."""

    def __init__(self, channel, metadata=None) -> None:
        from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc

        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = dm_env_rpc_pb2_grpc.EnvironmentStub(channel)
        self._stream = stub.Process(iter(self._requests.get, _END), metadata=metadata)
        # if the connection is dropped without close(), still end the request stream (and its thread)
        self._finalizer = weakref.finalize(self, self._requests.put, _END)

    def send(self, request):
        """Send one request (e.g. ``StepRequest``) and return the matching response message."""
        from dm_env_rpc.v1 import message_utils

        if self._stream is None:
            raise ValueError("cannot send a request on a closed connection")
        environment_request, field_name = message_utils.pack_environment_request(request)
        self._requests.put(environment_request)
        return message_utils.unpack_environment_response(next(self._stream), field_name)

    def close(self) -> None:
        """End the stream (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._finalizer()
            stream.cancel()

    def __enter__(self) -> RpcConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
