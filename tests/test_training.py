"""Training libraries run on the symbolic env out of the box (skipped where the library is not installed)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gymnasium_vector_env_runs_the_symbolic_env():
    envs = gym.make_vec("Alchemy/SymbolicStandard-v0", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=[1, 2, 3])
    assert obs.shape == (3, 39)
    single = gym.make("Alchemy/SymbolicStandard-v0")
    np.testing.assert_array_equal(obs[1], single.reset(seed=2)[0])
    envs.action_space.seed(0)
    for _ in range(250):  # crosses an episode end: the vector env auto-resets
        obs, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
    envs.close()


def test_stable_baselines3_checker_and_ppo():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra (sb3)")
    from stable_baselines3.common.env_checker import check_env

    check_env(gym.make("Alchemy/SymbolicStandard-v0"))
    mean = _load("sb3_ppo").main(["--timesteps", "800", "--n-envs", "2"])
    assert -90 <= mean <= 450  # episode rewards lie in [-3 x 3 x 10, 45 x 10]


def test_cleanrl_style_ppo_script():
    pytest.importorskip("torch", reason="torch is only needed by the training examples")
    args = ["--total-timesteps", "800", "--num-envs", "2", "--num-steps", "200", "--update-epochs", "1"]
    returns = _load("cleanrl_ppo").main(args)
    # 2 envs x 400 steps: each env finishes one 200-step episode (the vector env's next step is the reset)
    assert len(returns) == 2
    assert all(-90 <= r <= 450 for r in returns)


def test_sb3_vec_env_over_the_native_vector_env_equals_dummy_vec_env_over_monitors():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra (sb3)")
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from alchemy_gym.wrappers import AlchemySB3VecEnv

    env_id, n = "Alchemy/SymbolicStandard-v0", 3
    native = AlchemySB3VecEnv(env_id, num_envs=n, seed=5, end_trial_action=True)
    dummy = DummyVecEnv([lambda: Monitor(gym.make(env_id, end_trial_action=True)) for _ in range(n)])
    dummy.seed(5)
    np.testing.assert_array_equal(native.reset(), dummy.reset())
    _same_infos(native.reset_infos, dummy.reset_infos)
    assert native.env_is_wrapped(Monitor) == dummy.env_is_wrapped(Monitor) == [True] * n
    actions = np.random.default_rng(0)
    episodes = 0
    for _ in range(420):
        a = actions.integers(0, 41, size=n)
        (obs, rewards, done, infos), (obs2, rewards2, done2, infos2) = native.step(a), dummy.step(a)
        np.testing.assert_array_equal(obs, obs2)
        np.testing.assert_array_equal(rewards, rewards2)
        assert rewards.dtype == rewards2.dtype and done.tolist() == done2.tolist()
        _same_infos(infos, infos2)
        episodes += sum("episode" in info for info in infos)
    assert episodes >= n


def _same_infos(infos, want_infos):
    for got, want in zip(infos, want_infos):
        assert set(got) == set(want)
        for key, value in want.items():
            if key == "episode":  # Monitor's statistics: the same return and length ("t" is wall time)
                assert got[key]["r"] == value["r"] and got[key]["l"] == value["l"] and set(got[key]) == set(value)
            else:
                assert type(got[key]) is type(value), key
                np.testing.assert_array_equal(got[key], value, err_msg=key)
                assert getattr(got[key], "dtype", None) == getattr(value, "dtype", None), key


def _ppo_logging_episodes(venv, n_steps):
    """PPO on ``venv``; returns the model and every ``rollout/ep_rew_mean`` its logger wrote."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import KVWriter, Logger

    class Record(KVWriter):
        def __init__(self):
            self.values = []

        def write(self, key_values, key_excluded, step=0):
            if "rollout/ep_rew_mean" in key_values:
                self.values.append(key_values["rollout/ep_rew_mean"])

    record = Record()
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=128, n_epochs=1, seed=0, verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[record]))
    model.learn(total_timesteps=venv.num_envs * n_steps * 2)
    return model, record.values


def test_sb3_ppo_trains_on_the_native_vector_env_and_logs_episode_rewards():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra (sb3)")
    from stable_baselines3.common.evaluation import evaluate_policy

    from alchemy_gym.wrappers import AlchemySB3VecEnv

    venv = AlchemySB3VecEnv("Alchemy/SymbolicStandard-v0", num_envs=4, seed=0)
    model, logged = _ppo_logging_episodes(venv, n_steps=256)  # 512 steps a sub-env: two 200-step episodes each
    assert model.num_timesteps == 4 * 256 * 2
    episodes = list(model.ep_info_buffer)
    assert len(episodes) == 8 and all(e["l"] == 200 for e in episodes)
    assert all(-90 <= e["r"] <= 450 for e in episodes)
    assert logged and logged[-1] == pytest.approx(np.mean([e["r"] for e in episodes]))
    # SB3's evaluation reads the same Monitor statistics (no "not wrapped with a Monitor" warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rewards, lengths = evaluate_policy(model, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert lengths == [200] * 4 and all(-90 <= r <= 450 for r in rewards)
    with pytest.raises(ValueError, match="not a symbolic Alchemy ID"):
        AlchemySB3VecEnv("Alchemy/Standard-v0", num_envs=2)
    with pytest.raises(TypeError, match="env_id must be a symbolic ID"):
        AlchemySB3VecEnv(gym.make("Alchemy/SymbolicStandard-v0"))


