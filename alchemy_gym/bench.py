"""Speed and memory benchmarks of the symbolic envs (``alchemy-gym bench``).

Printed figures only; nothing here asserts a time. Everything is measured side by side in one
run: the single env and the native vector env at each size take turns for ``--rounds`` rounds
and the medians are printed (these machines are shared and noisy). Each memory figure is taken
in a fresh interpreter so that earlier work does not pollute it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from alchemy_gym.usage import ArgumentParser, integer

DEFAULT_ID = "Alchemy/SymbolicStandard-v0"
VECTOR_SIZES = (1, 64, 1024, 4096, 16384)


def steps_per_second(env_id: str = DEFAULT_ID, steps: int = 400_000, seed: int = 0) -> dict:
    """One env through ``gymnasium.make``: random actions drawn up front, resets included."""
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


def vector_steps_per_second(
    env_id: str = DEFAULT_ID, num_envs: int = 16, steps: int = 400_000, seed: int = 0, **kwargs
) -> dict:
    """The native vector env through its public ``step``: random actions drawn up front, autoresets included.

    The timed steps (at least 400 per sub-env: two episode ends of the default level) follow one untimed
    episode, so that first-use costs (memory pages, cached chemistry objects) are not counted.
    """
    import gymnasium as gym
    import numpy as np

    import alchemy_gym  # noqa: F401

    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    warmup = 201
    batches = np.random.default_rng(seed).integers(
        0, envs.single_action_space.n, size=(warmup + max(400, steps // num_envs), num_envs)
    )
    envs.reset(seed=seed)
    step = envs.step
    for actions in batches[:warmup]:
        step(actions)
    batches = batches[warmup:]
    start = time.perf_counter()
    for actions in batches:
        step(actions)
    elapsed = time.perf_counter() - start
    unwrapped = envs.unwrapped
    envs.close()
    total = batches.size
    return {
        "num_envs": num_envs,
        "num_threads": unwrapped.num_threads,
        "backend": unwrapped.batch.kernel_name,
        "steps": total,
        "seconds": elapsed,
        "steps_per_second": total / elapsed,
    }


def side_by_side(
    env_id: str = DEFAULT_ID,
    sizes=VECTOR_SIZES,
    *,
    single_steps: int = 200_000,
    vector_steps: int = 4_000_000,
    rounds: int = 3,
    **kwargs,
) -> dict:
    """Single env and vector env at each size in turn, ``rounds`` times; medians and each vector size's ratio
    to the single env of the same round."""
    runs: dict = {"single": [], **{n: [] for n in sizes}}
    for _ in range(rounds):
        runs["single"].append(steps_per_second(env_id, single_steps)["steps_per_second"])
        for n in sizes:
            # small sizes take fewer steps: their rate is set by the per-call overhead
            steps = min(vector_steps, max(20_000, 400 * n))
            runs[n].append(vector_steps_per_second(env_id, n, steps, **kwargs)["steps_per_second"])
    single = runs["single"]
    out = {"env_id": env_id, "rounds": rounds, "single": _summary(single), "vector": {}}
    for n in sizes:
        ratios = [v / s for v, s in zip(runs[n], single)]
        out["vector"][n] = _summary(runs[n]) | {"ratio_to_single_median": statistics.median(ratios)}
    return out


def jax_steps_per_second(
    env_id: str = DEFAULT_ID, num_envs: int = 4096, steps: int = 400, seed: int = 0, *, belief: bool = False
) -> dict:
    """The JAX env under ``jit(vmap)`` + ``lax.scan``: ``steps`` steps of ``num_envs`` envs, random actions drawn
    up front on the device, autoresets inside ``step``. Compile time (the first call) is reported apart.
    With ``belief``, the env keeps the observer's belief and its vector is computed (and consumed) every step."""
    import jax
    import jax.numpy as jnp

    import alchemy_gym.jax as aj

    env, params = aj.make(env_id, belief_state=belief)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.key(seed), num_envs), params)
    actions = jax.random.randint(jax.random.key(seed + 1), (steps, num_envs), 0, env.num_actions, dtype=jnp.int32)
    step = jax.vmap(env.step, in_axes=(None, 0, 0, None))
    belief_of = jax.vmap(env.belief_state, in_axes=(0, None))
    key = jax.random.key(seed + 2)

    @jax.jit
    def rollout(state, actions):
        def body(state, a):
            obs, state, reward, done, _ = step(key, state, a, params)
            # the observation is consumed, as a learner would: otherwise XLA would not compute it
            out = reward.sum() + done.sum() + obs.sum()
            return state, out + belief_of(state, params).sum() if belief else out

        return jax.lax.scan(body, state, actions)

    start = time.perf_counter()
    jax.block_until_ready(rollout(state, actions))
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(rollout(state, actions))
    elapsed = time.perf_counter() - start
    return {
        "num_envs": num_envs,
        "steps": steps * num_envs,
        "compile_seconds": compile_seconds,
        "seconds": elapsed,
        "steps_per_second": steps * num_envs / elapsed,
        "device": str(jax.devices()[0]),
    }


