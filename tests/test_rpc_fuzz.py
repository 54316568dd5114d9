"""A bounded fuzz of our dm_env_rpc server: a hostile client sends a few thousand generated requests
(garbage bytes, mutated messages, bad settings, huge strings, hostile patterns, attempts on another
client's world, a flood of streams) while a good client plays episodes beside it. The server must
answer every request with a result or a short error (never INTERNAL), the good client's game must
be exactly the in-process env's, and the server process's memory and log must stay bounded."""

from __future__ import annotations

import queue
import random

import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import tensor_utils  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from google.rpc import code_pb2  # noqa: E402

from alchemy_gym.rpc.connection import is_server_full  # noqa: E402
from alchemy_gym.rpc.launchers import LocalBinaryLauncher  # noqa: E402
from alchemy_gym.rpc.names import token_metadata  # noqa: E402
from alchemy_gym.server.service import (  # noqa: E402
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_REQUEST_BYTES,
    MADE_ROOM,
)
from tests.rpc_fixtures import LEVEL, PYTHON, SERVER_ARGS, GoodClient, rss_mb  # noqa: E402

NUM_HOSTILE_REQUESTS = 3000
RSS_GROWTH_LIMIT_MB = 200
#: Error codes a bad request may get (never INTERNAL or UNKNOWN: those would be server bugs).
EXPECTED_CODES = {
    code_pb2.INVALID_ARGUMENT,
    code_pb2.NOT_FOUND,
    code_pb2.PERMISSION_DENIED,
    code_pb2.FAILED_PRECONDITION,
    code_pb2.RESOURCE_EXHAUSTED,
    code_pb2.UNIMPLEMENTED,
}
HOSTILE_PATTERNS = [
    "^(.|.){0,25}Z",
    "(.*.*)*Z",
    "(a|a)*Z",
    "(" * 1000,
    "(" * 16 + ")" * 16,
    "(?=x)",
    "\\1",
    "[[[[",
    "x" * 3_000_000,
    "(.*)*" * 50 + "Q",
    "((((((((((.*)*)*)*)*)*)*)*)*)*)*Q",
]
METACHARACTERS = "()[]{}|*+?.^$\\aZ/:-,0123456789DeT "


class RawStream:
    """A ``Process`` stream of raw bytes: ``send`` returns the response, or raises grpc.RpcError once it ended."""

    def __init__(self, channel, token: str | None = None) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = channel.stream_stream(
            "/dm_env_rpc.v1.Environment/Process",
            request_serializer=lambda b: b,
            response_deserializer=pb.EnvironmentResponse.FromString,
        )
        self.responses = stub(iter(self.requests.get, None), timeout=600, metadata=token_metadata(token))

    def send(self, data: bytes):
        self.requests.put(data)
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()


# ----------------------------------------------------------------------------- generation


def _tensor(rng: random.Random):
    """A random, mostly wrong, settings tensor."""
    roll = rng.random()
    if roll < 0.2:
        return tensor_utils.pack_tensor(rng.choice([-1, 0, 7, 2**33, -(2**62)]))
    if roll < 0.35:
        return tensor_utils.pack_tensor("s" * rng.choice([0, 1, 300, 20_000, 200_000]))
    if roll < 0.45:
        return tensor_utils.pack_tensor(rng.random() < 0.5)
    if roll < 0.55:
        return tensor_utils.pack_tensor(rng.random() * 1e6)
    if roll < 0.7:
        tensor = pb.Tensor(int64s=pb.Tensor.Int64Array(array=[rng.randrange(100)]))
        tensor.shape.extend(rng.choice([[100_000, 100_000], [-1], [3], [0], [1, 1, 1, 1, 1, 1]]))
        return tensor
    if roll < 0.8:
        tensor = pb.Tensor(protos=pb.Tensor.ProtoArray())
        tensor.protos.array.add(type_url="x/y", value=rng.randbytes(rng.randrange(50)))
        return tensor
    if roll < 0.9:
        return pb.Tensor(int32s=pb.Tensor.Int32Array(array=[rng.randrange(-5, 5) for _ in range(rng.randrange(5))]))
    return pb.Tensor()  # no payload


