"""TorchRL (the real library, unmodified) on every symbolic ID: GymEnv, its vector form, specs, info, autoresets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

torchrl = pytest.importorskip("torchrl")
pytest.importorskip("tensordict")

import torch  # noqa: E402
from torchrl.envs import GymEnv, GymWrapper, check_env_specs  # noqa: E402

import alchemy_gym  # noqa: E402,F401  (registers the IDs)
from alchemy_gym.envs.info import INFO_KEYS, RPC_INFO_KEYS  # noqa: E402
from alchemy_gym.levels import LEVELS  # noqa: E402

SYMBOLIC_IDS = [level.symbolic_id for level in LEVELS if level.symbolic_id]
KEYS = [key.name for key in INFO_KEYS]
TORCH_DTYPES = {np.int32: torch.int32, np.int64: torch.int64, np.float32: torch.float32, np.bool_: torch.bool}
STEPS = 450  # more than two episodes of 200 steps: two autoresets
ROOT = Path(__file__).resolve().parents[1]


def _check_info(td, keys=INFO_KEYS):
    for key in keys:
        for where in (key.name, ("next", key.name)):
            assert td[where].dtype == TORCH_DTYPES[key.dtype], where


def _check_episodes(td, terminal_info=True):
    """The info read into the rollout agrees with its rewards and episode ends (rows: steps of one env).

    ``terminal_info=False``: at an episode's last step ``("next", key)`` holds no data (TorchRL's placeholder for
    Gymnasium's next-step autoreset, where it marks the terminal observation as missing); every other step is
    checked."""
    reward = td["next", "reward"].squeeze(-1).double().numpy()
    done = td["next", "done"].squeeze(-1).numpy()
    ret = td["next", "episode_return"].double().numpy()
    trial = td["next", "trial"].numpy()
    ended = td["next", "trial_ended"].numpy()
    running = 0.0
    for t in range(len(reward)):
        running += reward[t]
        if done[t] and not terminal_info:
            running = 0.0
            continue
        assert ret[t] == running, t
        assert td["next", "discount"][t] == (0.0 if done[t] else 1.0)
        assert ended[t] == (t % 20 == 19) and trial[t] == (t % 200) // 20, t
        if done[t]:
            if t + 1 < len(reward):  # the reset's info, at the root of the next step
                assert td["trial"][t + 1] == 0 and td["episode_return"][t + 1] == 0 and not td["trial_ended"][t + 1]
            running = 0.0
    assert done.nonzero()[0].tolist() == list(range(199, len(reward), 200))
    assert td["next", "valid_action"][~done].all()


def test_unknown_kwargs_get_pythons_wording_so_gymenv_drops_frameskip():
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'frameskip'.*the settings are level_name"):
        gym.make("Alchemy/SymbolicStandard-v0", frameskip=1)
    env = GymEnv("Alchemy/SymbolicStandard-v0")  # TorchRL adds frameskip=1, and drops it on seeing that error
    assert env.batch_size == torch.Size([])
    env.close()


@pytest.mark.parametrize("env_id", SYMBOLIC_IDS)
def test_gymenv_specs_info_and_rollouts_through_autoresets(env_id):
    env = GymEnv(env_id)
    check_env_specs(env)
    env = env.auto_register_info_dict()
    check_env_specs(env)
    env.set_seed(5)
    td = env.rollout(STEPS, break_when_any_done=False)
    assert td.batch_size == torch.Size([STEPS])
    _check_info(td)
    _check_episodes(td)
    # the same episodes as the Gymnasium env: set_seed(5) is reset(seed=5), the rollout's reset the next one
    ref = gym.make(env_id)
    ref.reset(seed=5)
    obs, info = ref.reset()
    np.testing.assert_array_equal(td["observation"][0].numpy(), obs)
    for t, action in enumerate(td["action"].argmax(-1).tolist()):
        obs, reward, terminated, _, info = ref.step(action)
        np.testing.assert_array_equal(td["next", "observation"][t].numpy(), obs)
        assert td["next", "reward"][t].item() == reward and td["next", "terminated"][t].item() == terminated
        for key in KEYS:
            assert td["next", key][t].item() == info[key].item(), (t, key)
        if terminated:
            obs, info = ref.reset()
            if t + 1 < STEPS:
                np.testing.assert_array_equal(td["observation"][t + 1].numpy(), obs)
                assert all(td[key][t + 1].item() == info[key].item() for key in KEYS)
    env.close()


def _vector_rollout(env, n, terminal_info):
    check_env_specs(env)
    td = env.rollout(STEPS, break_when_any_done=False)
    assert td.batch_size == torch.Size([n, STEPS])
    _check_info(td)
    for i in range(n):
        _check_episodes(td[i], terminal_info)
    env.close()


@pytest.mark.parametrize("env_id", SYMBOLIC_IDS)
def test_gymenv_num_envs_specs_and_rollouts_through_autoresets(env_id):
    # TorchRL steps the sub-envs in processes it starts with "spawn": they make the env from its ID alone, so
    # the ID names the module that registers it (a script that imports alchemy_gym needs no prefix: see below)
    _vector_rollout(GymEnv(f"alchemy_gym:{env_id}", num_envs=2), 2, terminal_info=False)


@pytest.mark.slow
def test_gymenv_num_envs_with_the_plain_id_in_a_users_script(tmp_path):
    """A user's script that imports alchemy_gym: the spawned processes import it again, so the plain ID works."""
    script = tmp_path / "train.py"
    script.write_text(
        "import alchemy_gym\n"
        "from torchrl.envs import GymEnv, check_env_specs\n"
        "if __name__ == '__main__':\n"
        "    env = GymEnv('Alchemy/SymbolicStandard-v0', num_envs=2)\n"
        "    check_env_specs(env)\n"
        "    td = env.rollout(450, break_when_any_done=False)\n"
        "    print(int(td['next', 'done'].sum()), int(td['next', 'trial_ended'].sum()), td['next', 'trial'].dtype)\n"
        "    env.close()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # 2 sub-envs x 2 episode ends; 2 x 22 trial ends, less the 4 at episode ends (TorchRL's placeholders there)
    assert out.stdout.split()[-3:] == ["4", "40", "torch.int32"]


def test_gymwrapper_over_the_native_vector_env_in_same_step_mode():
    """TorchRL takes vector envs in same-step autoreset mode (it refuses next-step); the last step's info is exact."""
    envs = gym.make_vec(
        "Alchemy/SymbolicEvaluation-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    _vector_rollout(GymWrapper(envs), 3, terminal_info=True)


def test_the_3d_envs_info_reads_into_torchrl():
    pytest.importorskip("dm_env_rpc")
    from alchemy_gym.server.service import make_server

    server, port = make_server("127.0.0.1", 0, max_connections=2)
    try:
        env = GymWrapper(gym.make("Alchemy/Standard-v0", address=f"127.0.0.1:{port}", observations=["symbolic_obs"]))
        env = env.auto_register_info_dict()
        check_env_specs(env)
        td = env.rollout(STEPS, break_when_any_done=False)
        _check_info(td, INFO_KEYS + RPC_INFO_KEYS)
        _check_episodes(td)
        assert (td["next", "world_seed"] >= 0).all()
        env.close()
    finally:
        server.stop(grace=0.5).wait(5)