def jax_side_by_side(
    env_id: str = DEFAULT_ID, sizes=(1024, 4096, 16384), *, rounds: int = 3, steps: int = 400, belief: bool = False
) -> dict:
    """The JAX env and the native vector env at each size in turn, ``rounds`` times (medians, ratios per round);
    with ``belief``, the JAX env with its belief state too."""
    runs: dict = {n: {"jax": [], "vector": [], "compile": [], "belief": []} for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            j = jax_steps_per_second(env_id, n, steps)
            runs[n]["jax"].append(j["steps_per_second"])
            runs[n]["compile"].append(j["compile_seconds"])
            runs[n]["vector"].append(vector_steps_per_second(env_id, n, steps * n)["steps_per_second"])
            if belief:
                runs[n]["belief"].append(jax_steps_per_second(env_id, n, steps, belief=True)["steps_per_second"])
    out = {"env_id": env_id, "rounds": rounds, "device": j["device"], "sizes": {}}
    for n, r in runs.items():
        ratios = [a / b for a, b in zip(r["jax"], r["vector"])]
        out["sizes"][n] = {
            "jax": _summary(r["jax"]),
            "vector": _summary(r["vector"]),
            "compile_seconds": _summary(r["compile"]),
            "ratio_jax_to_vector_median": statistics.median(ratios),
        } | ({"jax_with_belief": _summary(r["belief"])} if belief else {})
    return out


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


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
import json, sys, gc
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
mode, n = sys.argv[1], int(sys.argv[2])
out = {"start_kb": rss_kb()}
import numpy, gymnasium
out["numpy_gymnasium_kb"] = rss_kb()
import alchemy_gym
out["import_kb"] = rss_kb()
env = gymnasium.make("Alchemy/SymbolicStandard-v0"); env.reset(seed=0)
for _ in range(150): env.step(1)
out["one_env_kb"] = rss_kb()
if mode == "single":
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
else:
    before = rss_kb()
    envs = gymnasium.make_vec("Alchemy/SymbolicStandard-v0", num_envs=n, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    actions = numpy.random.default_rng(0).integers(0, 40, size=(250, n))
    for a in actions:
        envs.step(a)
    del actions
    gc.collect()
    state, rng = envs.unwrapped.batch.nbytes()
    out["n_envs"] = n
    out["state_bytes_per_env"] = state / n
    out["rng_bytes_per_env"] = rng / n
    out["rss_per_env_bytes"] = (rss_kb() - before) * 1024 / n
print(json.dumps(out))
"""


def memory(n_envs: int = 1000, mode: str = "single") -> dict:
    """RSS after importing numpy+gymnasium, after ``import alchemy_gym`` + one env, and per extra env
    (``mode="single"``: envs made one by one; ``"vector"``: sub-envs of one native vector env)."""
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, mode, str(n_envs)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"memory benchmark failed:\n{result.stderr}")
    return json.loads(result.stdout)


def _check_env_id(env_id: str) -> str | None:
    """Why ``--env-id`` cannot be benchmarked (``None``: it can): bench measures the symbolic envs."""
    from alchemy_gym.levels import levels

    symbolic = [lv.symbolic_id for lv in levels() if lv.symbolic_id]
    if env_id in symbolic:
        return None
    allowed = f"allowed {', '.join(symbolic)} (`alchemy-gym levels` lists them)"
    if env_id in [lv.rpc_id for lv in levels()]:
        return (
            f"--env-id {env_id} is a 3D env: bench measures the symbolic envs (benchmarks/bench_rpc.py measures "
            f"the 3D ones); {allowed}"
        )
    return f"--env-id {env_id!r} is not a symbolic Alchemy env; {allowed}"


def _check_vector_settings(env_id: str, num_envs: int, kwargs: dict) -> str | None:
    """Why the vector env refuses ``--backend`` / ``--threads`` (``None``: it takes them), asked of the env itself."""
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    try:
        gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs).close()
    except (ValueError, ImportError) as e:
        names = " / ".join(f"--{k.replace('num_', '')} {v}" for k, v in kwargs.items())
        return f"{names}: {e}"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``alchemy-gym bench``."""
    positive = integer(1)
    parser = ArgumentParser(prog="alchemy-gym bench", description=__doc__)
    parser.add_argument("--env-id", default=DEFAULT_ID, help=f"a symbolic env ID (default {DEFAULT_ID})")
    parser.add_argument("--steps", type=positive, default=200_000, help="steps of the single env per round")
    parser.add_argument(
        "--vector-steps", type=positive, default=4_000_000, help="sub-env steps per vector size and round"
    )
    parser.add_argument("--sizes", type=positive, nargs="+", default=list(VECTOR_SIZES), help="vector env sizes")
    parser.add_argument("--rounds", type=positive, default=3, help="rounds of single and vector runs in turn")
    parser.add_argument("--threads", type=positive, default=None, help="num_threads of the vector env (default: auto)")
    parser.add_argument("--backend", default="auto", choices=["auto", "c", "numpy"])
    parser.add_argument("--envs", type=positive, default=1000, help="single envs for the per-env memory figure")
    parser.add_argument("--quick", action="store_true", help="one round, fewer steps, no replay or memory")
    parser.add_argument("--jax", action="store_true", help="the JAX env beside the native vector env (jax extra)")
    parser.add_argument(
        "--belief", action="store_true", help="with --jax: also the JAX env keeping its belief state (and its vector)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``alchemy-gym bench``: every bad argument is a one-line error (exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _check_env_id(args.env_id)
    if problem:
        parser.error(problem)
    if args.belief and not args.jax:
        parser.error("--belief measures the JAX env: give it with --jax")
    from alchemy_gym.envs.gymnasium_version import GymnasiumVersionError, require_vector_api

    try:
        require_vector_api("alchemy-gym bench (it measures the native vector env)")
    except GymnasiumVersionError as exc:
        parser.error(str(exc))
    if args.jax:
        try:
            import jax  # noqa: F401
        except ImportError:
            parser.error("--jax needs JAX: pip install 'alchemy-gym[jax]'")
        return _main_jax(args)
    if args.quick:
        args.rounds, args.steps, args.vector_steps = 1, 50_000, 500_000
    kwargs = {"backend": args.backend} | ({"num_threads": args.threads} if args.threads else {})
    problem = _check_vector_settings(args.env_id, max(args.sizes), kwargs)
    if problem:
        parser.error(problem)
    results = {
        "side_by_side": side_by_side(
            args.env_id,
            args.sizes,
            single_steps=args.steps,
            vector_steps=args.vector_steps,
            rounds=args.rounds,
            **kwargs,
        )
    }
    if not args.quick:
        results["replay"] = replay_seconds()
        results["memory"] = memory(args.envs)
        results["vector_memory"] = memory(max(args.sizes), "vector")
    if args.json:
        print(json.dumps(results))
        return 0
    sbs = results["side_by_side"]
    s = sbs["single"]
    print(f"{sbs['env_id']}, medians of {sbs['rounds']} rounds (min–max), single and vector runs in turn:")
    print(f"  single env (gymnasium.make): {s['median']:>12,.0f} steps/s  ({s['min']:,.0f}–{s['max']:,.0f})")
    for n, v in sbs["vector"].items():
        print(
            f"  vector env, {n:>6} sub-envs: {v['median']:>12,.0f} steps/s  ({v['min']:,.0f}–{v['max']:,.0f})"
            f"  {v['ratio_to_single_median']:6.1f}x the single env"
        )
    if "replay" in results:
        r, m, vm = results["replay"], results["memory"], results["vector_memory"]
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
        print(
            f"  per sub-env of a {vm['n_envs']}-env vector env: {vm['state_bytes_per_env']:.0f} B of game state "
            f"+ {vm['rng_bytes_per_env']:.0f} B of RNG state; {vm['rss_per_env_bytes']:.0f} B RSS in all"
        )
    return 0


def _main_jax(args) -> int:
    sizes = [n for n in args.sizes if n in (1024, 4096, 16384)] or [1024, 4096, 16384]
    if args.sizes != list(VECTOR_SIZES):
        sizes = args.sizes
    rounds, steps = (1, 100) if args.quick else (args.rounds, 400)
    result = jax_side_by_side(args.env_id, sizes, rounds=rounds, steps=steps, belief=args.belief)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['env_id']}: JAX env under jit(vmap) + scan ({result['device']}) and the native vector env, "
        f"medians of {result['rounds']} rounds (min–max), in turn:"
    )
    for n, row in result["sizes"].items():
        j, v, c = row["jax"], row["vector"], row["compile_seconds"]
        print(
            f"  {n:>6} envs: JAX {j['median']:>12,.0f} steps/s ({j['min']:,.0f}–{j['max']:,.0f}), "
            f"vector env {v['median']:>12,.0f} ({v['min']:,.0f}–{v['max']:,.0f}), "
            f"JAX/vector {row['ratio_jax_to_vector_median']:.2f}; compile {c['median']:.1f} s"
        )
        if "jax_with_belief" in row:
            b = row["jax_with_belief"]
            span = f"({b['min']:,.0f}–{b['max']:,.0f})"
            print(f"  {'':>6}       JAX with its belief state and vector {b['median']:>12,.0f} {span}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
