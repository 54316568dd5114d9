"""Training speed of RL²: the JAX trainer (``alchemy_gym.baselines.rl2``) beside ``examples/rl2_ppo.py`` (torch).

    python benchmarks/bench_rl2.py                  # 512 envs, rollouts of 100 steps, GRU of 128, 3 rounds
    python benchmarks/bench_rl2.py --rounds 5 --updates 4 --num-envs 256 --num-steps 200

Both train at the same sizes (envs, rollout length, GRU size, 4 epochs of 4 minibatches) on the
no-rotation level with symbolic inputs. Each measurement is a fresh process that builds the trainer,
runs one update to warm up (JAX compiles then), and times ``--updates`` more updates: training
steps per second of wall-clock time, and per second of CPU time (all threads; steadier than wall
time on a shared machine). The two trainers alternate, A B A B, and the medians are compared.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_jax(args) -> dict:
    import jax
    import jax.numpy as jnp

    from alchemy_gym.baselines import rl2

    cfg = dict(rl2.DEFAULTS, num_envs=args.num_envs, num_steps=args.num_steps, hidden=args.hidden,
               env_id=args.env_id, inputs=args.inputs)  # fmt: skip
    init, update, _ = rl2.make_train(cfg)
    state = jax.jit(init)(jax.random.key(0))
    lr, ent = jnp.float32(3e-4), jnp.float32(0.01)
    state, m = update(state, lr, ent)  # compiles
    jax.block_until_ready(m)
    wall, cpu = time.perf_counter(), _cpu()
    for _ in range(args.updates):
        state, m = update(state, lr, ent)
    jax.block_until_ready(m)
    return {"wall": time.perf_counter() - wall, "cpu": _cpu() - cpu}


def worker_torch(args) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl2_ppo", ROOT / "examples" / "rl2_ppo.py")
    rl2_ppo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rl2_ppo)
    per_update = args.num_envs * args.num_steps
    common = ["--env-id", args.env_id, "--num-envs", str(args.num_envs), "--num-steps", str(args.num_steps),
              "--hidden", str(args.hidden), "--threads", str(args.threads)]  # fmt: skip
    rl2_ppo.main([*common, "--total-timesteps", str(per_update)])  # warm-up: one update
    wall, cpu = time.perf_counter(), _cpu()
    rl2_ppo.main([*common, "--total-timesteps", str(per_update * args.updates)])
    return {"wall": time.perf_counter() - wall, "cpu": _cpu() - cpu}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--updates", type=int, default=3, help="timed updates per measurement")
    p.add_argument("--num-envs", type=int, default=512)
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--env-id", default="Alchemy/SymbolicNoRotation-v0")
    p.add_argument("--inputs", default="symbolic", help="inputs of the JAX agent")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.worker:
        out = worker_jax(args) if args.worker == "jax" else worker_torch(args)
        print("RESULT " + json.dumps(out), flush=True)
        return
    steps = args.updates * args.num_envs * args.num_steps
    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    figures: dict[str, list[dict]] = {"torch": [], "jax": []}
    for r in range(args.rounds):
        for who in ("torch", "jax"):
            done = subprocess.run([sys.executable, __file__, *passed, "--worker", who], capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"{who} worker failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            m = json.loads(lines[-1][7:])
            figures[who].append({"steps_per_s": steps / m["wall"], "steps_per_cpu_s": steps / m["cpu"]})
            rate, cpu_rate = steps / m["wall"], steps / m["cpu"]
            print(f"round {r + 1} {who:5s}: {rate:9,.0f} steps/s  {cpu_rate:9,.0f} steps per CPU-second", flush=True)
    med = {who: {k: statistics.median(f[k] for f in rows) for k in rows[0]} for who, rows in figures.items()}
    ratio = {k: med["jax"][k] / med["torch"][k] for k in med["jax"]}
    print(f"sizes: {args.num_envs} envs x {args.num_steps} steps, GRU {args.hidden}, {args.updates} updates a round")
    for who in ("torch", "jax"):
        rate, cpu_rate = med[who]["steps_per_s"], med[who]["steps_per_cpu_s"]
        print(f"median {who:5s}: {rate:9,.0f} steps/s  {cpu_rate:9,.0f} steps per CPU-second")
    print(f"JAX / torch: {ratio['steps_per_s']:.2f}x (wall), {ratio['steps_per_cpu_s']:.2f}x (CPU time)")
    if args.json:
        print(json.dumps({"rounds": figures, "median": med, "ratio": ratio}))


if __name__ == "__main__":
    main()
