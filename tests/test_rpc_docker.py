"""The Docker-backed 3D env, run on our own server image (the Unity image cannot be pulled here).

Needs a Docker engine and the image of ``alchemy-gym build-image`` (``.ci/docker-env.sh``
provides both and exports ``ALCHEMY_GYM_TEST_IMAGE``); skipped with a reason otherwise.
"""

from __future__ import annotations

import socket
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("docker")

import alchemy_gym  # noqa: E402,F401
from alchemy_gym.envs.rpc import RpcAlchemyEnv, RpcEnvError  # noqa: E402
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.launchers import LABEL, DockerLauncher, LaunchError, remove_stale_containers  # noqa: E402
from tests.rpc_fixtures import LEVEL, docker_or_skip, extra_threads, our_containers, wait_until  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_image():
    client, image = docker_or_skip()
    leftovers = our_containers(client)
    yield client, image
    # every test must leave no container of ours behind
    assert [c.name for c in our_containers(client) if c not in leftovers] == []
    client.close()


def test_make_reset_step_and_seeded_determinism(docker_image):
    client, image = docker_image
    env = gym.make("Alchemy/Standard-v0", image=image)
    try:
        assert env.action_space == gym.spaces.Discrete(40)
        obs, info = env.reset(seed=42)
        ref = SymbolicAlchemyEnv(LEVEL)
        np.testing.assert_array_equal(obs["symbolic_obs"], ref.reset(seed=info["world_seed"])[0])
        rng = np.random.default_rng(0)
        actions = [int(a) for a in rng.integers(0, 40, size=60)]
        trace = []
        for a in actions:
            obs, reward, terminated, _, _ = env.step(a)
            expected, ref_reward, ref_terminated, _, _ = ref.step(a)
            np.testing.assert_array_equal(obs["symbolic_obs"], expected)
            assert reward == ref_reward and terminated == ref_terminated
            trace.append(obs["symbolic_obs"])
        obs2, info2 = env.reset(seed=42)
        assert info2["world_seed"] == info["world_seed"]
        again = [env.step(a)[0]["symbolic_obs"] for a in actions]
        np.testing.assert_array_equal(np.stack(trace), np.stack(again))
        assert obs2["RGB_INTERLEAVED"].shape == (72, 96, 3)
    finally:
        env.close()


