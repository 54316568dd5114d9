"""Good clients beside hostile ones: what an attack costs the victims of ``alchemy-gym serve``.

    python benchmarks/bench_server_attacks.py                       # this tree's server, every attack
    python benchmarks/bench_server_attacks.py --server-path ../main --server-path .   # two trees, side by side
    python benchmarks/bench_server_attacks.py --attacks none,join --seconds 5

For each server tree (``--server-path``, default this one) and each attack, a fresh server
process (``python -m alchemy_gym.server.service``, that tree's code) serves two client processes
(this tree's client code):

* the **victims**: ``--victims`` streams (default 8) in one asyncio process, each with its own
  world, stepping as fast as they are answered (actions at random, ``symbolic_obs`` and ``Score``
  requested); every 300 steps a stream destroys and re-creates its world (what the 3D env's
  ``reset(seed=…)`` does). Reported: steps a second, the median, 99th percentile and worst step
  latency, and how many re-creations failed;
* the **attacker**, started a second before the victims:

  - ``none``: no attacker (the baseline);
  - ``join``: ``--attackers`` streams each joining its world at 640×480 and 639×480 in turn (a new
    picture size each time: a renderer build on a server without a painter cache);
  - ``bigstep``: ``--attackers`` streams each sending ``Step`` requests that list as many
    observation ids as the server's request limit allows (1 MiB: about a million; 64 KiB);
  - ``sizes``: ``--attackers`` streams each asking for picture sizes never seen before;
  - ``starve``: 8 streams each creating worlds until refused, then trying again every 20 ms;
  - ``keepalive``: 64 streams holding connections with one empty request every 3 s (the victims
    then connect: reported as admitted / refused).

A server that takes ``--token-file`` gets two tokens, one for the victims and one for the
attacker (two clients); an older server serves them as one. The server's own figure for the
longest time one request held its event loop (CPU time) is read from its log where it gives it.
Prints a table; asserts nothing. Figures depend on the machine's load: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
ATTACKS = ("none", "join", "bigstep", "sizes", "starve", "keepalive")
HERE = Path(__file__).resolve()
TREE = HERE.parents[1]


# ----------------------------------------------------------------------------------- clients


def _metadata(token: str | None):
    return None if not token else (("authorization", f"Bearer {token}"),)


def _create_request(seed: int):
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    settings = {"seed": tensor_utils.pack_tensor(seed), "levelName": tensor_utils.pack_tensor(LEVEL)}
    return pb.CreateWorldRequest(settings=settings)


def run_victims(address: str, token: str | None, streams: int, seconds: float) -> dict:
    """``streams`` good clients for ``seconds``: their step latencies and failures."""
    import asyncio

    import grpc
    import numpy as np
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    from alchemy_gym.rpc.connection import AsyncRpcConnection

    latencies: list[float] = []
    result = {"admitted": 0, "refused": 0, "errors": [], "recreated": 0, "recreate_failed": 0}
    actions = [{1: tensor_utils.pack_tensor(a)} for a in range(40)]

    async def one(i: int, deadline: float) -> None:
        channel = grpc.aio.insecure_channel(address)
        connection = AsyncRpcConnection(channel, metadata=_metadata(token))
        rng = np.random.default_rng(i)
        try:
            try:
                world = (await connection.send(_create_request(i))).world_name
                await connection.send(pb.JoinWorldRequest(world_name=world))
                await connection.send(pb.StepRequest())
            except Exception as exc:
                result["refused"] += 1
                result["errors"].append(f"connect: {str(exc)[:160]}")
                return
            result["admitted"] += 1
            steps = 0
            while time.monotonic() < deadline:
                request = pb.StepRequest(actions=actions[int(rng.integers(40))], requested_observations=[1, 2])
                start = time.perf_counter()
                await connection.send(request)
                latencies.append(time.perf_counter() - start)
                steps += 1
                if steps % 300 == 0:  # the 3D env's reset(seed=...): destroy and re-create the world
                    await connection.send(pb.LeaveWorldRequest())
                    await connection.send(pb.DestroyWorldRequest(world_name=world))
                    try:
                        world = (await connection.send(_create_request(steps))).world_name
                    except Exception as exc:
                        result["recreate_failed"] += 1
                        result["errors"].append(f"re-create: {str(exc)[:160]}")
                        return
                    result["recreated"] += 1
                    await connection.send(pb.JoinWorldRequest(world_name=world))
                    await connection.send(pb.StepRequest())
        except Exception as exc:
            result["errors"].append(f"step: {str(exc)[:160]}")
        finally:
            await connection.close()
            await channel.close()

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one(i, deadline) for i in range(streams)))

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    values = sorted(latencies)
    if values:
        result.update(
            steps_per_s=len(values) / elapsed,
            median_ms=values[len(values) // 2] * 1e3,
            p99_ms=values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3,
            worst_ms=values[-1] * 1e3,
        )
    result["errors"] = result["errors"][:3]
    return result


class _RawStream:
    """A ``Process`` stream of serialized requests (blocking)."""

    def __init__(self, channel, token: str | None) -> None:
        import queue

        from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb

        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        stub = channel.stream_stream(
            "/dm_env_rpc.v1.Environment/Process",
            request_serializer=lambda b: b,
            response_deserializer=pb.EnvironmentResponse.FromString,
        )
        self.responses = stub(iter(self.requests.get, None), metadata=_metadata(token))

    def send(self, request):
        self.requests.put(request if isinstance(request, bytes) else request.SerializeToString())
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()


def run_attacker(address: str, token: str | None, kind: str, streams: int, stop: threading.Event) -> dict:
    """Attack until ``stop``; returns what it did."""
    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import tensor_utils

    counts = {"requests": 0, "refused": 0, "worlds": 0, "ended": 0}
    lock = threading.Lock()

    def count(key: str, n: int = 1) -> None:
        with lock:
            counts[key] += n

    def join_request(world: str, width: int, height: int = 480):
        settings = {"width": tensor_utils.pack_tensor(width), "height": tensor_utils.pack_tensor(height)}
        return pb.EnvironmentRequest(join_world=pb.JoinWorldRequest(world_name=world, settings=settings))

    def worker(i: int) -> None:
        channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)])
        stream = None
        limit = 1 << 20  # the request size to try first (the largest the server takes is found below)
        size = 640 * 1000 + i
        while not stop.is_set():
            try:
                if stream is None:
                    stream = _RawStream(channel, token)
                    world = stream.send(pb.EnvironmentRequest(create_world=_create_request(i))).create_world.world_name
                    count("requests")
                if kind == "join":
                    for width in (640, 639):
                        stream.send(join_request(world, width))
                        stream.send(pb.EnvironmentRequest(step=pb.StepRequest(requested_observations=[3])))
                        stream.send(pb.EnvironmentRequest(leave_world=pb.LeaveWorldRequest()))
                        count("requests", 3)
                elif kind == "sizes":
                    size += 1
                    response = stream.send(join_request(world, 200 + size % 400, 100 + size // 400 % 380))
                    count("refused" if response.WhichOneof("payload") == "error" else "requests")
                    stream.send(pb.EnvironmentRequest(leave_world=pb.LeaveWorldRequest()))
                elif kind == "bigstep":
                    ids = [1] * (limit - 64)
                    stream.send(pb.EnvironmentRequest(step=pb.StepRequest(requested_observations=ids)))
                    count("requests")
                elif kind == "starve":
                    response = stream.send(pb.EnvironmentRequest(create_world=_create_request(i)))
                    if response.WhichOneof("payload") == "error":
                        count("refused")
                        time.sleep(0.02)
                    else:
                        count("worlds")
            except grpc.RpcError as exc:
                details = exc.details() or ""
                if "larger than max" in details:  # "(N vs. LIMIT)": send the largest the server takes
                    limit = int(details.rstrip(")").rpartition(" ")[2])
                count("ended")
                if stream is not None:
                    stream.close()
                stream = None
                time.sleep(0.01)
        if stream is not None:
            stream.close()
        channel.close()

    def keepalive() -> None:
        channel = grpc.insecure_channel(address)
        held: list = []
        while not stop.is_set():
            while len(held) < 64 and not stop.is_set():
                stream = _RawStream(channel, token)
                try:
                    stream.send(pb.EnvironmentRequest())
                    held.append(stream)
                    count("worlds")  # connections held
                except grpc.RpcError:
                    count("refused")
                    stream.close()
                    break
            stop.wait(3.0)
            for stream in list(held):
                try:
                    stream.send(pb.EnvironmentRequest())
                    count("requests")
                except grpc.RpcError:
                    count("ended")
                    held.remove(stream)
                    stream.close()
        for stream in held:
            stream.close()
        channel.close()

    if kind == "keepalive":
        threads = [threading.Thread(target=keepalive)]
    else:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8 if kind == "starve" else streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


# ---------------------------------------------------------------------------------- the runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe(address: str, timeout: float = 60.0) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(channel).result(timeout=1.0)
            return
        except grpc.FutureTimeoutError:
            pass
        finally:
            channel.close()
    raise RuntimeError(f"no server at {address}")


def _child(role: str, args: list[str]) -> subprocess.Popen:
    """A client process (this tree's client code)."""
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    return subprocess.Popen(
        [sys.executable, str(HERE), "--role", role, *args],
        cwd=TREE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_one(tree: Path, attack: str, args, tokens: dict | None) -> dict:
    """One server of ``tree`` under one attack: the victims' figures and the server's longest hold."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    command = [sys.executable, "-m", "alchemy_gym.server.service", "--port", str(port), "--log-level", "INFO"]
    with tempfile.TemporaryDirectory() as tmp:
        if tokens is not None:
            token_file = Path(tmp) / "tokens"
            token_file.write_text("".join(f"{name} {token}\n" for name, token in tokens.items()))
            token_file.chmod(0o600)
            command += ["--token-file", str(token_file)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        env.pop("ALCHEMY_GYM_TOKEN", None)
        env.pop("ALCHEMY_GYM_TOKEN_FILE", None)
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            # run in the tree: ``python -m`` imports from the working directory first
            server = subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                _probe(address)
                time.sleep(0.5)
                attacker = None
                victim_token = tokens["victim"] if tokens else ""
                attacker_token = tokens["attacker"] if tokens else ""
                if attack != "none":
                    attacker = _child(
                        "attacker",
                        ["--address", address, "--token", attacker_token, "--attacks", attack,
                         "--attackers", str(args.attackers)],
                    )  # fmt: skip
                    time.sleep(1.5 if attack in ("keepalive", "starve") else 1.0)
                victims = _child(
                    "victim",
                    ["--address", address, "--token", victim_token, "--victims", str(args.victims),
                     "--seconds", str(args.seconds)],
                )  # fmt: skip
                out, err = victims.communicate(timeout=args.seconds + 120)
                result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"errors": [err[-300:]]}
                if attacker is not None:
                    attacker.send_signal(signal.SIGTERM)
                    out, _ = attacker.communicate(timeout=60)
                    result["attacker"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
        text = log_path.read_text()
    for line in text.splitlines():
        if "held the event loop" in line:
            result["server"] = line.split(" INFO ", 1)[-1].strip()
    return result


def _format(result: dict) -> str:
    if "steps_per_s" not in result:
        return f"no steps: {result.get('errors')}"
    text = (
        f"{result['steps_per_s']:7.0f} {result['median_ms']:7.2f} {result['p99_ms']:7.2f} {result['worst_ms']:7.1f}"
        f"   {result['admitted']}/{result['admitted'] + result['refused']}"
        f"   {result['recreated']}/{result['recreated'] + result['recreate_failed']}"
    )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-path", action="append", type=Path, help="a tree whose server to run (repeat)")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, of {', '.join(ATTACKS)}")
    parser.add_argument("--seconds", type=float, default=8.0, help="victims' time under each attack (default 8)")
    parser.add_argument("--victims", type=int, default=8, help="good streams (default 8)")
    parser.add_argument("--attackers", type=int, default=4, help="attacking streams (default 4)")
    parser.add_argument("--role", choices=["victim", "attacker"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "victim":
        print(json.dumps(run_victims(args.address, args.token or None, args.victims, args.seconds)))
        return 0
    if args.role == "attacker":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(json.dumps(run_attacker(args.address, args.token or None, args.attacks, args.attackers, stop)))
        return 0
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"unknown attacks {unknown}: allowed {', '.join(ATTACKS)}")
    trees = [p.resolve() for p in (args.server_path or [TREE])]
    print(
        f"{args.victims} victim streams for {args.seconds:g} s; attacker: {args.attackers} streams "
        "(starve: 8, keepalive: 64)"
    )
    print(f"{'server':24s} {'attack':10s} {'steps/s':>7s} {'median':>7s} {'p99':>7s} {'worst':>7s}   in   re-created")
    for attack in attacks:
        for tree in trees:
            help_text = subprocess.run(
                [sys.executable, "-m", "alchemy_gym.server.service", "--help"],
                cwd=tree,
                env={**os.environ, "PYTHONPATH": str(tree)},
                capture_output=True,
                text=True,
            ).stdout
            tokens = None
            if "--token-file" in help_text:
                tokens = {"victim": secrets.token_urlsafe(24), "attacker": secrets.token_urlsafe(24)}
            result = run_one(tree, attack, args, tokens)
            name = f"{tree.name}{'' if tokens else ' (no tokens)'}"
            print(f"{name:24s} {attack:10s} {_format(result)}", flush=True)
            if result.get("server"):
                print(f"{'':24s}   server: {result['server']}")
            if result.get("attacker"):
                print(f"{'':24s}   attacker: {result['attacker']}")
            if result.get("errors"):
                print(f"{'':24s}   victims' errors: {result['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
