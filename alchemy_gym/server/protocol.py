"""dm_env_rpc's messages and status codes for the server, and the error it sends back.

The message modules are imported on first use, so that importing the server imports neither
``dm_env_rpc`` nor ``grpc`` (``alchemy-gym serve`` chooses gRPC's transport before ``grpc`` is
imported: :mod:`alchemy_gym.rpc.tuning`).
"""

from __future__ import annotations

import functools

#: ``EnvironmentStateType`` values (dm_env_rpc.proto; checked in the tests).
RUNNING, TERMINATED = 1, 2


@functools.cache
def pb():
    """``dm_env_rpc.v1.dm_env_rpc_pb2``."""
    from dm_env_rpc.v1 import dm_env_rpc_pb2

    return dm_env_rpc_pb2


@functools.cache
def codes():
    """``google.rpc.code_pb2`` (the codes of an error status)."""
    from google.rpc import code_pb2

    return code_pb2


class ServerError(Exception):
    """An error sent back to the client as a ``google.rpc.Status`` (``code`` from ``google.rpc.code_pb2``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServerError:
    """INVALID_ARGUMENT: the request itself is wrong."""
    return ServerError(codes().INVALID_ARGUMENT, message)


def precondition(message: str) -> ServerError:
    """FAILED_PRECONDITION: the request does not fit the stream's or the world's state."""
    return ServerError(codes().FAILED_PRECONDITION, message)


def error_response(code: int, message: str):
    """An ``EnvironmentResponse`` carrying the error status ``code`` with ``message``."""
    response = pb().EnvironmentResponse()
    response.error.code = code
    response.error.message = message
    return response
