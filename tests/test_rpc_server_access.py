"""Our server's access control and fairness: tokens, per-client quotas, kept slots, bounds, the painter cache."""

from __future__ import annotations

import logging
import queue
import re

import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import error as dm_error  # noqa: E402
from dm_env_rpc.v1 import tensor_utils  # noqa: E402
from google.rpc import code_pb2  # noqa: E402

from alchemy_gym.rpc.names import token_metadata  # noqa: E402
from alchemy_gym.server import clients as clients_module  # noqa: E402
from alchemy_gym.server.auth import TokenError, TokenSet, read_token_file, tokens_from  # noqa: E402
from alchemy_gym.server.clients import TokenBucket, peer_host  # noqa: E402
from alchemy_gym.server.service import (  # noqa: E402
    MADE_ROOM,
    MAX_REQUESTED_OBSERVATIONS,
    MAX_SETTINGS,
    SERVER_FULL,
    SHUTTING_DOWN,
    UNAUTHENTICATED,
    make_server,
)
from alchemy_gym.server.world import WorldRegistry  # noqa: E402
from tests.rpc_fixtures import LEVEL, Client, create_settings, wait_until  # noqa: E402

ALICE = "alice-" + "a" * 26
BOB = "bob-" + "b" * 28
MALLORY = "mallory-" + "m" * 24
TOKENS = TokenSet([("alice", ALICE), ("bob", BOB), ("mallory", MALLORY)])


@pytest.fixture
def servers():
    """``start(**options)`` → a started server; all are stopped after the test."""
    started = []

    def start(**options):
        server, _port = make_server("127.0.0.1", 0, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0.5).wait(5)


@pytest.fixture
def clients():
    made = []

    def make(port: int, token: str | None = None) -> Client:
        made.append(Client(port, token))
        return made[-1]

    yield make
    for client in made:
        client.close()


# ------------------------------------------------------------------------------------ tokens


def _write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_holds_named_and_numbered_tokens(tmp_path):
    tokens = read_token_file(_write(tmp_path / "t", f"# the team\n\nalice {ALICE}\n{BOB}\n  \n"))
    assert tokens.labels == ["alice", "token #2"]
    assert tokens.match([("authorization", f"Bearer {ALICE}")]) == "alice"
    assert tokens.match((("x-other", "1"), ("authorization", f"Bearer {BOB}"))) == "token #2"
    assert tokens.match([("authorization", f"Bearer {MALLORY}")]) is None
    assert tokens.match([("authorization", ALICE)]) is None  # not "Bearer TOKEN"
    assert tokens.match([]) is None and tokens.match(None) is None


@pytest.mark.parametrize(
    "text, mode, fragment",
    [
        ("short-token\n", 0o600, "a token has 16..512 characters, this one 11"),
        (f"a b {ALICE}\n", 0o600, "line 1: expected 'TOKEN' or 'NAME TOKEN', got 3 words"),
        (f"{ALICE}\n{ALICE}\n", 0o600, "the same token appears twice"),
        ("# only a comment\n", 0o600, "holds no token"),
        (f"{ALICE}\n", 0o622, "may be written by other users (mode 0622)"),
        (f"{ALICE}\u00e9\n", 0o600, "only printable ASCII"),
    ],
)
def test_a_bad_token_file_is_refused_without_showing_a_token(tmp_path, text, mode, fragment):
    path = _write(tmp_path / "t", text, mode)
    with pytest.raises(TokenError, match=re.escape(fragment)) as info:
        read_token_file(path)
    assert ALICE not in str(info.value) and "short-token" not in str(info.value)


def test_a_token_file_others_can_read_is_accepted_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="alchemy_gym.server.service")
    path = _write(tmp_path / "t", f"{ALICE}\n", 0o644)
    assert read_token_file(path).labels == ["token #1"]
    assert any("may be read by every user (mode 0644)" in r.getMessage() for r in caplog.records)
    assert all(ALICE not in r.getMessage() for r in caplog.records)


def test_tokens_come_from_the_option_then_the_environment(tmp_path):
    path = _write(tmp_path / "t", f"alice {ALICE}\n")
    assert tokens_from(None, {})[0] is None
    tokens, source = tokens_from(None, {"ALCHEMY_GYM_TOKEN": BOB})
    assert tokens.match([("authorization", f"Bearer {BOB}")]) == "token #1" and source == "$ALCHEMY_GYM_TOKEN"
    tokens, source = tokens_from(None, {"ALCHEMY_GYM_TOKEN": BOB, "ALCHEMY_GYM_TOKEN_FILE": str(path)})
    assert tokens.labels == ["alice"] and "ALCHEMY_GYM_TOKEN_FILE" in source
    tokens, source = tokens_from(str(path), {"ALCHEMY_GYM_TOKEN": BOB})
    assert tokens.labels == ["alice"] and source == f"token file {path}"


