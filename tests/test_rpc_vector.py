"""RpcAlchemyVectorEnv against our server: local processes, one address, a list of addresses, the fake Unity server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import threading

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import alchemy_gym  # noqa: E402,F401  (registers the IDs)
from alchemy_gym.envs.rpc import RpcAlchemyEnv, RpcEnvError  # noqa: E402
from alchemy_gym.envs.rpc_vector import RpcAlchemyVectorEnv  # noqa: E402
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.levels import levels  # noqa: E402
from alchemy_gym.server.service import make_server  # noqa: E402
from tests.rpc_fake_unity import UNITY_ACTIONS, start_fake_unity  # noqa: E402
from tests.rpc_fixtures import LEVEL, PYTHON, SERVER_ARGS, extra_threads, wait_until  # noqa: E402

OBS = ["symbolic_obs", "Score"]


@pytest.fixture(scope="module")
def address():
    server, port = make_server("127.0.0.1", 0)
    yield f"127.0.0.1:{port}"
    server.stop(grace=0.5).wait(5)


def _local(num_envs: int, **kwargs) -> RpcAlchemyVectorEnv:
    """A vector env with one local server process per sub-env."""
    return RpcAlchemyVectorEnv(num_envs, LEVEL, binary=PYTHON, binary_args=SERVER_ARGS, observations=OBS, **kwargs)


def _child_pids() -> set[int]:
    """Live (non-zombie) child processes of this process, from /proc."""
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(entry))
    return children


def _refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def test_make_vec_builds_the_native_vector_env_for_every_3d_id(address):
    for level in levels():
        if level.rpc_id:
            assert gym.spec(level.rpc_id).vector_entry_point == "alchemy_gym.envs.rpc_vector:RpcAlchemyVectorEnv"
    envs = gym.make_vec(
        "Alchemy/Standard-v0", num_envs=3, vectorization_mode="vector_entry_point", address=address, observations=OBS
    )
    try:
        assert isinstance(envs, RpcAlchemyVectorEnv)
        assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        assert envs.single_action_space == gym.spaces.Discrete(40)
        assert envs.action_space == gym.spaces.MultiDiscrete([40, 40, 40])
        assert envs.single_observation_space["symbolic_obs"].shape == (39,)
        assert envs.observation_space["symbolic_obs"].shape == (3, 39)
        assert envs.observation_space["Score"].shape == (3,)
        obs, info = envs.reset(seed=1)
        assert obs["symbolic_obs"].shape == (3, 39) and obs["symbolic_obs"].dtype == np.float32
        assert envs.observation_space.contains(obs)
        assert info["_world_seed"].all() and len(set(info["world_seed"].tolist())) == 3
    finally:
        envs.close()


def test_sub_envs_match_single_envs_step_for_step_with_next_step_autoreset(address):
    """Two local server processes vs two single envs seeded the same: every obs, reward, flag and info."""
    n, seed = 2, 21
    envs = _local(n)
    singles = [RpcAlchemyEnv(LEVEL, address=address, observations=OBS) for _ in range(n)]
    try:
        obs, info = envs.reset(seed=seed)
        expected = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
        for i, (single_obs, single_info) in enumerate(expected):
            np.testing.assert_array_equal(obs["symbolic_obs"][i], single_obs["symbolic_obs"])
            assert info["world_seed"][i] == single_info["world_seed"]
        rng = np.random.default_rng(3)
        ended = [False] * n
        autoresets = 0
        for t in range(215):  # an episode is 200 steps: every sub-env ends once and auto-resets
            actions = rng.integers(0, 40, size=n)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            for i, env in enumerate(singles):
                if ended[i]:  # next-step autoreset: the action is ignored, the reset's obs and info come back
                    single_obs, single_info = env.reset()
                    single = (single_obs, 0.0, False, False, single_info)
                    autoresets += 1
                else:
                    single = env.step(int(actions[i]))
                np.testing.assert_array_equal(obs["symbolic_obs"][i], single[0]["symbolic_obs"], err_msg=f"t={t}")
                assert obs["Score"][i] == single[0]["Score"]
                assert (rewards[i], terminated[i], truncated[i]) == single[1:4], f"t={t} sub-env {i}"
                assert set(info) == set(single[4]) | {"_" + key for key in single[4]}
                for key, value in single[4].items():  # every key, every step, typed as the single env's
                    assert info["_" + key][i] and info[key].dtype == value.dtype and info[key][i] == value, key
                events = envs.unwrapped.last_events[i]
                assert [e.name for e in events] == [e.name for e in env.last_events]
                ended[i] = single[2] or single[3]
        assert autoresets == n
    finally:
        envs.close()
        for env in singles:
            env.close()


def test_seeding_is_deterministic_and_accepts_a_list(address):
    envs = RpcAlchemyVectorEnv(3, LEVEL, address=address, observations=OBS)
    try:
        first, info = envs.reset(seed=5)
        trace = [envs.step(np.array([1, 2, 3]))[0]["symbolic_obs"] for _ in range(5)]
        again, info2 = envs.reset(seed=5)
        np.testing.assert_array_equal(first["symbolic_obs"], again["symbolic_obs"])
        np.testing.assert_array_equal(info["world_seed"], info2["world_seed"])
        np.testing.assert_array_equal(trace, [envs.step(np.array([1, 2, 3]))[0]["symbolic_obs"] for _ in range(5)])
        _, listed = envs.reset(seed=[5, 6, 7])
        np.testing.assert_array_equal(listed["world_seed"], info["world_seed"])
        _, other = envs.reset(seed=6)
        assert other["world_seed"][0] == info["world_seed"][1]
        # reset() without a seed continues every world: the next episode of the in-process env seeded alike
        obs, cont = envs.reset()
        np.testing.assert_array_equal(cont["world_seed"], other["world_seed"])
        ref = SymbolicAlchemyEnv(LEVEL)
        ref.reset(seed=int(other["world_seed"][2]))
        np.testing.assert_array_equal(obs["symbolic_obs"][2], ref.reset()[0])
    finally:
        envs.close()


def test_evaluation_episodes_are_spread_over_sub_envs(address):
    envs = gym.make_vec(
        "Alchemy/Evaluation-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        address=[address, address],
        observations=["symbolic_obs"],
    )
    ref = SymbolicAlchemyEnv("alchemy/evaluation_episodes")
    try:
        obs, info = envs.reset()
        assert info["episode_index"].tolist() == [0, 1]
        for i, e in enumerate((0, 1)):
            np.testing.assert_array_equal(obs[i], ref.reset(options={"episode": e})[0])
        _, info = envs.reset()
        assert info["episode_index"].tolist() == [2, 3]
        obs, info = envs.reset(options={"episode": [7, 500]})
        assert info["episode_index"].tolist() == [7, 500]
        np.testing.assert_array_equal(obs[1], ref.reset(options={"episode": 500})[0])
        _, info = envs.reset(options={"episode": 9})
        assert info["episode_index"].tolist() == [9, 9]
        for bad, match in (([1], "one per sub-env"), ([1, 1000], "out of range"), ({"x": 1}, "unknown reset options")):
            options = bad if isinstance(bad, dict) else {"episode": bad}
            with pytest.raises(ValueError, match=match):
                envs.reset(options=options)
    finally:
        envs.close()


@pytest.mark.parametrize(
    "actions, match",
    [
        (np.array([1, 2, 3]), r"shape \(2,\)"),
        (np.array([[1], [2]]), r"shape \(2,\)"),
        ({"move": [1, 2]}, "not allowed: the only action is 'action'"),
        (np.array([1, 40]), r"sub-env 1: action 'action'=40 out of range: allowed an integer in 0\.\.39"),
        (np.array([-1, 0]), "sub-env 0: action 'action'=-1 out of range"),
        (np.array([1.5, 2.0]), "sub-env 0: action 'action' must be an integer"),
        (["a", "b"], "must be an integer"),
    ],
)
def test_bad_actions_are_rejected_before_anything_is_sent(address, actions, match):
    envs = RpcAlchemyVectorEnv(2, LEVEL, address=address, observations=OBS)
    try:
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=match):
            envs.step(actions)
        reference = RpcAlchemyVectorEnv(2, LEVEL, address=address, observations=OBS)
        try:
            reference.reset(seed=0)
            # nothing was sent: both continue with the same next step
            got, want = envs.step(np.array([3, 4])), reference.step(np.array([3, 4]))
            np.testing.assert_array_equal(got[0]["symbolic_obs"], want[0]["symbolic_obs"])
        finally:
            reference.close()
    finally:
        envs.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_envs": 0}, "num_envs must be a positive int"),
        ({"num_envs": True}, "num_envs must be a positive int"),
        ({"num_envs": "2"}, "num_envs must be a positive int"),
        ({"num_envs": 2, "address": ["127.0.0.1:1"]}, "give one per sub-env"),
        ({"num_envs": 2, "width": 0}, "width must be a positive int"),
        ({"num_envs": 2, "level_name": "alchemy/no_such_level"}, "level"),
        ({"num_envs": 2, "render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_fail_before_any_server_starts(tmp_path, kwargs, match):
    marker = tmp_path / "started"
    script = tmp_path / "server.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    kwargs = {"level_name": LEVEL, **kwargs}
    if "address" not in kwargs:
        kwargs["binary"] = str(script)
    with pytest.raises(ValueError, match=match):
        RpcAlchemyVectorEnv(**kwargs)
    assert not marker.exists()


def test_step_before_reset_and_seed_errors(address):
    envs = RpcAlchemyVectorEnv(2, LEVEL, address=address, observations=OBS)
    try:
        with pytest.raises(RuntimeError, match=r"call reset\(\)"):
            envs.step(np.array([0, 0]))
        for bad in (-1, [1], [1, "2"], 1.5):
            with pytest.raises(ValueError, match="seed"):
                envs.reset(seed=bad)
    finally:
        envs.close()


def test_seeds_are_those_the_single_3d_env_takes(address):
    """One seed check (core.episodes): any non-negative int, as Gymnasium's np_random (and the single 3D env) takes,
    in a list, a tuple or a numpy array; a sub-env's world seed follows its seed."""
    envs = RpcAlchemyVectorEnv(2, LEVEL, address=address, observations=OBS)
    single = RpcAlchemyEnv(LEVEL, address=address, observations=OBS)
    try:
        _, info = envs.reset(seed=np.array([2**40, 7]))  # beyond RandomState's 2**32-1
        assert info["world_seed"][0] == single.reset(seed=2**40)[1]["world_seed"]
        assert info["world_seed"][1] == single.reset(seed=7)[1]["world_seed"]
        _, again = envs.reset(seed=(2**40, 7))
        np.testing.assert_array_equal(again["world_seed"], info["world_seed"])
        for env, bad in ((envs, [1, -1]), (single, -1)):
            with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
                env.reset(seed=bad)
    finally:
        envs.close()
        single.close()


