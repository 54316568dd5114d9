"""Our dm_env_rpc server against hostile clients: bounded settings, private worlds, limits, short errors and logs."""

from __future__ import annotations

import logging
import queue
import re
import time

import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import tensor_utils  # noqa: E402
from google.rpc import code_pb2  # noqa: E402

from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.connection import is_server_full  # noqa: E402
from alchemy_gym.server import service as server_module  # noqa: E402
from alchemy_gym.server.ratelimit import RateLimitedLog, short_repr, shorten  # noqa: E402
from alchemy_gym.server.service import EVENT_NAMES, IDLE_CLOSED, SERVER_FULL, make_server  # noqa: E402
from alchemy_gym.server.session import Session  # noqa: E402
from tests.rpc_fixtures import LEVEL, Client  # noqa: E402

SEED = {"seed": tensor_utils.pack_tensor(7)}
REQUIRED = {**SEED, "levelName": tensor_utils.pack_tensor(LEVEL)}


@pytest.fixture(scope="module")
def server():
    server, _port = make_server("127.0.0.1", 0, max_connections=16)
    yield server
    server.stop(grace=0.5).wait(5)


@pytest.fixture
def client(server):
    c = Client(server.port)
    yield c
    c.close()


@pytest.fixture
def other(server):
    c = Client(server.port)
    yield c
    c.close()


def _uid(specs, name):
    return next(u for u, s in specs.observations.items() if s.name == name)


def _play(client, specs, actions):
    """symbolic_obs of the first step and after each action."""
    uid = _uid(specs, "symbolic_obs")
    first = client.send(pb.StepRequest(requested_observations=[uid]))
    trace = [tensor_utils.unpack_tensor(first.observations[uid])]
    for a in actions:
        response = client.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(a)}, requested_observations=[uid]))
        trace.append(tensor_utils.unpack_tensor(response.observations[uid]))
    return np.stack(trace)


def _expected(seed, actions):
    env = SymbolicAlchemyEnv(LEVEL)
    return np.stack([env.reset(seed=seed)[0]] + [env.step(a)[0] for a in actions])


# ------------------------------------------------------------------------- event filters


def _event_names(client, world, steps=3):
    """The names of the events of the first ``steps`` steps (each but the first puts stone 0 in the cauldron)."""
    from alchemy_gym.rpc.events import decode_event

    specs = client.join(world)
    uid = _uid(specs, "events")
    names = []
    response = client.send(pb.StepRequest(requested_observations=[uid]))
    for _ in range(steps):
        names += [decode_event(a).name for a in tensor_utils.unpack_tensor(response.observations[uid])]
        response = client.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(1)}, requested_observations=[uid]))
    return names


def test_event_names_are_those_the_server_emits():
    from alchemy_gym.rpc.events import EVENT_DETAILS

    assert set(EVENT_NAMES) == set(EVENT_DETAILS)


def test_a_catastrophic_pattern_is_accepted_and_costs_a_set_lookup(server, client):
    world = client.create(EventSubscriptionRegex="(.*.*)*Z")  # minutes for re on each event name
    assert server_module.subscribed_events("(.*.*)*Z") == frozenset()
    assert server.servicer.worlds.get(world).recorder is None  # nothing subscribed: nothing recorded
    assert _event_names(client, world) == []


def test_every_event_emitted_is_one_of_the_event_names(client):
    world = client.create(EventSubscriptionRegex=".*")
    names = _event_names(client, world, steps=4)
    assert "DeepMind/Alchemy/StoneUsed" in names and set(names) <= set(EVENT_NAMES)


def test_a_subscription_selects_by_name(client):
    world = client.create(EventSubscriptionRegex="Trial/TrialStarted$")
    assert _event_names(client, world) == ["DeepMind/Trial/TrialStarted"]
    world = client.create(EventSubscriptionRegex="StoneUsed|TrialEnded")
    client.send(pb.LeaveWorldRequest())
    assert _event_names(client, world) == ["DeepMind/Alchemy/StoneUsed"]