def test_serve_refuses_a_bad_token_file_in_one_line(tmp_path, capsys):
    from alchemy_gym.server.service import main

    path = _write(tmp_path / "t", f"{ALICE}\n", 0o666)
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--token-file", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "may be written by other users" in err and ALICE not in err


def test_without_the_token_every_request_is_refused_before_any_world(servers, clients, caplog):
    caplog.set_level(logging.WARNING, logger="alchemy_gym.server.service")
    server = servers(tokens=TOKENS)
    for token, what in ((None, "no token was presented"), ("x" * 40, "the token presented is not one of its tokens")):
        stranger = clients(server.port, token)
        with pytest.raises(grpc.RpcError) as info:
            stranger.create()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details().startswith(f"{UNAUTHENTICATED}: {what}")
        assert "authorization: Bearer TOKEN" in info.value.details()
    assert server.servicer.num_worlds == 0 and server.servicer.connections == 0
    assert len(server.servicer.clients) == 0  # not even counted as a client
    alice = clients(server.port, ALICE)
    alice.join(alice.create())
    assert alice.send(pb.StepRequest()).state == pb.EnvironmentStateType.RUNNING
    assert server.servicer.num_worlds == 1
    lines = [r.getMessage() for r in caplog.records]
    assert sum("refused a stream" in line for line in lines) == 2
    assert not any(t in line for line in lines for t in (ALICE, BOB, MALLORY, "x" * 40))


def test_the_launcher_probe_raises_at_once_on_a_refused_token(servers):
    from alchemy_gym.rpc.launchers import AddressLauncher, Unauthenticated

    server = servers(tokens=TOKENS)
    # a retry loop would end in LaunchError("... was not ready after 120.0 s ...") instead
    with pytest.raises(Unauthenticated, match="refused the connection with no token"):
        AddressLauncher(f"127.0.0.1:{server.port}").start(timeout=120)
    with pytest.raises(Unauthenticated, match="with the token given") as info:
        AddressLauncher(f"127.0.0.1:{server.port}", token="y" * 30).start(timeout=120)
    assert "y" * 30 not in str(info.value)
    assert AddressLauncher(f"127.0.0.1:{server.port}", token=BOB).start(timeout=120)


def test_the_env_presents_its_token_and_says_when_it_is_refused(servers):
    import gymnasium as gym

    import alchemy_gym  # noqa: F401
    from alchemy_gym.envs.rpc import RpcEnvError

    server = servers(tokens=TOKENS)
    address = f"127.0.0.1:{server.port}"
    with pytest.raises(RpcEnvError, match="refused the connection with no token") as info:
        gym.make("Alchemy/AllFixed-v0", address=address)
    assert UNAUTHENTICATED in str(info.value)
    env = gym.make("Alchemy/AllFixed-v0", address=address, token=ALICE, observations=["symbolic_obs"])
    try:
        env.reset(seed=0)
        env.step(1)
    finally:
        env.close()
    with pytest.raises(ValueError, match="token must be None or a str of printable ASCII"):
        gym.make("Alchemy/AllFixed-v0", address=address, token="has space")