def test_sb3_vec_monitor_on_top_counts_each_episode_once():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra (sb3)")
    from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor

    from alchemy_gym.wrappers import AlchemySB3VecEnv

    class Tap(VecEnvWrapper):
        """Keeps the episode statistics our VecEnv gives, before VecMonitor replaces them."""

        def __init__(self, venv):
            super().__init__(venv)
            self.seen = []

        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            self.seen += [dict(info["episode"]) for info in infos if "episode" in info]
            return obs, rewards, dones, infos

    tap = Tap(AlchemySB3VecEnv("Alchemy/SymbolicStandard-v0", num_envs=4, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VecMonitor says it replaces the Monitor statistics: it does
        monitor = VecMonitor(tap)
    model, logged = _ppo_logging_episodes(monitor, n_steps=256)
    episodes = list(model.ep_info_buffer)
    assert len(episodes) == len(tap.seen) == monitor.episode_count == 8
    assert [(e["r"], e["l"]) for e in episodes] == [(e["r"], e["l"]) for e in tap.seen]
    assert logged[-1] == pytest.approx(np.mean([e["r"] for e in episodes]))


def test_rl2_recurrent_ppo_smoke_run_checkpoints_resumes_and_evaluates(tmp_path):
    pytest.importorskip("torch", reason="torch is only needed by the training examples")
    rl2 = _load("rl2_ppo")
    args = ["--num-envs", "16", "--num-steps", "25", "--hidden", "16", "--run-dir", str(tmp_path), "--threads", "1"]
    first = rl2.main([*args, "--total-timesteps", str(16 * 25 * 10)])
    assert first["steps"] == 16 * 25 * 10 and (tmp_path / "checkpoint.pt").exists()
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert rows[0] == "steps,hours,mean_episode_reward,episodes" and len(rows) == 2
    again = rl2.main([*args, "--total-timesteps", str(16 * 25 * 20)])  # resumes from the checkpoint
    assert again["updates"] == 20
    evaluated = rl2.main([*args, "--eval-only"])
    assert -90 <= evaluated["eval_mean"] <= 450


def test_rl2_anneals_the_learning_rate_and_evaluates_greedily(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is only needed by the training examples")
    rl2 = _load("rl2_ppo")
    args = ["--num-envs", "16", "--num-steps", "25", "--hidden", "16", "--run-dir", str(tmp_path), "--threads", "1"]
    rl2.main([*args, "--total-timesteps", str(16 * 25 * 4), "--anneal-lr", "--lr", "1e-3"])
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    # the 4th and last update ran at lr * (1 - 3/4)
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4)

    def no_sampling(self, *a, **k):
        raise AssertionError("greedy evaluation sampled an action")

    monkeypatch.setattr(torch.distributions.Categorical, "sample", no_sampling)
    greedy = rl2.main([*args, "--eval-only", "--greedy"])
    assert -90 <= greedy["eval_mean"] <= 450
    with pytest.raises(AssertionError, match="sampled"):
        rl2.main([*args, "--eval-only"])


@pytest.mark.slow
def test_rllib_ppo_trains_on_the_native_vector_env():
    pytest.importorskip("ray.rllib", reason="RLlib is the optional 'ray' extra")
    pytest.importorskip("torch", reason="RLlib's PPO needs torch")
    returns = _load("rllib_ppo").main(["--iterations", "2", "--num-envs", "8", "--train-batch", "1600"])
    assert len(returns) == 2
    assert -90 <= returns[-1] <= 450  # 8 sub-envs x 200 steps: episodes have ended by the second iteration


@pytest.mark.slow
def test_rllib_ppo_trains_on_a_served_3d_env_and_leaves_no_server():
    pytest.importorskip("ray.rllib", reason="RLlib is the optional 'ray' extra")
    pytest.importorskip("torch", reason="RLlib's PPO needs torch")
    pytest.importorskip("dm_env_rpc")
    import subprocess

    args = ["--env-id", "Alchemy/Standard-v0", "--iterations", "2", "--num-envs", "2", "--train-batch", "800"]
    returns = _load("rllib_ppo").main(args)
    assert len(returns) == 2 and -90 <= returns[-1] <= 450
    servers = subprocess.run(["pgrep", "-f", "alchemy_gym.server"], capture_output=True, text=True).stdout.split()
    assert not servers
