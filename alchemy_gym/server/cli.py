"""``alchemy-gym serve`` (and ``python -m alchemy_gym.server``): serve symbolic Alchemy over dm_env_rpc."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.server.servicer import DEFAULT_MAX_CONNECTIONS, start_server

DEFAULT_PORT = 10000


def main(argv: list[str] | None = None) -> int:
    """``alchemy-gym serve``: serve symbolic Alchemy over dm_env_rpc until SIGINT/SIGTERM.

    Unless ``GRPC_EXPERIMENTS`` is set, the process uses gRPC's faster loopback transport
    (:func:`alchemy_gym.rpc.tuning.use_fast_grpc_transport`, before ``grpc`` is imported).
    """
    import asyncio

    from alchemy_gym.rpc import tuning

    tuning.use_fast_grpc_transport()

    parser = argparse.ArgumentParser(
        prog="alchemy-gym serve",
        description="Serve symbolic Alchemy over dm_env_rpc (the interface of the 3D Unity server).",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"concurrent client streams (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end a client stream that sends no request for this long and destroy its worlds (default 0: never)",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} out of range: allowed 0..65535")
    if args.max_connections < 1:
        parser.error("--max-connections must be >= 1")
    if not args.idle_timeout >= 0:  # also NaN
        parser.error(f"--idle-timeout must be >= 0 seconds (0: never), got {args.idle_timeout:g}")
    idle_timeout = args.idle_timeout or None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> int:
        try:
            server, port = await start_server(
                args.host, args.port, max_connections=args.max_connections, idle_timeout=idle_timeout
            )
        except OSError as exc:
            print(f"alchemy-gym serve: {exc}", file=sys.stderr, flush=True)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        kernel = AlchemyGame().batch.kernel_name
        print(
            f"alchemy-gym serve: dm_env_rpc on {args.host}:{port} ({tuning.describe()}; game backend {kernel})",
            file=sys.stderr,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await server.stop(1.0)
            server.servicer.flush_logs()
        return 0

    return asyncio.run(serve())
