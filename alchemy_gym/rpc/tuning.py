"""gRPC's faster loopback transport for a process: the iomgr TCP path instead of EventEngine's.

gRPC core (grpcio 1.6x and later) moves every byte through its EventEngine threads; a round trip
of one small message then costs two extra thread hand-offs on each side, and on a small machine
those context switches are most of a dm_env_rpc step (``perf``: over half the CPU of client and
server in the scheduler). Turning off three of gRPC's own experiment flags brings back the iomgr
TCP client, listener and endpoints, which read and write on the thread that polls:

    GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints

A single env gains most when both sides are switched; a vector env, which shares gRPC's wake-ups
among its streams, gains little (``benchmarks/README.md`` has the measured figures).

gRPC reads ``GRPC_EXPERIMENTS`` once, when ``grpc`` is first imported, so the choice is per process
and must be made before that import. ``alchemy-gym serve`` (and ``python -m alchemy_gym.server.service``,
the server image's entry point) make it for themselves. A client process opts in by calling
:func:`use_fast_grpc_transport` first thing, or by exporting the variable; nothing here changes a
process that set ``GRPC_EXPERIMENTS`` itself. Only the standard library is imported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: The gRPC experiments turned off (``GRPC_EXPERIMENTS`` syntax: ``-name`` disables ``name``).
FAST_GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints"
#: grpcio versions (inclusive lower, exclusive upper) whose experiment list has these three names;
#: an unknown name would only log an error line, but outside the range nothing is changed.
SUPPORTED_GRPCIO = ((1, 80), (2, 0))


def _grpcio_version() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        text = metadata.version("grpcio")
    except metadata.PackageNotFoundError:
        return None
    try:
        major, minor = (int(part) for part in text.split(".")[:2])
    except ValueError:
        return None
    return major, minor


def grpcio_supported() -> bool:
    """Whether the installed grpcio is in :data:`SUPPORTED_GRPCIO` (read from its metadata, not imported)."""
    version = _grpcio_version()
    low, high = SUPPORTED_GRPCIO
    return version is not None and low <= version < high


def use_fast_grpc_transport(environ: MutableMapping[str, str] | None = None) -> bool:
    """Select gRPC's iomgr loopback transport for this process; returns whether it did.

    Sets ``GRPC_EXPERIMENTS`` to :data:`FAST_GRPC_EXPERIMENTS` in ``environ`` (default
    ``os.environ``), unless it is set already (the user's choice is kept, even an empty one),
    ``grpc`` is already imported (too late: gRPC has read the variable), or the installed grpcio
    is outside :data:`SUPPORTED_GRPCIO`.
    """
    environ = os.environ if environ is None else environ
    if "GRPC_EXPERIMENTS" in environ or "grpc" in sys.modules:
        return False
    if not grpcio_supported():
        return False
    environ["GRPC_EXPERIMENTS"] = FAST_GRPC_EXPERIMENTS
    return True


def describe() -> str:
    """``GRPC_EXPERIMENTS=…`` as this process has it (for start-up lines and benchmark output)."""
    value = os.environ.get("GRPC_EXPERIMENTS")
    return "GRPC_EXPERIMENTS unset (gRPC's defaults)" if value is None else f"GRPC_EXPERIMENTS={value!r}"


__all__ = ["FAST_GRPC_EXPERIMENTS", "SUPPORTED_GRPCIO", "describe", "grpcio_supported", "use_fast_grpc_transport"]
