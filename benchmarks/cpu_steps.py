"""CPU time of a step: the native vector env (one thread) per sub-env, and the single env.

    python benchmarks/cpu_steps.py          # one JSON line: nanoseconds of CPU time per step

Process CPU time, not wall time: on a shared, busy machine it moves far less from run to run (other
processes take turns on the cores, which stretches wall time but not the process's own CPU time),
so two versions measured in turn (``benchmarks/compare.py A B --what cpu``) differ by what they do.
Random actions drawn up front, autoresets included, after one untimed episode.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np

import alchemy_gym  # noqa: F401

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
    c0, w0 = time.process_time(), time.perf_counter()
    for a in acts[201:]:
        step(a)
    c1, w1 = time.process_time(), time.perf_counter()
    out[f"vector {n} cpu ns/sub-env step"] = (c1 - c0) / (steps * n) * 1e9
env = gym.make("Alchemy/SymbolicStandard-v0")
acts = np.random.default_rng(0).integers(0, 40, size=100000).tolist()
env.reset(seed=0)
c0 = time.process_time()
for a in acts:
    if env.step(a)[2]:
        env.reset()
out["single env cpu ns/step"] = (time.process_time() - c0) / len(acts) * 1e9
print(json.dumps(out))
