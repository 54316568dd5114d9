"""Helpers shared by the ``test_rpc_*`` modules (imported, not a conftest)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
#: Our server as a local binary: ``binary=PYTHON, binary_args=SERVER_ARGS``.
PYTHON = sys.executable
SERVER_ARGS = ("-m", "alchemy_gym.server.service", "--port", "{port}")


def docker_or_skip():
    """``(client, image)`` for the Docker tests, or skip with the reason (fail if
    ``ALCHEMY_GYM_REQUIRE_DOCKER=1``)."""
    require = os.environ.get("ALCHEMY_GYM_REQUIRE_DOCKER") == "1"

    def unavailable(reason: str):
        if require:
            pytest.fail(f"Docker required (ALCHEMY_GYM_REQUIRE_DOCKER=1) but {reason}")
        pytest.skip(reason)

    try:
        import docker
    except ImportError:
        unavailable("the docker SDK is not installed")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        unavailable(
            f"no Docker engine ({os.environ.get('DOCKER_HOST', 'default socket')}): {exc}; source .ci/docker-env.sh"
        )
    image = os.environ.get("ALCHEMY_GYM_TEST_IMAGE", "alchemy-gym-server:latest")
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        unavailable(f"the server image {image!r} is not built: run `alchemy-gym build-image` (or .ci/docker-env.sh)")
    return client, image


def our_containers(client) -> list:
    """Every container (any state) that carries our label."""
    return client.containers.list(all=True, filters={"label": "alchemy-gym.managed"})


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def extra_threads(baseline: set) -> list[threading.Thread]:
    """Threads alive now that were not in ``baseline`` (after a short grace period)."""
    wait_until(lambda: not (set(threading.enumerate()) - baseline), timeout=3.0)
    return [t for t in set(threading.enumerate()) - baseline if t.is_alive()]


def create_settings(seed: int = 3, level: str = LEVEL, **settings) -> dict:
    """Packed ``CreateWorld`` settings: ``seed``, ``levelName`` and any others."""
    from dm_env_rpc.v1 import tensor_utils

    packed = {"seed": tensor_utils.pack_tensor(seed), "levelName": tensor_utils.pack_tensor(level)}
    packed.update({k: tensor_utils.pack_tensor(v) for k, v in settings.items()})
    return packed


class Client:
    """One blocking stream on its own channel to our server at ``port``, presenting ``token`` (if any);
    ``send`` raises DmEnvRpcError on an error status, ``error`` returns the status a request gets."""

    def __init__(self, port: int, token: str | None = None) -> None:
        import grpc

        from alchemy_gym.rpc.connection import RpcConnection
        from alchemy_gym.rpc.names import token_metadata

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.connection = RpcConnection(self.channel, metadata=token_metadata(token))

    def send(self, request):
        return self.connection.send(request)

    def error(self, request):
        """The error status a request gets (fails if it succeeds)."""
        from dm_env_rpc.v1 import error as dm_error

        with pytest.raises(dm_error.DmEnvRpcError) as info:
            self.send(request)
        return info.value

    def create(self, seed: int = 3, level: str = LEVEL, **settings) -> str:
        from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb

        return self.send(pb.CreateWorldRequest(settings=create_settings(seed, level, **settings))).world_name

    def join(self, world: str, **settings):
        from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
        from dm_env_rpc.v1 import tensor_utils

        packed = {k: tensor_utils.pack_tensor(v) for k, v in settings.items()}
        return self.send(pb.JoinWorldRequest(world_name=world, settings=packed)).specs

    def close(self) -> None:
        self.connection.close()
        self.channel.close()


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (MB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class GoodClient(threading.Thread):
    """Plays episodes on its own world of our server until told to stop, every observation, score and event
    name checked against the in-process env; ``finish()`` stops it and raises what went wrong.

    Args:
        address: the server.
        token: presented on its stream.
        pid: the server's process, whose memory is sampled every 100 steps (``peak_rss``).
        max_episodes: stop after this many (default: when told).
        seed: the world's seed.
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        pid: int | None = None,
        max_episodes: int | None = None,
        seed: int = 12345,
    ) -> None:
        import grpc
        from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb

        from alchemy_gym.rpc.connection import RpcConnection
        from alchemy_gym.rpc.names import token_metadata

        super().__init__(name="good-client", daemon=True)
        self.max_episodes = max_episodes
        self.pid = pid
        self.seed = seed
        self.channel = grpc.insecure_channel(address)
        self.connection = RpcConnection(self.channel, metadata=token_metadata(token), timeout=120)
        self.stop = threading.Event()
        self.steps = 0
        self.episodes = 0
        self.peak_rss = 0.0
        self.worst = 0.0  # wall-clock seconds of its slowest step
        self.error: BaseException | None = None
        settings = create_settings(seed, EventSubscriptionRegex="DeepMind/.*")
        self.world = self.connection.send(pb.CreateWorldRequest(settings=settings)).world_name
        specs = self.connection.send(pb.JoinWorldRequest(world_name=self.world)).specs
        self.uids = {spec.name: uid for uid, spec in specs.observations.items()}

    def _observe(self, response):
        from dm_env_rpc.v1 import tensor_utils

        from alchemy_gym.rpc.events import decode_event
        from alchemy_gym.rpc.names import EVENT_NAMES

        obs = tensor_utils.unpack_tensor(response.observations[self.uids["symbolic_obs"]])
        score = float(tensor_utils.unpack_tensor(response.observations[self.uids["Score"]]))
        names = [decode_event(a).name for a in response.observations[self.uids["events"]].protos.array]
        assert set(names) <= set(EVENT_NAMES)
        return obs, score

    def run(self) -> None:
        try:
            self._play()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def _play(self) -> None:
        import numpy as np
        from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
        from dm_env_rpc.v1 import tensor_utils

        from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

        rng = np.random.default_rng(7)
        reference = SymbolicAlchemyEnv(LEVEL)
        requested = [self.uids["symbolic_obs"], self.uids["Score"], self.uids["events"]]
        while not self.stop.is_set() and self.episodes != self.max_episodes:
            expected = reference.reset(seed=self.seed)[0] if self.episodes == 0 else reference.reset()[0]
            obs, score = self._observe(self.connection.send(pb.StepRequest(requested_observations=requested)))
            np.testing.assert_array_equal(obs, expected)
            assert score == 0.0
            total, terminated = 0.0, False
            while not terminated:
                action = int(rng.integers(0, 40))
                expected, reward, terminated, _, _ = reference.step(action)
                request = pb.StepRequest(
                    actions={1: tensor_utils.pack_tensor(action)}, requested_observations=requested
                )
                start = time.perf_counter()
                response = self.connection.send(request)
                self.worst = max(self.worst, time.perf_counter() - start)
                obs, score = self._observe(response)
                total += reward
                np.testing.assert_array_equal(obs, expected)
                assert score == pytest.approx(total)
                assert (response.state == pb.EnvironmentStateType.TERMINATED) == terminated
                self.steps += 1
                if self.pid is not None and self.steps % 100 == 0:
                    self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
            self.episodes += 1

    def finish(self) -> None:
        """Stop, wait, close; raise its error if it had one."""
        self.stop.set()
        self.join(120)
        self.close()
        assert not self.is_alive()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.connection.close()
        self.channel.close()
