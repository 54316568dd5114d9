"""The server's own cost per request, in-process: no gRPC, no client, so little noise from other load.

    python benchmarks/bench_server.py                  # a few seconds a case
    python benchmarks/bench_server.py --steps 1000 --passes 3

A :class:`~alchemy_gym.server.session.Session` (what serves one stream) answers pre-serialized
``Step`` requests (actions ``(7 i) mod 40``, episodes played through) on a world of the standard
task with pictures of 96×72. Each case is timed in CPU time per chunk of 300 requests; a chunk's
figure is its least time over ``--passes`` passes, so that other processes on the machine count
as little as possible. Prints microseconds per request; asserts nothing. Compare two trees by
running it with ``PYTHONPATH`` set to each, alternately.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="requests per pass (default 3000)")
    parser.add_argument("--passes", type=int, default=5, help="passes; each chunk's least time counts (default 5)")
    args = parser.parse_args(argv)
    for label, (uids, events) in CASES.items():
        print(f"{label:55s} {per_request(uids, events, args.steps, args.passes):6.1f} us/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
