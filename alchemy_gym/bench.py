"""Speed and memory benchmarks of the symbolic env (``alchemy-gym bench``).

Printed figures only; nothing here asserts a time. Each memory figure is taken
in a fresh interpreter so that earlier work does not pollute it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DEFAULT_ID = "Alchemy/SymbolicStandard-v0"


def steps_per_second(env_id: str = DEFAULT_ID, steps: int = 400_000, seed: int = 0) -> dict:
    """Random actions (drawn up front) through ``gymnasium.make``, resets included."""
    import gymnasium as gym
    import numpy as np

    import alchemy_gym  # noqa: F401

    env = gym.make(env_id)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    resets = 0
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for a in actions:
        if step(a)[2]:
            reset()
            resets += 1
    elapsed = time.perf_counter() - start
    reset_start = time.perf_counter()
    for _ in range(2000):
        reset()
    reset_time = (time.perf_counter() - reset_start) / 2000
    env.close()
    return {
        "env_id": env_id,
        "steps": steps,
        "resets": resets,
        "seconds": elapsed,
        "steps_per_second": steps / elapsed,
        "reset_microseconds": reset_time * 1e6,
    }


def vector_steps_per_second(env_id: str = DEFAULT_ID, num_envs: int = 16, steps: int = 400_000, seed: int = 0):
    """The native vector env (``make_vec(..., vectorization_mode="vector_entry_point")``), autoresets included."""
    import gymnasium as gym
    import numpy as np

    import alchemy_gym  # noqa: F401

    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    batches = np.random.default_rng(seed).integers(0, 40, size=(max(1, steps // num_envs), num_envs))
    envs.reset(seed=seed)
    start = time.perf_counter()
    for actions in batches:
        envs.step(actions)
    elapsed = time.perf_counter() - start
    envs.close()
    total = batches.size
    return {"num_envs": num_envs, "steps": total, "seconds": elapsed, "steps_per_second": total / elapsed}


def replay_seconds(agent: str = "ideal_observer") -> dict:
    """``replay_agent_events`` on one 1000-episode file: cold (parse + replay) and warm."""
    import alchemy_gym
    from alchemy_gym import data

    start = time.perf_counter()
    data.evaluation_episodes()
    data.load_agent_events(agent)
    load = time.perf_counter() - start
    start = time.perf_counter()
    rewards = alchemy_gym.replay_agent_events(agent)
    warm = time.perf_counter() - start
    return {"agent": agent, "load_seconds": load, "replay_seconds": warm, "mean": float(rewards.sum(1).mean())}


_MEMORY_SCRIPT = r"""
import json, resource, sys, gc
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
mode, n = sys.argv[1], int(sys.argv[2])
out = {"start_kb": rss_kb()}
import numpy, gymnasium
out["numpy_gymnasium_kb"] = rss_kb()
if mode == "baseline":
    print(json.dumps(out)); sys.exit()
import alchemy_gym
out["import_kb"] = rss_kb()
env = gymnasium.make("Alchemy/SymbolicStandard-v0"); env.reset(seed=0)
for _ in range(150): env.step(1)
out["one_env_kb"] = rss_kb()
import tracemalloc
gc.collect(); tracemalloc.start()
envs = []
for i in range(n):
    e = gymnasium.make("Alchemy/SymbolicStandard-v0"); e.reset(seed=i); e.step(2); envs.append(e)
gc.collect()
current, _ = tracemalloc.get_traced_memory()
out["n_envs"] = n
out["traced_bytes_per_env"] = current / n
out["rss_per_env_bytes"] = (rss_kb() - out["one_env_kb"]) * 1024 / n
print(json.dumps(out))
"""


def memory(n_envs: int = 1000) -> dict:
    """RSS after importing numpy+gymnasium, after ``import alchemy_gym`` + one env, and per extra env."""
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, "full", str(n_envs)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"memory benchmark failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alchemy-gym bench", description=__doc__)
    parser.add_argument("--env-id", default=DEFAULT_ID)
    parser.add_argument("--steps", type=int, default=400_000)
    parser.add_argument("--envs", type=int, default=1000, help="envs for the per-env memory figure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.envs < 1:
        parser.error("--steps and --envs must be positive")
    results = {
        "speed": steps_per_second(args.env_id, args.steps),
        "vector": vector_steps_per_second(args.env_id, 16, args.steps),
        "replay": replay_seconds(),
        "memory": memory(args.envs),
    }
    if args.json:
        print(json.dumps(results))
        return 0
    s, r, m = results["speed"], results["replay"], results["memory"]
    print(
        f"{s['env_id']}: {s['steps_per_second']:,.0f} steps/s over {s['steps']:,} random steps ({s['resets']} resets)"
    )
    print(f"  reset alone: {s['reset_microseconds']:.1f} us")
    v = results["vector"]
    print(f"native vector env, {v['num_envs']} envs: {v['steps_per_second']:,.0f} steps/s (autoresets included)")
    print(
        f"replay_agent_events({r['agent']!r}), 1000 episodes: {r['replay_seconds']:.3f} s "
        f"(+ {r['load_seconds']:.3f} s to parse the packaged files once); mean {r['mean']:.3f}"
    )
    print(
        f"memory: numpy+gymnasium {m['numpy_gymnasium_kb'] / 1024:.1f} MB RSS; after import alchemy_gym "
        f"{m['import_kb'] / 1024:.1f} MB; with one env {m['one_env_kb'] / 1024:.1f} MB"
    )
    print(
        f"  per env ({m['n_envs']} envs via gymnasium.make): {m['traced_bytes_per_env'] / 1024:.1f} KB traced, "
        f"{m['rss_per_env_bytes'] / 1024:.1f} KB RSS"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