def test_unity_dict_actions_are_batched_per_key_and_checked_before_sending():
    server, servicer, address = start_fake_unity(episode_length=10)
    try:
        with pytest.warns(UserWarning, match="'LANGUAGE' left out"):
            envs = RpcAlchemyVectorEnv(2, LEVEL, address=address)
        try:
            assert sorted(envs.action_space.spaces) == sorted(UNITY_ACTIONS)
            assert envs.action_space["HAND_PUSH_PULL"] == gym.spaces.Box(-10.0, 10.0, (2,), np.float64)
            assert envs.observation_space["RGB_INTERLEAVED"].shape == (2, 72, 96, 3)
            envs.reset(seed=0)
            obs, rewards, *_ = envs.step({"HAND_GRIP": np.array([1.0, 0.0])})  # sticky: a subset of keys
            assert sorted(map(sorted, (r.items() for r in servicer.received))) == [
                [("HAND_GRIP", 0.0)],
                [("HAND_GRIP", 1.0)],
            ]
            assert rewards.tolist() == [1.0, 0.0]
            sent = len(servicer.received)
            with pytest.raises(ValueError, match=r"sub-env 1: action 'HAND_PUSH_PULL'=11.0 out of range: .*-10, 10"):
                envs.step({"HAND_PUSH_PULL": np.array([0.0, 11.0])})
            with pytest.raises(ValueError, match="unknown action keys"):
                envs.step({"JUMP": np.array([1.0, 1.0])})
            with pytest.raises(ValueError, match=r"'HAND_GRIP'.*shape \(2,\)"):
                envs.step({"HAND_GRIP": np.array([1.0, 0.0, 1.0])})
            assert len(servicer.received) == sent  # nothing went out, not even sub-env 0's valid action
            obs, rewards, *_ = envs.step({"MOVE_BACK_FORWARD": np.array([0.5, -0.5])})
            assert rewards.tolist() == [1.0, 0.0]  # the grip stayed on sub-env 0
            np.testing.assert_array_equal(obs["ACCELERATION"][:, 0], [0.5, -0.5])
        finally:
            envs.close()
    finally:
        server.stop(grace=0.5).wait(5)


