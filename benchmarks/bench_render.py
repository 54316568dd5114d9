"""What ``render_mode="rgb_array"`` costs: steps/s of the symbolic env with a picture after every step.

    python benchmarks/bench_render.py                # scales 1, 2, 4; 3 rounds of 20,000 steps each
    python benchmarks/bench_render.py --scales 1 --steps 5000

Prints figures; asserts nothing. Side by side in one run, on the same random actions (standard task,
``gymnasium.make`` with all its wrappers): ``step`` alone, ``step`` + ``render()`` at each
``render_scale``, and ``step`` + the 96×72 scene-only picture of the 3D interface's server
(:class:`~alchemy_gym.render.TrialPainter`, what ``rgb_array`` drew before the strip and the tags).
The median of the rounds is shown.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import alchemy_gym  # noqa: F401
from alchemy_gym.render import TrialPainter

ENV_ID = "Alchemy/SymbolicStandard-v0"


def steps_per_second(env, actions: np.ndarray, draw) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, _, _ = env.step(int(action))
        if draw is not None:
            draw()
        if terminated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="render_scale values (1..8)")
    parser.add_argument("--steps", type=int, default=20_000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is shown)")
    args = parser.parse_args(argv)
    actions = np.random.default_rng(0).integers(0, 40, size=args.steps)
    cases = {"step only": (gym.make(ENV_ID), None)}
    plain = gym.make(ENV_ID)
    painter = TrialPainter(96, 72)
    cases["step + server scene 96x72 (TrialPainter)"] = (plain, lambda: painter.paint(plain.unwrapped.game))
    for scale in args.scales:
        env = gym.make(ENV_ID, render_mode="rgb_array", render_scale=scale)
        width, height = env.unwrapped.render_size
        cases[f"step + render(), render_scale={scale} ({width}x{height})"] = (env, env.render)
    results = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (env, draw) in cases.items():
            results[name].append(steps_per_second(env, actions, draw))
    width = max(len(name) for name in results)
    for name, rates in results.items():
        print(f"{name:<{width}}  {statistics.median(rates):>10,.0f} steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
