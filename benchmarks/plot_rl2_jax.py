"""Plot JAX RL² runs (``python -m alchemy_gym.baselines.rl2 --run-dir DIR`` writes ``DIR/progress.csv``).

    python benchmarks/plot_rl2_jax.py docs/images/rl2_jax.png \\
        symbolic=runs/rl2-symbolic belief=runs/rl2-belief ground-truth=runs/rl2-ground-truth \\
        [belief/warm=runs/rl2-belief-warm] [--eval symbolic=160.1 --eval belief/warm=250.2 ...]

Mean training episode reward of each run against environment steps and against wall time, beside
the published agents' scores on the evaluation episodes (baseline, belief-state and ground-truth
agents, the ideal observer); ``--eval NAME=SCORE`` marks a run's score on the evaluation episodes.
A run is named by its input kind, optionally with ``/label`` (two runs of one kind). A run started
with ``--init-weights`` (its ``init.json``) is drawn from where its source run's steps and hours
ended, so its curve counts the source's training too.
Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import csv
import json
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
    parser.add_argument("runs", nargs="+", metavar="KIND[/LABEL]=RUN_DIR", help="input kind and run directory")
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=SCORE",
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 6), sharey=True)
    drawn = set()
    for spec in args.runs:
        name, run = spec.split("=", 1)
        kind, _, label = name.partition("/")
        with open(Path(run) / "progress.csv") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            print(f"{run} has no progress rows yet", file=sys.stderr)
            continue
        start_steps, start_hours, how = 0.0, 0.0, f"RL², {kind} inputs"
        init = Path(run) / "init.json"
        if init.exists():  # a warm start: drawn from where its source ended
            source = json.loads(init.read_text())
            start_steps, start_hours = source.get("steps", 0) / 1e6, float(source.get("hours", 0.0))
            how += f", warm start from {source['inputs']} weights at {start_steps:.0f} M"
        elif label:
            how += f" ({label})"
        steps = [start_steps + int(r["steps"]) / 1e6 for r in rows]
        hours = [start_hours + float(r["hours"]) for r in rows]
        reward = [float(r["mean_episode_reward"]) for r in rows]
        colour = COLOURS.get(kind, None)
        style = ":" if label and not init.exists() else "-"
        for ax, x in ((axes[0], steps), (axes[1], hours)):
            ax.plot(x, reward, color=colour, linewidth=1, linestyle=style, label=f"{how} (training episodes)")
            if kind in PUBLISHED and kind not in drawn:
                agent, title = PUBLISHED[kind]
                value = published(agent)
                ax.axhline(value, color=colour, linestyle="--", linewidth=1, label=f"{title} ({value})")
            if name in scores:
                ax.plot([x[-1]], [scores[name]], marker="*", markersize=12, color=colour,
                        label=f"RL², {name}: evaluation episodes ({scores[name]:.1f})")  # fmt: skip
        drawn.add(kind)
        print(f"{name}: last {reward[-1]:.1f} at {steps[-1]:.1f}M steps, {hours[-1]:.2f} h")
    for ax, label in ((axes[0], "environment steps (millions)"), (axes[1], "wall time (hours)")):
        ax.axhline(ideal_observer, color="grey", linestyle=":", linewidth=1, label=f"ideal observer ({ideal_observer})")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode reward")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle("JAX RL² on Alchemy/SymbolicNoRotation-v0")
    fig.tight_layout(rect=(0, 0.06 + 0.022 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
