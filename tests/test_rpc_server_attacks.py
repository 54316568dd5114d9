"""Each attack of the soak run against our server, bounded in count and time, with a good client beside it.

The evidence that no request stalls the others is the server's own measure, ``stats.longest_hold``:
the longest CPU time of the event loop's thread that any one request took. It does not depend on
how busy the (shared) machine is, unlike a victim's wall-clock latency, which is measured side by
side with and without each attack in ``benchmarks/bench_server_attacks.py`` instead. The server
runs in this process (to read its statistics); the objects other tests left are frozen out of the
garbage collector first, so that a collection of *their* heap does not land in a request.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import error as dm_error  # noqa: E402
from dm_env_rpc.v1 import tensor_utils  # noqa: E402
from google.rpc import code_pb2  # noqa: E402

from alchemy_gym.server import clients as clients_module  # noqa: E402
from alchemy_gym.server.auth import TokenSet  # noqa: E402
from alchemy_gym.server.service import MADE_ROOM, MAX_REQUESTED_OBSERVATIONS, SERVER_FULL, make_server  # noqa: E402
from tests.rpc_fixtures import Client, GoodClient, create_settings, wait_until  # noqa: E402

pytestmark = pytest.mark.slow

ALICE, CAROL, MALLORY = "alice-" + "a" * 26, "carol-" + "c" * 26, "mallory-" + "m" * 24
TOKENS = TokenSet([("alice", ALICE), ("carol", CAROL), ("mallory", MALLORY)])
#: The most CPU time one request may hold the event loop under any attack: the issue's bound on a victim's step
#: (50 ms). The holds measured in benchmarks/README.md stay under 4 ms; one CI run (2026-12-06) saw a 26 ms `step`
#: hold under the picture-size attack (a garbage collection on the loop thread is the likely cause, not yet
#: confirmed). Before the fixes a 640x480 join alone held the loop 70-112 ms (a painter build) and a million
#: observation ids 65 ms, so the bound still tells the two apart.
HOLD_LIMIT = 0.050


def _create(seed: int):
    return pb.CreateWorldRequest(settings=create_settings(seed))


def _join(world: str, width: int, height: int):
    settings = {"width": tensor_utils.pack_tensor(width), "height": tensor_utils.pack_tensor(height)}
    return pb.JoinWorldRequest(world_name=world, settings=settings)


@pytest.fixture
def server():
    gc.collect()
    gc.freeze()  # other tests' objects: not this server's garbage to walk
    started = []

    def start(**options):
        server, _port = make_server("127.0.0.1", 0, tokens=TOKENS, **options)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop(grace=0.5).wait(5)
    gc.unfreeze()


def _attack(target, workers: int, *args) -> list:
    """Run ``target(i, *args)`` in ``workers`` threads; returns their results (errors re-raised)."""
    results: list = [None] * workers
    errors: list = []

    def run(i: int) -> None:
        try:
            results[i] = target(i, *args)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


def _report(name: str, server, good: GoodClient) -> None:
    stats = server.servicer.stats
    assert good.steps > 0
    print(
        f"\n{name}: longest hold {stats.longest_hold * 1e3:.2f} ms ({stats.longest_kind}) over {stats.requests} "
        f"requests; good client {good.steps} steps, worst {good.worst * 1e3:.1f} ms wall clock"
    )
    assert stats.longest_hold <= HOLD_LIMIT, (stats.longest_hold, stats.longest_kind)


# ------------------------------------------------------------------------------ starvation


def test_many_connections_cannot_take_the_worlds_of_others(server):
    """8 streams grab worlds; a good env re-creates its world 10 times beside them; a newcomer gets one."""
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    s = server(max_worlds=64)
    streams = [Client(s.port, MALLORY) for _ in range(8)]
    stop = threading.Event()
    taken, refused = [0], [0]

    def grab(i: int) -> None:
        while not stop.is_set():
            try:
                streams[i].send(_create(i))
                taken[0] += 1
            except dm_error.DmEnvRpcError as exc:
                assert exc.code == code_pb2.RESOURCE_EXHAUSTED
                refused[0] += 1
                time.sleep(0.005)

    grabbers = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    for t in grabbers:
        t.start()
    env = gym.make("Alchemy/AllFixed-v0", address=f"127.0.0.1:{s.port}", token=ALICE, observations=["symbolic_obs"])
    good = GoodClient(f"127.0.0.1:{s.port}", ALICE)
    good.start()
    try:
        assert wait_until(lambda: refused[0] > 0, timeout=60)
        for seed in range(10):  # destroys and re-creates its world each time, while mallory tries to take it
            env.reset(seed=seed)
            for action in range(5):
                env.step(action)
        carol = Client(s.port, CAROL)
        assert carol.send(_create(1)).world_name  # a newcomer is served
        carol.close()
    finally:
        stop.set()
        for t in grabbers:
            t.join(60)
        env.close()
        for stream in streams:
            stream.close()
    good.finish()
    assert taken[0] == s.servicer.limits.max_worlds_per_client == 32  # mallory's share, however many streams
    _report("starvation", s, good)


def test_keep_alive_streams_cannot_hold_every_connection(server, monkeypatch):
    """64 streams that only send empty requests: one client holds at most its share; newcomers get in."""
    monkeypatch.setattr(clients_module, "EVICTION_GRACE", 0.2)
    s = server(max_connections=64)
    held, refused = [], 0
    for _ in range(64):
        stream = Client(s.port, MALLORY)
        try:
            assert stream.send(pb.LeaveWorldRequest()) is not None  # a no-op keep-alive
            held.append(stream)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "for this client" in exc.details()
            refused += 1
            stream.close()
    assert len(held) == 32 and refused == 32
    good = GoodClient(f"127.0.0.1:{s.port}", ALICE)
    good.start()
    try:
        for _ in range(3):  # keep-alive rounds
            time.sleep(0.3)
            for stream in held:
                stream.send(pb.LeaveWorldRequest())
        # a newcomer of mallory's own client takes the place of one of its streams without a world
        newcomer = Client(s.port, MALLORY)
        newcomer.send(_create(2))
        newcomer.close()
        lost = 0
        for stream in held:
            try:
                stream.send(pb.LeaveWorldRequest())
            except grpc.RpcError as exc:
                assert exc.details().startswith(MADE_ROOM)
                lost += 1
        assert lost == 1
    finally:
        for stream in held:
            stream.close()
    good.finish()
    _report("keep-alive", s, good)


# ---------------------------------------------------------------------------------- stalls


def test_alternating_picture_sizes_do_not_stall_the_loop(server):
    """4 streams join at 640x480 and 639x480 in turn, 25 times each, stepping a picture each time."""
    s = server()
    good = GoodClient(f"127.0.0.1:{s.port}", ALICE)
    good.start()
    before = s.servicer.painters.builds

    def attack(i: int) -> int:
        stream = Client(s.port, MALLORY)
        world = stream.send(_create(i)).world_name
        pictures = 0
        for k in range(50):
            specs = stream.send(_join(world, 640 - k % 2, 480)).specs
            uid = next(u for u, sp in specs.observations.items() if sp.name == "RGB_INTERLEAVED")
            stream.send(pb.StepRequest(requested_observations=[uid]))
            stream.send(pb.LeaveWorldRequest())
            pictures += 1
        stream.close()
        return pictures

    assert sum(_attack(attack, 4)) == 200
    good.finish()
    assert s.servicer.painters.builds - before == 2  # one per size, not one per join
    _report("alternating picture sizes", s, good)


def test_new_picture_sizes_are_built_off_the_loop_and_limited(server):
    """4 streams ask for 30 new picture sizes each: a few are built in the worker thread, the rest refused."""
    s = server(picture_builds_per_minute=4)
    good = GoodClient(f"127.0.0.1:{s.port}", ALICE)
    good.start()
    before = s.servicer.painters.builds

    def attack(i: int) -> int:
        stream = Client(s.port, MALLORY)
        world = stream.send(_create(i)).world_name
        refused = 0
        for k in range(30):
            try:
                stream.send(_join(world, 600 - 40 * i - k, 400))
                stream.send(pb.LeaveWorldRequest())
            except dm_error.DmEnvRpcError as exc:
                assert exc.code == code_pb2.RESOURCE_EXHAUSTED and "new picture sizes a minute" in exc.message
                refused += 1
        stream.close()
        return refused

    refused = sum(_attack(attack, 4))
    good.finish()
    assert s.servicer.painters.builds - before == 4 and refused == 116  # mallory's 4 a minute
    _report("new picture sizes", s, good)


def test_long_observation_lists_do_not_stall_the_loop(server):
    """4 streams send 100 Steps each listing as many ids as fit in a request, and some that do not fit."""
    s = server()
    good = GoodClient(f"127.0.0.1:{s.port}", ALICE)
    good.start()

    def attack(i: int) -> tuple[int, int]:
        stream = Client(s.port, MALLORY)
        world = stream.send(_create(i)).world_name
        stream.send(pb.JoinWorldRequest(world_name=world))
        refused = ended = 0
        for k in range(100):
            if k % 25 == 24:  # a million ids: over the request limit, the stream is ended
                try:
                    stream.send(pb.StepRequest(requested_observations=[1] * 1_000_000))
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in exc.details()
                    ended += 1
                stream.close()
                stream = Client(s.port, MALLORY)
                stream.send(pb.JoinWorldRequest(world_name=stream.send(_create(i)).world_name))
                continue
            try:
                stream.send(pb.StepRequest(requested_observations=[1] * 65_000))
            except dm_error.DmEnvRpcError as exc:
                assert exc.code == code_pb2.INVALID_ARGUMENT
                assert f"at most {MAX_REQUESTED_OBSERVATIONS} are allowed" in exc.message
                refused += 1
        stream.close()
        return refused, ended

    results = _attack(attack, 4)
    good.finish()
    assert results == [(96, 4)] * 4
    _report("long observation lists", s, good)


def test_a_full_server_still_refuses_with_its_reason_under_attack(server):
    """The server's own limit, reached by several clients, is reported as before."""
    s = server(max_connections=4, max_connections_per_client=2)
    streams = [Client(s.port, token) for token in (MALLORY, MALLORY, CAROL, CAROL)]
    for i, stream in enumerate(streams):
        stream.send(_create(i))  # each holds a world
    extra = Client(s.port, ALICE)
    with pytest.raises(grpc.RpcError) as info:
        extra.send(_create(9))
    extra.close()
    assert info.value.details().startswith(f"{SERVER_FULL}: it serves at most 4 connections")
    for stream in streams:
        stream.close()
