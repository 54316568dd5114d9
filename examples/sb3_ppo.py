"""Train Stable-Baselines3 PPO on symbolic Alchemy.

    python3 -m pip install torch==2.13.0 "stable-baselines3>=2.3"   # CPU torch first
    python3 examples/sb3_ppo.py --timesteps 100000

The env needs nothing special: SB3 vectorises it with its own DummyVecEnv.
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import alchemy_gym  # noqa: F401  (registers the IDs)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    venv = make_vec_env(args.env_id, n_envs=args.n_envs, seed=args.seed)
    model = PPO("MlpPolicy", venv, n_steps=200, batch_size=200, seed=args.seed, verbose=0)
    model.learn(total_timesteps=args.timesteps)
    mean, std = evaluate_policy(model, Monitor(gym.make(args.env_id)), n_eval_episodes=5)
    print(f"{args.env_id}: mean episode reward {mean:.1f} ± {std:.1f} after {args.timesteps} steps")
    return float(mean)


if __name__ == "__main__":
    main()