@pytest.mark.parametrize(
    "pattern, fragment",
    [
        ("^(.|.){0,25}Z", "counted repetition {m,n} is not allowed"),
        ("(" * 1000, "at most 256"),
        ("(" * 200, "nested more than 16 deep"),
        ("(?<=a)b", "group extensions"),
        ("x" * 60_000, "has 60000 characters: at most 256"),
    ],
)
def test_patterns_outside_the_safe_subset_get_invalid_argument(client, pattern, fragment):
    error = client.error(
        pb.CreateWorldRequest(settings={**REQUIRED, "EventSubscriptionRegex": tensor_utils.pack_tensor(pattern)})
    )
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert fragment in error.message
    assert len(error.message) < 700
    assert "Traceback" not in error.message and "RecursionError" not in error.message


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"levelName": "x" * 60_000}, "'levelName' has 60000 characters: at most 256"),
        ({"levelName": "alchemy/" + "y" * 200}, "unknown Alchemy level 'alchemy/yyy"),
        ({"seed": "7"}, "must be an integer scalar"),
        ({"seed": np.zeros((4, 4), np.int64)}, "shape [4, 4]"),
        ({"shareable": 1}, "'shareable' must be a bool scalar"),
    ],
)
def test_bad_create_settings_get_short_invalid_argument(client, settings, fragment):
    packed = dict(REQUIRED)
    packed.update({k: tensor_utils.pack_tensor(v) for k, v in settings.items()})
    error = client.error(pb.CreateWorldRequest(settings=packed))
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert fragment in error.message
    assert len(error.message) < 1000


def test_a_huge_shape_is_refused_before_it_is_unpacked(client):
    tensor = pb.Tensor(int64s=pb.Tensor.Int64Array(array=[7]))
    tensor.shape.extend([100_000, 100_000])  # unpack_tensor would broadcast 7 to 10**10 values
    error = client.error(pb.CreateWorldRequest(settings={**REQUIRED, "seed": tensor}))
    assert error.code == code_pb2.INVALID_ARGUMENT and "shape [100000, 100000]" in error.message


def test_many_unknown_settings_are_named_briefly(client):
    settings = {**REQUIRED, **{f"bogus_{i}_" + "z" * 1000: tensor_utils.pack_tensor(1) for i in range(50)}}
    error = client.error(pb.CreateWorldRequest(settings=settings))
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert "unknown CreateWorld setting(s)" in error.message and "and 47 more" in error.message
    assert len(error.message) < 500


@pytest.mark.parametrize(
    "width, height, fragment",
    [
        (4096, 4096, "out of range: allowed 1..1024"),
        (1024, 1024, "1048576 pixels is too large: at most 307200"),
        (0, 72, "out of range"),
    ],
)
def test_picture_size_is_limited(client, width, height, fragment):
    world = client.create()
    error = client.error(
        pb.JoinWorldRequest(
            world_name=world,
            settings={"width": tensor_utils.pack_tensor(width), "height": tensor_utils.pack_tensor(height)},
        )
    )
    assert error.code == code_pb2.INVALID_ARGUMENT and fragment in error.message


def test_the_largest_allowed_picture_is_served(client):
    specs = client.join(client.create(), width=640, height=480)
    uid = _uid(specs, "RGB_INTERLEAVED")
    response = client.send(pb.StepRequest(requested_observations=[uid]))
    assert tensor_utils.unpack_tensor(response.observations[uid]).shape == (480, 640, 3)


def test_a_huge_world_name_is_not_echoed(client):
    for request in (
        pb.JoinWorldRequest(world_name="w" * 60_000),
        pb.ResetWorldRequest(world_name="w" * 60_000),
        pb.DestroyWorldRequest(world_name="w" * 60_000),
    ):
        error = client.error(request)
        assert error.code == code_pb2.INVALID_ARGUMENT
        assert "world_name has 60000 characters" in error.message and len(error.message) < 200


# -------------------------------------------------------------------------------- worlds


def test_world_names_are_random_and_unguessable(client):
    names = [client.create(seed=s) for s in range(5)]
    assert all(re.fullmatch(r"world_[0-9a-f]{16}", n) for n in names)
    assert len(set(names)) == 5
    for name in names:
        client.send(pb.DestroyWorldRequest(world_name=name))