def _pattern(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(HOSTILE_PATTERNS)
    return "".join(rng.choice(METACHARACTERS) for _ in range(rng.randrange(1, 300)))


def _create(rng: random.Random, valid: bool) -> pb.EnvironmentRequest:
    settings = {}
    if valid or rng.random() < 0.7:
        settings["seed"] = tensor_utils.pack_tensor(rng.randrange(2**32))
    if valid or rng.random() < 0.7:
        settings["levelName"] = tensor_utils.pack_tensor(
            LEVEL if valid or rng.random() < 0.5 else rng.choice(["x", "alchemy/" + "q" * 5000, "alchemy/all_fixed"])
        )
    if valid:
        if rng.random() < 0.5:
            settings["EventSubscriptionRegex"] = tensor_utils.pack_tensor(rng.choice(["DeepMind/.*", ".*", "Used$"]))
    else:
        for _ in range(rng.randrange(4)):
            name = rng.choice(
                ["seed", "levelName", "episodeId", "EventSubscriptionRegex", "shareable", "bogus", "z" * 3000]
            )
            settings[name] = _tensor(rng)
        if rng.random() < 0.5:
            settings["EventSubscriptionRegex"] = tensor_utils.pack_tensor(_pattern(rng))
    return pb.EnvironmentRequest(create_world=pb.CreateWorldRequest(settings=settings))


def _world_name(rng: random.Random, victim: str, own: list[str]) -> str:
    roll = rng.random()
    if roll < 0.3 and own:
        return rng.choice(own)
    if roll < 0.6:
        return "world_" + rng.randbytes(8).hex()
    return rng.choice(["", "world_1", "world_0", victim[:-1] + "0", "w" * rng.choice([10, 1000, 400_000])])


def _join(rng: random.Random, name: str) -> pb.EnvironmentRequest:
    settings = {}
    if rng.random() < 0.6:
        for key in ("width", "height"):
            if rng.random() < 0.8:
                value = rng.choice([1, 16, 96, 640, 1024, 4096, 0, -3, 2**40])
                settings[key] = tensor_utils.pack_tensor(value) if rng.random() < 0.8 else _tensor(rng)
    return pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=name, settings=settings))


def _step(rng: random.Random) -> pb.EnvironmentRequest:
    request = pb.StepRequest()
    roll = rng.random()
    if roll < 0.5:
        request.actions[1].CopyFrom(tensor_utils.pack_tensor(rng.randrange(-5, 45)))
    elif roll < 0.8:
        request.actions[rng.choice([1, 2, 2**63])].CopyFrom(_tensor(rng))
    request.requested_observations.extend(rng.choice([[], [1, 2], [1, 2, 3, 4], [99], [2**64 - 1], [1] * 1000]))
    return pb.EnvironmentRequest(step=request)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    if data and rng.random() < 0.3:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


# ----------------------------------------------------------------------------------- clients


class HostileClient:
    """Sends generated requests on one raw stream (a new one whenever the server ends it)."""

    def __init__(self, address: str, victim: str, seed: int, token: str) -> None:
        self.token = token
        self.address = address
        self.victim = victim
        self.rng = random.Random(seed)
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)])
        self.stream = RawStream(self.channel, self.token)
        self.own: list[str] = []
        self.sent = 0
        self.codes: dict[int, int] = {}
        self.ended_streams = 0
        self.refused_streams = 0
        self.successes = 0

    def _send(self, data: bytes):
        self.sent += 1
        try:
            response = self.stream.send(data)
        except grpc.RpcError as exc:  # only an oversized message (or room for a new stream) may end a stream
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
            assert "larger than max" in exc.details() or exc.details().startswith(MADE_ROOM), exc
            self.ended_streams += 1
            self.own = []  # the stream's worlds went with it
            self.stream = RawStream(self.channel, self.token)
            return None
        if response.WhichOneof("payload") == "error":
            code = response.error.code
            assert code in EXPECTED_CODES, response.error
            assert len(response.error.message) <= 1000, response.error.message[:200]
            self.codes[code] = self.codes.get(code, 0) + 1
        else:
            self.successes += 1
        return response

    def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.12:
            self._send(rng.randbytes(rng.randrange(0, 3000)))
        elif roll < 0.25:
            template = rng.choice([_create(rng, True), _join(rng, self.victim), _step(rng)])
            self._send(_mutate(rng, template.SerializeToString()))
        elif roll < 0.45:
            self._send(_create(rng, False).SerializeToString())
        elif roll < 0.52:
            response = self._send(_create(rng, True).SerializeToString())
            if response is not None and response.WhichOneof("payload") == "create_world":
                self.own.append(response.create_world.world_name)
        elif roll < 0.62:  # the good client's world: always refused
            request = rng.choice(
                [
                    pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=self.victim)),
                    pb.EnvironmentRequest(
                        reset_world=pb.ResetWorldRequest(
                            world_name=self.victim, settings={"seed": tensor_utils.pack_tensor(1)}
                        )
                    ),
                    pb.EnvironmentRequest(destroy_world=pb.DestroyWorldRequest(world_name=self.victim)),
                ]
            )
            if request.WhichOneof("payload") == "join_world":  # not joined elsewhere, or that is the answer
                self._send(pb.EnvironmentRequest(leave_world=pb.LeaveWorldRequest()).SerializeToString())
            response = self._send(request.SerializeToString())
            assert response.error.code == code_pb2.PERMISSION_DENIED, response
        elif roll < 0.72:
            name = _world_name(rng, self.victim, self.own)
            kind = rng.choice(["join", "reset_world", "destroy_world"])
            if kind == "join":
                request = _join(rng, name)
            elif kind == "reset_world":
                settings = {"seed": _tensor(rng)} if rng.random() < 0.5 else {}
                request = pb.EnvironmentRequest(reset_world=pb.ResetWorldRequest(world_name=name, settings=settings))
            else:
                request = pb.EnvironmentRequest(destroy_world=pb.DestroyWorldRequest(world_name=name))
            response = self._send(request.SerializeToString())
            if response is not None and response.WhichOneof("payload") == "destroy_world":
                self.own.remove(name)
        elif roll < 0.9:
            self._send(_step(rng).SerializeToString())
        elif roll < 0.95:
            request = rng.choice(
                [
                    pb.EnvironmentRequest(reset=pb.ResetRequest()),
                    pb.EnvironmentRequest(leave_world=pb.LeaveWorldRequest()),
                    pb.EnvironmentRequest(reset=pb.ResetRequest(settings={"x" * 2000: _tensor(rng)})),
                    pb.EnvironmentRequest(),
                    pb.EnvironmentRequest(extension=any_pb2.Any(type_url="x/y", value=rng.randbytes(20))),
                ]
            )
            self._send(request.SerializeToString())
        elif roll < 0.995:
            # large, but under the limit
            name = "n" * rng.randrange(DEFAULT_MAX_REQUEST_BYTES // 2, DEFAULT_MAX_REQUEST_BYTES - 100)
            self._send(pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=name)).SerializeToString())
        else:
            self._send(b"\x0a" + b"\xff" * (DEFAULT_MAX_REQUEST_BYTES + 10))  # over the limit: ends the stream

    def flood_streams(self) -> None:
        """Open more streams than a client may: the extra ones are refused at once, saying why."""
        streams = []
        for _ in range(DEFAULT_MAX_CONNECTIONS_PER_CLIENT + 4):
            stream = RawStream(self.channel, self.token)
            try:
                response = stream.send(pb.EnvironmentRequest(step=pb.StepRequest()).SerializeToString())
                assert response.error.code == code_pb2.FAILED_PRECONDITION  # "not joined": served
                streams.append(stream)
            except grpc.RpcError as exc:
                assert is_server_full(exc.code(), exc.details()), exc
                assert f"at most {DEFAULT_MAX_CONNECTIONS_PER_CLIENT} connections" in exc.details()
                self.refused_streams += 1
                stream.close()
        for stream in streams:
            stream.close()

    def close(self) -> None:
        self.stream.close()
        self.channel.close()


