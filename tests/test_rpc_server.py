"""Our dm_env_rpc server of symbolic Alchemy: dm_env_rpc's compliance mixins, bad input, many clients."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("dm_env_rpc")
pytest.importorskip("grpc")

import grpc  # noqa: E402
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb  # noqa: E402
from dm_env_rpc.v1 import error as dm_error  # noqa: E402
from dm_env_rpc.v1 import tensor_utils  # noqa: E402
from dm_env_rpc.v1.compliance import create_destroy_world, join_leave_world, reset, reset_world, step  # noqa: E402

from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv  # noqa: E402
from alchemy_gym.rpc.connection import RpcConnection  # noqa: E402
from alchemy_gym.server.service import make_server  # noqa: E402

LEVEL = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
REQUIRED = {"seed": tensor_utils.pack_tensor(7), "levelName": tensor_utils.pack_tensor(LEVEL)}


class _ServerMixin:
    """Starts one in-process server per test class and one connection per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._server, cls._port = make_server("127.0.0.1", 0, max_connections=4)

    @classmethod
    def tearDownClass(cls):
        cls._server.stop(grace=0.5).wait(5)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self._port}")
        self._connection = RpcConnection(self._channel)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self._connection.close()
            self._channel.close()

    @property
    def connection(self):
        return self._connection


class _WorldMixin(_ServerMixin):
    def setUp(self):
        super().setUp()
        self._world_name = self._connection.send(pb.CreateWorldRequest(settings=REQUIRED)).world_name

    def tearDown(self):
        try:
            self._connection.send(pb.LeaveWorldRequest())
            self._connection.send(pb.DestroyWorldRequest(world_name=self._world_name))
        finally:
            super().tearDown()

    @property
    def world_name(self):
        return self._world_name


class TestCreateDestroyWorldCompliance(_ServerMixin, create_destroy_world.CreateDestroyWorld):
    @property
    def required_world_settings(self):
        return dict(REQUIRED)

    @property
    def invalid_world_settings(self):
        return {"not_a_setting": tensor_utils.pack_tensor(1), "EventSubscriptionRegex": tensor_utils.pack_tensor("(")}

    @property
    def has_multiple_world_support(self):
        return True


class TestJoinLeaveWorldCompliance(_WorldMixin, join_leave_world.JoinLeaveWorld):
    @property
    def required_join_settings(self):
        return {"width": tensor_utils.pack_tensor(32), "height": tensor_utils.pack_tensor(24)}

    @property
    def invalid_join_settings(self):
        return {"depth": tensor_utils.pack_tensor(3)}


class TestResetCompliance(_WorldMixin, reset.Reset):
    def join_world(self):
        return self._connection.send(pb.JoinWorldRequest(world_name=self._world_name)).specs


class TestResetWorldCompliance(_WorldMixin, reset_world.ResetWorld):
    pass


class TestStepCompliance(_WorldMixin, step.Step):
    def setUp(self):
        super().setUp()
        self._specs = self._connection.send(
            pb.JoinWorldRequest(
                world_name=self._world_name,
                settings={"width": tensor_utils.pack_tensor(16), "height": tensor_utils.pack_tensor(12)},
            )
        ).specs

    @property
    def specs(self):
        return self._specs


# ------------------------------------------------------------------------------ our tests


@pytest.fixture(scope="module")
def server_port():
    server, port = make_server("127.0.0.1", 0, max_connections=8)
    yield port
    server.stop(grace=0.5).wait(5)


@pytest.fixture
def conn(server_port):
    channel = grpc.insecure_channel(f"127.0.0.1:{server_port}")
    connection = RpcConnection(channel)
    yield connection
    connection.close()
    channel.close()


