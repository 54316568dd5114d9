"""dm_env_rpc benchmarks: steps/s of the served symbolic env over loopback, and container start-up time.

    python benchmarks/bench_rpc.py                 # loopback figures (no Docker needed; ~1.5 min)
    python benchmarks/bench_rpc.py --vector-envs 16 --envs   # fewer figures
    python benchmarks/bench_rpc.py --docker IMAGE  # + time from gymnasium.make to the first observation

Prints figures; asserts nothing. Figures:

* ``grpc ceiling``: round trips/s of an empty ``StepRequest`` (answered with an error status) on
  one stream, with the blocking client (``RpcConnection``) and our server: the transport alone.
* ``grpc echo ceiling``: gRPC's asyncio API on both sides and a server that only echoes (no
  dm_env_rpc code, no thread hand-offs): the most any Python dm_env_rpc client and server pair
  doing one round trip at a time can do here, whatever the game.
* ``grpc echo ceiling, k streams``: the same client and echo server with k streams on one channel,
  each round one request in flight on every stream (``asyncio.gather``): round trips/s.
* ``env steps/s``: ``RpcAlchemyEnv.step`` against ``alchemy-gym serve`` in another process
  (resets included), requesting only ``symbolic_obs`` + ``Score``, then every observation
  (``RGB_INTERLEAVED`` 96×72 and events too).
* ``vector env steps/s``: ``RpcAlchemyVectorEnv.step`` (``symbolic_obs`` + ``Score``, events in
  ``info`` as by default, autoresets included), total sub-env steps/s, with N streams to one
  ``alchemy-gym serve`` process (``address=``; also without events: ``event_regex=None``) and
  with one local server process per sub-env (``binary=``).
* ``aggregate``: N envs, each with its own server process, stepped by N client processes
  (``gymnasium.vector.AsyncVectorEnv``): total steps/s.
* ``make → first obs``: wall time of ``gymnasium.make("Alchemy/Standard-v0", image=IMAGE)`` plus
  ``reset()``, median of ``--repeats`` (container start, readiness, world creation, first step).

gRPC's transport (:mod:`alchemy_gym.rpc.tuning`): by default both the benchmark (the client) and
every server process it starts use the faster iomgr loopback path. ``--client-grpc default`` measures
the client as a user's process has it unless it opts in (our servers choose the fast path for
themselves); ``--server-grpc default`` also starts the servers with gRPC's defaults (the figures
before the change). The first line printed says which.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
#: environment variables of every server process started here (set by ``main`` from ``--server-grpc``)
SERVER_ENV: dict[str, str] = {}


def _start_server() -> tuple[subprocess.Popen, str]:
    from alchemy_gym.rpc.launchers import free_port, probe

    port = free_port()
    cmd = [sys.executable, "-m", "alchemy_gym.server.service", "--port", str(port)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_server_env())
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while probe(address, 1.0) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)
    return process, address


def _server_env() -> dict[str, str]:
    return {**os.environ, **SERVER_ENV}


def grpc_ceiling(address: str, n: int) -> float:
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import error as dm_error

    from alchemy_gym.rpc.connection import RpcConnection
    from alchemy_gym.rpc.launchers import open_channel

    channel = open_channel(address)
    connection = RpcConnection(channel)
    request = pb.StepRequest()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            try:
                connection.send(request)
            except dm_error.DmEnvRpcError:
                pass
        best = max(best, n / (time.perf_counter() - start))
    connection.close()
    channel.close()
    return best


_ECHO_SERVER = """
import asyncio, sys
import grpc
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb, dm_env_rpc_pb2_grpc

class Echo(dm_env_rpc_pb2_grpc.EnvironmentServicer):
    async def Process(self, requests, context):
        response = pb.EnvironmentResponse(step=pb.StepResponse())
        async for _ in requests:
            yield response

