"""Train Ray RLlib's PPO (new API stack) on Alchemy: the symbolic env, or the 3D env served by our server.

    python3 -m pip install torch==2.13.0 "alchemy-gym[ray]"   # CPU torch first
    python3 examples/rllib_ppo.py --iterations 5                          # symbolic, native vector env
    python3 examples/rllib_ppo.py --env-id Alchemy/Standard-v0 --iterations 2   # 3D, a served world per env

The env is registered with ``tune.register_env``: the creator imports ``alchemy_gym`` in every env
runner process. Symbolic IDs give RLlib the package's native vector env (RLlib asks the creator for
``num_envs`` sub-envs: all of them are stepped in one call); 3D IDs start one local server process per
env (``binary=``) and flatten its ``symbolic_obs`` and ``Score`` observations into one ``Box``.
"""

from __future__ import annotations

import argparse
import sys


def env_creator(config):
    """RLlib's env creator: a native vector env when RLlib asks for ``num_envs``, else one env."""
    import gymnasium as gym

    from alchemy_gym.levels import find_level  # importing alchemy_gym registers the IDs in this process

    env_id = config.get("env_id", "Alchemy/SymbolicStandard-v0")
    level = find_level(env_id)
    if env_id == level.symbolic_id:
        if "num_envs" in config:
            return gym.make_vec(env_id, num_envs=config["num_envs"], vectorization_mode="vector_entry_point")
        return gym.make(env_id)
    served = gym.make(
        env_id,
        binary=sys.executable,
        binary_args=["-m", "alchemy_gym.server", "--port", "{port}"],
        observations=["symbolic_obs", "Score"],
        event_regex=None,
    )
    return gym.wrappers.FlattenObservation(served)


def build(env_id: str, *, num_envs: int, train_batch: int, seed: int = 0):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    from alchemy_gym.levels import find_level

    register_env("alchemy", env_creator)
    symbolic = env_id == find_level(env_id).symbolic_id
    config = (
        PPOConfig()
        .environment("alchemy", env_config={"env_id": env_id})
        .env_runners(
            num_env_runners=1,
            num_envs_per_env_runner=num_envs,
            # the native vector env for symbolic IDs: RLlib calls the creator with num_envs
            gym_env_vectorize_mode="vector_entry_point" if symbolic else "sync",
        )
        .training(train_batch_size_per_learner=train_batch, minibatch_size=min(128, train_batch), num_epochs=2)
        .debugging(seed=seed)
    )
    return config.build_algo()


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--num-envs", type=int, default=16, help="sub-envs per env runner")
    parser.add_argument("--train-batch", type=int, default=4000)
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        algo = build(args.env_id, num_envs=args.num_envs, train_batch=args.train_batch)
        returns = []
        for i in range(args.iterations):
            result = algo.train()
            value = result.get("env_runners", {}).get("episode_return_mean", float("nan"))
            returns.append(float(value))
            steps = result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0)
            print(f"iteration {i}: {steps} env steps, mean episode return {value:.1f}", flush=True)
        algo.stop()
    finally:
        ray.shutdown()
    return returns


if __name__ == "__main__":
    main()
