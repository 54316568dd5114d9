"""The server's own cost per request, in-process: no gRPC, no client, so little noise from other load.

    python benchmarks/bench_server.py                  # a few seconds a case
    python benchmarks/bench_server.py --steps 1000 --passes 3
    python benchmarks/bench_server.py --served --server-path ../main --server-path .   # over gRPC, two trees

A :class:`~alchemy_gym.server.session.Session` (what serves one stream) answers pre-serialized
``Step`` requests (actions ``(7 i) mod 40``, episodes played through) on a world of the standard
task with pictures of 96×72. Each case is timed in CPU time per chunk of 300 requests; a chunk's
figure is its least time over ``--passes`` passes, so that other processes on the machine count
as little as possible. Prints microseconds per request; asserts nothing. Compare two trees by
running it with ``PYTHONPATH`` set to each, alternately.

``--loop`` times the stream's whole read loop instead (``AlchemyServicer.Process``: admission, the
session, serialization, the per-client buckets), driven in-process by a stand-in for gRPC's
context that hands it the pre-serialized requests and serializes its answers as gRPC would; CPU
time per request, least of ``--passes``.

``--served`` measures the whole server instead, over gRPC: a ``python -m alchemy_gym.server.service``
process of each ``--server-path`` tree (alternately, ``--rounds`` times) answers ``--steps`` ``Step``
requests (``symbolic_obs`` + ``Score``) on one stream, then on 8 streams at once (asyncio, one request
in flight on each); the figure is the server process's CPU time (user + system, from ``/proc``) per
request, which moves much less with the machine's load than requests a second do.
"""

from __future__ import annotations

import argparse
import time

LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
#: case → (requested observation uids, subscribed to the events)
CASES = {
    "symbolic_obs + Score, events subscribed": ([1, 2], True),
    "symbolic_obs + Score, no events": ([1, 2], False),
    "what the 3D env requests (+ events, reward, discount)": ([1, 2, 4, 5, 6], True),
    "every observation (+ RGB 96x72)": ([1, 2, 3, 4, 5, 6], True),
}


def per_request(uids: list[int], events: bool, steps: int, passes: int, chunk: int = 300) -> float:
    """Microseconds of CPU time per ``Step`` request."""
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    from alchemy_gym.server.servicer import AlchemyServicer
    from alchemy_gym.server.session import Session

    session = Session(AlchemyServicer(), "bench")
    settings = {"seed": tensor_utils.pack_tensor(1), "levelName": tensor_utils.pack_tensor(LEVEL)}
    if events:
        settings["EventSubscriptionRegex"] = tensor_utils.pack_tensor("DeepMind/.*")
    world = session.handle(pb.EnvironmentRequest(create_world=pb.CreateWorldRequest(settings=settings)))
    session.handle(pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=world.create_world.world_name)))
    requests = [
        pb.EnvironmentRequest(
            step=pb.StepRequest(actions={1: tensor_utils.pack_tensor((7 * i) % 40)}, requested_observations=uids)
        ).SerializeToString()
        for i in range(steps)
    ]
    chunks = [requests[i : i + chunk] for i in range(0, steps, chunk)]
    best = [float("inf")] * len(chunks)
    for _ in range(passes):
        for j, part in enumerate(chunks):
            start = time.process_time()
            for data in part:
                session.handle_bytes(data)
            best[j] = min(best[j], time.process_time() - start)
    session.close()
    return sum(best) / steps * 1e6


class _Context:
    """What ``Process`` uses of gRPC's servicer context: the requests, then the end of the stream."""

    def __init__(self, requests: list[bytes]) -> None:
        import grpc

        self._requests = iter(requests)
        self._eof = grpc.aio.EOF
        self.answers = 0

    async def read(self):
        return next(self._requests, self._eof)

    async def write(self, response) -> None:
        if not isinstance(response, bytes):  # a message: gRPC's response_serializer would serialize it
            response.SerializeToString()
        self.answers += 1

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def invocation_metadata(self):
        return ()

    def set_code(self, code) -> None:
        pass

    def set_details(self, details) -> None:
        pass


