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