@pytest.mark.slow
def test_a_hostile_client_cannot_crash_stall_or_corrupt_the_server():
    launcher = LocalBinaryLauncher(PYTHON, SERVER_ARGS)
    good = hostile = None
    try:
        address = launcher.start(timeout=60)
        pid = launcher.process.pid
        good = GoodClient(address, launcher.token, pid=pid)
        baseline = rss_mb(pid)
        good.start()
        hostile = HostileClient(address, good.world, seed=2024, token=launcher.token)
        for i in range(NUM_HOSTILE_REQUESTS):
            hostile.one()
            if i == NUM_HOSTILE_REQUESTS // 2:
                hostile.flood_streams()
            if good.error is not None:
                break
        hostile.close()
        good.stop.set()
        good.join(120)
        assert not good.is_alive()
        if good.error is not None:
            raise good.error
        final_rss = rss_mb(pid)
        assert launcher.alive()
        # a new client is served as before
        fresh = GoodClient(address, launcher.token, pid=pid, max_episodes=1)
        fresh.run()
        fresh.close()
        if fresh.error is not None:
            raise fresh.error
        assert fresh.episodes == 1
        log = launcher.log_tail(lines=10_000)
        print(
            f"\nhostile requests: {hostile.sent} (successes {hostile.successes}, error codes {hostile.codes}, "
            f"streams ended for size {hostile.ended_streams}, streams refused {hostile.refused_streams}); "
            f"good client: {good.steps} steps in {good.episodes} episodes; "
            f"server RSS {baseline:.0f} MB → peak {max(good.peak_rss, final_rss):.0f} MB, final {final_rss:.0f} MB; "
            f"log {len(log)} characters"
        )
        assert hostile.sent >= NUM_HOSTILE_REQUESTS
        assert hostile.refused_streams >= 4
        assert hostile.codes.get(code_pb2.PERMISSION_DENIED, 0) > 0
        assert good.steps > 0
        assert max(good.peak_rss, final_rss) - baseline < RSS_GROWTH_LIMIT_MB
        lines = log.splitlines()
        assert lines[0].startswith("alchemy-gym serve: dm_env_rpc on")
        assert "Traceback" not in log and "internal error" not in log
        assert len(lines) < 100 and len(log) < 20_000
    finally:
        for client in (hostile, good):
            if client is not None:
                client.close()
        launcher.close()
    assert not launcher.alive()