async def main():
    server = grpc.aio.server()
    dm_env_rpc_pb2_grpc.add_EnvironmentServicer_to_server(Echo(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""


def grpc_echo_ceiling(n: int, streams: int = 1) -> float:
    """Round trips/s between an asyncio gRPC client and an asyncio echo server in another process.

    With ``streams`` > 1, that many streams share the channel and each round has one request in
    flight on every stream."""
    import asyncio

    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc

    from alchemy_gym.rpc.launchers import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, str(port)], env=_server_env())
    request = pb.EnvironmentRequest(step=pb.StepRequest())

    async def round_trip(call) -> None:
        await call.write(request)
        await call.read()

    async def run() -> float:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = dm_env_rpc_pb2_grpc.EnvironmentStub(channel)
            calls = [stub.Process() for _ in range(streams)]
            rounds = max(n // streams, 1)
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(rounds):
                    if streams == 1:
                        await round_trip(calls[0])
                    else:
                        await asyncio.gather(*(round_trip(call) for call in calls))
                best = max(best, rounds * streams / (time.perf_counter() - start))
            for call in calls:
                await call.done_writing()
            return best

    try:
        return asyncio.run(run())
    finally:
        process.terminate()
        process.wait(10)


def env_steps(address: str, n: int, observations) -> float:
    from alchemy_gym.envs.rpc import RpcAlchemyEnv

    env = RpcAlchemyEnv(LEVEL, address=address, observations=observations)
    env.reset(seed=0)
    best = 0.0
    actions = [(i * 7) % 40 for i in range(n)]
    for _ in range(3):
        start = time.perf_counter()
        for a in actions:
            _, _, terminated, _, _ = env.step(a)
            if terminated:
                env.reset()
        best = max(best, n / (time.perf_counter() - start))
    env.close()
    return best


def vector_steps(num_envs: int, n: int, events: bool = True, **server) -> float:
    """Sub-env steps/s of ``RpcAlchemyVectorEnv`` (``server``: ``binary=…`` or ``address=…``; without
    ``events`` no event subscription)."""
    import numpy as np

    from alchemy_gym.envs.rpc_vector import RpcAlchemyVectorEnv

    extra = {} if events else {"event_regex": None}
    envs = RpcAlchemyVectorEnv(num_envs, LEVEL, observations=["symbolic_obs", "Score"], **extra, **server)
    envs.reset(seed=0)
    steps = max(n // num_envs, 200)
    actions = [np.full(num_envs, (i * 7) % 40, dtype=np.int64) for i in range(steps)]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for a in actions:
            envs.step(a)
        best = max(best, steps * num_envs / (time.perf_counter() - start))
    envs.close()
    return best


def _make_local_env():
    from alchemy_gym.envs.rpc import RpcAlchemyEnv

    args = ("-m", "alchemy_gym.server.service", "--port", "{port}")
    return RpcAlchemyEnv(
        LEVEL, binary=sys.executable, binary_args=args, environment=SERVER_ENV, observations=["symbolic_obs", "Score"]
    )


def aggregate(num_envs: int, n: int) -> float:
    import numpy as np
    from gymnasium.vector import AsyncVectorEnv

    envs = AsyncVectorEnv([_make_local_env] * num_envs)
    envs.reset(seed=0)
    actions = np.zeros(num_envs, dtype=np.int64)
    start = time.perf_counter()
    for i in range(n):
        actions[:] = (i * 7) % 40
        envs.step(actions)
    rate = n * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def make_to_first_obs(image: str, repeats: int) -> list[float]:
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        env = gym.make("Alchemy/Standard-v0", image=image)
        env.reset(seed=0)
        times.append(time.perf_counter() - start)
        env.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per measurement (default 3000)")
    parser.add_argument("--docker", metavar="IMAGE", help="also time make → first observation with this image")
    parser.add_argument("--repeats", type=int, default=5, help="container start-ups to time (default 5)")
    parser.add_argument("--envs", type=int, nargs="*", default=[2, 4], help="vector sizes for the aggregate figure")
    parser.add_argument(
        "--vector-envs", type=int, nargs="*", default=[1, 2, 4, 8, 16], help="sizes for the vector env figures"
    )
    parser.add_argument("--echo-streams", type=int, nargs="*", default=[8], help="streams for the echo figure")
    parser.add_argument(
        "--client-grpc",
        choices=["fast", "default"],
        default="fast",
        help="gRPC transport of this (client) process: fast (alchemy_gym.rpc.tuning) or gRPC's default",
    )
    parser.add_argument(
        "--server-grpc",
        choices=["fast", "default"],
        default="fast",
        help="gRPC transport of the server processes started here (the Docker image always chooses fast)",
    )
    args = parser.parse_args(argv)
    from alchemy_gym.rpc import tuning

    if "grpc" in sys.modules:
        parser.error("grpc was imported before the transport could be chosen")
    if args.client_grpc == "fast" and "GRPC_EXPERIMENTS" not in os.environ:
        if not tuning.use_fast_grpc_transport():
            print("(this grpcio is outside alchemy_gym.rpc.tuning.SUPPORTED_GRPCIO: gRPC's defaults)")
    elif args.client_grpc == "default":
        os.environ.pop("GRPC_EXPERIMENTS", None)
    print(f"client: {tuning.describe()}")
    SERVER_ENV["GRPC_EXPERIMENTS"] = tuning.FAST_GRPC_EXPERIMENTS if args.server_grpc == "fast" else ""
    print(f"servers started here: GRPC_EXPERIMENTS={SERVER_ENV['GRPC_EXPERIMENTS']!r}")

    process, address = _start_server()
    try:
        print(f"grpc ceiling (empty StepRequest round trips, 1 stream): {grpc_ceiling(address, args.steps):8.0f} /s")
        print(f"grpc echo ceiling (asyncio client + asyncio echo server): {grpc_echo_ceiling(args.steps):6.0f} /s")
        for k in args.echo_streams:
            rate = grpc_echo_ceiling(args.steps, streams=k)
            print(f"grpc echo ceiling, {k} streams at once:                    {rate:8.0f} /s")
        rate = env_steps(address, args.steps, ["symbolic_obs", "Score"])
        print(f"env steps/s, symbolic_obs + Score:                         {rate:8.0f}")
        rate = env_steps(address, args.steps, None)
        print(f"env steps/s, every observation (+ RGB 96x72, events):      {rate:8.0f}")
        for num_envs in args.vector_envs:
            rate = vector_steps(num_envs, args.steps, address=address)
            print(f"vector env steps/s, {num_envs:2d} envs, streams to one server:      {rate:8.0f}")
        for num_envs in args.vector_envs:
            rate = vector_steps(num_envs, args.steps, events=False, address=address)
            print(f"vector env steps/s, {num_envs:2d} envs, one server, no events:      {rate:8.0f}")
    finally:
        process.terminate()
        process.wait(10)
    local = dict(
        binary=sys.executable,
        binary_args=["-m", "alchemy_gym.server.service", "--port", "{port}"],
        environment=SERVER_ENV,
    )
    for num_envs in args.vector_envs:
        rate = vector_steps(num_envs, args.steps, **local)
        print(f"vector env steps/s, {num_envs:2d} envs, one server process each: {rate:8.0f}")
    for num_envs in args.envs:
        rate = aggregate(num_envs, max(args.steps // num_envs, 200))
        print(f"aggregate steps/s, {num_envs} envs (own servers, AsyncVectorEnv):    {rate:8.0f}")
    if args.docker:
        times = make_to_first_obs(args.docker, args.repeats)
        print(
            f"gymnasium.make → first observation (Docker, {args.docker}): median {statistics.median(times):.2f} s, "
            f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