def test_four_envs_at_once_and_close_leaves_nothing(docker_image):
    client, image = docker_image
    baseline_threads = set(threading.enumerate())
    envs = [RpcAlchemyEnv(LEVEL, image=image, observations=["symbolic_obs"]) for _ in range(4)]
    try:
        ids = {env.launcher.container.id for env in envs}
        assert len(ids) == 4
        running = {c.id for c in client.containers.list(filters={"label": f"{LABEL}=1"})}
        assert ids <= running
        results = {}

        def play(i, env):
            obs, info = env.reset(seed=i)
            steps = [obs] + [env.step(a)[0] for a in range(1, 25)]
            results[i] = (info["world_seed"], np.stack(steps))

        threads = [threading.Thread(target=play, args=(i, env)) for i, env in enumerate(envs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(4):
            world_seed, steps = results[i]
            ref = SymbolicAlchemyEnv(LEVEL)
            expected = [ref.reset(seed=world_seed)[0]] + [ref.step(a)[0] for a in range(1, 25)]
            np.testing.assert_array_equal(steps, np.stack(expected))
    finally:
        for env in envs:
            env.close()
    assert wait_until(lambda: not ({c.id for c in our_containers(client)} & ids), timeout=10)
    assert extra_threads(baseline_threads) == []


def test_a_killed_container_gives_a_clear_error_and_restart_recovers(docker_image):
    client, image = docker_image
    env = RpcAlchemyEnv(LEVEL, image=image, observations=["symbolic_obs"])
    try:
        env.reset(seed=1)
        env.step(2)
        old = env.launcher.container
        old.kill()
        start = time.monotonic()
        with pytest.raises(RpcEnvError, match=r"container state: exited.*restart\(\)"):
            env.step(0)
        assert time.monotonic() - start < 10
        env.restart()
        assert env.launcher.container.id != old.id
        obs, info = env.reset(seed=1)
        np.testing.assert_array_equal(obs, SymbolicAlchemyEnv(LEVEL).reset(seed=info["world_seed"])[0])
    finally:
        env.close()
    assert wait_until(lambda: not our_containers(client) or all(c.id != old.id for c in our_containers(client)))


def test_unknown_image_fails_fast(docker_image):
    start = time.monotonic()
    with pytest.raises(LaunchError, match="alchemy-gym-test/no-such-image:0"):
        RpcAlchemyEnv(LEVEL, image="alchemy-gym-test/no-such-image:0", connect_timeout=10)
    assert time.monotonic() - start < 30


def test_a_server_that_never_gets_ready_times_out_with_its_log(docker_image):
    client, image = docker_image
    launcher = DockerLauncher(
        image, run_kwargs={"entrypoint": ["sh", "-c", "echo warming up the physics engine; exec sleep 600"]}
    )
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"(?s)not ready after 2\.0 s.*warming up the physics engine"):
        launcher.start(timeout=2.0)
    assert time.monotonic() - start < 15
    assert launcher.container.id not in {c.id for c in our_containers(client)}


def test_a_taken_host_port_is_reported(docker_image):
    client, image = docker_image
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(LaunchError, match="cannot start a container"):
            DockerLauncher(image, port=port).start(timeout=10)
        assert time.monotonic() - start < 30
    assert wait_until(lambda: not [c for c in our_containers(client) if c.status == "created"])


def test_remove_stale_containers_spares_live_owners(docker_image):
    client, image = docker_image
    launcher = DockerLauncher(image)
    launcher.start(timeout=30)
    try:
        assert remove_stale_containers(client) == []  # we are alive
        assert launcher.alive()
    finally:
        launcher.close()
        launcher.close()
    assert launcher.container.id not in {c.id for c in our_containers(client)}


def test_our_image_gets_a_token_of_its_own_and_refuses_others(docker_image):
    from alchemy_gym.rpc.launchers import Unauthenticated, probe
    from alchemy_gym.rpc.names import TOKEN_ENV

    client, image = docker_image
    launcher = DockerLauncher(image)
    try:
        address = launcher.start(timeout=60)
        token = launcher.token
        assert token and len(token) >= 32  # labelled image: a fresh random token
        assert f"{TOKEN_ENV}={token}" in launcher.container.attrs["Config"]["Env"]
        with pytest.raises(Unauthenticated, match="with no token"):
            probe(address, timeout=10)
        with pytest.raises(Unauthenticated, match="with the token given"):
            probe(address, timeout=10, token="q" * 40)
        assert probe(address, timeout=10, token=token) is None
        env = gym.make("Alchemy/AllFixed-v0", address=address, token=token, observations=["symbolic_obs"])
        env.reset(seed=0)
        env.step(1)
        env.close()
        log = launcher.log_tail(lines=50)
        assert "1 token(s) from $ALCHEMY_GYM_TOKEN" in log and "refused a stream" in log
        assert token not in log
    finally:
        launcher.close()


def test_our_image_takes_a_mounted_token_file(docker_image, tmp_path):
    client, image = docker_image
    alice, bob = "alice-" + "a" * 30, "bob-" + "b" * 30
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {alice}\nbob {bob}\n")
    tokens.chmod(0o644)  # the container's user (10001) must read it
    secret = "/run/secrets/alchemy-gym-tokens"
    env = gym.make(
        "Alchemy/AllFixed-v0",
        image=image,
        token=alice,
        environment={"ALCHEMY_GYM_TOKEN_FILE": secret},
        docker_kwargs={"run_kwargs": {"volumes": {str(tokens): {"bind": secret, "mode": "ro"}}}},
        observations=["symbolic_obs"],
    )
    try:
        env.reset(seed=0)
        launcher = env.unwrapped.launcher
        # bob's token is only in the file: the server read the file
        other = gym.make("Alchemy/AllFixed-v0", address=launcher.address, token=bob, observations=["symbolic_obs"])
        other.reset(seed=1)
        other.close()
        with pytest.raises(RpcEnvError, match="refused the connection with the token given"):
            gym.make("Alchemy/AllFixed-v0", address=launcher.address, token="c" * 36, connect_timeout=60)
        log = launcher.log_tail(lines=50)
        assert f"2 token(s) from token file {secret}" in log and "may be read by every user" in log
        assert alice not in log and bob not in log
    finally:
        env.close()


def test_an_image_without_the_label_gets_no_token(docker_image):
    """The Unity image does not check tokens: the launcher sends none unless asked (a local stand-in)."""
    client, image = docker_image
    launcher = DockerLauncher(image)
    assert launcher._token_environment(type("Image", (), {"labels": {}})()) == {} and launcher.token is None
    launcher = DockerLauncher(image, token="given-" + "g" * 20)
    assert launcher._token_environment(type("Image", (), {"labels": None})()) == {}
    assert launcher.token == "given-" + "g" * 20  # sent, but not given to the container
