"""``alchemy-gym serve`` (and ``python -m alchemy_gym.server``): serve symbolic Alchemy over dm_env_rpc."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import signal
import sys

from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.rpc.names import TOKEN_ENV, TOKEN_FILE_ENV
from alchemy_gym.server.auth import TokenError, tokens_from
from alchemy_gym.server.clients import (
    COUNT_LIMITS,
    DEFAULT_LOOP_SHARE,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_PICTURE_BUILDS_PER_MINUTE,
    DEFAULT_REQUEST_RATE,
)
from alchemy_gym.server.servicer import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUEST_BYTES, start_server
from alchemy_gym.server.world import DEFAULT_MAX_WORLDS_PER_CLIENT, DEFAULT_MAX_WORLDS_PER_CONNECTION, MAX_WORLDS
from alchemy_gym.usage import ArgumentParser

DEFAULT_PORT = 10000


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="alchemy-gym serve",
        description="Serve symbolic Alchemy over dm_env_rpc (the interface of the 3D Unity server).",
    )
    add = parser.add_argument
    add("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)")
    add(
        "--token-file",
        metavar="PATH",
        help="serve only clients that present one of the tokens in this file (one a line, optionally after a "
        f"name); default: ${TOKEN_FILE_ENV}, else the token in ${TOKEN_ENV}, else no token needed",
    )
    add(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"concurrent client streams (default {DEFAULT_MAX_CONNECTIONS})",
    )
    add(
        "--max-connections-per-client",
        type=int,
        metavar="N",
        help=f"streams one client may have open (default {DEFAULT_MAX_CONNECTIONS_PER_CLIENT}, or half of "
        "--max-connections if that is more)",
    )
    add("--max-worlds", type=int, default=MAX_WORLDS, help=f"worlds at once (default {MAX_WORLDS})")
    add(
        "--max-worlds-per-client",
        type=int,
        metavar="N",
        help=f"worlds one client may hold (default {DEFAULT_MAX_WORLDS_PER_CLIENT}, or half of --max-worlds if "
        "that is more)",
    )
    add(
        "--max-worlds-per-connection",
        type=int,
        default=DEFAULT_MAX_WORLDS_PER_CONNECTION,
        metavar="N",
        help=f"worlds one stream may hold (default {DEFAULT_MAX_WORLDS_PER_CONNECTION})",
    )
    add(
        "--request-rate",
        type=float,
        default=DEFAULT_REQUEST_RATE,
        metavar="N",
        help=f"requests a second per client; more wait their turn (default {DEFAULT_REQUEST_RATE:g}; 0: no limit)",
    )
    add(
        "--picture-builds-per-minute",
        type=int,
        default=DEFAULT_PICTURE_BUILDS_PER_MINUTE,
        metavar="N",
        help=f"picture sizes new to the server one client may ask for a minute (default "
        f"{DEFAULT_PICTURE_BUILDS_PER_MINUTE})",
    )
    add(
        "--loop-share",
        type=float,
        default=DEFAULT_LOOP_SHARE,
        metavar="F",
        help=f"share of the server's time one client may take while others wait (default {DEFAULT_LOOP_SHARE:g}; "
        "1: no limit)",
    )
    add(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        metavar="N",
        help=f"largest request message (default {DEFAULT_MAX_REQUEST_BYTES})",
    )
    add(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end a client stream that sends no request for this long and destroy its worlds (default 0: never)",
    )
    add("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """``alchemy-gym serve``: serve symbolic Alchemy over dm_env_rpc until SIGINT/SIGTERM.

    Unless ``GRPC_EXPERIMENTS`` is set, the process uses gRPC's faster loopback transport
    (:func:`alchemy_gym.rpc.tuning.use_fast_grpc_transport`, before ``grpc`` is imported).
    """
    import asyncio

    from alchemy_gym.rpc import tuning

    tuning.use_fast_grpc_transport()

    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} out of range: allowed 0..65535")
    for name in COUNT_LIMITS:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.max_request_bytes < 1024:
        parser.error(f"--max-request-bytes must be >= 1024, got {args.max_request_bytes}")
    if not 0 <= args.request_rate < float("inf"):  # also NaN
        parser.error(f"--request-rate must be >= 0 requests a second (0: no limit), got {args.request_rate:g}")
    if not 0 < args.loop_share <= 1:  # also NaN
        parser.error(f"--loop-share must be in (0, 1] (1: no limit), got {args.loop_share:g}")
    if not args.idle_timeout >= 0:  # also NaN
        parser.error(f"--idle-timeout must be >= 0 seconds (0: never), got {args.idle_timeout:g}")
    idle_timeout = args.idle_timeout or None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        tokens, source = tokens_from(args.token_file)
    except TokenError as exc:
        parser.error(str(exc))
    if tokens is None and not is_loopback(args.host):
        print(
            f"alchemy-gym serve: WARNING: serving on {args.host} without a token: anyone who reaches the port may "
            "create worlds; give the server --token-file (and put TLS in front: see the docs, 'Access')",
            file=sys.stderr,
            flush=True,
        )

    async def serve() -> int:
        try:
            server, port = await start_server(
                args.host,
                args.port,
                max_connections=args.max_connections,
                max_request_bytes=args.max_request_bytes,
                idle_timeout=idle_timeout,
                tokens=tokens,
                max_connections_per_client=args.max_connections_per_client,
                max_worlds=args.max_worlds,
                max_worlds_per_client=args.max_worlds_per_client,
                max_worlds_per_connection=args.max_worlds_per_connection,
                request_rate=args.request_rate,
                picture_builds_per_minute=args.picture_builds_per_minute,
                loop_share=args.loop_share,
            )
        except OSError as exc:
            print(f"alchemy-gym serve: {exc}", file=sys.stderr, flush=True)
            return 1
        # what start-up made (modules, tables, the warm-up) is never garbage: keep the collector from walking
        # it again and again, which would hold the event loop for tens of milliseconds at each full collection
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        kernel = AlchemyGame().batch.kernel_name
        access = f"{len(tokens)} token(s) from {source}" if tokens is not None else "no token needed"
        print(
            f"alchemy-gym serve: dm_env_rpc on {args.host}:{port} ({tuning.describe()}; game backend {kernel}; "
            f"{access})",
            file=sys.stderr,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await server.servicer.shutdown()
            await server.stop(1.0)
            server.servicer.flush_logs()
            stats = server.servicer.stats
            logging.getLogger("alchemy_gym.server.service").info(
                "served %d requests; the longest held the event loop %.2f ms (%s); %d painter builds off the loop; "
                "%d streams closed to make room",
                stats.requests,
                stats.longest_hold * 1e3,
                stats.longest_kind or "-",
                stats.offloaded,
                stats.evicted,
            )
        return 0

    return asyncio.run(serve())
