"""RpcAlchemyEnv against our server as a local process and at an address (no Docker needed)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import alchemy_gym  # noqa: E402,F401  (registers the IDs)
from alchemy_gym.envs.info import INFO_KEYS, RPC_INFO_KEYS  # noqa: E402
from alchemy_gym.envs.rpc import RpcAlchemyEnv, RpcEnvError  # noqa: E402
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.launchers import AddressLauncher, LaunchError, LocalBinaryLauncher  # noqa: E402
from alchemy_gym.server.service import make_server  # noqa: E402
from tests.rpc_fixtures import LEVEL, PYTHON, SERVER_ARGS, extra_threads  # noqa: E402


@pytest.fixture(scope="module")
def address():
    server, port = make_server("127.0.0.1", 0, max_connections=8)
    yield f"127.0.0.1:{port}"
    server.stop(grace=0.5).wait(5)


def _same_info(info, ref_info, world_seed, score):
    """The 3D env's info: the symbolic env's keys and values (trials followed from the world's events), then
    its own, every value a numpy scalar of the schema's dtype."""
    assert list(info) == [key.name for key in INFO_KEYS + RPC_INFO_KEYS]
    for key in INFO_KEYS + RPC_INFO_KEYS:
        assert isinstance(info[key.name], (np.generic, np.ndarray)) and info[key.name].shape == ()
        assert info[key.name].dtype == key.dtype, key.name
    for key in INFO_KEYS:
        assert info[key.name] == ref_info[key.name], key.name
    assert info["world_seed"] == world_seed and info["score"] == score


def _play_against_symbolic(env, seed, steps=120, rng_seed=0):
    obs, info = env.reset(seed=seed)
    ref = SymbolicAlchemyEnv(LEVEL)
    expected, ref_info = ref.reset(seed=int(info["world_seed"]))
    np.testing.assert_array_equal(obs["symbolic_obs"], expected)
    _same_info(info, ref_info, info["world_seed"], 0.0)
    rng = np.random.default_rng(rng_seed)
    trace = [obs["symbolic_obs"]]
    ended = 0
    score = 0.0
    for _ in range(steps):
        action = int(rng.integers(0, 40))
        obs, reward, terminated, truncated, info = env.step(action)
        expected, ref_reward, ref_terminated, _, ref_info = ref.step(action)
        np.testing.assert_array_equal(obs["symbolic_obs"], expected)
        assert reward == ref_reward and terminated == ref_terminated and not truncated
        _same_info(info, ref_info, ref_info_seed := int(info["world_seed"]), obs["Score"])
        assert ref_info_seed >= 0
        ended += bool(info["trial_ended"])
        score += ref_reward
        assert info["score"] == pytest.approx(score)  # the server's Score, also when its reward observation is used
        trace.append(obs["symbolic_obs"])
        if terminated:
            break
    assert ended == len(trace) // 20  # the trials the world's events ended
    return np.stack(trace)


def test_address_env_matches_the_in_process_symbolic_env(address):
    env = gym.make("Alchemy/Standard-v0", address=address)
    try:
        assert env.action_space == gym.spaces.Discrete(40)
        assert set(env.observation_space.spaces) == {"symbolic_obs", "Score", "RGB_INTERLEAVED"}
        first = _play_against_symbolic(env, seed=123, steps=200)
        again = _play_against_symbolic(env, seed=123, steps=200)
        np.testing.assert_array_equal(first, again)  # same seed, same episode
    finally:
        env.close()


def test_reset_without_seed_continues_the_world_stream(address):
    env = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"])
    ref = SymbolicAlchemyEnv(LEVEL)
    try:
        obs, info = env.reset(seed=5)
        np.testing.assert_array_equal(obs, ref.reset(seed=info["world_seed"])[0])
        for _ in range(3):
            obs, info2 = env.reset()
            assert info2["world_seed"] == info["world_seed"]
            np.testing.assert_array_equal(obs, ref.reset()[0])
        other, info3 = env.reset(seed=6)
        assert info3["world_seed"] != info["world_seed"]
    finally:
        env.close()


def test_evaluation_level_plays_the_requested_episodes(address):
    env = gym.make("Alchemy/Evaluation-v0", address=address, observations=["symbolic_obs"])
    ref = SymbolicAlchemyEnv("alchemy/evaluation_episodes")
    try:
        obs, info = env.reset(options={"episode": 7})
        assert info["episode_index"] == 7
        np.testing.assert_array_equal(obs, ref.reset(options={"episode": 7})[0])
        obs, info = env.reset()
        assert info["episode_index"] == 8
        np.testing.assert_array_equal(obs, ref.reset(options={"episode": 8})[0])
        with pytest.raises(ValueError, match="out of range"):
            env.reset(options={"episode": 1000})
    finally:
        env.close()


def test_action_repeats_sum_rewards_and_concatenate_events(address):
    env = RpcAlchemyEnv(LEVEL, address=address, num_action_repeats=3, observations=["symbolic_obs"])
    try:
        obs, info = env.reset(seed=9)
        assert [e.name for e in env.last_events][0] == "DeepMind/Alchemy/ChemistryCreated"
        ref = SymbolicAlchemyEnv(LEVEL)
        ref.reset(seed=int(info["world_seed"]))
        # stone 0 → cauldron, then the same action twice more (the stone is gone: no-ops)
        obs, reward, terminated, _, info = env.step(1)
        expected = sum(ref.step(1)[1] for _ in range(3))
        assert reward == expected
        assert [e.name for e in env.last_events] == ["DeepMind/Alchemy/StoneUsed"]
        assert env.last_events[0].detail["reward"] == reward == info["trial_reward"] == info["episode_return"]
        # 20 steps a trial, 10 trials: the loop stops at the episode's end
        steps = 1
        while not terminated:
            obs, reward, terminated, truncated, info = env.step(0)
            steps += 1
        assert steps == int(np.ceil(200 / 3))
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)
    finally:
        env.close()


