"""Two checkouts of alchemy-gym side by side: the same benchmark, their runs interleaved (A B A B ...).

    python benchmarks/compare.py /work/main . --rounds 9                 # alchemy-gym bench --quick: steps/s
    python benchmarks/compare.py /work/main . --what cpu --rounds 9      # CPU time of a step (benchmarks/cpu_steps.py)
    python benchmarks/compare.py /work/main . --what cpu-jax --rounds 5  # CPU time of the JAX env's steps
    python benchmarks/compare.py /work/main . --what memory --rounds 2   # the bench's replay and memory figures
    python benchmarks/compare.py /work/main . --what jax --rounds 3      # alchemy-gym bench --jax
    python benchmarks/compare.py /work/main . --what ideal --rounds 3    # bench_ideal_observer.py --episodes 0:2

Each run is a fresh interpreter with ``PYTHONPATH`` set to its checkout (build each checkout's C
extensions in place first). The machine is shared and noisy, so the runs take turns and the
figures printed are each side's median and the ratio B / A of the medians (and of each round's
pair): compare ratios, not absolute figures. Search nodes of the ideal observer must be equal on
both sides (the same tree searched); the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path


def _run(checkout: Path, command: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} in {checkout} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def _bench(checkout: Path, args) -> dict[str, float]:
    sizes = [str(n) for n in args.sizes]
    out = json.loads(
        _run(checkout, [sys.executable, "-m", "alchemy_gym.bench", "--quick", "--json", "--sizes", *sizes])
    )["side_by_side"]
    figures = {"single env steps/s": out["single"]["median"]}
    figures |= {f"vector env {n} steps/s": v["median"] for n, v in out["vector"].items()}
    return figures


def _memory(checkout: Path, args) -> dict[str, float]:
    out = json.loads(
        _run(
            checkout,
            [
                sys.executable,
                "-m",
                "alchemy_gym.bench",
                "--json",
                "--rounds",
                "1",
                "--steps",
                "1000",
                "--vector-steps",
                "1000",
                "--sizes",
                "16384",
            ],
        )  # fmt: skip
    )
    return {
        "replay 1000 episodes s": out["replay"]["replay_seconds"],
        "RSS import + 1 env MB": out["memory"]["one_env_kb"] / 1024,
        "traced KB per single env": out["memory"]["traced_bytes_per_env"] / 1024,
        "B per sub-env, 16384 vector env": out["vector_memory"]["rss_per_env_bytes"],
    }


def _cpu(checkout: Path, args) -> dict[str, float]:
    script = Path(__file__).resolve().parent / "cpu_steps.py"  # the same workload on both sides
    return json.loads(_run(checkout, [sys.executable, str(script)]))


def _cpu_jax(checkout: Path, args) -> dict[str, float]:
    script = Path(__file__).resolve().parent / "cpu_steps.py"
    return json.loads(_run(checkout, [sys.executable, str(script), "--jax"]))


def _jax(checkout: Path, args) -> dict[str, float]:
    sizes = [str(n) for n in args.sizes if n >= 1024] or ["1024", "4096"]
    out = json.loads(
        _run(
            checkout, [sys.executable, "-m", "alchemy_gym.bench", "--jax", "--json", "--rounds", "1", "--sizes", *sizes]
        )
    )
    return {f"JAX env {n} steps/s": row["jax"]["median"] for n, row in out["sizes"].items()}


def _ideal(checkout: Path, args) -> dict[str, float]:
    script = checkout / "benchmarks" / "bench_ideal_observer.py"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = _run(checkout, [sys.executable, str(script), "--episodes", args.episodes])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mean = re.search(r"seconds per episode .*mean ([0-9.]+)", text)
    nodes = re.search(r"nodes searched: (\d+)", text)
    if not mean or not nodes:
        raise RuntimeError(f"unexpected output of {script}:\n{text}")
    return {
        "ideal observer s/episode": float(mean.group(1)),
        "ideal observer process CPU s": cpu,  # the whole run, import and loading included: less noisy
        "ideal observer nodes": float(nodes.group(1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="checkout A (e.g. /work/main)")
    parser.add_argument("b", type=Path, help="checkout B (e.g. this one)")
    parser.add_argument("--what", choices=["bench", "cpu", "cpu-jax", "memory", "jax", "ideal"], default="bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 16384])
    parser.add_argument("--episodes", default="0:2", help="evaluation episodes of an ideal-observer run")
    args = parser.parse_args(argv)
    measure = {"bench": _bench, "cpu": _cpu, "cpu-jax": _cpu_jax, "memory": _memory, "jax": _jax, "ideal": _ideal}[
        args.what
    ]
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        for side in order:
            runs[side].append(measure(args.a if side == "A" else args.b, args))
        print(f"round {r + 1}/{args.rounds} done ({' then '.join(order)})", file=sys.stderr, flush=True)
    print(f"A = {args.a}, B = {args.b}; {args.rounds} rounds, in turn; medians (min–max) and B/A")
    for key in runs["A"][0]:
        a = [run[key] for run in runs["A"]]
        b = [run[key] for run in runs["B"]]
        pairs = [y / x for x, y in zip(a, b)]
        print(
            f"  {key:32} A {statistics.median(a):>14,.3f} ({min(a):,.3f}–{max(a):,.3f})  "
            f"B {statistics.median(b):>14,.3f} ({min(b):,.3f}–{max(b):,.3f})  "
            f"B/A {statistics.median(b) / statistics.median(a):.3f}, median of the rounds' B/A "
            f"{statistics.median(pairs):.3f} ({', '.join(f'{p:.2f}' for p in pairs)})"
        )
    if args.what == "ideal":
        same = all(x["ideal observer nodes"] == y["ideal observer nodes"] for x, y in zip(runs["A"], runs["B"]))
        print(f"  search nodes equal on both sides: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
