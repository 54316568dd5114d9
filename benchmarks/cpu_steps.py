"""CPU time of a step: the native vector env (one thread) per sub-env, and the single env.

    python benchmarks/cpu_steps.py          # one JSON line: nanoseconds of CPU time per step
    python benchmarks/cpu_steps.py --jax    # the JAX env under jit(vmap) + scan instead (its threads included)

Process CPU time, not wall time: on a shared, busy machine it moves far less from run to run (other
processes take turns on the cores, which stretches wall time but not the process's own CPU time),
so two versions measured in turn (``benchmarks/compare.py A B --what cpu``) differ by what they do.
Random actions drawn up front, autoresets included, after one untimed episode.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import gymnasium as gym
import numpy as np

import alchemy_gym  # noqa: F401


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process (XLA's too)
    return usage.ru_utime + usage.ru_stime


def native() -> dict[str, float]:
    out = {}
    for n, steps in ((1, 20000), (64, 4000), (1024, 1000), (16384, 400)):
        envs = gym.make_vec(
            "Alchemy/SymbolicStandard-v0", num_envs=n, vectorization_mode="vector_entry_point", num_threads=1
        )
        acts = np.random.default_rng(0).integers(0, 40, size=(steps + 201, n))
        envs.reset(seed=0)
        for a in acts[:201]:
            envs.step(a)
        step = envs.step
        c0 = time.process_time()
        for a in acts[201:]:
            step(a)
        out[f"vector {n} cpu ns/sub-env step"] = (time.process_time() - c0) / (steps * n) * 1e9
    env = gym.make("Alchemy/SymbolicStandard-v0")
    acts = np.random.default_rng(0).integers(0, 40, size=100000).tolist()
    env.reset(seed=0)
    c0 = time.process_time()
    for a in acts:
        if env.step(a)[2]:
            env.reset()
    out["single env cpu ns/step"] = (time.process_time() - c0) / len(acts) * 1e9
    return out


def jax_env(steps: int = 400) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    import alchemy_gym.jax as aj

    out = {}
    for n in (1024, 4096):
        env, params = aj.make("Alchemy/SymbolicStandard-v0")
        _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.key(0), n), params)
        actions = jax.random.randint(jax.random.key(1), (steps, n), 0, env.num_actions, dtype=jnp.int32)
        step = jax.vmap(env.step, in_axes=(None, 0, 0, None))
        key = jax.random.key(2)

        @jax.jit
        def rollout(state, actions, step=step, key=key, params=params):
            def body(state, a):
                obs, state, reward, done, _ = step(key, state, a, params)
                return state, reward.sum() + done.sum() + obs.sum()

            return jax.lax.scan(body, state, actions)

        jax.block_until_ready(rollout(state, actions))  # compiled
        best = float("inf")
        for _ in range(3):
            c0 = _cpu()
            jax.block_until_ready(rollout(state, actions))
            best = min(best, _cpu() - c0)
        out[f"JAX {n} cpu ns/env step"] = best / (steps * n) * 1e9
    return out


if __name__ == "__main__":
    print(json.dumps(jax_env() if "--jax" in sys.argv[1:] else native()))
