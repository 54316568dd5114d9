"""Every close a real ``alchemy-gym serve`` process makes reaches the env's user as the server's own reason.

Each server is a real subprocess; the envs run their event loops only inside their calls (nothing
here turns them by hand), so a status that arrives between two calls is seen the way a user sees it.
"""

from __future__ import annotations

import queue
import time

import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
import gymnasium as gym  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402

import alchemy_gym  # noqa: E402, F401
from alchemy_gym.envs.rpc import RpcEnvError  # noqa: E402
from alchemy_gym.rpc.launchers import LocalBinaryLauncher  # noqa: E402
from alchemy_gym.rpc.names import token_metadata  # noqa: E402
from alchemy_gym.server.service import (  # noqa: E402
    IDLE_CLOSED,
    MADE_ROOM,
    SERVER_FULL,
    SHUTTING_DOWN,
    UNAUTHENTICATED,
)
from tests.rpc_fixtures import PYTHON, SERVER_ARGS, wait_until  # noqa: E402

ID = "Alchemy/AllFixed-v0"


def _serve(*options: str) -> LocalBinaryLauncher:
    launcher = LocalBinaryLauncher(PYTHON, [*SERVER_ARGS, *options])  # a fresh token of its own
    launcher.start(timeout=60)
    return launcher


def _env(launcher: LocalBinaryLauncher, token: str | None = "", **kwargs):
    token = launcher.token if token == "" else token
    return gym.make(ID, address=launcher.address, token=token, observations=["symbolic_obs"], **kwargs)


def _log_count(launcher: LocalBinaryLauncher, text: str) -> int:
    return launcher.log_tail(lines=200).count(text)


@pytest.fixture(scope="module")
def idle_server():
    launcher = _serve("--idle-timeout", "0.3")
    yield launcher
    launcher.close()


def test_an_env_idle_past_the_servers_timeout_gets_its_reason(idle_server):
    """Five envs in turn go idle, then step: each is told why its connection was closed."""
    for i in range(5):  # the server logs at most 5 such lines a minute
        env = _env(idle_server)
        try:
            env.reset(seed=i)
            env.step(1)
            assert wait_until(lambda n=i: _log_count(idle_server, "closed the connection from") > n, timeout=30)
            time.sleep(0.2)  # the user's pause goes on a little after the server's log line
            with pytest.raises(RpcEnvError) as info:
                env.step(2)
            message = str(info.value)
            assert f"closed the connection: DEADLINE_EXCEEDED: {IDLE_CLOSED}: no request for 0.3 s" in message
            assert "Internal error from Core" not in message
        finally:
            env.close()


def test_a_refused_token_is_said_at_once(idle_server):
    for token, said in ((None, "with no token"), ("z" * 32, "with the token given")):
        with pytest.raises(RpcEnvError) as info:
            _env(idle_server, token=token, connect_timeout=120)
        message = str(info.value)
        assert f"refused the connection {said}: {UNAUTHENTICATED}" in message
        assert "z" * 32 not in message and idle_server.token not in message


@pytest.fixture(scope="module")
def small_server():
    launcher = _serve("--max-connections", "2")
    yield launcher
    launcher.close()


def test_a_full_server_says_so(small_server):
    envs = [_env(small_server) for _ in range(2)]
    try:
        with pytest.raises(RpcEnvError, match=f"refused the connection: {SERVER_FULL}: it serves at most 2"):
            _env(small_server, connect_timeout=120)
    finally:
        for env in envs:
            env.close()


def test_a_stream_closed_to_make_room_is_told_why(small_server):
    channel = grpc.insecure_channel(small_server.address)
    requests: queue.SimpleQueue = queue.SimpleQueue()
    stub = channel.stream_stream(
        "/dm_env_rpc.v1.Environment/Process",
        request_serializer=pb.EnvironmentRequest.SerializeToString,
        response_deserializer=pb.EnvironmentResponse.FromString,
    )
    responses = stub(iter(requests.get, None), timeout=60, metadata=token_metadata(small_server.token))
    requests.put(pb.EnvironmentRequest())  # admitted; it will hold no world
    assert next(responses).error.code != 0
    time.sleep(1.2)  # older than the server's grace (EVICTION_GRACE) for streams without a world
    envs = [_env(small_server) for _ in range(2)]  # the second needs its place
    try:
        requests.put(pb.EnvironmentRequest())
        with pytest.raises(grpc.RpcError) as info:
            next(responses)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details().startswith(f"{MADE_ROOM} to make room for a new one")
    finally:
        requests.put(None)
        channel.close()
        for env in envs:
            env.close()


def test_a_server_that_stops_tells_the_env_why():
    launcher = _serve()
    env = _env(launcher)
    try:
        env.reset(seed=0)
        launcher.close()  # SIGTERM: the server ends every stream with its reason, then exits
        with pytest.raises(RpcEnvError) as info:
            env.step(1)
        message = str(info.value)
        assert f"UNAVAILABLE: {SHUTTING_DOWN}" in message and "Internal error from Core" not in message
    finally:
        env.close()
        launcher.close()
