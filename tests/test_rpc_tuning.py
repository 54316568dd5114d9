"""gRPC's transport choice (alchemy_gym.rpc.tuning): who sets GRPC_EXPERIMENTS, and that both transports play."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from alchemy_gym.rpc import tuning
from tests.rpc_fixtures import PYTHON

pytest.importorskip("grpc")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def grpc_not_imported(monkeypatch):
    """This process has imported grpc; pretend it has not (sys.modules is restored afterwards)."""
    monkeypatch.delitem(sys.modules, "grpc")


def test_sets_the_experiments_in_a_fresh_environment(grpc_not_imported, monkeypatch):
    monkeypatch.setattr(tuning, "_grpcio_version", lambda: (1, 85))
    environ: dict[str, str] = {}
    assert tuning.use_fast_grpc_transport(environ) is True
    assert environ == {"GRPC_EXPERIMENTS": tuning.FAST_GRPC_EXPERIMENTS}
    assert [name.lstrip("-") for name in environ["GRPC_EXPERIMENTS"].split(",")] == [
        "event_engine_client",
        "event_engine_listener",
        "event_engine_for_all_other_endpoints",
    ]


@pytest.mark.parametrize("value", ["", "-event_engine_client"])
def test_the_users_setting_is_kept(grpc_not_imported, value):
    environ = {"GRPC_EXPERIMENTS": value}
    assert tuning.use_fast_grpc_transport(environ) is False
    assert environ == {"GRPC_EXPERIMENTS": value}


def test_too_late_once_grpc_is_imported():
    import grpc  # noqa: F401

    environ: dict[str, str] = {}
    assert tuning.use_fast_grpc_transport(environ) is False
    assert environ == {}


@pytest.mark.parametrize("version", [(1, 79), (2, 0), None])
def test_grpcio_outside_the_supported_range_is_left_alone(grpc_not_imported, monkeypatch, version):
    monkeypatch.setattr(tuning, "_grpcio_version", lambda: version)
    environ: dict[str, str] = {}
    assert tuning.use_fast_grpc_transport(environ) is False
    assert environ == {}


def test_installed_grpcio_version_is_read_without_importing_grpc():
    code = "import sys; from alchemy_gym.rpc import tuning; print(tuning._grpcio_version(), 'grpc' in sys.modules)"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    import grpc

    assert out[-1] == "False"
    assert " ".join(out[:-1]) == str(tuple(int(p) for p in grpc.__version__.split(".")[:2]))


def _serve_start_line(env: dict[str, str]) -> str:
    process = subprocess.Popen(
        [PYTHON, "-m", "alchemy_gym.server.service", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        process.stderr.close()
    return line


def test_the_server_chooses_the_fast_transport_unless_told_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    line = _serve_start_line(env)
    assert line.startswith("alchemy-gym serve: dm_env_rpc on 127.0.0.1:")
    if tuning.grpcio_supported():
        assert f"GRPC_EXPERIMENTS={tuning.FAST_GRPC_EXPERIMENTS!r}" in line
    else:
        assert "GRPC_EXPERIMENTS unset" in line
    assert "GRPC_EXPERIMENTS=''" in _serve_start_line({**env, "GRPC_EXPERIMENTS": ""})


# a client process that opts in, against a server process with gRPC's defaults (and the reverse):
# the same episode as the in-process env, step for step
_CLIENT = textwrap.dedent(
    """
    import os, sys
    from alchemy_gym.rpc import tuning
    if sys.argv[1] == "fast":
        assert tuning.use_fast_grpc_transport(), "the transport was not chosen"
    else:
        os.environ["GRPC_EXPERIMENTS"] = ""
    import numpy as np
    from alchemy_gym.envs.rpc import RpcAlchemyEnv
    from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
    level = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
    server_env = {"GRPC_EXPERIMENTS": "" if sys.argv[1] == "fast" else tuning.FAST_GRPC_EXPERIMENTS}
    env = RpcAlchemyEnv(level, binary=sys.executable, binary_args=["-m", "alchemy_gym.server", "--port", "{port}"],
                        environment=server_env, observations=["symbolic_obs", "Score"])
    obs, info = env.reset(seed=5)
    ref = SymbolicAlchemyEnv(level)
    expected, _ = ref.reset(seed=info["world_seed"])
    np.testing.assert_array_equal(obs["symbolic_obs"], expected)
    total = 0.0
    for t in range(400):
        action = (t * 7) % 40
        obs, reward, terminated, _, _ = env.step(action)
        expected, ref_reward, ref_terminated, _, _ = ref.step(action)
        np.testing.assert_array_equal(obs["symbolic_obs"], expected)
        assert (reward, terminated) == (ref_reward, ref_terminated)
        total += reward
        if terminated:
            break
    env.close()
    print(os.environ["GRPC_EXPERIMENTS"] or "defaults", t + 1, total)
    """
)


@pytest.mark.parametrize("client", ["fast", "default"])
def test_client_and_server_on_either_transport_play_the_in_process_episode(client):
    if client == "fast" and not tuning.grpcio_supported():
        pytest.skip(f"grpcio {tuning._grpcio_version()} is outside {tuning.SUPPORTED_GRPCIO}")
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    result = subprocess.run(
        [PYTHON, "-c", _CLIENT, client], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    chosen, steps, _total = result.stdout.split()
    assert chosen == (tuning.FAST_GRPC_EXPERIMENTS if client == "fast" else "defaults")
    assert int(steps) > 10