def _join(conn, seed=3, level=LEVEL, **create):
    settings = {"seed": tensor_utils.pack_tensor(seed), "levelName": tensor_utils.pack_tensor(level)}
    settings.update({k: tensor_utils.pack_tensor(v) for k, v in create.items()})
    world = conn.send(pb.CreateWorldRequest(settings=settings)).world_name
    specs = conn.send(pb.JoinWorldRequest(world_name=world)).specs
    return world, specs


def _obs(response, specs):
    names = {uid: spec.name for uid, spec in specs.observations.items()}
    return {names[uid]: tensor_utils.unpack_tensor(t) for uid, t in response.observations.items()}


def test_server_plays_the_same_episode_as_the_in_process_env(conn):
    world, specs = _join(conn, seed=11)
    uids = [uid for uid, s in specs.observations.items() if s.name in ("symbolic_obs", "Score")]
    env = SymbolicAlchemyEnv(LEVEL)
    expected, _ = env.reset(seed=11)
    first = _obs(conn.send(pb.StepRequest(requested_observations=uids)), specs)
    np.testing.assert_array_equal(first["symbolic_obs"], expected)
    rng = np.random.default_rng(0)
    score = 0.0
    for _ in range(200):
        action = int(rng.integers(0, 40))
        expected, reward, terminated, _, _ = env.step(action)
        response = conn.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(action)}, requested_observations=uids))
        got = _obs(response, specs)
        np.testing.assert_array_equal(got["symbolic_obs"], expected)
        score += reward
        assert got["Score"] == pytest.approx(score)
        assert (response.state == pb.EnvironmentStateType.TERMINATED) == terminated
        if terminated:
            break
    assert terminated
    conn.send(pb.LeaveWorldRequest())
    conn.send(pb.DestroyWorldRequest(world_name=world))


def test_dm_env_adaptor_gets_the_symbolic_envs_rewards_and_discounts(server_port):
    """dm_env_rpc's own DmEnvAdaptor over our server: rewards from the ``reward`` observation, discounts
    from ``discount``, step types from the states, all as the in-process env gives them."""
    import dm_env
    from dm_env_rpc.v1 import connection as dm_connection
    from dm_env_rpc.v1 import dm_env_adaptor

    channel = grpc.insecure_channel(f"127.0.0.1:{server_port}")
    connection = dm_connection.Connection(channel)
    env, world = dm_env_adaptor.create_and_join_world(
        connection, {"seed": 21, "levelName": LEVEL}, {"width": 16, "height": 12}
    )
    try:
        assert env.reward_spec() == dm_env.specs.Array((), np.float64, "reward")
        assert env.discount_spec() == dm_env.specs.BoundedArray((), np.float64, 0.0, 1.0, "discount")
        assert "reward" not in env.observation_spec() and "discount" not in env.observation_spec()
        ref = SymbolicAlchemyEnv(LEVEL)
        rng = np.random.default_rng(4)
        returns, nonzero = [], 0
        for episode in range(3):
            # the first episode starts with a step, the second with reset(), the third with a step after LAST
            timestep = env.reset() if episode == 1 else env.step({"action": 0})
            expected, _ = ref.reset(seed=21) if episode == 0 else ref.reset()
            assert timestep.step_type == dm_env.StepType.FIRST and timestep.reward is None
            assert timestep.discount == 1.0
            np.testing.assert_array_equal(timestep.observation["symbolic_obs"], expected)
            total, steps, terminated = 0.0, 0, False
            while not terminated:
                steps += 1
                action = int(rng.integers(0, 40))
                timestep = env.step({"action": action})
                expected, reward, terminated, truncated, _ = ref.step(action)
                np.testing.assert_array_equal(timestep.observation["symbolic_obs"], expected)
                assert timestep.reward == reward and isinstance(timestep.reward, np.float64)
                total += reward
                nonzero += reward != 0
                assert timestep.observation["Score"] == pytest.approx(total)
                assert not truncated
                if terminated:
                    assert timestep.step_type == dm_env.StepType.LAST and timestep.discount == 0.0
                else:
                    assert timestep.step_type == dm_env.StepType.MID and timestep.discount == 1.0
            assert steps > 10
            returns.append(total)
        assert nonzero > 10 and len(set(returns)) > 1  # real rewards, different episodes
    finally:
        env.close()
        connection.send(pb.DestroyWorldRequest(world_name=world))
        connection.close()
        channel.close()