def test_a_plain_dm_env_rpc_client_passes_the_token_as_call_metadata(servers):
    """The recipe of the docs: dm_env_rpc's own connection and DmEnvAdaptor, with the token in the metadata."""
    from dm_env_rpc.v1 import connection as dm_connection
    from dm_env_rpc.v1 import dm_env_adaptor

    server = servers(tokens=TOKENS)
    connection = dm_connection.create_secure_channel_and_connect(
        f"127.0.0.1:{server.port}", grpc.local_channel_credentials(), metadata=[("authorization", f"Bearer {BOB}")]
    )
    try:
        env, _world = dm_env_adaptor.create_and_join_world(
            connection, create_world_settings={"seed": 1, "levelName": "alchemy/all_fixed"}, join_world_settings={}
        )
        assert env.reset().first()
        assert env.step({"action": 3}).discount == 1.0
        env.close()
    finally:
        connection.close()
    refused = dm_connection.create_secure_channel_and_connect(f"127.0.0.1:{server.port}")
    with pytest.raises(grpc.RpcError) as info:
        dm_env_adaptor.create_and_join_world(refused, create_world_settings={"seed": 1}, join_world_settings={})
    refused.close()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# ------------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    "peer, host",
    [
        ("ipv4:10.0.0.5:51234", "10.0.0.5"),
        ("ipv6:[::1]:51234", "::1"),
        ("ipv6:%5B::1%5D:51234", "::1"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_a_client_is_a_token_at_a_host(peer, host):
    assert peer_host(peer) == host


def test_a_token_bucket_spreads_requests_to_its_rate():
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=3.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)  # in debt by one: wait a tenth of a second
    assert bucket.take() == pytest.approx(0.2)
    now[0] += 0.2
    assert bucket.take() == pytest.approx(0.1)
    now[0] += 10.0
    assert bucket.take() == 0.0  # refilled up to the burst only
    assert TokenBucket(rate=0, burst=1).take(1e9) == 0.0  # rate 0: no limit


# --------------------------------------------------------------------------------- quotas


def test_worlds_are_counted_per_client_over_all_its_connections(servers, clients):
    server = servers(tokens=TOKENS, max_worlds=10, max_worlds_per_client=4)
    streams = [clients(server.port, MALLORY) for _ in range(3)]
    for c in streams[:2]:
        c.create(seed=1)
        c.create(seed=2)
    error = streams[2].error(pb.CreateWorldRequest(settings=create_settings()))
    assert error.code == code_pb2.RESOURCE_EXHAUSTED
    assert "a client (mallory at 127.0.0.1) may hold at most 4 worlds over all its connections" in error.message
    alice = clients(server.port, ALICE)
    assert all(alice.create(seed=s) for s in range(4))  # another token: another client
    assert server.servicer.num_worlds == 8


def test_connections_are_counted_per_client(servers, clients):
    server = servers(tokens=TOKENS, max_connections=6, max_connections_per_client=2)
    held = [clients(server.port, MALLORY) for _ in range(2)]
    for c in held:
        c.create()  # each holds a world: none can be closed to make room
    extra = clients(server.port, MALLORY)
    with pytest.raises(grpc.RpcError) as info:
        extra.create()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith(f"{SERVER_FULL} for this client (mallory at 127.0.0.1)")
    assert "at most 2 connections" in info.value.details()
    assert clients(server.port, BOB).create()  # others are served
    assert server.servicer.connections == 3


def test_a_world_recreated_by_its_owner_keeps_its_slot(servers, clients):
    server = servers(tokens=TOKENS, max_worlds=3)
    alice = clients(server.port, ALICE)
    mine = alice.create()
    mallory = clients(server.port, MALLORY)
    mallory.create(seed=1)
    mallory.create(seed=2)
    assert mallory.error(pb.CreateWorldRequest(settings=create_settings())).code == code_pb2.RESOURCE_EXHAUSTED
    for seed in range(5):  # the 3D env's reset(seed=...): destroy, then create
        alice.send(pb.DestroyWorldRequest(world_name=mine))
        error = mallory.error(pb.CreateWorldRequest(settings=create_settings()))  # the slot is kept for alice
        assert error.code == code_pb2.RESOURCE_EXHAUSTED and "at most 3 worlds" in error.message
        mine = alice.create(seed=seed)
    assert server.servicer.num_worlds == 3


def test_a_kept_slot_expires_and_ends_with_its_connection():
    now = [0.0]
    registry = WorldRegistry(max_worlds=2, max_worlds_per_owner=2, clock=lambda: now[0])
    alice, bob = object(), object()
    name = registry.create(LEVEL, 1, None, alice)
    registry.create(LEVEL, 1, None, bob)
    registry.destroy(name, alice)
    assert len(registry) == 1 and registry.owned(alice) == 1  # the kept slot
    with pytest.raises(Exception, match="at most 2 worlds"):
        registry.create(LEVEL, 1, None, bob)
    now[0] += 10.5  # KEEP_SLOT_SECONDS later
    registry.create(LEVEL, 1, None, bob)
    assert registry.held_by_client(alice) == 0 and registry.held_by_client(bob) == 2
    registry.drop_owned(bob)
    registry.create(LEVEL, 2, None, alice)
    registry.destroy(registry.create(LEVEL, 3, None, alice), alice)
    registry.drop_owned(alice)  # the connection ended: its worlds and kept slot go
    assert len(registry) == 0 and registry.held_by_client(alice) == 0
    assert registry.create(LEVEL, 1, None, bob) and registry.create(LEVEL, 1, None, bob)


def test_an_env_reset_with_a_seed_keeps_its_world_on_a_full_server(servers):
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    server = servers(tokens=TOKENS, max_worlds=2)
    address = f"127.0.0.1:{server.port}"
    env = gym.make("Alchemy/AllFixed-v0", address=address, token=ALICE, observations=["symbolic_obs"])
    mallory = Client(server.port, MALLORY)
    try:
        mallory.create()
        for seed in range(4):  # each destroys the world and creates another
            env.reset(seed=seed)
            env.step(1)
            assert mallory.error(pb.CreateWorldRequest(settings=create_settings())).code == code_pb2.RESOURCE_EXHAUSTED
    finally:
        env.close()
        mallory.close()


def test_a_stream_without_a_world_makes_room_for_a_newcomer(servers, clients, monkeypatch):
    monkeypatch.setattr(clients_module, "EVICTION_GRACE", 0.0)
    server = servers(max_connections=3)
    holder = clients(server.port)
    holder.create()  # holds a world: never closed for room
    idle = [clients(server.port) for _ in range(2)]
    for c in idle:
        assert c.error(pb.StepRequest()).code == code_pb2.FAILED_PRECONDITION  # admitted, no world
    newcomer = clients(server.port)
    assert newcomer.create()  # admitted: one of the streams without a world was closed for it
    closed = 0
    for c in idle:
        try:
            c.send(pb.StepRequest())
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            expected = f"{MADE_ROOM} to make room for a new one: all 3 connections of the server were in use"
            assert exc.details() == expected
            closed += 1
        except dm_error.DmEnvRpcError:
            pass
    assert closed == 1 and server.servicer.stats.evicted == 1
    assert holder.send(pb.LeaveWorldRequest()) is not None  # the world's stream was kept


def test_a_young_stream_without_a_world_is_not_closed_for_room(servers, clients):
    server = servers(max_connections=1)
    first = clients(server.port)
    first.error(pb.StepRequest())  # admitted just now: within EVICTION_GRACE
    with pytest.raises(grpc.RpcError) as info:
        clients(server.port).create()
    assert info.value.details().startswith(f"{SERVER_FULL}: it serves at most 1 connections")


# --------------------------------------------------------------------------------- bounds


def test_requested_observations_are_bounded(servers, clients):
    server = servers()
    c = clients(server.port)
    c.join(c.create())
    error = c.error(pb.StepRequest(requested_observations=[1] * (MAX_REQUESTED_OBSERVATIONS + 1)))
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert error.message.startswith(f"requested_observations lists 65 uids: at most {MAX_REQUESTED_OBSERVATIONS}")
    response = c.send(pb.StepRequest(requested_observations=[1] * MAX_REQUESTED_OBSERVATIONS))
    assert list(response.observations) == [1]


def test_settings_are_bounded(servers, clients):
    server = servers()
    c = clients(server.port)
    settings = {**create_settings(), **{f"s{i}": tensor_utils.pack_tensor(1) for i in range(MAX_SETTINGS)}}
    error = c.error(pb.CreateWorldRequest(settings=settings))
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert error.message.startswith(f"CreateWorld has 66 settings: at most {MAX_SETTINGS} are allowed")


def test_the_default_request_limit_is_64_kib(servers, clients):
    server = servers()
    c = clients(server.port)
    with pytest.raises(grpc.RpcError) as info:
        c.send(pb.JoinWorldRequest(world_name="w" * 70_000))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "vs. 65536" in info.value.details()


def test_a_picture_size_is_built_once_off_the_loop_and_shared(servers, clients):
    from alchemy_gym.render import TrialPainter

    server = servers(tokens=TOKENS)
    painters = server.servicer.painters
    before = painters.builds
    for token in (ALICE, BOB):
        c = clients(server.port, token)
        world = c.create()
        for width in (640, 639, 640, 639):
            specs = c.join(world, width=width, height=480)
            uid = next(u for u, s in specs.observations.items() if s.name == "RGB_INTERLEAVED")
            response = c.send(pb.StepRequest(requested_observations=[uid]))
            rgb = tensor_utils.unpack_tensor(response.observations[uid])
            # a copy of the cached painter paints what a painter of its own would
            game = server.servicer.worlds.get(world).game
            np.testing.assert_array_equal(rgb, TrialPainter(width, 480).paint(game))
            c.send(pb.LeaveWorldRequest())
    assert painters.builds - before == 2  # 640 and 639, once each, for both clients
    assert server.servicer.stats.offloaded == 2


def test_a_failed_painter_build_is_an_internal_error_on_a_stream_that_stays(servers, clients, monkeypatch):
    def broken(size):
        raise MemoryError("no room for a painter")

    server = servers()
    monkeypatch.setattr(server.servicer.painters, "build", broken)
    c = clients(server.port)
    world = c.create()
    error = c.error(
        pb.JoinWorldRequest(
            world_name=world, settings={"width": tensor_utils.pack_tensor(320), "height": tensor_utils.pack_tensor(240)}
        )
    )
    assert error.code == code_pb2.INTERNAL and "MemoryError: no room for a painter" in error.message
    c.join(world)  # the cached default size: served
    assert c.send(pb.StepRequest()).state == pb.EnvironmentStateType.RUNNING


def test_new_picture_sizes_are_limited_per_client(servers, clients):
    server = servers(tokens=TOKENS, picture_builds_per_minute=3)
    mallory = clients(server.port, MALLORY)
    world = mallory.create()
    for width in (100, 101, 102):
        mallory.join(world, width=width, height=50)
        mallory.send(pb.LeaveWorldRequest())
    error = mallory.error(
        pb.JoinWorldRequest(
            world_name=world, settings={"width": tensor_utils.pack_tensor(103), "height": tensor_utils.pack_tensor(50)}
        )
    )
    assert error.code == code_pb2.RESOURCE_EXHAUSTED
    assert "a client may ask for at most 3 new picture sizes a minute" in error.message
    mallory.join(world, width=101, height=50)  # a cached size costs nothing
    mallory.send(pb.LeaveWorldRequest())
    bob = clients(server.port, BOB)
    bob.join(bob.create(), width=103, height=50)  # another client has its own allowance


def test_the_loop_statistics_name_the_longest_request(servers, clients):
    server = servers()
    stats = server.servicer.stats
    c = clients(server.port)
    c.join(c.create())
    for action in range(20):
        c.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(action)}, requested_observations=[1, 2, 3, 4]))
    assert stats.requests >= 22 and 0 < stats.longest_hold < 1.0
    assert stats.longest_kind in ("create_world", "join_world", "step")