def test_another_connection_cannot_join_reset_or_destroy_a_world(client, other):
    world = client.create(seed=21)
    specs = client.join(world)
    actions = [1, 5, 9, 0, 3, 2, 7]
    before = _play(client, specs, actions[:3])
    for request, verb in (
        (pb.JoinWorldRequest(world_name=world), "join"),
        (pb.ResetWorldRequest(world_name=world, settings=SEED), "reset"),
        (pb.DestroyWorldRequest(world_name=world), "destroy"),
    ):
        error = other.error(request)
        assert error.code == code_pb2.PERMISSION_DENIED
        assert f"cannot {verb} world {world!r}: it belongs to another connection" in error.message
        assert "shareable=True" in error.message
    # the victim's episode goes on exactly as the in-process game's
    uid = _uid(specs, "symbolic_obs")
    after = []
    for a in actions[3:]:
        response = client.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(a)}, requested_observations=[uid]))
        after.append(tensor_utils.unpack_tensor(response.observations[uid]))
    np.testing.assert_array_equal(np.concatenate([before, np.stack(after)]), _expected(21, actions))


def test_not_found_lists_only_the_callers_worlds(client, other):
    secret = client.create()
    mine = other.create()
    error = other.error(pb.JoinWorldRequest(world_name="world_0"))
    assert error.code == code_pb2.NOT_FOUND
    assert secret not in error.message and mine in error.message
    other.send(pb.DestroyWorldRequest(world_name=mine))
    error = other.error(pb.DestroyWorldRequest(world_name="world_0"))
    assert "this connection has no world" in error.message and secret not in error.message


def test_a_shareable_world_can_be_joined_and_reset_by_another_connection(client, other):
    world = client.create(seed=4, shareable=True)
    specs = other.join(world)
    np.testing.assert_array_equal(_play(other, specs, [1, 2]), _expected(4, [1, 2]))
    other.send(pb.ResetWorldRequest(world_name=world, settings={"seed": tensor_utils.pack_tensor(9)}))
    np.testing.assert_array_equal(_play(other, specs, [3]), _expected(9, [3]))
    error = client.error(pb.DestroyWorldRequest(world_name=world))
    assert error.code == code_pb2.FAILED_PRECONDITION  # joined by `other`: leave first
    other.send(pb.LeaveWorldRequest())
    client.send(pb.DestroyWorldRequest(world_name=world))


def test_a_connection_holds_a_bounded_number_of_worlds(server, client, other):
    limit = server.servicer.max_worlds_per_connection
    assert limit == server_module.DEFAULT_MAX_WORLDS_PER_CONNECTION
    names = [client.create(seed=s) for s in range(limit)]
    error = client.error(pb.CreateWorldRequest(settings=REQUIRED))
    assert error.code == code_pb2.RESOURCE_EXHAUSTED
    assert f"a connection may hold at most {limit} worlds" in error.message
    other.send(pb.DestroyWorldRequest(world_name=other.create()))  # others are not affected
    client.send(pb.DestroyWorldRequest(world_name=names[0]))
    client.create()  # room again


# ------------------------------------------------------------------------- full server