def test_evaluation_episode_level_name_plays_that_episode(conn):
    world, specs = _join(conn, seed=0, level="alchemy/evaluation_episodes/5")
    env = SymbolicAlchemyEnv("alchemy/evaluation_episodes")
    expected, _ = env.reset(options={"episode": 5})
    uid = next(u for u, s in specs.observations.items() if s.name == "symbolic_obs")
    got = _obs(conn.send(pb.StepRequest(requested_observations=[uid])), specs)
    np.testing.assert_array_equal(got["symbolic_obs"], expected)
    conn.send(pb.ResetRequest())
    got = _obs(conn.send(pb.StepRequest(requested_observations=[uid])), specs)
    np.testing.assert_array_equal(got["symbolic_obs"], expected)  # the same episode again


def test_events_are_world_events_with_decodable_details(conn):
    from alchemy_gym.rpc.events import decode_event

    _world, specs = _join(conn, seed=5, EventSubscriptionRegex="DeepMind/.*")
    uid = next(u for u, s in specs.observations.items() if s.name == "events")
    first = conn.send(pb.StepRequest(requested_observations=[uid]))
    events = [decode_event(a) for a in tensor_utils.unpack_tensor(first.observations[uid])]
    names = [e.name for e in events]
    assert names[0] == "DeepMind/Alchemy/ChemistryCreated"
    assert names[-1] == "DeepMind/Trial/TrialStarted" and events[-1].detail == {"trial_id": 0}
    assert names.count("DeepMind/Alchemy/StoneCreated") == 3
    assert names.count("DeepMind/Alchemy/PotionCreated") == 12
    # stone 0 into the cauldron (action 1) → StoneUsed with the reward
    response = conn.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(1)}, requested_observations=[uid]))
    (used,) = [decode_event(a) for a in tensor_utils.unpack_tensor(response.observations[uid])]
    assert used.name == "DeepMind/Alchemy/StoneUsed"
    assert used.detail["reward"] in (-3.0, -1.0, 1.0, 15.0)


@pytest.mark.parametrize(
    "request_msg, fragment",
    [
        (pb.StepRequest(), "not joined"),
        (pb.ResetRequest(), "not joined"),
        (pb.JoinWorldRequest(world_name="nope"), "no world named"),
        (pb.DestroyWorldRequest(world_name="nope"), "no world named"),
        (pb.CreateWorldRequest(settings={"seed": tensor_utils.pack_tensor(1)}), "levelName"),
        (pb.CreateWorldRequest(settings={**REQUIRED, "seed": tensor_utils.pack_tensor(-1)}), "out of range"),
        (pb.CreateWorldRequest(settings={**REQUIRED, "levelName": tensor_utils.pack_tensor("x/y")}), "unknown"),
        (pb.CreateWorldRequest(settings={**REQUIRED, "seed": tensor_utils.pack_tensor("7")}), "integer"),
    ],
)
def test_out_of_order_and_malformed_requests_get_an_error_status(conn, request_msg, fragment):
    with pytest.raises(dm_error.DmEnvRpcError, match=fragment):
        conn.send(request_msg)
    # the stream is still usable
    world, _ = _join(conn)
    conn.send(pb.LeaveWorldRequest())
    conn.send(pb.DestroyWorldRequest(world_name=world))