def test_render_gives_every_sub_envs_picture(address):
    envs = RpcAlchemyVectorEnv(2, LEVEL, address=address, render_mode="rgb_array", width=32, height=24)
    try:
        obs, _ = envs.reset(seed=2)
        frames = envs.render()
        assert len(frames) == 2 and frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
        np.testing.assert_array_equal(np.stack(frames), obs["RGB_INTERLEAVED"])
    finally:
        envs.close()


def test_close_leaves_no_thread_process_port_or_loop():
    baseline_threads = set(threading.enumerate())
    baseline_children = _child_pids()
    envs = _local(2)
    processes = [c.launcher.process for c in envs._clients]
    addresses = [c.launcher.address for c in envs._clients]
    assert len({p.pid for p in processes}) == 2 and {p.pid for p in processes} <= _child_pids()
    envs.reset(seed=0)
    envs.step(np.array([1, 2]))
    envs.close()
    envs.close()  # idempotent
    assert all(p.poll() is not None for p in processes)
    assert _child_pids() - baseline_children == set()
    assert all(_refused(a) for a in addresses)
    assert envs._loop.closed
    assert extra_threads(baseline_threads) == []
    with pytest.raises(RpcEnvError, match="closed"):
        envs.reset()


def test_a_killed_server_gives_a_clear_error_and_restart_recovers(address):
    baseline_threads = set(threading.enumerate())
    envs = _local(2)
    try:
        envs.reset(seed=3)
        victim = envs._clients[1].launcher.process
        victim.kill()
        victim.wait(5)
        with pytest.raises(RpcEnvError, match=r"sub-env 1: lost the local server .*exited.*envs\.restart\(\)"):
            envs.step(np.array([0, 0]))
        with pytest.raises(RuntimeError, match=r"call reset\(\)"):
            envs.step(np.array([0, 0]))
        with pytest.raises(RpcEnvError, match=r"sub-env 1: the env has no server.*envs\.restart\(\)"):
            envs.reset()
        kept = envs._clients[0].launcher.process
        envs.restart()  # a new server for sub-env 1 only
        assert envs._clients[0].launcher.process is kept and kept.poll() is None
        obs, info = envs.reset(seed=3)
        single = RpcAlchemyEnv(LEVEL, address=address, observations=OBS)
        try:
            np.testing.assert_array_equal(obs["symbolic_obs"][1], single.reset(seed=4)[0]["symbolic_obs"])
        finally:
            single.close()
    finally:
        envs.close()
    assert extra_threads(baseline_threads) == []  # the failed stream too is gone


