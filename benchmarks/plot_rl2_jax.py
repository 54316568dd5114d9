"""Plot JAX RL² runs (``python -m alchemy_gym.baselines.rl2 --run-dir DIR`` writes ``DIR/progress.csv``).

    python benchmarks/plot_rl2_jax.py docs/images/rl2_jax.png \\
        symbolic=runs/rl2-symbolic belief=runs/rl2-belief ground-truth=runs/rl2-ground-truth \\
        [--eval symbolic=160.1 --eval belief=250.2 ...]

Mean training episode reward of each run against environment steps and against wall time, beside
the published agents' scores on the evaluation episodes (baseline, belief-state and ground-truth
agents, the ideal observer); ``--eval KIND=SCORE`` marks a run's score on the evaluation episodes.
Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

#: The published agent (its packaged events) each input kind goes with.
PUBLISHED = {
    "symbolic": ("baseline", "published baseline agent"),
    "belief": ("belief_state_predict", "published belief-state agent"),
    "ground-truth": ("ground_truth_predict", "published ground-truth agent"),
}
COLOURS = {"symbolic": "C0", "belief": "C1", "ground-truth": "C2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="the picture to write (.png)")
    parser.add_argument("runs", nargs="+", metavar="KIND=RUN_DIR", help="input kind and run directory")
    parser.add_argument("--eval", action="append", default=[], metavar="KIND=SCORE",
                        help="a run's mean on the evaluation episodes")  # fmt: skip
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alchemy_gym import replay_agent_events

    def published(agent: str) -> float:
        """Mean episode reward of a published agent on the evaluation episodes, from its packaged events."""
        return round(float(replay_agent_events(agent).sum(axis=1).mean()), 2)

    ideal_observer = published("ideal_observer")
    scores = {k: float(v) for k, v in (e.split("=", 1) for e in args.eval)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for spec in args.runs:
        kind, run = spec.split("=", 1)
        with open(Path(run) / "progress.csv") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            print(f"{run} has no progress rows yet", file=sys.stderr)
            continue
        steps = [int(r["steps"]) / 1e6 for r in rows]
        hours = [float(r["hours"]) for r in rows]
        reward = [float(r["mean_episode_reward"]) for r in rows]
        colour = COLOURS.get(kind, None)
        for ax, x in ((axes[0], steps), (axes[1], hours)):
            ax.plot(x, reward, color=colour, linewidth=1, label=f"RL², {kind} inputs (training episodes)")
            if kind in PUBLISHED:
                agent, name = PUBLISHED[kind]
                value = published(agent)
                ax.axhline(value, color=colour, linestyle="--", linewidth=1, label=f"{name} ({value})")
            if kind in scores:
                ax.plot([x[-1]], [scores[kind]], marker="*", markersize=12, color=colour,
                        label=f"RL², {kind}: evaluation episodes ({scores[kind]:.1f})")  # fmt: skip
        print(f"{kind}: last {reward[-1]:.1f} at {steps[-1]:.1f}M steps, {hours[-1]:.2f} h")
    for ax, label in ((axes[0], "environment steps (millions)"), (axes[1], "wall time (hours)")):
        ax.axhline(ideal_observer, color="grey", linestyle=":", linewidth=1, label=f"ideal observer ({ideal_observer})")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode reward")
    axes[1].legend(loc="lower right", fontsize=7)
    fig.suptitle("JAX RL² on Alchemy/SymbolicNoRotation-v0")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