def test_bad_actions_are_rejected_with_the_allowed_range(conn):
    _join(conn)
    conn.send(pb.StepRequest())
    with pytest.raises(dm_error.DmEnvRpcError, match=r"out of range: allowed 0\.\.39"):
        conn.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(40)}))
    with pytest.raises(dm_error.DmEnvRpcError, match="unknown action uid 9"):
        conn.send(pb.StepRequest(actions={9: tensor_utils.pack_tensor(0)}))
    with pytest.raises(dm_error.DmEnvRpcError, match="integer"):
        conn.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(1.5)}))
    conn.send(pb.StepRequest(actions={1: tensor_utils.pack_tensor(0)}))


def test_garbage_bytes_get_invalid_argument_and_the_stream_stays_open(server_port, conn):
    from google.rpc import code_pb2

    channel = grpc.insecure_channel(f"127.0.0.1:{server_port}")
    raw = channel.stream_stream(
        "/dm_env_rpc.v1.Environment/Process",
        request_serializer=lambda b: b,
        response_deserializer=pb.EnvironmentResponse.FromString,
    )
    step = pb.EnvironmentRequest(step=pb.StepRequest()).SerializeToString()
    bad, good = list(raw(iter([b"\xff\xff\xff\xff garbage", step]), timeout=5))
    channel.close()
    assert bad.error.code == code_pb2.INVALID_ARGUMENT
    assert "malformed message: 12 bytes" in bad.error.message
    assert "not joined" in good.error.message  # the same stream answered the next (valid) request
    world, _ = _join(conn)  # another client is still served
    assert conn.send(pb.StepRequest()).state == pb.EnvironmentStateType.RUNNING


def test_a_world_cannot_be_joined_twice_and_dies_with_its_connection(server_port):
    def open_conn():
        channel = grpc.insecure_channel(f"127.0.0.1:{server_port}")
        return channel, RpcConnection(channel)

    ch1, c1 = open_conn()
    ch2, c2 = open_conn()
    world, _ = _join(c1, shareable=True)  # others may join it (without the setting: PERMISSION_DENIED)
    with pytest.raises(dm_error.DmEnvRpcError, match="already joined"):
        c2.send(pb.JoinWorldRequest(world_name=world))
    c1.close()
    ch1.close()
    # once the creator is gone the world is gone
    deadline = threading.Event()
    for _ in range(50):
        try:
            c2.send(pb.JoinWorldRequest(world_name=world))
        except dm_error.DmEnvRpcError as exc:
            if "no world named" in exc.message:
                break
        deadline.wait(0.05)
    else:
        pytest.fail("the world outlived the connection that created it")
    c2.close()
    ch2.close()


def test_several_clients_step_concurrently(server_port):
    results = {}

    def run(seed):
        channel = grpc.insecure_channel(f"127.0.0.1:{server_port}")
        c = RpcConnection(channel)
        try:
            _world, specs = _join(c, seed=seed)
            uid = next(u for u, s in specs.observations.items() if s.name == "symbolic_obs")
            obs = [_obs(c.send(pb.StepRequest(requested_observations=[uid])), specs)["symbolic_obs"]]
            for a in range(1, 30):
                request = pb.StepRequest(actions={1: tensor_utils.pack_tensor(a)}, requested_observations=[uid])
                response = c.send(request)
                obs.append(_obs(response, specs)["symbolic_obs"])
            results[seed] = np.stack(obs)
        finally:
            c.close()
            channel.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 1, 2, 3]
    for seed, got in results.items():
        env = SymbolicAlchemyEnv(LEVEL)
        expected = [env.reset(seed=seed)[0]] + [env.step(a)[0] for a in range(1, 30)]
        np.testing.assert_array_equal(got, np.stack(expected))


def test_serve_main_rejects_a_taken_port():
    import socket

    from alchemy_gym.server.service import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["--port", str(port)]) == 1


def test_state_constants_are_dm_env_rpcs():
    from alchemy_gym.server import protocol

    assert (protocol.RUNNING, protocol.TERMINATED) == (
        pb.EnvironmentStateType.RUNNING,
        pb.EnvironmentStateType.TERMINATED,
    )