def test_a_hung_server_times_out_and_names_the_sub_env():
    envs = _local(2, request_timeout=1.0)
    process = envs._clients[0].launcher.process
    try:
        envs.reset(seed=4)
        os.kill(process.pid, signal.SIGSTOP)  # connected, never answers
        with pytest.raises(RpcEnvError, match=r"sub-env 0: lost .*did not answer StepRequest within 1 s"):
            envs.step(np.array([0, 0]))
        envs.restart()
        assert process.poll() is not None  # the hung server was stopped
        obs, _ = envs.reset(seed=4)
        assert obs["symbolic_obs"].shape == (2, 39)
    finally:
        envs.close()
        if process.poll() is None:
            process.kill()


def test_works_when_called_from_a_running_event_loop(address):
    """A blocking step from inside a coroutine (a notebook cell, an async trainer) does not conflict with its loop."""

    async def main():
        envs = RpcAlchemyVectorEnv(2, LEVEL, address=address, observations=OBS)
        try:
            obs, _ = envs.reset(seed=0)
            await asyncio.sleep(0)
            obs, *_ = envs.step(np.array([1, 1]))
            return obs["symbolic_obs"].shape
        finally:
            envs.close()

    assert asyncio.run(main()) == (2, 39)


def test_garbage_collection_stops_the_servers():
    import gc

    envs = _local(1)
    process = envs._clients[0].launcher.process
    del envs
    gc.collect()
    assert wait_until(lambda: process.poll() is not None, timeout=10)


def test_two_containers(tmp_path):
    from tests.rpc_fixtures import docker_or_skip, our_containers

    client, image = docker_or_skip()
    before = {c.id for c in our_containers(client)}
    envs = gym.make_vec(
        "Alchemy/Standard-v0", num_envs=2, vectorization_mode="vector_entry_point", image=image, observations=OBS
    )
    try:
        ids = {c.launcher.container.id for c in envs.unwrapped._clients}
        assert len(ids) == 2
        obs, info = envs.reset(seed=8)
        for i in range(2):
            ref = SymbolicAlchemyEnv(LEVEL)
            np.testing.assert_array_equal(obs["symbolic_obs"][i], ref.reset(seed=int(info["world_seed"][i]))[0])
        envs.step(np.array([1, 2]))
    finally:
        envs.close()
    assert wait_until(lambda: not ({c.id for c in our_containers(client)} - before), timeout=10)