def test_render_rgb_array_is_the_server_picture(address):
    env = gym.make("Alchemy/AllFixed-v0", address=address, render_mode="rgb_array", width=64, height=48)
    try:
        obs, _ = env.reset(seed=1)
        frame = env.render()
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, obs["RGB_INTERLEAVED"])
        assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 3  # table, cauldron, stones, potions
    finally:
        env.close()


@pytest.mark.parametrize(
    "action, message",
    [
        (40, r"out of range: allowed an integer in 0\.\.39"),
        (-1, "out of range"),
        (1.5, "must be an integer"),
        ("1", "must be an integer"),
        ({"move": 1}, "not allowed: the only action is 'action'"),
    ],
)
def test_invalid_actions_are_rejected_client_side(address, action, message):
    env = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"])
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match=message):
            env.step(action)
        env.step(np.int64(3))  # the env is still usable
    finally:
        env.close()


def test_unknown_level_fails_before_any_server_starts(tmp_path):
    marker = tmp_path / "started"
    script = tmp_path / "server.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    for bad in ("alchemy/no_such_level", "alchemy/all_fixed_bottleneck1", "alchemy/evaluation_episodes/1000"):
        with pytest.raises(ValueError, match="level|evaluation"):
            RpcAlchemyEnv(bad, binary=str(script))
    with pytest.raises(ValueError, match="width"):
        RpcAlchemyEnv(LEVEL, binary=str(script), width=0)
    assert not marker.exists()


def test_local_binary_launcher_runs_and_stops_the_server():
    baseline = set(threading.enumerate())
    env = RpcAlchemyEnv(LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, observations=["symbolic_obs", "Score"])
    process = env.unwrapped.launcher.process
    assert process.poll() is None
    env.reset(seed=2)
    env.step(1)
    env.close()
    env.close()  # idempotent
    assert process.poll() is not None
    assert extra_threads(baseline) == []
    for call in (lambda: env.step(1), env.reset):
        with pytest.raises(RpcEnvError, match="closed"):
            call()


def test_a_killed_server_gives_a_clear_error_and_restart_recovers():
    env = RpcAlchemyEnv(LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, observations=["symbolic_obs"])
    try:
        env.reset(seed=3)
        env.launcher.process.kill()
        env.launcher.process.wait(5)
        with pytest.raises(RpcEnvError, match=r"restart\(\)"):
            env.step(0)
        with pytest.raises(RpcEnvError):
            env.step(0)
        env.restart()
        obs, info = env.reset(seed=3)
        ref = SymbolicAlchemyEnv(LEVEL)
        np.testing.assert_array_equal(obs, ref.reset(seed=info["world_seed"])[0])
    finally:
        env.close()