class _Held:
    """A raw stream that has been answered once (so it holds a connection)."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = self.channel.stream_stream(
            "/dm_env_rpc.v1.Environment/Process",
            request_serializer=pb.EnvironmentRequest.SerializeToString,
            response_deserializer=pb.EnvironmentResponse.FromString,
        )
        self.responses = stub(iter(self.requests.get, None), timeout=60)
        self.requests.put(pb.EnvironmentRequest(step=pb.StepRequest()))

    def first(self):
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()
        self.channel.close()


@pytest.fixture
def full_server():
    """A server of 2 connections, both held."""
    server, port = make_server("127.0.0.1", 0, max_connections=2)
    held = [_Held(port) for _ in range(2)]
    for h in held:
        assert h.first().error.code == code_pb2.FAILED_PRECONDITION  # served: "not joined"
    yield server, port, held
    for h in held:
        h.close()
    server.stop(grace=0.5).wait(5)


def test_a_stream_beyond_the_limit_is_refused_at_once_with_the_limit(full_server):
    server, port, _held = full_server
    extra = _Held(port)
    with pytest.raises(grpc.RpcError) as info:
        extra.first()
    extra.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith(f"{SERVER_FULL}: it serves at most 2 connections at once")
    assert is_server_full(info.value.code(), info.value.details())
    assert server.servicer.connections == 2


def test_the_launcher_probe_of_a_full_server_raises_without_retrying(full_server):
    from alchemy_gym.rpc.launchers import AddressLauncher, ServerFull

    _server, port, _held = full_server
    # a retry loop would end in LaunchError("... was not ready after 120.0 s ...") instead
    with pytest.raises(ServerFull, match="at most 2 connections"):
        AddressLauncher(f"127.0.0.1:{port}").start(timeout=120)


def test_gym_make_on_a_full_server_says_it_is_full(full_server):
    import gymnasium as gym

    import alchemy_gym  # noqa: F401
    from alchemy_gym.envs.rpc import RpcEnvError

    server, port, held = full_server
    with pytest.raises(RpcEnvError, match=r"server is full: it serves at most 2 connections"):
        gym.make("Alchemy/AllFixed-v0", address=f"127.0.0.1:{port}", connect_timeout=120)
    held.pop().close()  # one connection free again: the env is made
    from tests.rpc_fixtures import wait_until

    assert wait_until(lambda: server.servicer.connections < 2, timeout=10)
    env = gym.make("Alchemy/AllFixed-v0", address=f"127.0.0.1:{port}", observations=["symbolic_obs"])
    try:
        env.reset(seed=0)
    finally:
        env.close()


def test_an_env_stream_refused_after_the_probe_says_the_server_is_full(full_server):
    """The stream of the env itself (not the probe's) refused: the same immediate error."""
    import asyncio

    from alchemy_gym.envs.rpc import RpcEnvConfig, RpcEnvError, RpcWorldClient
    from alchemy_gym.rpc.launchers import AddressLauncher

    _server, port, _held = full_server

    async def connect():
        client = RpcWorldClient(RpcEnvConfig.parse(LEVEL, address=f"127.0.0.1:{port}"))
        client.launcher = AddressLauncher(f"127.0.0.1:{port}")  # not started: no probe
        try:
            await client.connect()
        finally:
            await client.disconnect()

    # 20 times: the refusal must not race with the client's first write (which gRPC would report
    # as "INTERNAL: Internal error from Core" about one time in six if the server did not read it first)
    for _ in range(20):
        with pytest.raises(RpcEnvError, match=r"refused the connection: alchemy-gym server is full: .* at most 2"):
            asyncio.run(connect())


def test_a_vector_env_larger_than_the_server_says_it_is_full_and_leaves_nothing():
    from alchemy_gym.envs.rpc import RpcEnvError
    from alchemy_gym.envs.rpc_vector import RpcAlchemyVectorEnv
    from tests.rpc_fixtures import wait_until

    server, port = make_server("127.0.0.1", 0, max_connections=3)
    try:
        with pytest.raises(RpcEnvError, match=r"sub-env \d: .*server is full: it serves at most 3 connections"):
            RpcAlchemyVectorEnv(4, LEVEL, address=f"127.0.0.1:{port}", connect_timeout=120)
        # the sub-envs that got in destroyed their worlds and closed their streams
        assert wait_until(lambda: server.servicer.connections == 0 and server.servicer.num_worlds == 0, timeout=10)
        envs = RpcAlchemyVectorEnv(3, LEVEL, address=f"127.0.0.1:{port}", observations=["symbolic_obs"])
        try:
            envs.reset(seed=0)
            envs.step(np.array([1, 2, 3]))
        finally:
            envs.close()
    finally:
        server.stop(grace=0.5).wait(5)


def test_a_refused_stream_that_sends_nothing_is_refused_all_the_same(full_server):
    _server, port, _held = full_server
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    silent: queue.SimpleQueue = queue.SimpleQueue()
    stub = channel.stream_stream(
        "/dm_env_rpc.v1.Environment/Process",
        request_serializer=pb.EnvironmentRequest.SerializeToString,
        response_deserializer=pb.EnvironmentResponse.FromString,
    )
    responses = stub(iter(silent.get, None), timeout=60)
    with pytest.raises(grpc.RpcError) as info:
        next(responses)  # after the server's wait for a first request
    silent.put(None)
    channel.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith(SERVER_FULL)


# ------------------------------------------------------------------------- idle streams


def test_an_idle_stream_is_ended_and_its_worlds_destroyed():
    from tests.rpc_fixtures import wait_until

    server, port = make_server("127.0.0.1", 0, max_connections=2, idle_timeout=0.3)
    try:
        quiet = Client(port)
        quiet.create()  # holds a connection and a world, then sends nothing
        assert server.servicer.connections == 1 and server.servicer.num_worlds == 1
        assert wait_until(lambda: server.servicer.connections == 0, timeout=30)
        assert server.servicer.num_worlds == 0
        with pytest.raises(grpc.RpcError) as info:
            quiet.send(pb.StepRequest())
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert info.value.details() == (
            f"{IDLE_CLOSED}: no request for 0.3 s (the server's idle timeout); its worlds were destroyed"
        )
        quiet.channel.close()
        # the freed connections serve new clients
        fresh = [Client(port) for _ in range(2)]
        assert all(c.create() for c in fresh)
        for c in fresh:
            c.channel.close()
    finally:
        server.stop(grace=0.5).wait(5)


def test_a_stream_that_keeps_sending_is_not_idle():
    server, port = make_server("127.0.0.1", 0, max_connections=2, idle_timeout=30)
    try:
        busy = Client(port)
        world = busy.create()
        busy.join(world)
        for _ in range(50):  # each request restarts the idle clock
            busy.send(pb.StepRequest())
        assert server.servicer.connections == 1 and server.servicer.num_worlds == 1
        busy.channel.close()
    finally:
        server.stop(grace=0.5).wait(5)


def test_an_env_whose_stream_went_idle_says_so():
    """The env's loop runs only inside its calls (nothing turns it here): the server's status still reaches
    the user (``tests/test_rpc_close_reasons.py`` does the same against a server process)."""
    import gymnasium as gym

    import alchemy_gym  # noqa: F401
    from alchemy_gym.envs.rpc import RpcEnvError
    from tests.rpc_fixtures import wait_until

    server, port = make_server("127.0.0.1", 0, max_connections=2, idle_timeout=0.3)
    env = gym.make("Alchemy/AllFixed-v0", address=f"127.0.0.1:{port}", observations=["symbolic_obs"])
    try:
        env.reset(seed=0)
        assert wait_until(lambda: server.servicer.connections == 0, timeout=30)
        time.sleep(0.2)  # the status goes out just after the stream stops counting: let it reach the client
        with pytest.raises(RpcEnvError, match=r"closed the connection: DEADLINE_EXCEEDED: .*no request for 0.3 s"):
            env.step(1)
    finally:
        env.close()
        server.stop(grace=0.5).wait(5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_a_bad_idle_timeout_is_refused_before_the_server_starts(bad):
    with pytest.raises(
        ValueError, match=r"idle_timeout must be None \(never\) or a positive, finite number of seconds"
    ):
        make_server("127.0.0.1", 0, idle_timeout=bad)


def test_serve_rejects_a_negative_idle_timeout(capsys):
    from alchemy_gym.server.service import main

    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--idle-timeout", "-1"])
    assert info.value.code == 2
    assert "--idle-timeout must be >= 0 seconds (0: never), got -1" in capsys.readouterr().err


def test_an_oversized_request_ends_only_its_stream(client):
    small, port = make_server("127.0.0.1", 0, max_connections=4, max_request_bytes=10_000)
    try:
        victim = Client(port)
        with pytest.raises(grpc.RpcError) as info:
            victim.send(pb.JoinWorldRequest(world_name="x" * 20_000))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max (20008 vs. 10000)" in info.value.details()
        victim.close()
        good = Client(port)
        good.join(good.create())
        assert good.send(pb.StepRequest()).state == pb.EnvironmentStateType.RUNNING
        good.close()
    finally:
        small.stop(grace=0.5).wait(5)


# ------------------------------------------------------------------------ errors and logs


def _raw_stream(port):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = channel.stream_stream(
        "/dm_env_rpc.v1.Environment/Process",
        request_serializer=lambda b: b,
        response_deserializer=pb.EnvironmentResponse.FromString,
    )
    return channel, stub


def test_malformed_messages_get_invalid_argument_and_a_few_short_log_lines(server, caplog):
    caplog.set_level(logging.WARNING, logger="alchemy_gym.server.service")
    server.servicer.malformed_log = RateLimitedLog(server_module.log, burst=5, interval=3600)
    channel, stub = _raw_stream(server.port)
    garbage = [b"\xff" * n + b"\x00garbage" for n in range(1, 201)]
    valid = pb.EnvironmentRequest(step=pb.StepRequest()).SerializeToString()
    responses = list(stub(iter(garbage + [valid]), timeout=30))
    channel.close()
    assert len(responses) == 201
    assert all(r.error.code == code_pb2.INVALID_ARGUMENT for r in responses[:200])
    assert "malformed message" in responses[0].error.message
    assert "not joined" in responses[200].error.message  # the stream stayed usable
    lines = [r for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(lines) == 5
    assert all(r.exc_info is None and len(r.getMessage()) < 300 for r in lines)
    assert server.servicer.malformed_log.suppressed == 195


def test_an_internal_error_is_short_for_the_client_and_rate_limited_in_the_log(server, client, caplog, monkeypatch):
    caplog.set_level(logging.ERROR, logger="alchemy_gym.server.service")
    server.servicer.internal_log = RateLimitedLog(server_module.log, burst=2, interval=3600)

    def broken(self, request):
        raise RuntimeError("boom " + "x" * 10_000)

    monkeypatch.setattr(Session, "reset", broken)
    for _ in range(6):
        error = client.error(pb.ResetRequest())
        assert error.code == code_pb2.INTERNAL
        assert error.message.startswith("internal error handling reset: RuntimeError: boom x")
        assert len(error.message) < 300
    lines = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(lines) == 2 and all(r.exc_info is not None for r in lines)
    assert server.servicer.internal_log.suppressed == 4


def test_rate_limited_log_counts_what_it_suppresses(caplog):
    caplog.set_level(logging.INFO, logger="test.ratelimit")
    now = [100.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=3, interval=10.0, clock=lambda: now[0])
    written = [limited.warning("line %d", i) for i in range(10)]
    assert written == [True] * 3 + [False] * 7
    now[0] += 10.0
    assert limited.warning("after the interval")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "line 0",
        "line 1",
        "line 2",
        "suppressed 7 similar message(s) in the last 10 s",
        "after the interval",
    ]
    for _ in range(5):
        limited.warning("again")
    limited.flush()
    assert caplog.records[-1].getMessage() == "suppressed 3 similar message(s) in the last 0 s"
    limited.flush()  # nothing left to report
    assert caplog.records[-1].getMessage() == "suppressed 3 similar message(s) in the last 0 s"


def test_short_texts():
    assert shorten("abc", 80) == "abc"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"
    assert len(short_repr("y" * 1_000_000)) == 80 and short_repr("y" * 1_000_000).endswith("…")
    assert short_repr("ok") == "'ok'"


def test_the_serve_log_keeps_its_start_up_line_after_a_flood_of_garbage(tmp_path):
    from alchemy_gym.rpc.launchers import LocalBinaryLauncher
    from alchemy_gym.rpc.names import token_metadata
    from tests.rpc_fixtures import PYTHON, SERVER_ARGS

    launcher = LocalBinaryLauncher(PYTHON, SERVER_ARGS)
    try:
        address = launcher.start(timeout=60)
        channel = grpc.insecure_channel(address)
        stub = channel.stream_stream(
            "/dm_env_rpc.v1.Environment/Process",
            request_serializer=lambda b: b,
            response_deserializer=pb.EnvironmentResponse.FromString,
        )
        garbage = iter([b"\xff\xfe garbage %d" % i for i in range(1000)])
        responses = list(stub(garbage, timeout=60, metadata=token_metadata(launcher.token)))
        channel.close()
        assert len(responses) == 1000
        assert {r.error.code for r in responses} == {code_pb2.INVALID_ARGUMENT}
        tail = launcher.log_tail(lines=30)
    finally:
        launcher.close()
    lines = tail.splitlines()
    assert lines[0].startswith("alchemy-gym serve: dm_env_rpc on 127.0.0.1:")
    assert sum("malformed message" in line for line in lines) == 5  # then suppressed, counted later
    assert "Traceback" not in tail and len(tail) < 3000


def test_nothing_is_left_after_hostile_requests_and_close():
    import socket
    import threading

    from tests.rpc_fixtures import extra_threads, wait_until

    baseline = set(threading.enumerate())
    server, port = make_server("127.0.0.1", 0, max_connections=1)
    good = Client(port)
    good.join(good.create(EventSubscriptionRegex="(.*.*)*Z"))
    good.send(pb.StepRequest())
    refused = _Held(port)  # one stream too many
    with pytest.raises(grpc.RpcError):
        refused.first()
    refused.close()
    good.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(1)}))
    good.close()
    assert wait_until(lambda: server.servicer.connections == 0 and server.servicer.num_worlds == 0, timeout=10)
    channel, stub = _raw_stream(port)
    assert len(list(stub(iter([b"\xff garbage"] * 3), timeout=10))) == 3
    channel.close()
    server.stop(grace=0.5).wait(5)
    assert server.servicer.connections == 0
    assert extra_threads(baseline) == []
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