# --------------------------------------------------------------------------- close reasons


def test_a_server_that_stops_tells_every_stream_why(servers):
    import gymnasium as gym

    import alchemy_gym  # noqa: F401
    from alchemy_gym.envs.rpc import RpcEnvError

    server = servers()
    raw = Client(server.port)
    raw.create()
    env = gym.make("Alchemy/AllFixed-v0", address=f"127.0.0.1:{server.port}", observations=["symbolic_obs"])
    env.reset(seed=0)
    try:
        server.stop(grace=0.5).wait(5)
        with pytest.raises(grpc.RpcError) as info:
            raw.send(pb.StepRequest())
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details().startswith(SHUTTING_DOWN)
        with pytest.raises(RpcEnvError, match=f"closed the connection: UNAVAILABLE: {SHUTTING_DOWN}"):
            env.step(1)
    finally:
        env.close()
        raw.close()


class _QuietStream:
    """A stream that sends requests only when told (to hold a connection without a world)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = self.channel.stream_stream(
            "/dm_env_rpc.v1.Environment/Process",
            request_serializer=pb.EnvironmentRequest.SerializeToString,
            response_deserializer=pb.EnvironmentResponse.FromString,
        )
        self.responses = stub(iter(self.requests.get, None), timeout=60, metadata=token_metadata(token))

    def send(self):
        """One empty request (what a keep-alive sends): answered INVALID_ARGUMENT."""
        self.requests.put(pb.EnvironmentRequest())
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()
        self.channel.close()


def test_keep_alive_streams_hold_at_most_their_clients_share(servers, monkeypatch):
    """Streams that only send empty requests cannot keep another client out."""
    monkeypatch.setattr(clients_module, "EVICTION_GRACE", 60.0)  # nothing is closed for room here
    server = servers(tokens=TOKENS, max_connections=8, max_connections_per_client=4)
    held = []
    try:
        refused = 0
        for _ in range(8):
            stream = _QuietStream(server.port, MALLORY)
            try:
                response = stream.send()
                held.append(stream)
                assert response.error.code == code_pb2.INVALID_ARGUMENT
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "for this client" in exc.details()
                refused += 1
                stream.close()
        assert len(held) == 4 and refused == 4
        alice = Client(server.port, ALICE)
        alice.join(alice.create())
        assert alice.send(pb.StepRequest()).state == pb.EnvironmentStateType.RUNNING
        alice.close()
        assert wait_until(lambda: server.servicer.connections == 4)
    finally:
        for stream in held:
            stream.close()
