"""Plot an RL^2 run's learning curve (``examples/rl2_ppo.py --run-dir DIR`` writes ``DIR/progress.csv``).

    python benchmarks/plot_rl2.py runs/rl2/progress.csv docs/images/rl2.png [--eval 123.4]

Mean training episode reward against environment steps and against wall time, beside the reference
scores on the evaluation episodes (random-action bot, the published baseline agent, the ideal
observer). Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import csv
import sys

REFERENCES = {"random-action bot": 145.0, "published baseline agent": 155.18, "ideal observer": 284.42}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("progress", help="the run's progress.csv")
    parser.add_argument("output", help="the picture to write (.png)")
    parser.add_argument("--eval", type=float, default=None, help="the trained policy's mean on the evaluation episodes")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.progress) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"{args.progress} has no rows yet", file=sys.stderr)
        return 2
    steps = [int(r["steps"]) / 1e6 for r in rows]
    hours = [float(r["hours"]) for r in rows]
    reward = [float(r["mean_episode_reward"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in ((axes[0], steps, "environment steps (millions)"), (axes[1], hours, "wall time (hours)")):
        ax.plot(x, reward, label="RL² PPO, training episodes")
        for (name, value), style in zip(REFERENCES.items(), (":", "--", "-.")):
            ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
        if args.eval is not None:
            ax.axhline(args.eval, color="C1", linewidth=1, label=f"RL² on the evaluation episodes ({args.eval:.1f})")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode reward")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("RL² (recurrent PPO) on Alchemy/SymbolicStandard-v0")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    last = f"last {reward[-1]:.1f} at {steps[-1]:.1f}M steps, {hours[-1]:.2f} h"
    print(f"wrote {args.output}: {len(rows)} points, {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
