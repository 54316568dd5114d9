"""Spaces from specs, Dict actions and the action wrappers, against a server with the Unity specs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import tensor_spec_utils  # noqa: E402

import alchemy_gym  # noqa: E402,F401
from alchemy_gym.envs.rpc import RpcAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.spaces import (  # noqa: E402
    UnsupportedSpecError,
    check_action_value,
    specs_to_spaces,
    tensor_spec_to_space,
)
from alchemy_gym.wrappers.rpc_actions import DiscreteRpcActions, FlatRpcActions  # noqa: E402
from tests.rpc_fake_unity import UNITY_ACTIONS, start_fake_unity, unity_specs  # noqa: E402


@pytest.fixture
def fake():
    server, servicer, address = start_fake_unity(episode_length=10)
    yield servicer, address
    server.stop(grace=0.5).wait(5)


def _spec(name, dtype, shape=(), low=None, high=None):
    spec = pb.TensorSpec(name=name, dtype=dtype, shape=list(shape))
    if low is not None or high is not None:
        tensor_spec_utils.set_bounds(spec, low, high)
    return spec


def test_tensor_specs_become_the_documented_spaces():
    D = pb.DataType
    assert tensor_spec_to_space(_spec("a", D.INT64, (), 0, 39)) == gym.spaces.Discrete(40)
    assert tensor_spec_to_space(_spec("a", D.INT32, (), 3, 5)) == gym.spaces.Discrete(3, start=3)
    box = tensor_spec_to_space(_spec("m", D.DOUBLE, (), -1.0, 1.0))
    assert box == gym.spaces.Box(-1.0, 1.0, (), np.float64)
    rgb = tensor_spec_to_space(_spec("rgb", D.UINT8, (72, 96, 3)))
    assert rgb == gym.spaces.Box(0, 255, (72, 96, 3), np.uint8)
    free = tensor_spec_to_space(_spec("acc", D.FLOAT, (3,)))
    assert free.dtype == np.float32 and np.all(np.isinf(free.low)) and np.all(np.isinf(free.high))
    half = _spec("half", D.FLOAT, (2,))
    half.min.floats.array.append(0.0)
    half_space = tensor_spec_to_space(half)
    assert np.all(half_space.low == 0) and np.all(np.isposinf(half_space.high))
    assert tensor_spec_to_space(_spec("b", D.BOOL)) == gym.spaces.Box(0, 1, (), np.bool_)
    ints = tensor_spec_to_space(_spec("i", D.INT32, (3,), np.array([0, 0, 0], np.int32), np.array([1, 2, 3], np.int32)))
    assert ints.dtype == np.int32 and ints.high.tolist() == [1, 2, 3]
    for bad in (_spec("s", D.STRING), _spec("p", D.PROTO, (-1,)), _spec("v", D.FLOAT, (-1, 3))):
        with pytest.raises(UnsupportedSpecError, match=repr(bad.name)):
            tensor_spec_to_space(bad)


def test_unity_specs_give_dict_spaces_and_leave_out_strings_with_a_warning():
    specs = unity_specs()
    with pytest.warns(UserWarning, match="'LANGUAGE' left out"):
        actions = specs_to_spaces(specs.actions, kind="action")
    assert sorted(actions.space.spaces) == sorted(UNITY_ACTIONS)
    assert actions.space["HAND_PUSH_PULL"] == gym.spaces.Box(-10.0, 10.0, (), np.float64)
    assert actions.skipped == {"LANGUAGE": "spec 'LANGUAGE' has dtype STRING, which has no Gymnasium space"}
    with pytest.raises(UnsupportedSpecError, match="LANGUAGE"):
        specs_to_spaces(specs.actions, kind="action", unsupported="error")
    obs = specs_to_spaces(specs.observations, exclude=("events",))
    assert set(obs.space.spaces) == {
        "RGB_INTERLEAVED",
        "ACCELERATION",
        "HAND_FORCE",
        "HAND_IS_HOLDING",
        "HAND_DISTANCE",
        "Score",
    }
    single = specs_to_spaces(specs.observations, include=["Score"])
    assert single.single == "Score" and single.space == gym.spaces.Box(-np.inf, np.inf, (), np.float64)
    with pytest.raises(ValueError, match="not offered by the server"):
        specs_to_spaces(specs.observations, include=["DEPTH"])


def test_action_values_are_checked_with_the_key_and_bounds():
    box = gym.spaces.Box(-10.0, 10.0, (), np.float64)
    assert check_action_value("HAND_PUSH_PULL", box, 3).dtype == np.float64
    with pytest.raises(ValueError, match=r"'HAND_PUSH_PULL'=11\.0 out of range: allowed a float64 in \[-10, 10\]"):
        check_action_value("HAND_PUSH_PULL", box, 11.0)
    with pytest.raises(ValueError, match="finite"):
        check_action_value("HAND_PUSH_PULL", box, float("inf"))
    with pytest.raises(ValueError, match="shape"):
        check_action_value("HAND_PUSH_PULL", box, [1.0, 2.0])
    with pytest.raises(ValueError, match="must be"):
        check_action_value("HAND_PUSH_PULL", box, "fast")


def test_dict_actions_are_validated_and_sent_sticky(fake):
    servicer, address = fake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LANGUAGE left out
        env = gym.make("Alchemy/AllFixed-v0", address=address, width=32, height=24)
    try:
        assert isinstance(env.action_space, gym.spaces.Dict)
        assert env.observation_space["RGB_INTERLEAVED"].shape == (24, 32, 3)
        obs, info = env.reset(seed=1)
        settings = servicer.world_settings[-1]
        assert settings["levelName"] == "alchemy/all_fixed"
        assert settings["EventSubscriptionRegex"] == "DeepMind/.*" and settings["episodeId"] == 0
        assert [e.name for e in env.unwrapped.last_events] == ["DeepMind/Trial/TrialStarted"]
        assert info["trial"] == 0 and not info["trial_ended"] and info["world_seed"] >= 0
        obs, reward, *_ = env.step({"HAND_GRIP": np.float64(1.0)})
        assert servicer.received[-1] == {"HAND_GRIP": 1.0}
        assert reward == 1.0 and bool(obs["HAND_IS_HOLDING"])
        obs, reward, *_ = env.step({"MOVE_BACK_FORWARD": 0.5})  # the grip is sticky on the server
        assert servicer.received[-1] == {"MOVE_BACK_FORWARD": 0.5} and reward == 1.0
        with pytest.raises(ValueError, match=r"'HAND_GRIP'=2\.0 out of range: allowed a float64 in \[0, 1\]"):
            env.step({"HAND_GRIP": 2.0})
        with pytest.raises(ValueError, match=r"unknown action keys \['LANGUAGE'\]"):
            env.step({"LANGUAGE": "pick up the stone"})
        with pytest.raises(ValueError, match="must be a dict"):
            env.step(3)
    finally:
        env.close()


def test_flat_box_wrapper_sends_every_key(fake):
    servicer, address = fake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = FlatRpcActions(RpcAlchemyEnv("alchemy/all_fixed", address=address, observations=["Score"]))
    try:
        assert env.action_space.shape == (len(UNITY_ACTIONS),) and env.action_space.dtype == np.float32
        assert env.action_space.high.max() == 10.0
        env.reset(seed=0)
        env.action_space.seed(0)
        action = env.action_space.sample()
        env.step(action)
        sent = servicer.received[-1]
        assert set(sent) == set(UNITY_ACTIONS)
        for i, key in enumerate(env.keys):
            assert sent[key] == pytest.approx(float(action[i]))
        with pytest.raises(ValueError, match="out of range"):
            env.step(np.full(env.action_space.shape, 20.0, dtype=np.float32))
    finally:
        env.close()


def test_discrete_wrapper_keeps_the_grip_and_zeroes_movement(fake):
    servicer, address = fake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = DiscreteRpcActions(RpcAlchemyEnv("alchemy/all_fixed", address=address, observations=["Score"]))
    try:
        names = env.names
        assert names[0] == "NOOP" and "GRIP" in names and "MOVE_FORWARD" in names
        env.reset(seed=0)
        env.step(names.index("GRIP"))
        assert servicer.received[-1]["HAND_GRIP"] == 1.0
        _, reward, *_ = env.step(names.index("MOVE_FORWARD"))
        sent = servicer.received[-1]
        assert "HAND_GRIP" not in sent and sent["MOVE_BACK_FORWARD"] == 1.0 and sent["LOOK_LEFT_RIGHT"] == 0.0
        assert reward == 1.0  # still gripping
        with pytest.raises(ValueError, match="out of range"):
            env.step(len(names))
    finally:
        env.close()
    with pytest.raises(TypeError, match="Dict action space"):
        DiscreteRpcActions(gym.make("Alchemy/SymbolicAllFixed-v0"))
    with pytest.raises(ValueError, match="out of range"):
        DiscreteRpcActions(_DictEnv(), actions=[("FAST", {"MOVE_BACK_FORWARD": 3.0})])


class _DictEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Dict({"MOVE_BACK_FORWARD": gym.spaces.Box(-1.0, 1.0, (), np.float64)})


def test_episode_end_and_num_action_repeats_with_unity_specs(fake):
    servicer, address = fake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = RpcAlchemyEnv("alchemy/all_fixed", address=address, observations=["Score"], num_action_repeats=4)
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step({"HAND_GRIP": 1.0})
        assert reward == 4.0 and not terminated
        assert servicer.received[-4:] == [{"HAND_GRIP": 1.0}] * 4
        env.step({"HAND_GRIP": 1.0})
        _, reward, terminated, _, _ = env.step({"HAND_GRIP": 0.5})
        assert terminated and reward == 1.0  # 10 steps: the loop stopped after 2 of the 4 repeats
    finally:
        env.close()