def test_a_hung_server_times_out_per_request_and_restart_recovers():
    env = RpcAlchemyEnv(
        LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, observations=["symbolic_obs"], request_timeout=1.0
    )
    process = env.launcher.process
    try:
        env.reset(seed=4)
        os.kill(process.pid, signal.SIGSTOP)  # connected, but never answers
        start = time.monotonic()
        with pytest.raises(RpcEnvError, match=r"did not answer StepRequest within 1 s.*restart\(\)"):
            env.step(0)
        assert time.monotonic() - start < 5
        with pytest.raises(RpcEnvError, match="no server"):
            env.step(0)
        env.restart()  # stops the hung process, starts a new one
        assert process.poll() is not None
        obs, info = env.reset(seed=4)
        ref = SymbolicAlchemyEnv(LEVEL)
        np.testing.assert_array_equal(obs, ref.reset(seed=info["world_seed"])[0])
    finally:
        env.close()
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("bad", [0, -1.0, "5", True])
def test_bad_request_timeout_is_rejected_before_start(bad):
    with pytest.raises(ValueError, match="request_timeout must be a positive number"):
        RpcAlchemyEnv(LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, request_timeout=bad)


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "server.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_server_that_exits_fails_fast_with_its_log(tmp_path):
    binary = _script(tmp_path, 'echo "fatal: no licence for the physics engine" >&2\nexit 3')
    start = time.monotonic()
    with pytest.raises(LaunchError, match="no licence for the physics engine") as info:
        RpcAlchemyEnv(LEVEL, binary=binary, connect_timeout=30)
    assert time.monotonic() - start < 10
    assert "exited" in str(info.value)


def test_a_server_that_never_answers_times_out(tmp_path):
    binary = _script(tmp_path, 'echo "loading level …"\nexec sleep 60')
    launcher = LocalBinaryLauncher(binary)
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"not ready after 2\.0 s") as info:
        launcher.start(timeout=2.0)
    assert time.monotonic() - start < 6
    assert "loading level" in str(info.value)
    assert launcher.process.poll() is not None  # killed


def test_a_taken_port_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        launcher = LocalBinaryLauncher(PYTHON, SERVER_ARGS, port=port)
        start = time.monotonic()
        with pytest.raises(LaunchError, match="in use"):
            launcher.start(timeout=20)
        assert time.monotonic() - start < 15


def test_address_launcher_starts_and_stops_nothing(address):
    launcher = AddressLauncher(address)
    assert launcher.start(timeout=5) == address
    launcher.close()
    env = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"])
    env.reset(seed=0)
    env.close()
    env2 = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"])  # the server still runs
    env2.close()
    with pytest.raises(ValueError, match="host:port"):
        AddressLauncher("localhost")
    with pytest.raises(LaunchError, match="not ready"):
        AddressLauncher(f"127.0.0.1:{_closed_port()}").start(timeout=1.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_process_is_left_after_garbage_collection():
    import gc

    env = RpcAlchemyEnv(LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, observations=["symbolic_obs"])
    pid = env.launcher.process.pid
    del env
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the server process outlived its env")


def test_works_when_called_from_a_running_event_loop(address):
    """Blocking env calls from inside a coroutine (a notebook cell, an async trainer) keep working."""
    import asyncio

    async def main():
        env = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"])
        try:
            obs, info = env.reset(seed=0)
            await asyncio.sleep(0)
            env.step(1)
            return obs, info["world_seed"]
        finally:
            env.close()

    obs, world_seed = asyncio.run(main())
    np.testing.assert_array_equal(obs, SymbolicAlchemyEnv(LEVEL).reset(seed=world_seed)[0])


def test_without_trial_events_the_info_keeps_its_keys_with_trial_minus_one(address):
    env = RpcAlchemyEnv(LEVEL, address=address, observations=["symbolic_obs"], event_regex=None)
    try:
        _, info = env.reset(seed=3)
        assert not env.last_events and info["trial"] == -1 and info["world_seed"] >= 0
        total = 0.0
        for _ in range(25):  # across the first trial's end: no event tells it
            _, reward, _, _, step_info = env.step(1)
            total += reward
            assert list(step_info) == list(info) and step_info["trial"] == -1 and not step_info["trial_ended"]
            assert step_info["trial_reward"] == step_info["episode_return"] == np.float32(total)
    finally:
        env.close()