def read_loop(uids: list[int], steps: int, passes: int) -> float:
    """Microseconds of CPU time per ``Step`` through ``AlchemyServicer.Process`` (one stream)."""
    import asyncio

    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    from alchemy_gym.server.servicer import AlchemyServicer

    settings = {"seed": tensor_utils.pack_tensor(1), "levelName": tensor_utils.pack_tensor(LEVEL)}
    setup = [
        pb.EnvironmentRequest(create_world=pb.CreateWorldRequest(settings=settings)).SerializeToString(),
    ]
    step = [
        pb.EnvironmentRequest(
            step=pb.StepRequest(actions={1: tensor_utils.pack_tensor((7 * i) % 40)}, requested_observations=uids)
        ).SerializeToString()
        for i in range(steps)
    ]

    async def one_pass() -> float:
        servicer = AlchemyServicer()
        # the world's name is random: create it in a first stream-less session, then join it on the stream
        from alchemy_gym.server.session import Session

        owner = Session(servicer, "bench")
        name = owner.handle_bytes(setup[0]).create_world.world_name
        join = pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=name)).SerializeToString()
        servicer.worlds.get(name).shareable = True
        context = _Context([join, *step])
        start = time.process_time()
        await servicer.Process(iter(()), context)
        elapsed = time.process_time() - start
        assert context.answers == steps + 1
        owner.close()
        return elapsed

    return min(asyncio.run(one_pass()) for _ in range(passes)) / steps * 1e6


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(tree, steps: int, streams: int) -> float:
    """Microseconds of the server process's CPU per ``Step``, ``streams`` at once, against ``tree``'s server."""
    import asyncio
    import os
    import socket
    import subprocess
    import sys

    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    from alchemy_gym.rpc.connection import AsyncRpcConnection

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCHEMY_GYM_TOKEN")}
    env["PYTHONPATH"] = str(tree)
    server = subprocess.Popen(
        [sys.executable, "-m", "alchemy_gym.server.service", "--port", str(port)],
        cwd=tree,  # python -m imports from the working directory first
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    actions = [{1: tensor_utils.pack_tensor((7 * i) % 40)} for i in range(40)]

    async def one(i: int, count: int) -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), 60)
        connection = AsyncRpcConnection(channel)
        settings = {"seed": tensor_utils.pack_tensor(i), "levelName": tensor_utils.pack_tensor(LEVEL)}
        world = (await connection.send(pb.CreateWorldRequest(settings=settings))).world_name
        await connection.send(pb.JoinWorldRequest(world_name=world))
        for k in range(100):  # warm up
            await connection.send(pb.StepRequest(actions=actions[k % 40], requested_observations=[1, 2]))
        await barrier.wait()
        for k in range(count):
            await connection.send(pb.StepRequest(actions=actions[k % 40], requested_observations=[1, 2]))
        await connection.close()
        await channel.close()

    async def run() -> float:
        global barrier
        barrier = _Barrier(streams + 1)
        tasks = [asyncio.ensure_future(one(i, steps // streams)) for i in range(streams)]
        await barrier.wait()
        start = _cpu_seconds(server.pid)
        await asyncio.gather(*tasks)
        return _cpu_seconds(server.pid) - start

    try:
        cpu = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(30)
    return cpu / (steps // streams * streams) * 1e6


class _Barrier:
    """``asyncio.Barrier`` for Python 3.10."""

    def __init__(self, parties: int) -> None:
        import asyncio

        self.parties, self.count, self.event = parties, 0, asyncio.Event()

    async def wait(self) -> None:
        self.count += 1
        if self.count >= self.parties:
            self.event.set()
        await self.event.wait()


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="requests per pass (default 3000)")
    parser.add_argument("--passes", type=int, default=5, help="passes; each chunk's least time counts (default 5)")
    parser.add_argument("--loop", action="store_true", help="the stream's read loop, in-process (see above)")
    parser.add_argument("--served", action="store_true", help="the whole server over gRPC (see above)")
    parser.add_argument("--server-path", action="append", type=Path, help="with --served: a tree (repeat)")
    parser.add_argument("--rounds", type=int, default=3, help="with --served: rounds over the trees (default 3)")
    args = parser.parse_args(argv)
    if args.loop:
        for label, (uids, _events) in CASES.items():
            if _events:
                continue
            print(f"read loop, {label:44s} {read_loop(uids, args.steps, args.passes):6.1f} us/request")
        label = "every observation (+ RGB 96x72), no events"
        print(f"read loop, {label:44s} {read_loop([1, 2, 3, 5, 6], args.steps, args.passes):6.1f} us/request")
        return 0
    if args.served:
        import statistics

        trees = [p.resolve() for p in (args.server_path or [Path(__file__).resolve().parents[1]])]
        figures: dict = {}
        for _ in range(args.rounds):
            for tree in trees:
                for streams in (1, 8):
                    figures.setdefault((tree, streams), []).append(served(tree, args.steps, streams))
        for (tree, streams), values in figures.items():
            runs = " ".join(f"{v:.0f}" for v in values)
            print(
                f"{tree.name:20s} {streams} stream(s): {statistics.median(values):6.1f} us of server CPU per step "
                f"(median; least {min(values):.0f}; runs {runs})"
            )
        return 0
    for label, (uids, events) in CASES.items():
        print(f"{label:55s} {per_request(uids, events, args.steps, args.passes):6.1f} us/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
