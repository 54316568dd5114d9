"""Train Ray RLlib's PPO on symbolic Alchemy.

    python3 -m pip install torch==2.13.0 "ray[rllib]"
    python3 examples/rllib_ppo.py --iterations 5

RLlib builds envs by registered name; importing alchemy_gym inside the env creator registers the IDs
in every worker process.
"""

from __future__ import annotations

import argparse


def env_creator(config):
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    return gym.make(config.get("env_id", "Alchemy/SymbolicStandard-v0"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args(argv)

    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    register_env("alchemy", env_creator)
    config = PPOConfig().environment("alchemy", env_config={"env_id": args.env_id}).env_runners(num_env_runners=1)
    algo = config.build()
    for i in range(args.iterations):
        result = algo.train()
        print(i, result.get("env_runners", {}).get("episode_return_mean"))
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
